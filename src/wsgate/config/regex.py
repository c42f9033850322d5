"""nginx regular expressions (PCRE2 syntax) translated to Python's `re`.

nginx compiles `~regex` / `~*regex` (map keys, locations, `if`, server names) with
PCRE2, without UTF mode: matching is byte-wise, `\\w`/`\\d`/`\\s` are ASCII and
caseless matching folds ASCII only.  We mirror that with `re.ASCII` on strings that
carry bytes as latin-1 characters.  This module owns the translation of the PCRE-isms
Python spells differently and nginx's error text for a bad pattern:

    pcre2_compile() failed: missing closing parenthesis in "^(foo"

Translated: `(?<name>` / `(?'name'` -> `(?P<name>`, `\\k<name>` -> `(?P=name)`,
`\\g{N}` -> `\\N`, `\\Q..\\E` quoting, `\\z` `\\Z` `\\h` `\\H` `\\v` `\\V` `\\R` `\\N`
`\\e` `\\cX` `\\x{..}` `\\o{..}`, POSIX classes `[:alpha:]` inside brackets, and a
`{` that does not start a valid quantifier (a literal in PCRE2).  Features Python
lacks (recursion, branch reset, verbs, `\\G`, `\\K`, relative backreferences, inline
flags after the start) are rejected with a ValueError rather than mis-matched.
"""

from __future__ import annotations

import re
from collections.abc import Callable

_QUANT = re.compile(r"\{\d+(,\d*)?\}")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

_POSIX = {
    "alpha": "a-zA-Z", "digit": "0-9", "alnum": "a-zA-Z0-9", "upper": "A-Z",
    "lower": "a-z", "space": " \\t\\n\\r\\f\\v", "blank": " \\t",
    "punct": "!-/:-@\\[-`{-~", "xdigit": "0-9A-Fa-f", "word": "\\w",
    "cntrl": "\\x00-\\x1f\\x7f", "print": " -~", "graph": "!-~", "ascii": "\\x00-\\x7f",
}
# Members (usable inside a class) of PCRE's special classes in non-UTF mode.
_CLASS_ESC = {
    "h": "\\t \\xa0", "v": "\\n\\x0b\\f\\r\\x85",
}
# Python's messages -> PCRE2's, for the errors people actually make.
_MESSAGES = {
    "missing ), unterminated subpattern": "missing closing parenthesis",
    "unterminated character set": "missing terminating ] for character class",
    "nothing to repeat": "quantifier does not follow a repeatable item",
    "multiple repeat": "quantifier does not follow a repeatable item",
    "unbalanced parenthesis": "unmatched closing parenthesis",
    "min repeat greater than max repeat": "numbers out of order in {} quantifier",
}
_AT_END = frozenset({"missing closing parenthesis",
                     "missing terminating ] for character class"})


class NginxRegexError(ValueError):
    """A pattern nginx (PCRE2) would reject, or one we cannot express in `re`.

    `str(err)` is nginx's text, ready for ConfigError(str(err), file, line).
    """


def compile_nginx_regex(pattern: str, caseless: bool = False) -> re.Pattern[str]:
    """Compile an nginx (PCRE2) pattern; `caseless` is the `~*` form."""
    translated = translate(pattern)
    flags = re.ASCII | (re.IGNORECASE if caseless else 0)
    try:
        return re.compile(translated, flags)
    except re.error as exc:
        message = _MESSAGES.get(exc.msg, exc.msg)
        # PCRE2 notices an unterminated group or class at the end of the pattern
        pos = None if message in _AT_END else exc.pos
        raise _error(pattern, message, pos) from None


def _error(pattern: str, message: str, pos: int | None = None) -> NginxRegexError:
    text = f'pcre2_compile() failed: {message} in "{pattern}"'
    if pos is not None and 0 <= pos < len(pattern):
        text += f' at "{pattern[pos:]}"'
    return NginxRegexError(text)


