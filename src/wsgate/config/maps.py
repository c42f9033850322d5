"""The `map` block (ngx_http_map_module): build at load time, look up per request.

    map $source $dest { [hostnames;] [volatile;] default V; KEY V; ~RE V; ~*RE V; }

Semantics follow nginx 1.22's source, checked against the real binary
(tests/unit/config/test_maps_nginx.py):

* The source is a template; with `hostnames`, one trailing dot is dropped from it.
* Exact keys match case-insensitively (nginx lowercases keys and the value with
  ASCII rules).  A leading `\\` is removed from a key (`\\default`, `\\~x`).
* With `hostnames`, `*.example.com` and `.example.com` (which also matches
  `example.com`) match the longest suffix; `www.example.*` the longest prefix.
  `hostnames` applies to keys added after it.
* Order: exact, then longest leading wildcard, then longest trailing wildcard, then
  regexes in order of appearance (never tried on an empty value), then `default`
  (or "" when there is none).  A regex match sets `$1`..`$9` and its named
  captures, usable in the value.
* Values are templates; the result is cached per request unless `volatile`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from wsgate.config.regex import compile_nginx_regex
from wsgate.config.variables import Template, VarContext, VariableTable, compile_template
from wsgate.errors import ConfigError

_ASCII_LOWER = {c: c + 32 for c in range(ord("A"), ord("Z") + 1)}


def _lower(text: str) -> str:
    return text.translate(_ASCII_LOWER)


class _Busy(Exception):
    """ngx_hash_add_key's NGX_BUSY: the key conflicts with an earlier one."""


class _Declined(Exception):
    """ngx_hash_add_key's NGX_DECLINED: not a valid hostname or wildcard."""


@dataclass
class _Keys:
    """The three hashes of an nginx combined hash, plus the conflict bookkeeping."""

    exact: dict[str, Template] = field(default_factory=dict)
    head: dict[str, tuple[Template, bool]] = field(default_factory=dict)  # suffix -> (v, star)
    tail: dict[str, Template] = field(default_factory=dict)               # prefix -> v
    exact_names: set[str] = field(default_factory=set)

    def add(self, key: str, value: Template, wildcard: bool) -> None:
        """ngx_hash_add_key: raises _Busy or _Declined; `key` is lowercased in place."""
        if wildcard:
            kind = _wildcard_kind(key)
            if kind is not None:
                self._add_wildcard(key, value, kind)
                return
        self._add_exact(_lower(key), value)

    def _add_exact(self, key: str, value: Template) -> None:
        if key in self.exact_names:
            raise _Busy(key)
        self.exact_names.add(key)
        self.exact[key] = value

    def _add_wildcard(self, key: str, value: Template, kind: str) -> None:
        if kind == "tail":
            name = _lower(key[:-2])
            if name in self.tail:
                raise _Busy(name + ".*")
            self.tail[name] = value
            return
        skip = 1 if kind == "dot" else 2
        name = _lower(key[skip:])
        shown = key[:skip] + name
        if kind == "dot":
            if name in self.exact_names:
                raise _Busy(shown)
            self.exact_names.add(name)
        if name in self.head:
            raise _Busy(shown)
        self.head[name] = (value, kind == "star")

    def find(self, low: str) -> Template | None:
        """ngx_hash_find_combined: exact, then head wildcards, then tail wildcards."""
        value = self.exact.get(low)
        if value is not None or not low:
            return value
        if self.head:
            value = self._find_head(low)
            if value is not None:
                return value
        if self.tail:
            return self._find_tail(low)
        return None

    def _find_head(self, low: str) -> Template | None:
        hit = self.head.get(low)
        if hit is not None and not hit[1]:
            return hit[0]  # ".example.com" matches "example.com" itself
        pos = low.find(".")
        while pos >= 0:
            hit = self.head.get(low[pos + 1:])
            if hit is not None:
                return hit[0]
            pos = low.find(".", pos + 1)
        return None

    def _find_tail(self, low: str) -> Template | None:
        pos = low.rfind(".")
        while pos > 0:
            value = self.tail.get(low[:pos])
            if value is not None:
                return value
            pos = low.rfind(".", 0, pos)
        return None


