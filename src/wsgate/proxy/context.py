"""Per-connection and per-request state shared by the request phases.

`ConnInfo` is fixed at accept; `Exchange` is one request on a connection: the parsed
head, the chosen server and location, the variable context the templates read, and
what was sent back (status, byte counts) for the access log.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from wsgate.config.variables import VarContext
from wsgate.http.events import Request

__all__ = ["ConnInfo", "Exchange", "make_exchange", "server_tokens"]


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


def _request_line(request: Request) -> str:
    if request.version == (0, 9):
        return f"{_text(request.method)} {_text(request.target)}"
    major, minor = request.version
    return f"{_text(request.method)} {_text(request.target)} HTTP/{major}.{minor}"


def make_exchange(request: Request, conn: ConnInfo, server: Any, started: float) -> Exchange:
    """Fill nginx's request variables from a parsed head."""
    headers = [(_text(n), _text(v)) for n, v in request.headers]
    major, minor = request.version
    ctx = VarContext(
        method=_text(request.method), request_uri=_text(request.request_uri),
        uri=_text(request.path), args=_text(request.args) if request.args else None,
        server_protocol=(f"HTTP/{major}.{minor}" if request.version != (0, 9) else ""),
        request_line=_request_line(request), headers=headers,
        host=_text(request.host) if request.host else None,
        remote_addr=conn.remote_addr, remote_port=conn.remote_port,
        server_addr=conn.server_addr, server_port=conn.server_port,
        server_name=_primary_name(server), start_time=started,
        connection=conn.number, connection_requests=conn.requests,
        connection_start=conn.started,
        request_length=request.raw_head_len)
    return Exchange(request=request, conn=conn, server=server, location=server.root,
                    vars=ctx, keep_alive=request.keep_alive, uri=_text(request.path))


def _primary_name(server: Any) -> str:
    for name in server.server_names:
        return name if not name.startswith("~") else ""
    return ""


def server_tokens(location: Any) -> bool:
    return getattr(location, "server_tokens", "on") != "off"


def now() -> float:
    return time.time()
