"""nginx's configuration language: text -> tree of Statements, nothing more.

Owns tokenising (quotes, escapes, `$var`/`${var}`, `#` comments) and block
structure. It does not know any directive: validating against the table and
expanding `include` happen later (load.py), in statement order, so errors come out
in the same order nginx reports them.

A syntax error does not raise here. It becomes an error Statement (``error`` set)
appended where nginx's reader stopped, and parsing ends: the validator raises it
when its walk reaches that point, after every earlier statement was checked, which
is exactly nginx's streaming order (a misplaced `map` on line 2 wins over a stray
quote on line 50). `parse_recovering` (for `wsgate check`) instead skips past
each error and reads on, so that every one is reported.

Positions: ``line`` is nginx's line, i.e. where the reader was when it finished the
statement (the line of its ``;`` or ``{``); ``start_line``/``col`` are where the
directive name starts (for `wsgate check`).
"""

from __future__ import annotations

import bisect
import dataclasses
import os
import re
from dataclasses import dataclass, field

from wsgate.errors import ConfigError

__all__ = ["Statement", "parse_text", "parse_file", "parse_recovering", "COMMAND_LINE",
           "MAX_TOKEN"]

COMMAND_LINE = "command line"
# nginx reads the config through a 4096-byte buffer; a token must fit in it.
MAX_TOKEN = 4096

_SPACE = re.compile(r"[ \t\r\n]+")
_BARE = re.compile(r"(?:\\[\s\S]|\$\{*|[^ \t\r\n;{\\$])+")
_DQ = re.compile(r'(?:[^"\\]|\\[\s\S])*"')
_SQ = re.compile(r"(?:[^'\\]|\\[\s\S])*'")
_ESCAPE = re.compile(r"\\([\"'\\trn])")
_ESCAPES = {'"': '"', "'": "'", "\\": "\\", "t": "\t", "r": "\r", "n": "\n"}


@dataclass(frozen=True, slots=True)
class Statement:
    """One directive: ``name args... ;`` or ``name args... { block }``."""

    name: str
    args: tuple[str, ...]
    file: str
    line: int
    col: int = 1
    start_line: int = 0
    block: tuple["Statement", ...] | None = None
    block_start: bool = False     # ended with "{" (block may be None on error)
    arg_pos: tuple[tuple[int, int], ...] = ()
    quoted: tuple[bool, ...] = ()  # per word, name included
    error: ConfigError | None = field(default=None, compare=False)
    end_line: int = 0              # line of the closing "}" of a block

    @property
    def words(self) -> tuple[str, ...]:
        return (self.name, *self.args)


class _Cursor:
    """Position bookkeeping: offsets -> (line, col) in O(log n)."""

    def __init__(self, text: str) -> None:
        self.newlines = [m.start() for m in re.finditer("\n", text)]

    def line(self, pos: int) -> int:
        return bisect.bisect_left(self.newlines, pos) + 1

    def col(self, pos: int) -> int:
        i = bisect.bisect_left(self.newlines, pos)
        return pos - (self.newlines[i - 1] if i else -1)


def _unescape(raw: str) -> str:
    if "\\" not in raw:
        return raw
    return _ESCAPE.sub(lambda m: _ESCAPES[m.group(1)], raw)


