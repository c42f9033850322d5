"""Statements -> per-level raw settings, in nginx's order: the generic validator.

Walks the tree the lexer made, statement by statement, exactly as nginx's
ngx_conf_handler does: look the name up in the table, pick the form for the current
context, check `;` vs `{`, check the argument count, then parse the value and store
it at the current level (value slots reject duplicates, array slots append). Custom
handlers (listen, location, upstream, proxy_pass ...) live here too. `include` is
expanded where it stands, so errors come out in nginx's order.
"""

from __future__ import annotations

import glob
import ipaddress
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from wsgate.config import lexer, templates
from wsgate.config.directives import (DIRECTIVES, EVENTS, HTTP, LOC, MAIN, SRV, UPS,
                                      UNSET, Form, arity_ok, find_form)
from wsgate.config.lexer import COMMAND_LINE, Statement
from wsgate.config.slots import SlotError
from wsgate.errors import ConfigError

__all__ = ["Level", "Builder", "Entry"]

MAX_INCLUDE_DEPTH = 64
_PREDICATES = frozenset({"proxy_cache_bypass", "proxy_no_cache"})


@dataclass(slots=True)
class Entry:
    value: Any
    file: str
    line: int


@dataclass(slots=True)
class Level:
    """Raw settings of one block (main, events, http, server, location, upstream)."""

    kind: str
    file: str = ""
    line: int = 0
    values: dict[str, Entry] = field(default_factory=dict)
    arrays: dict[str, list[Entry]] = field(default_factory=dict)
    children: list["Level"] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)


