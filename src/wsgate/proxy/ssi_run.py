"""Running SSI on a connection: capture the content handler's response, and when
nginx's SSI filter would apply (`ssi on` in the final location, a text/html
response with a body, not HEAD), send it again with its commands executed.

nginx's ngx_http_ssi_header_filter drops Content-Length, Last-Modified and ETag
and the body goes out chunked to an HTTP/1.1 client (close-delimited to 1.0).
Subrequests (`include virtual`) run through the downstream's phases with a
captured stream; their own headers are dropped, their bodies spliced in.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Awaitable, Callable

from wsgate.http import framing
from wsgate.proxy.capture import CaptureStream, Captured, split_response
from wsgate.proxy.context import Exchange, make_exchange
from wsgate.proxy.handlers import connection_field, keepalive_header
from wsgate.proxy.ssi import MAX_DEPTH, SsiPage, SubrequestUpgrade, parse

__all__ = ["wants_ssi", "run_with_ssi"]

_DROPPED = (b"content-length", b"last-modified", b"etag", b"accept-ranges", b"transfer-encoding",
            b"connection", b"keep-alive")
_TYPES = (b"text/html",)       # ssi_types' default


def wants_ssi(ex: Exchange) -> bool:
    """Capture this request's output for SSI? (a main request that may be
    upgraded by its proxy_pass is left alone: a 101 needs the real connection)."""
    if ex.extra.get("capturing") or ex.request.version == (0, 9):
        return False
    loc = ex.location
    if ex.request.upgrade is not None and getattr(loc, "proxy_pass", None) is not None \
            and not ex.extra.get("ssi_depth"):
        return False
    return bool(getattr(loc, "ssi", False))


async def run_with_ssi(dc: Any, ex: Exchange,
                       content: Callable[[Exchange], Awaitable[None]]) -> None:
    """Run `content(ex)` captured, then send the (SSI-processed) result."""
    real = dc.stream
    cap = CaptureStream(real)
    dc.stream = cap
    ex.extra["capturing"] = True
    before = ex.bytes_sent, ex.vars.body_bytes_sent
    try:
        await content(ex)
    finally:
        dc.stream = real
        ex.extra["capturing"] = False
    ex.bytes_sent, ex.vars.body_bytes_sent = before
    raw = cap.data()
    got = split_response(raw, ex.request.method)
    if got is None or not _applies(ex, got):
        _forward(dc, ex, raw, got, cap.closed)
        return
    head = raw[:got.response.raw_head_len]
    if ex.head_request:        # the header filter still runs; there is no body
        out = _head(ex, head, False)
        dc.stream.write(out)
        ex.bytes_sent += len(out)
        return
    await _render(dc, ex, head, got)


def _applies(ex: Exchange, got: Captured) -> bool:
    if not getattr(ex.location, "ssi", False) or not got.complete:
        return False
    if got.response.content_length == 0 or not (got.body or ex.head_request):
        return False
    ctype = (got.field(b"content-type") or b"").split(b";")[0].strip().lower()
    return ctype in _TYPES


def _forward(dc: Any, ex: Exchange, raw: bytes, got: Captured | None, cut: bool) -> None:
    dc.stream.write(raw)
    ex.bytes_sent += len(raw)
    ex.vars.body_bytes_sent += len(got.body) if got is not None else 0
    if cut:
        ex.keep_alive = False
        dc.stream.close()


async def _render(dc: Any, ex: Exchange, head: bytes, got: Captured) -> None:
    chunked = ex.request.version >= (1, 1)
    if not chunked:
        ex.keep_alive = False
    out = _head(ex, head, chunked)
    dc.stream.write(out)
    ex.bytes_sent += len(out)
    writer = framing.ChunkedWriter() if chunked else None

    def write(data: bytes) -> None:
        if not data:
            return
        wire = writer.write(data) if writer is not None else data
        dc.stream.write(wire)
        ex.bytes_sent += len(wire)
        ex.vars.body_bytes_sent += len(data)

    page = SsiPage(_Hooks(dc, ex), write,
                   silent=bool(getattr(ex.location, "ssi_silent_errors", False)))
    try:
        await page.render(parse(got.body))
    except SubrequestUpgrade:
        ex.keep_alive = False
        dc.stream.abort()
        return
    if writer is not None:
        tail = writer.end()
        dc.stream.write(tail)
        ex.bytes_sent += len(tail)


def _head(ex: Exchange, head: bytes, chunked: bool) -> bytes:
    """The captured head without the fields SSI invalidates, chunked if 1.1."""
    lines = head.split(b"\r\n")
    out: list[bytes] = []
    for line in lines[:-2] if head.endswith(b"\r\n\r\n") else lines:
        name = line.split(b":", 1)[0].strip().lower()
        if name == b"connection":
            if chunked:
                out.append(b"Transfer-Encoding: chunked")
            out.append(connection_field(ex.keep_alive, keepalive_header(ex)).rstrip(b"\r\n"))
        elif name not in _DROPPED or b":" not in line:
            out.append(line)
    return b"\r\n".join(out) + b"\r\n\r\n"


class _Hooks:
    """What an SSI page asks of the connection (ssi.Subrequests)."""

    def __init__(self, dc: Any, ex: Exchange) -> None:
        self.dc, self.ex = dc, ex

    def variable(self, name: str) -> str | None:
        http = getattr(self.dc.runtime.cfg, "http", None)
        table = getattr(http, "variables", None)
        getter = table.resolve(name) if table is not None else None
        if getter is None:
            return None
        try:
            return getter(self.ex.vars)  # type: ignore[no-any-return]
        except Exception:   # a variable this request cannot give: "not found"
            return None

    def log(self, level: str, message: str) -> None:
        self.dc.log_error(level, message, self.ex, None)

    async def subrequest(self, uri: str) -> tuple[int, bytes]:
        parent = self.ex
        depth = parent.extra.get("ssi_depth", 0) + 1
        if depth > MAX_DEPTH:
            raise ValueError(f'subrequests cycle while processing "{uri}"')
        sub = _sub_exchange(self.dc, parent, uri, depth)
        real = self.dc.stream
        cap = CaptureStream(real)
        self.dc.stream = cap
        try:
            await self.dc.serve_subrequest(sub)
        finally:
            self.dc.stream = real
        got = split_response(cap.data(), b"GET")
        if got is None:
            return 500, b""
        if got.status == 101:
            # the upstream saw the main request's Upgrade header; nginx refuses
            self.dc.log_error("error", "connection upgrade in subrequest", sub, None)
            raise SubrequestUpgrade()
        return got.status, got.body


def _sub_exchange(dc: Any, parent: Exchange, uri: str, depth: int) -> Exchange:
    path, _, args = uri.partition("?")
    req = dataclasses.replace(
        parent.request, method=b"GET", upgrade=None, content_length=None, chunked=False,
        expect_continue=False, path=path.encode("latin-1"),
        args=args.encode("latin-1"))
    sub = make_exchange(req, parent.conn, parent.server, time.time())
    sub.extra.update(prefix=parent.extra.get("prefix"), ssi_depth=depth)
    sub.body_read = True
    sub.internal = True
    sub.keep_alive = True
    return sub
