"""Per-connection and per-request state shared by the request phases.

`ConnInfo` is fixed at accept; `Exchange` is one request on a connection: the parsed
head, the chosen server and location, the variable context the templates read, and
what was sent back (status, byte counts) for the access log.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Iterator

from wsgate.config.variables import VarContext
from wsgate.http.events import Request

__all__ = ["ConnInfo", "Exchange", "Decoded", "make_exchange", "server_tokens", "log_host"]


@dataclass(slots=True)
class ConnInfo:
    """The client connection: addresses, its number, requests served so far."""

    number: int
    remote_addr: str
    remote_port: int | None
    server_addr: str
    server_port: int | None
    requests: int = 0
    started: float = field(default_factory=time.time)   # accept time ($connection_time)


@dataclass(slots=True)
class Exchange:
    """One request/response on a client connection."""

    request: Request
    conn: ConnInfo
    server: Any
    location: Any
    vars: VarContext
    keep_alive: bool
    status: int = 0
    bytes_sent: int = 0
    body_read: bool = False          # the request body was consumed (or had none)
    internal: bool = False           # after an internal redirect (error_page)
    uri: str = "/"
    upstream_url: str | None = None  # for error-log context
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def request_line(self) -> str:
        return self.vars.request_line

    @property
    def head_request(self) -> bool:
        return self.request.method == b"HEAD"


def _text(raw: bytes) -> str:
    return raw.decode("latin-1")


_PROTOCOLS = {(1, 1): "HTTP/1.1", (1, 0): "HTTP/1.0", (0, 9): ""}


def _request_line(request: Request) -> str:
    if request.version == (0, 9):
        return f"{_text(request.method)} {_text(request.target)}"
    major, minor = request.version
    return f"{_text(request.method)} {_text(request.target)} HTTP/{major}.{minor}"


def make_exchange(request: Request, conn: ConnInfo, server: Any, started: float) -> Exchange:
    """Fill nginx's request variables from a parsed head.

    Fields are assigned one by one on a default context: VarContext(**values)
    would build a dict and setattr() it back, a visible share of a small request."""
    ctx = VarContext()
    method = ctx.method = request.method.decode("latin-1")
    target = request.target.decode("latin-1")
    protocol = _PROTOCOLS.get(request.version)
    if protocol is None:
        protocol = "HTTP/%d.%d" % request.version
    ctx.server_protocol = protocol
    ctx.request_line = f"{method} {target} {protocol}" if protocol else f"{method} {target}"
    ctx.request_uri = request.request_uri.decode("latin-1")
    uri = ctx.uri = request.path.decode("latin-1")
    if request.args:
        ctx.args = request.args.decode("latin-1")
    ctx.headers = Decoded(request.headers)  # type: ignore[assignment]
    if request.host:
        ctx.host = request.host.decode("latin-1")
    ctx.remote_addr, ctx.remote_port = conn.remote_addr, conn.remote_port
    ctx.server_addr, ctx.server_port = conn.server_addr, conn.server_port
    ctx.server_name = _primary_name(server)
    ctx.start_time = started
    ctx.connection, ctx.connection_requests = conn.number, conn.requests
    ctx.connection_start = conn.started
    ctx.request_length = request.raw_head_len
    return Exchange(request, conn, server, server.root, ctx, request.keep_alive, uri=uri)


class Decoded:
    """Header fields as text, decoded when read: what $upstream_http_* and
    $sent_http_* see. Most requests never read them, and decoding every field of
    every response was a visible share of a proxied request."""

    __slots__ = ("fields",)

    def __init__(self, fields: list[tuple[bytes, bytes]] | tuple[tuple[bytes, bytes], ...]) -> None:
        self.fields = fields

    def __iter__(self) -> Iterator[tuple[str, str]]:
        for name, value in self.fields:
            yield name.decode("latin-1"), value.decode("latin-1")

    def __len__(self) -> int:
        return len(self.fields)


def _primary_name(server: Any) -> str:
    for name in server.server_names:
        return name if not name.startswith("~") else ""
    return ""


def log_host(v: Any) -> str | None:
    """The error log's `host:` for a request with variables `v`: the Host header as
    the client sent it, else $host (none when both are empty)."""
    raw = next((value for name, value in v.headers if name.lower() == "host"), None)
    return raw if raw is not None else (v.host or None)


def server_tokens(location: Any) -> bool:
    return getattr(location, "server_tokens", "on") != "off"


def now() -> float:
    return time.time()