class Builder:
    """Validates and stores; one per load."""

    def __init__(self, *, prefix: str, conf_prefix: str,
                 warn: Callable[[ConfigError], None] | None) -> None:
        self.prefix = prefix
        self.conf_prefix = conf_prefix
        self.warn = warn
        self.main = Level(MAIN)
        self.events: Level | None = None
        self.http: Level | None = None
        self.table = templates.new_table()
        self.upstreams: dict[str, Level] = {}
        self.upstream_order: list[tuple[str, Entry]] = []   # name, first mention
        self.files: list[str] = []
        self.include_stack: list[str] = []
        self.upstream_refs: list[tuple[str | None, int | None, Statement]] = []
        self.resolver: Callable[[str, int], list[str]] | None = None

    def resolve_host(self, stmt: Statement, host: str | None, port: int | None,
                     message: str) -> tuple[str, ...]:
        """Resolve a host now (nginx resolves at load); ConfigError if it does not."""
        if host is None or self.resolver is None:
            return ()
        if is_ip(host):
            return (host,)
        try:
            return tuple(self.resolver(host, port or 80))
        except LookupError:
            raise self.err(stmt, message) from None

    def flatten_body(self, stmt: Statement) -> list[Statement]:
        """A map/types body's statements, with `include` expanded in place."""
        out: list[Statement] = []
        for item in stmt.block or ():
            if item.error is not None:
                raise item.error
            if item.block_start:
                raise self.err(item, 'unexpected "{"')
            if item.name == "include" and len(item.args) == 1:
                pattern = full_name(item.args[0], self.conf_prefix)
                paths = sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [pattern]
                for path in paths:
                    data = self.read(item, path)
                    sub = Statement("", (), path, 0, block=tuple(lexer.parse_file(path, data)))
                    out.extend(self.flatten_body(sub))
                continue
            out.append(item)
        return out

    # --- walking ------------------------------------------------------------
    def walk(self, stmts: tuple[Statement, ...] | list[Statement], ctx: str,
             level: Level) -> None:
        for stmt in stmts:
            if stmt.error is not None:
                raise stmt.error
            self.handle(stmt, ctx, level)

    def err(self, stmt: Statement, message: str) -> ConfigError:
        if stmt.file == COMMAND_LINE:
            return ConfigError(message, COMMAND_LINE, None)
        return ConfigError(message, stmt.file, stmt.line, stmt.col)

    def handle(self, stmt: Statement, ctx: str, level: Level) -> None:
        directive = DIRECTIVES.get(stmt.name)
        if directive is None:
            raise self.err(stmt, f'unknown directive "{stmt.name}"')
        form = find_form(directive, ctx)
        if form is None:
            raise self.err(stmt, f'"{stmt.name}" directive is not allowed here')
        if not form.block and stmt.block_start:
            raise self.err(stmt, f'directive "{stmt.name}" is not terminated by ";"')
        if form.block and not stmt.block_start:
            raise self.err(stmt, f'directive "{stmt.name}" has no opening "{{"')
        if not arity_ok(form.arity, len(stmt.args)):
            raise self.err(stmt, f'invalid number of arguments in "{stmt.name}" directive')
        if directive.kind == "refused":
            raise self.err(stmt, f'"{stmt.name}" directive is not supported by wsgate')
        if directive.kind == "ignored":
            self._ignore(stmt, form, level)
            return
        if form.store == "custom":
            _HANDLERS[(stmt.name, ctx if stmt.name in _BY_CTX else "")](self, stmt, level, ctx)
        else:
            self.store(stmt, form, level)

    def _ignore(self, stmt: Statement, form: Form, level: Level) -> None:
        """Validate like nginx's slot would (value, duplicate), then warn."""
        self.parse_value(stmt, form)
        if stmt.name in _PREDICATES:     # nginx compiles them: unknown variables fail
            for arg in stmt.args:
                templates.compile(arg, self.table, stmt.file, stmt.line)
        if form.store == "value":
            seen = level.extra.setdefault("ignored", set())
            if stmt.name in seen:
                raise self.err(stmt, f'"{stmt.name}" directive is duplicate')
            seen.add(stmt.name)
        if self.warn is not None:
            self.warn(ConfigError(f'"{stmt.name}" is not supported by wsgate and is ignored',
                                  stmt.file, stmt.line, stmt.col, level="warn"))

    def parse_value(self, stmt: Statement, form: Form) -> Any:
        if form.parse is None:
            return stmt.args
        try:
            return form.parse(stmt.args, stmt.name)
        except SlotError as exc:
            raise self.err(stmt, exc.message(stmt.name)) from None

    def store(self, stmt: Statement, form: Form, level: Level, value: Any = UNSET) -> None:
        if value is UNSET:
            value = self.parse_value(stmt, form)
        entry = Entry(value, stmt.file, stmt.line)
        if form.store == "array":
            level.arrays.setdefault(stmt.name, []).append(entry)
            return
        if stmt.name in level.values:
            raise self.err(stmt, f'"{stmt.name}" directive is duplicate')
        level.values[stmt.name] = entry

    def set_once(self, stmt: Statement, level: Level, value: Any) -> None:
        self.store(stmt, Form(frozenset(), "ANY"), level, value)

    def append(self, stmt: Statement, level: Level, value: Any) -> None:
        self.store(stmt, Form(frozenset(), "ANY", store="array"), level, value)

    # --- include --------------------------------------------------------------
    def read(self, stmt: Statement, path: str) -> bytes:
        """An included file's bytes; open() errors get the include's position,
        read errors (crit, nginx's pread) none, as in nginx."""
        try:
            return lexer.read_bytes(path)
        except ConfigError as exc:
            if exc.level == "crit":
                raise
            raise self.err(stmt, exc.message) from None

    def include(self, stmt: Statement, ctx: str, level: Level) -> None:
        """Expand an include where it stands: parse each file, walk it in `ctx`."""
        pattern = full_name(stmt.args[0], self.conf_prefix)
        paths = sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [pattern]
        for path in paths:
            self.walk_file(stmt, path, ctx, level)

    def walk_file(self, stmt: Statement, path: str, ctx: str, level: Level) -> None:
        real = os.path.realpath(path)
        if real in self.include_stack or len(self.include_stack) >= MAX_INCLUDE_DEPTH:
            raise self.err(stmt, f'include loop: "{path}" is already being included')
        data = self.read(stmt, path)
        self.files.append(path)
        self.include_stack.append(real)
        try:
            self.walk(lexer.parse_file(path, data), ctx, level)
        finally:
            self.include_stack.pop()


def is_ip(host: str) -> bool:
    """An IP literal (never resolved at load)."""
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return False


def full_name(name: str, prefix: str) -> str:
    """nginx's ngx_conf_full_name: relative names hang off a prefix."""
    return name if name.startswith("/") else os.path.join(prefix, name)


Handler = Callable[[Builder, Statement, Level, str], None]
_HANDLERS: dict[tuple[str, str], Handler] = {}
_BY_CTX = {"server", "keepalive_timeout"}


def handler(name: str, ctx: str = "") -> Callable[[Handler], Handler]:
    """Register the custom handler of a `store="custom"` row."""
    def register(fn: Handler) -> Handler:
        _HANDLERS[(name, ctx)] = fn
        return fn
    return register
