"""A read-only view of the validated tree for the WebSocket rules: proxying locations.

A `Site` is one location that proxies (has its own `proxy_pass`), with the chain of
levels above it (http, server, enclosing locations), so a rule can ask for the
effective value of a directive the way nginx's merge computes it, *and* where that
value was written (file, line, column) -- which the merged model does not keep.

What counts as a WebSocket endpoint (`Site.is_websocket`) is a documented heuristic
(docs/check-rules.md, "WebSocket locations"): upgrade headers or `websocket on`
configured, or a path that names a WebSocket endpoint.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from wsgate.check.rules import Position
from wsgate.check.validate import CheckBuilder, position
from wsgate.config.build import Entry, Level
from wsgate.config.lexer import Statement

__all__ = ["Site", "sites", "Index", "WS_PATH", "STREAM_PATH"]

WS_PATH = re.compile(r"(?:^|[/_.-])(?:ws|wss|websockets?|socket\.io|sockjs|cable|hmr|"
                     r"webpack-hmr|realtime|signalr|chat|graphql-ws|subscriptions)(?:$|[/_.-])",
                     re.IGNORECASE)
STREAM_PATH = re.compile(r"(?:^|[/_.-])(?:events?|event-stream|stream(?:ing)?|sse|"
                         r"live|feed|notifications|subscribe)(?:$|[/_.-])", re.IGNORECASE)


class Index:
    """(file, line, name) -> the statement, to give entries their column."""

    def __init__(self, b: CheckBuilder) -> None:
        self._by_key = {(s.stmt.file, s.stmt.line, s.stmt.name): s.stmt for s in b.seen}

    def stmt(self, entry: Entry | Any, name: str) -> Statement | None:
        return self._by_key.get((entry.file, entry.line, name))

    def pos(self, entry: Entry | Any, name: str) -> Position:
        stmt = self.stmt(entry, name)
        return position(stmt) if stmt is not None else (entry.file, entry.line, 1)


@dataclass
class Site:
    """One proxying location and the levels it inherits from (outermost first)."""

    chain: list[Level]
    index: Index
    upstreams: dict[str, Level]
    ws_in_server: bool = False

    @property
    def loc(self) -> Level:
        return self.chain[-1]

    @property
    def path(self) -> str:
        return str(self.loc.extra.get("pattern", ""))

    @property
    def proxy_pass(self) -> Entry:
        return self.loc.values["proxy_pass"]

    @property
    def pos(self) -> Position:
        return self.index.pos(self.proxy_pass, "proxy_pass")

    def entry(self, name: str) -> Entry | None:
        """The nearest level's value of a (value-slot) directive, or None."""
        for level in reversed(self.chain):
            if name in level.values:
                return level.values[name]
        return None

    def value(self, name: str, default: Any = None) -> Any:
        e = self.entry(name)
        return default if e is None else e.value

    def header_levels(self) -> list[tuple[Level, list[Entry]]]:
        """Levels that set proxy_set_header, innermost first."""
        return [(lv, lv.arrays["proxy_set_header"]) for lv in reversed(self.chain)
                if lv.arrays.get("proxy_set_header")]

    def headers(self) -> list[Entry]:
        """The proxy_set_header entries in effect (nginx: the nearest level's, only)."""
        levels = self.header_levels()
        return levels[0][1] if levels else []

    def header(self, name: str) -> Entry | None:
        found = [e for e in self.headers() if e.value.name.lower() == name.lower()]
        return found[-1] if found else None

    def upstream(self) -> Level | None:
        host = getattr(self.proxy_pass.value, "host", None)
        return self.upstreams.get(host) if host else None

    @property
    def websocket_on(self) -> bool:
        return bool(self.value("websocket", False))

    @property
    def upgrade_configured(self) -> bool:
        """Some of the upgrade boilerplate is there (so the author meant WebSockets)."""
        conn = self.header("connection")
        return (self.header("upgrade") is not None or
                (conn is not None and "upgrade" in source(conn).lower()))

    @property
    def is_websocket(self) -> bool:
        return self.websocket_on or self.upgrade_configured or bool(WS_PATH.search(self.path))

    @property
    def catch_all(self) -> bool:
        """`location /` in a server where no other location handles WebSockets."""
        return self.path == "/" and self.loc.extra.get("kind") == "prefix" \
            and not self.ws_in_server


def source(entry: Entry) -> str:
    """The text of a proxy_set_header value as written."""
    value = entry.value.value
    return str(getattr(value, "source", value))


def _locations(level: Level, chain: list[Level]) -> Iterator[list[Level]]:
    for loc in level.extra.get("locations", ()):
        yield chain + [loc]
        yield from _locations(loc, chain + [loc])


def sites(b: CheckBuilder) -> list[Site]:
    """Every proxying location of every server, in file order."""
    if b.http is None:
        return []
    index = Index(b)
    out: list[Site] = []
    for srv in b.http.children:
        found = [Site(chain, index, b.upstreams)
                 for chain in _locations(srv, [b.http, srv])
                 if "proxy_pass" in chain[-1].values]
        for s in found:
            s.ws_in_server = any(o is not s and o.is_websocket for o in found)
        out += found
    return out
