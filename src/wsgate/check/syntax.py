"""Reading a config file while recovering from syntax errors (nginx stops at one).

The project's lexer (wsgate.config.lexer) ends a file at its first syntax error,
as nginx does. `check` wants them all, so this module drives the same scanner
(`lexer._Reader`) with the same tree-building steps, but after an error it skips
the offending character, drops the half-read statement and goes on. Every error
becomes an error Statement (``error`` set) where it happened, exactly as the
lexer's own output looks, so the validator handles both the same way.

Errors it cannot recover from (an unterminated quote, end of file) still end the
file: there is nothing after them to read.
"""

from __future__ import annotations

from wsgate.config import lexer
from wsgate.config.lexer import Statement
from wsgate.errors import ConfigError

__all__ = ["parse_recovering", "read_file"]

# Errors after which skipping one character lets the reader resume.
_SKIPPABLE = ('unexpected ";"', 'unexpected "{"')
MAX_ERRORS = 200


def read_file(path: str) -> list[Statement]:
    """Parse `path` with recovery; raises ConfigError if it cannot be read."""
    return parse_recovering(lexer.decode(lexer.read_bytes(path)), path)


def parse_recovering(text: str, file: str) -> list[Statement]:
    """Like lexer.parse_text, but reports every recoverable syntax error."""
    reader = lexer._Reader(text, file, False)
    top: list[Statement] = []
    stack: list[lexer._Open] = []
    errors = 0
    while errors < MAX_ERRORS:
        children = stack[-1].children if stack else top
        try:
            kind, words = reader.read()
        except ConfigError as exc:
            children.append(lexer._error_statement(reader, exc))
            errors += 1
            if not _skip(reader, exc):
                break
            continue
        if kind == "}" and not stack:
            err = reader.error('unexpected "}"', reader.cur.line(reader.pos - 1))
            children.append(lexer._error_statement(reader, err))
            errors += 1
            continue
        if kind == "eof":
            if stack:
                err = reader.error('unexpected end of file, expecting "}"', reader.eof_line)
                children.append(lexer._error_statement(reader, err))
            break
        _add(reader, kind, words, stack, top, children)
    while stack:
        lexer._close(reader, stack, top)
    return top


def _add(reader: lexer._Reader, kind: str, words: list[tuple[str, int, bool]],
         stack: list[lexer._Open], top: list[Statement], children: list[Statement]) -> None:
    line = reader.cur.line(reader.pos - 1)
    if kind == ";":
        children.append(lexer._statement(reader, words, line, None, False))
    elif kind == "{":
        stack.append(lexer._Open(words, line, []))
    else:
        lexer._close(reader, stack, top)


def _skip(reader: lexer._Reader, exc: ConfigError) -> bool:
    """Move past the error if the reader can resume; False if the file is over."""
    if exc.message in _SKIPPABLE:
        reader.pos += 1
        return True
    if exc.message == 'unexpected "}"':
        return True           # drop the unterminated words; the "}" closes the block
    if exc.message.startswith('unexpected "'):
        _skip_statement(reader)     # a character glued to a closing quote
        return True
    return False


def _skip_statement(reader: lexer._Reader) -> None:
    """Skip the rest of a broken statement: past its ";", or up to a brace."""
    text, pos = reader.text, reader.pos
    ends = [i for i in (text.find(c, pos) for c in ";{}") if i >= 0]
    if not ends:
        reader.pos = len(text)
        return
    end = min(ends)
    reader.pos = end + 1 if text[end] == ";" else end
