"""ngx_http_rewrite_module's script, compiled at load: one ordered list of ops per
server, location and `if` block.

nginx compiles `rewrite`, `return`, `set`, `if` and `break` of one level into a
single array of codes run in order in the (server or location) rewrite phase; so do
we: each directive appends an op to its level's script (the `rewrite` slot of the
level, resolved "local": never inherited). An `if` block is a location-like level of
its own (nginx creates a loc_conf for it); until merge its op holds that raw level,
`bind_if` swaps in the merged conf. Pure: no I/O here (file tests run in the proxy).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from wsgate.config import templates
from wsgate.config.regex import compile_nginx_regex
from wsgate.config.variables import Getter, VarContext
from wsgate.errors import ConfigError

__all__ = ["Rewrite", "Return", "SetVar", "Break", "If", "Condition", "rewrite_op",
           "return_op", "set_op", "parse_condition", "FLAGS", "REDIRECT_PREFIXES"]

FLAGS = ("last", "break", "redirect", "permanent")
REDIRECT_PREFIXES = ("http://", "https://", "$scheme")
_FILE_TESTS = ("-f", "!-f", "-d", "!-d", "-e", "!-e", "-x", "!-x")
_REGEX_OPS = ("~", "~*", "!~", "!~*")


@dataclass(frozen=True, slots=True)
class Rewrite:
    """`rewrite regex replacement [flag]` (replacement split at its first "?")."""

    regex: re.Pattern[str]
    source: str
    uri: Any                     # Template of the part before "?"
    args: Any                    # Template of the part after "?", None without "?"
    add_args: bool               # append the request's args (no trailing "?")
    flag: str                    # "" | last | break | redirect | permanent
    redirect: bool               # answer with a redirect instead of rewriting
    status: int = 302
    file: str = ""
    line: int = 0


@dataclass(frozen=True, slots=True)
class Return:
    """`return code [text|URL]` / `return URL`."""

    code: int
    text: Any                    # Template or None
    file: str = ""
    line: int = 0


@dataclass(frozen=True, slots=True)
class SetVar:
    """`set $name value`."""

    name: str
    value: Any                   # Template
    file: str = ""
    line: int = 0


@dataclass(frozen=True, slots=True)
class Break:
    """`break`: stop this level's script."""

    file: str = ""
    line: int = 0


@dataclass(frozen=True, slots=True)
class Condition:
    """`if (...)`: kind is var | eq | ne | regex | file; `negate` for !~ and !-x."""

    kind: str
    subject: Any                 # Template: the variable or the file name
    operand: Any = None          # Template (=, !=) or re.Pattern (~ ...) or "-f"...
    negate: bool = False


@dataclass(frozen=True, slots=True)
class If:
    """`if (condition) { ... }`: `conf` is the block's merged LocationConf."""

    condition: Condition
    conf: Any
    file: str = ""
    line: int = 0


def _regex(pattern: str, caseless: bool, table: Any, file: str, line: int) -> re.Pattern[str]:
    try:
        regex = compile_nginx_regex(pattern, caseless)
    except (ValueError, ConfigError) as exc:
        raise ConfigError(getattr(exc, "message", str(exc)), file, line) from None
    for name in regex.groupindex:
        table.define_capture(name)
    return regex


def rewrite_op(args: tuple[str, ...], table: Any, file: str, line: int) -> Rewrite:
    """ngx_http_rewrite: regex, replacement, optional flag (nginx's messages)."""
    regex = _regex(args[0], False, table, file, line)
    value = args[1]
    flag = ""
    if len(args) == 3:
        flag = args[2]
        if flag not in FLAGS:
            raise ConfigError(f'invalid parameter "{flag}"', file, line)
    redirect = value.startswith(REDIRECT_PREFIXES) or flag in ("redirect", "permanent")
    status = 301 if flag == "permanent" else 302
    add_args = not value.endswith("?")
    if not add_args:
        value = value[:-1]
    uri_src, sep, args_src = value.partition("?")
    uri = templates.compile(uri_src, table, file, line)
    targs = templates.compile(args_src, table, file, line) if sep else None
    return Rewrite(regex, args[0], uri, targs, add_args, flag, redirect, status, file, line)