class _Reader:
    """nginx's ngx_conf_read_token as a scanner: one call reads one statement head."""

    def __init__(self, text: str, file: str, param: bool) -> None:
        self.text = text
        self.file = file
        self.param = param        # -g string: different end-of-input wording
        self.pos = 0
        self.cur = _Cursor(text)
        self.eof_line = len(self.cur.newlines) + 1

    def error(self, message: str, line: int) -> ConfigError:
        if self.file == COMMAND_LINE:
            return ConfigError(message, COMMAND_LINE, None)
        return ConfigError(message, self.file, line)

    def eof_error(self) -> ConfigError:
        if self.param:
            return self.error('unexpected end of parameter, expecting ";"', self.eof_line)
        return self.error('unexpected end of file, expecting ";" or "}"', self.eof_line)

    def read(self) -> tuple[str, list[tuple[str, int, bool]]]:
        """Return (kind, words): kind is ';', '{', '}', 'eof'; raises ConfigError."""
        words: list[tuple[str, int, bool]] = []
        text, n = self.text, len(self.text)
        while True:
            blank = _SPACE.match(text, self.pos)
            if blank is not None:
                self.pos = blank.end()
            if self.pos >= n:
                if words:
                    raise self.eof_error()
                return "eof", words
            ch = text[self.pos]
            if ch in ";{":
                if not words:
                    raise self.error(f'unexpected "{ch}"', self.cur.line(self.pos))
                self.pos += 1
                return ch, words
            if ch == "}":
                if words:
                    raise self.error('unexpected "}"', self.cur.line(self.pos))
                self.pos += 1
                return "}", words
            if ch == "#":
                end = text.find("\n", self.pos)
                self.pos = n if end < 0 else end
                continue
            if ch in "\"'":
                words.append(self._quoted(ch))
                kind = self._after_quote()
                if kind:
                    return kind, words
                continue
            words.append(self._bare())
            if self.pos < n and text[self.pos] in ";{":
                kind = text[self.pos]
                self.pos += 1
                return kind, words

    def _check_length(self, start: int, end: int, quote: str) -> None:
        if end - start < MAX_TOKEN:
            return
        line = self.cur.line(start)
        if quote:
            raise self.error("too long parameter, probably missing terminating "
                             f'"{quote}" character', line)
        raise self.error(f'too long parameter "{self.text[start:start + 10]}..." started', line)

    def _quoted(self, quote: str) -> tuple[str, int, bool]:
        start = self.pos + 1
        m = (_DQ if quote == '"' else _SQ).match(self.text, start)
        end = m.end() - 1 if m else len(self.text)
        self._check_length(start, end, quote)
        if not m:
            raise self.eof_error()
        self.pos = m.end()
        return _unescape(self.text[start:end]), self.pos - (end - start) - 2, True

    def _after_quote(self) -> str:
        """nginx's need_space: a quoted word must be followed by a separator."""
        if self.pos >= len(self.text):
            raise self.eof_error()
        ch = self.text[self.pos]
        if ch in " \t\r\n":
            return ""
        if ch in ";{":
            self.pos += 1
            return ch
        if ch == ")":      # `if ($a = "b")`: the ")" starts a new word
            return ""
        raise self.error(f'unexpected "{ch}"', self.cur.line(self.pos))

    def _bare(self) -> tuple[str, int, bool]:
        start = self.pos
        m = _BARE.match(self.text, start)
        end = m.end() if m else start
        self._check_length(start, end, "")
        if end < len(self.text) and self.text[end] == "\\":
            raise self.eof_error()      # a lone backslash at the very end
        self.pos = end
        return _unescape(self.text[start:end]), start, False


@dataclass(slots=True)
class _Open:
    words: list[tuple[str, int, bool]]
    line: int
    children: list[Statement]


def _statement(reader: _Reader, words: list[tuple[str, int, bool]], line: int,
               block: tuple[Statement, ...] | None, block_start: bool,
               error: ConfigError | None = None) -> Statement:
    cur = reader.cur
    first = words[0][1] if words else reader.pos
    return Statement(
        name=words[0][0] if words else "", args=tuple(w[0] for w in words[1:]),
        file=reader.file, line=line, col=cur.col(first), start_line=cur.line(first),
        block=block, block_start=block_start,
        arg_pos=tuple((cur.line(w[1]), cur.col(w[1])) for w in words[1:]),
        quoted=tuple(w[2] for w in words), error=error)


def _error_statement(reader: _Reader, err: ConfigError) -> Statement:
    return Statement(name="", args=(), file=reader.file, line=err.line or 0,
                     col=reader.cur.col(min(reader.pos, len(reader.text))),
                     start_line=err.line or 0, error=err)


def parse_text(text: str, file: str, *, param: bool = False) -> list[Statement]:
    """Parse a whole file's text (or the -g string, param=True) into statements.

    As nginx, reading stops at the first error (an error Statement where it happened).
    """
    return _parse(_Reader(text, file, param), recover=False, max_errors=1)