def translate(pattern: str) -> str:
    """Rewrite PCRE2 syntax into the equivalent Python `re` syntax."""
    return _Translator(pattern).run()


class _Translator:
    """One left-to-right pass; `in_class` tracks whether we are inside [...]."""

    def __init__(self, pattern: str) -> None:
        self.p = pattern
        self.i = 0
        self.out: list[str] = []
        self.in_class = False
        self.class_start = 0

    def run(self) -> str:
        while self.i < len(self.p):
            if self.in_class:
                self._class_char()
            else:
                self._char()
        return "".join(self.out)

    def _char(self) -> None:
        p, i = self.p, self.i
        ch = p[i]
        if ch == "\\":
            self._escape()
        elif ch == "[":
            self._open_class()
        elif ch == "(":
            self._group()
        elif ch == "{":
            m = _QUANT.match(p, i)
            self.out.append(m.group() if m else "\\{")
            self.i = m.end() if m else i + 1
        else:
            self.out.append(ch)
            self.i += 1

    def _open_class(self) -> None:
        self.in_class = True
        self.out.append("[")
        self.i += 1
        if self.p.startswith("^", self.i):
            self.out.append("^")
            self.i += 1
        self.class_start = self.i

    def _class_char(self) -> None:
        p, i = self.p, self.i
        ch = p[i]
        if ch == "]" and i > self.class_start:
            self.in_class = False
            self.out.append("]")
            self.i += 1
        elif ch == "]":
            self.out.append("\\]")  # a leading ] is a literal in PCRE
            self.i += 1
        elif ch == "[" and p.startswith("[:", i):
            self._posix_class()
        elif ch == "\\":
            self._escape()
        elif ch in "[&~|":
            # Python warns on (future) set operations; these are literals in PCRE.
            self.out.append("\\" + ch)
            self.i += 1
        else:
            self.out.append(ch)
            self.i += 1

    def _posix_class(self) -> None:
        end = self.p.find(":]", self.i + 2)
        if end < 0:
            self.out.append("\\[")
            self.i += 1
            return
        name = self.p[self.i + 2:end]
        if name.startswith("^"):
            raise _error(self.p, "negated POSIX classes are not supported by wsgate",
                         self.i)
        if name not in _POSIX:
            raise _error(self.p, "unknown POSIX class name", self.i + 2)
        self.out.append(_POSIX[name])
        self.i = end + 2

    def _group(self) -> None:
        p, i = self.p, self.i
        if p.startswith("(?<", i) and not p.startswith(("(?<=", "(?<!"), i):
            self._named_group(i + 3, ">")
        elif p.startswith("(?'", i):
            self._named_group(i + 3, "'")
        elif p.startswith("(?P<", i):
            self._named_group(i + 4, ">")
        elif p.startswith(("(?|", "(?R", "(?&", "(?P>", "(*", "(?C"), i) or \
                (p.startswith("(?", i) and i + 2 < len(p) and
                 (p[i + 2].isdigit() or p[i + 2] in "+-" and p[i + 3:i + 4].isdigit())):
            raise _error(p, "construct not supported by wsgate", i)
        elif p.startswith("(?", i) and i > 0 and self._inline_flags(i):
            raise _error(p, "inline flags after the start are not supported by wsgate", i)
        else:
            self.out.append("(")
            self.i += 1

    def _inline_flags(self, i: int) -> bool:
        m = re.compile(r"\(\?[a-zA-Z]*(-[a-zA-Z]*)?\)").match(self.p, i)
        return m is not None

    def _named_group(self, start: int, close: str) -> None:
        end = self.p.find(close, start)
        name = self.p[start:end] if end >= 0 else ""
        if name[:1].isdigit():
            raise _error(self.p, "subpattern name must start with a non-digit", start)
        if end < 0 or not _NAME.fullmatch(name):
            raise _error(self.p, "syntax error in subpattern name (missing terminator?)",
                         start)
        self.out.append(f"(?P<{name}>")
        self.i = end + 1

    def _escape(self) -> None:
        p, i = self.p, self.i
        if i + 1 >= len(p):
            raise _error(p, "\\ at end of pattern", i)
        ch = p[i + 1]
        self.i = i + 2
        handler = _ESCAPES.get(ch)
        if handler is not None:
            handler(self)
        elif ch in "pPXCGK" or (ch == "g" and p[i + 2:i + 3] in ("<", "'")):
            raise _error(p, f"escape \\{ch} not supported by wsgate", i)
        else:
            self.out.append("\\" + ch)

    def _quote(self) -> None:
        end = self.p.find("\\E", self.i)
        end = len(self.p) if end < 0 else end
        self.out.append(re.escape(self.p[self.i:end]))
        self.i = end + 2

    def _hex(self) -> None:
        if self.p.startswith("{", self.i):
            end = self.p.find("}", self.i)
            digits = self.p[self.i + 1:end] if end > 0 else ""
            if not digits or any(c not in "0123456789abcdefABCDEF" for c in digits):
                raise _error(self.p, "invalid \\x{} escape", self.i)
            self.out.append(_char_escape(int(digits, 16)))
            self.i = end + 1
        else:
            self.out.append("\\x")  # \xHH: same in Python (two digits required there)

    def _octal(self) -> None:
        end = self.p.find("}", self.i)
        if not self.p.startswith("{", self.i) or end < 0:
            raise _error(self.p, "missing opening brace after \\o", self.i)
        self.out.append(_char_escape(int(self.p[self.i + 1:end], 8)))
        self.i = end + 1

    def _control(self) -> None:
        if self.i >= len(self.p):
            raise _error(self.p, "\\c at end of pattern", self.i)
        self.out.append(_char_escape(ord(self.p[self.i].upper()) ^ 0x40))
        self.i += 1

    def _backref(self) -> None:
        p, i = self.p, self.i
        m = re.compile(r"<([^>]*)>|'([^']*)'|\{([^}]*)\}").match(p, i)
        if m is None:
            raise _error(p, "\\k is not followed by a name", i)
        name = m.group(1) or m.group(2) or m.group(3) or ""
        self.out.append(f"(?P={name})")
        self.i = m.end()

    def _gref(self) -> None:
        m = re.compile(r"\{(\d+)\}|(\d+)").match(self.p, self.i)
        if m is None:
            raise _error(self.p, "relative or named \\g references are not supported "
                                 "by wsgate", self.i)
        self.out.append(f"(?:\\{m.group(1) or m.group(2)})")
        self.i = m.end()

    def _special_class(self, members: str, negate: bool) -> None:
        if self.in_class and negate:
            raise _error(self.p, "negated class escapes inside [] are not supported "
                                 "by wsgate", self.i - 2)
        if self.in_class:
            self.out.append(members)
        else:
            self.out.append(f"[{'^' if negate else ''}{members}]")


def _char_escape(code: int) -> str:
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


_ESCAPES: dict[str, Callable[[_Translator], None]] = {
    "Q": _Translator._quote,
    "E": lambda t: None,  # a stray \E is ignored by PCRE
    "x": _Translator._hex,
    "o": _Translator._octal,
    "c": _Translator._control,
    "k": _Translator._backref,
    "g": _Translator._gref,
    "z": lambda t: t.out.append("\\Z"),
    "Z": lambda t: t.out.append("(?=\\n?\\Z)"),
    "e": lambda t: t.out.append("\\x1b"),
    "N": lambda t: t.out.append("[^\\n]"),
    "R": lambda t: t.out.append("(?:\\r\\n|[\\n\\x0b\\f\\r\\x85])"),
    "h": lambda t: t._special_class(_CLASS_ESC["h"], False),
    "H": lambda t: t._special_class(_CLASS_ESC["h"], True),
    "v": lambda t: t._special_class(_CLASS_ESC["v"], False),
    "V": lambda t: t._special_class(_CLASS_ESC["v"], True),
}