def return_op(args: tuple[str, ...], table: Any, file: str, line: int) -> Return:
    """ngx_http_rewrite_return: a code (0..999) with text/URL, or a bare URL (302)."""
    first = args[0]
    if first.isdigit():
        code, text = int(first), (args[1] if len(args) > 1 else None)
        if code > 999:
            raise ConfigError(f'invalid return code "{first}"', file, line)
    elif len(args) == 1 and first.startswith(REDIRECT_PREFIXES):
        code, text = 302, first
    else:
        raise ConfigError(f'invalid return code "{first}"', file, line)
    tpl = templates.compile(text, table, file, line) if text is not None else None
    return Return(code, tpl, file, line)


def set_op(args: tuple[str, ...], table: Any, file: str, line: int) -> SetVar:
    """ngx_http_rewrite_set: `$name` must be a variable; builtins are refused."""
    name = args[0]
    if len(name) < 2 or not name.startswith("$"):
        raise ConfigError(f'invalid variable name "{name}"', file, line)
    key = name[1:].lower()
    try:
        table.check_definable(key)
    except ConfigError as exc:
        raise ConfigError(exc.message, file, line) from None
    if key != "args":
        table.define(key, _set_getter(key), cacheable=False)
    return SetVar(key, templates.compile(args[1], table, file, line), file, line)


def set_key(name: str) -> str:
    """Where a `set` variable's value lives in VarContext.cache."""
    return "\x00set:" + name


def _set_getter(key: str) -> Getter:
    slot = set_key(key)

    def get(ctx: VarContext) -> str | None:
        return ctx.cache.get(slot, "")
    return get


def _invalid(args: tuple[str, ...], file: str, line: int) -> ConfigError:
    return ConfigError(f'invalid condition "{args[0]}"', file, line)


def parse_condition(args: tuple[str, ...], table: Any, file: str, line: int) -> Condition:
    """ngx_http_rewrite_if_condition: "(" ... ")" around var [op value] or -f file."""
    words = list(args)
    if not words or not words[0].startswith("("):
        raise ConfigError(f'invalid condition "{args[0] if args else ""}"', file, line)
    words[0] = words[0][1:]
    if not words[0]:
        words.pop(0)
    if not words or not words[-1].endswith(")"):
        raise ConfigError(f'invalid condition "{args[-1]}"', file, line)
    words[-1] = words[-1][:-1]
    if not words[-1]:
        words.pop()
    if not words:
        raise _invalid(args, file, line)
    first = words[0]
    if len(first) > 1 and first.startswith("$"):
        return _var_condition(words, args, table, file, line)
    if first in _FILE_TESTS or (len(first) in (2, 3) and "-" in first[:2]):
        if len(words) != 2:
            raise _invalid(args, file, line)
        if first not in _FILE_TESTS:
            raise ConfigError(f'invalid condition "{first}"', file, line)
        subject = templates.compile(words[1], table, file, line)
        return Condition("file", subject, first.lstrip("!"), first.startswith("!"))
    raise _invalid(args, file, line)


def _var_condition(words: list[str], args: tuple[str, ...], table: Any, file: str,
                   line: int) -> Condition:
    if len(words) not in (1, 3):
        raise _invalid(args, file, line)
    subject = templates.compile(words[0], table, file, line)
    if len(words) == 1:
        return Condition("var", subject)
    op, value = words[1], words[2]
    if op in ("=", "!="):
        operand = templates.compile(value, table, file, line)
        return Condition("eq", subject, operand, op == "!=")
    if op in _REGEX_OPS:
        regex = _regex(value, op.endswith("*"), table, file, line)
        return Condition("regex", subject, regex, op.startswith("!"))
    raise ConfigError(f'unexpected "{op}" in condition', file, line)