def _parse(reader: _Reader, *, recover: bool, max_errors: int) -> list[Statement]:
    """The statement loop of parse_text and parse_recovering: `recover` skips past
    an error and reads on, up to `max_errors` of them."""
    top: list[Statement] = []
    stack: list[_Open] = []
    errors = 0
    while errors < max_errors:
        children = stack[-1].children if stack else top
        try:
            kind, words = reader.read()
            err = _structure_error(reader, kind, bool(stack))
        except ConfigError as exc:
            err = exc
        if err is not None:
            children.append(_error_statement(reader, err))
            errors += 1
            if not recover or _ends_text(err) or not _resume(reader, err):
                break
            continue
        if kind == "eof":
            break
        line = reader.cur.line(reader.pos - 1)
        if kind == ";":
            children.append(_statement(reader, words, line, None, False))
        elif kind == "{":
            stack.append(_Open(words, line, []))
        else:
            _close(reader, stack, top)
    while stack:
        _close(reader, stack, top)
    return top


def _structure_error(reader: _Reader, kind: str, in_block: bool) -> ConfigError | None:
    line = reader.cur.line(reader.pos - 1) if kind != "eof" else reader.eof_line
    if kind == "}" and not in_block:
        return reader.error('unexpected "}"', line)
    if kind == "eof" and in_block:
        return reader.error('unexpected end of file, expecting "}"', line)
    if kind == "{" and reader.param:
        return reader.error("block directives are not supported in -g option", line)
    return None


def _close(reader: _Reader, stack: list[_Open], top: list[Statement]) -> None:
    done = stack.pop()
    parent = stack[-1].children if stack else top
    stmt = _statement(reader, done.words, done.line, tuple(done.children), True)
    end = reader.cur.line(max(reader.pos - 1, 0))
    parent.append(dataclasses.replace(stmt, end_line=end))


def decode(data: bytes) -> str:
    """Config bytes -> text. Undecodable bytes survive as surrogates (round-trip)."""
    return data.decode("utf-8", errors="surrogateescape")


def parse_file(path: str, data: bytes | None = None) -> list[Statement]:
    """Parse one file (no include expansion). Raises ConfigError if unreadable."""
    if data is None:
        data = read_bytes(path)
    return parse_text(decode(data), path)


def read_bytes(path: str) -> bytes:
    """Read a config file, turning OSError into nginx's open() message."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError as exc:
        raise ConfigError(f'open() "{path}" failed ({exc.errno}: {exc.strerror})') from None
    try:
        with os.fdopen(fd, "rb") as fh:
            return fh.read()
    except OSError as exc:
        # nginx's ngx_read_file logs this at crit, without a config position
        raise ConfigError(f'pread() "{path}" failed ({exc.errno}: {exc.strerror})',
                          level="crit") from None


# --- recovery (for `wsgate check`, which reports every syntax error) -----------------
# Errors after which skipping one character lets the reader resume.
_SKIPPABLE = ('unexpected ";"', 'unexpected "{"')


def parse_recovering(text: str, file: str, *, max_errors: int = 200) -> list[Statement]:
    """Like parse_text, but after a syntax error skip past it and go on reading.

    Each error still becomes an error Statement where it happened. An unterminated
    quote or the end of the file ends the text: there is nothing after them to read.
    """
    return _parse(_Reader(text, file, False), recover=True, max_errors=max_errors)


def _ends_text(err: ConfigError) -> bool:
    """The structural errors found at the end of the text."""
    return err.message.startswith("unexpected end of")


def _resume(reader: _Reader, err: ConfigError) -> bool:
    """Move past the error if the reader can resume; False if the text is over."""
    if err.message in _SKIPPABLE:
        reader.pos += 1
        return True
    if err.message == 'unexpected "}"':
        return True           # drop the half-read words; a "}" still unread closes the block
    if err.message.startswith('unexpected "'):
        _skip_statement(reader)     # a character glued to a closing quote
        return True
    return False


def _skip_statement(reader: _Reader) -> None:
    """Skip the rest of a broken statement: past its ";", or up to a brace."""
    text, pos = reader.text, reader.pos
    ends = [i for i in (text.find(c, pos) for c in ";{}") if i >= 0]
    if not ends:
        reader.pos = len(text)
        return
    end = min(ends)
    reader.pos = end + 1 if text[end] == ";" else end