def _wildcard_kind(key: str) -> str | None:
    """Which wildcard `key` is ("dot", "star", "tail"), None for an exact key.

    Mirrors the checks of ngx_hash_add_key with NGX_HASH_WILDCARD_KEY.
    """
    if key.count("*") > 1 or ".." in key or "\0" in key:
        raise _Declined(key)
    if len(key) > 1 and key[0] == ".":
        return "dot"
    if len(key) > 2 and key.startswith("*."):
        return "star"
    if len(key) > 2 and key.endswith(".*"):
        return "tail"
    if "*" in key:
        raise _Declined(key)
    return None


class MapBuilder:
    """Collects one `map` block's statements, then registers `$dest` in the table.

    `dest_name` is the config token as written, `$` included: nginx rejects a
    destination without it (`invalid variable name "x"`).
    """

    def __init__(self, source: Template, dest_name: str, table: VariableTable, *,
                 file: str, line: int) -> None:
        if not dest_name.startswith("$"):
            raise ConfigError(f'invalid variable name "{dest_name}"', file, line)
        try:
            self.dest = table.check_definable(dest_name[1:])
        except ConfigError as exc:
            raise ConfigError(exc.message, file, line) from None
        self.source = source
        self.table = table
        self.file = file
        self.line = line
        self.hostnames = False
        self.volatile = False
        self.default: Template | None = None
        self.keys = _Keys()
        self.regexes: list[tuple[re.Pattern[str], Template]] = []

    def add(self, args: list[str], file: str, line: int) -> None:
        """One statement of the body (the parser has expanded `include`)."""
        if len(args) == 1 and args[0] == "hostnames":
            self.hostnames = True
            return
        if len(args) == 1 and args[0] == "volatile":
            self.volatile = True
            return
        if len(args) != 2:
            raise ConfigError("invalid number of the map parameters", file, line)
        key, value = args[0], compile_template(args[1], self.table, file=file, line=line)
        if key == "default":
            if self.default is not None:
                raise ConfigError("duplicate default map parameter", file, line)
            self.default = value
        elif key.startswith("~"):
            self._add_regex(key[1:], value, file, line)
        else:
            self._add_key(key[1:] if key.startswith("\\") else key, value, file, line)

    def _add_regex(self, pattern: str, value: Template, file: str, line: int) -> None:
        caseless = pattern.startswith("*")
        pattern = pattern[1:] if caseless else pattern
        try:
            regex = compile_nginx_regex(pattern, caseless)
            for name in regex.groupindex:
                self.table.define_capture(name)
        except (ValueError, ConfigError) as exc:
            raise ConfigError(getattr(exc, "message", str(exc)), file, line) from None
        self.regexes.append((regex, value))

    def _add_key(self, key: str, value: Template, file: str, line: int) -> None:
        try:
            self.keys.add(key, value, self.hostnames)
        except _Declined:
            raise ConfigError(f'invalid hostname or wildcard "{key}"', file, line) from None
        except _Busy as busy:
            raise ConfigError(f'conflicting parameter "{busy.args[0]}"', file, line) from None

    def build(self) -> None:
        """Register `$dest`; its getter is this map's lookup."""
        self.table.define(self.dest, self.lookup, cacheable=not self.volatile)

    def lookup(self, ctx: VarContext) -> str:
        """ngx_http_map_variable: the value for this request (never "not found")."""
        value = self.source.render(ctx)
        if self.hostnames and value.endswith("."):
            value = value[:-1]
        found = self.keys.find(_lower(value))
        if found is None and value:
            found = self._match_regex(ctx, value)
        if found is None:
            found = self.default
        return "" if found is None else found.render(ctx)

    def _match_regex(self, ctx: VarContext, value: str) -> Template | None:
        for regex, result in self.regexes:
            match = regex.search(value)
            if match is not None:
                ctx.set_captures(match)
                return result
        return None
