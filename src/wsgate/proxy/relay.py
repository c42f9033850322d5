"""proxy_pass: send the request upstream, relay the response, or open the tunnel.

Phases, with the I/O steps marked (*):
  resolve target -> read body (*, when buffered) -> connect (*, next peer on
  failure) -> send head + body (*) -> read response head (*, proxy_read_timeout)
  -> 101 to an Upgrade request: relay the head, hand both transports to the tunnel
  -> intercepted error: close upstream, error_page takes over
  -> otherwise relay the head and the body with the client's framing (*).

Returns a `ProxyResult`; errors that happen before anything was sent to the client
become a status (502/504/...) for the downstream to answer with nginx's page.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from dataclasses import dataclass
from typing import Any

from wsgate.config.variables import UpstreamAttempt
from wsgate.errors import RemoteProtocolError
from wsgate.http import framing, headers as hdr, pages
from wsgate.http.events import NEED_DATA, Data, EndOfMessage, Response
from wsgate.http.response import ResponseHeadParser, response_body_kind
from wsgate.proxy.context import Exchange, server_tokens
from wsgate.proxy.handlers import add_headers, absolute_location
from wsgate.proxy.stream import ReadTimeout, Stream
from wsgate.proxy.tunnel import Tunnel, TunnelTimeouts, open_tunnel
from wsgate.proxy.upstream_conn import ConnectFailed, Peer, Target, connect, \
    connect_error_message, resolve_target

__all__ = ["ProxyResult", "proxy"]

_CHUNK = 65536


@dataclass(slots=True)
class ProxyResult:
    """What happened: `status` to answer with (error path), or a relayed response."""

    status: int = 0                 # >0: the downstream must answer with this error
    relayed: bool = False           # a response was sent to the client
    keep_alive: bool = False
    tunnel: Tunnel | None = None
    tunnel_head_bytes: int = 0


class _Failed(Exception):
    def __init__(self, status: int):
        super().__init__(status)
        self.status = status


def _set_headers(ex: Exchange) -> list[tuple[str, str]]:
    """Rendered proxy_set_header values, user lines only (defaults come from
    http.headers in nginx's order)."""
    out = []
    for h in ex.location.proxy_set_header:
        if not h.file and not h.line:
            continue          # a default the config layer merged in; see merge_set_headers
        out.append((h.name, h.value.render(ex.vars)))
    return out


def _set_header_defaults(ex: Exchange) -> list[tuple[str, str]]:
    """The user's lines, then nginx's defaults (Host from $proxy_host)."""
    return _set_headers(ex)


async def read_client_body(dc: Any, ex: Exchange) -> bytes:
    """The whole request body (nginx's proxy_request_buffering on)."""
    chunks = []
    async for piece in dc.body_pieces(ex):
        chunks.append(piece)
    return b"".join(chunks)


def _request_head(ex: Exchange, target: Target, body: bytes | None,
                  chunked: bool) -> bytes:
    loc = ex.location
    method = ex.request.method
    if loc.proxy_method is not None:
        method = loc.proxy_method.render(ex.vars).encode("latin-1")
    elif ex.internal and method not in (b"HEAD",):
        method = b"GET"
    return hdr.build_upstream_request(
        method, target.uri, loc.proxy_http_version,
        tuple(ex.request.headers), _set_headers(ex),
        pass_request_headers=loc.proxy_pass_request_headers,
        body_length=len(body) if body is not None and not chunked else None,
        chunked=chunked, proxy_host=target.proxy_host)


def _request_body(ex: Exchange) -> tuple[bool, bool]:
    """(has a body to pass, pass it with chunked encoding while streaming)."""
    req = ex.request
    has = (req.content_length is not None or req.chunked) and not ex.internal
    return has, False


async def proxy(dc: Any, ex: Exchange) -> ProxyResult:
    """Run proxy_pass for `ex`; see the module docstring."""
    loc = ex.location
    try:
        target = resolve_target(ex, dc.runtime.upstreams)
    except (ValueError, KeyError):
        return ProxyResult(status=500)
    ex.vars.proxy_host, ex.vars.proxy_port = target.proxy_host, target.proxy_port
    body: bytes | None = None
    if loc.proxy_set_body is not None:
        body = loc.proxy_set_body.render(ex.vars).encode("latin-1")
        if not ex.body_read:
            await dc.discard_body(ex)
    elif loc.proxy_pass_request_body and _request_body(ex)[0]:
        body = await read_client_body(dc, ex)
    elif not ex.body_read:
        await dc.discard_body(ex)
    if body is not None:
        ex.vars.proxy_internal_body_length = str(len(body))
    head = _request_head(ex, target, body, False)
    group: list[UpstreamAttempt] = []
    ex.vars.upstream_groups.append(group)
    try:
        peer, up = await _connect(dc, ex, target, group)
    except _Failed as failed:
        return ProxyResult(status=failed.status)
    attempt = group[-1]
    ex.upstream_url = f"http://{peer.addr}{target.uri.decode('latin-1')}"
    started = time.monotonic()
    up.write(head)
    if body:
        up.write(body)
    attempt.bytes_sent = len(head) + len(body or b"")
    try:
        return await _response(dc, ex, up, attempt, started)
    finally:
        if ex.extra.get("tunnel") is None:
            up.close()


async def _connect(dc: Any, ex: Exchange, target: Target,
                   group: list[UpstreamAttempt]) -> tuple[Peer, Stream]:
    def failed(peer: Peer, exc: BaseException) -> None:
        msg, err = connect_error_message(exc)
        url = f"http://{peer.addr}{target.uri.decode('latin-1')}"
        level = "error"
        dc.log_error(level, msg, ex, "connecting to upstream", err=err, upstream=url)
        group.append(UpstreamAttempt(addr=peer.addr, status=502 if not isinstance(
            exc, asyncio.TimeoutError) else 504, connect_time=None))

    t0 = time.monotonic()
    try:
        peer, up = await connect(target, ex.location.proxy_connect_timeout, failed)
    except ConnectFailed as exc:
        if not target.peers:
            dc.log_error("error", "no live upstreams", ex, "connecting to upstream")
        raise _Failed(504 if exc.timeout else 502) from None
    group.append(UpstreamAttempt(addr=peer.addr, connect_time=time.monotonic() - t0))
    return peer, up


async def _read_head(dc: Any, ex: Exchange, up: Stream) -> Response:
    loc = ex.location
    parser = ResponseHeadParser(loc.proxy_buffer_size)
    while True:
        try:
            data = await up.read(loc.proxy_read_timeout)
        except ReadTimeout:
            dc.log_error("error", "upstream timed out", ex,
                         "reading response header from upstream", err=110,
                         upstream=ex.upstream_url)
            raise _Failed(504) from None
        if not data:
            dc.log_error("error", "upstream prematurely closed connection", ex,
                         "reading response header from upstream",
                         upstream=ex.upstream_url)
            raise _Failed(502)
        try:
            result = parser.feed(data)
        except RemoteProtocolError as exc:
            dc.log_error("error", str(exc), ex, "reading response header from upstream",
                         upstream=ex.upstream_url)
            raise _Failed(502) from None
        if result is not NEED_DATA:
            up.unread(parser.trailing_data)
            return result


async def _response(dc: Any, ex: Exchange, up: Stream, attempt: UpstreamAttempt,
                    started: float) -> ProxyResult:
    try:
        resp = await _read_head(dc, ex, up)
    except _Failed as failed:
        attempt.status = failed.status
        return ProxyResult(status=failed.status)
    attempt.status = resp.status
    attempt.header_time = time.monotonic() - started
    ex.vars.upstream_headers = [(n.decode("latin-1"), v.decode("latin-1"))
                                for n, v in resp.headers]
    if resp.version == (0, 9):
        return await _relay_http09(dc, ex, up, attempt, started)
    if resp.status == 101 and ex.request.upgrade is not None:
        return _upgrade(dc, ex, up, resp, attempt, started)
    if _intercepted(ex, resp.status):
        attempt.response_time = time.monotonic() - started
        return ProxyResult(status=resp.status)
    return await _relay(dc, ex, up, resp, attempt, started)


def _intercepted(ex: Exchange, status: int) -> bool:
    loc = ex.location
    if not loc.proxy_intercept_errors or status < 300:
        return False
    return any(status in codes for codes, _, _ in loc.error_page)


# -- response head ---------------------------------------------------------------------

def _redirect_rules(ex: Exchange) -> list[tuple[str, str]]:
    loc = ex.location
    rules = list(loc.proxy_redirect or ())
    pp = loc.proxy_pass
    out: list[tuple[str, str]] = []
    if not rules or rules == [("default",)]:
        rules = [("default",)]
    for rule in rules:
        if rule == ("off",):
            return []
        if rule == ("default",):
            if pp.template is not None:
                continue
            url = pp.url if pp.uri is not None else pp.url.rstrip("/") + "/"
            prefix = loc.pattern if loc.kind in ("prefix", "prefix_nosearch", "exact") \
                else "/"
            out.append((url, prefix if pp.uri is not None else prefix))
        elif len(rule) == 2:
            out.append((rule[0], rule[1]))
    return out


def _rewrite_location(ex: Exchange, value: bytes) -> bytes:
    text = value.decode("latin-1")
    for src, dst in _redirect_rules(ex):
        if text.startswith(src):
            return (dst + text[len(src):]).encode("latin-1")
    return value


def _client_head(ex: Exchange, resp: Response, *, keep_alive: bool, chunked: bool,
                 length: int | None) -> bytes:
    loc = ex.location
    hide = [h.encode("latin-1") for h in loc.proxy_hide_header]
    pass_ = [h.encode("latin-1") for h in loc.proxy_pass_header]
    fields = hdr.filter_upstream_response_headers(resp.headers, hide, pass_,
                                                  resp.status == 101)
    location: bytes | None = None
    rest: list[tuple[bytes, bytes]] = []
    for name, value in fields:
        lname = name.lower()
        if lname in (b"location", b"refresh"):
            value = _rewrite_location(ex, value)
        rest.append((name, value))
    passed = {p.lower() for p in pass_}
    override = ex.extra.get("err_status")
    if override:
        lines = [pages.status_line(override)]
    else:
        lines = [b"HTTP/1.1 " + (resp.status_line or b"%d" % resp.status) + b"\r\n"]
    if b"server" not in passed or _last(resp, b"server") is None:
        lines.append(b"Server: " + pages.server_token(server_tokens(loc)).encode() + b"\r\n")
    if b"date" not in passed or _last(resp, b"date") is None:
        lines.append(b"Date: " + pages.http_date() + b"\r\n")
    ctype = _last(resp, b"content-type")
    if ctype is not None:
        lines.append(b"Content-Type: " + ctype + b"\r\n")
    if length is not None:
        lines.append(b"Content-Length: %d\r\n" % length)
    if location is not None:
        lines.append(b"Location: " + location + b"\r\n")
    if chunked:
        lines.append(b"Transfer-Encoding: chunked\r\n")
    if resp.status == 101:
        lines.append(b"Connection: upgrade\r\n")
    else:
        lines.append(b"Connection: keep-alive\r\n" if keep_alive else b"Connection: close\r\n")
    rest += add_headers(loc, ex, resp.status)
    lines.extend(n + b": " + v + b"\r\n" for n, v in rest)
    ex.vars.response_headers = [(n.decode("latin-1"), v.decode("latin-1")) for n, v in rest]
    if ctype is not None:
        ex.vars.response_headers.append(("Content-Type", ctype.decode("latin-1")))
    ex.vars.response_headers.append(
        ("Connection", "upgrade" if resp.status == 101 else
         "keep-alive" if keep_alive else "close"))
    lines.append(b"\r\n")
    return b"".join(lines)


def _last(resp: Response, lname: bytes) -> bytes | None:
    found = None
    for name, value in resp.headers:
        if name.lower() == lname:
            found = value
    return found


# -- the tunnel ------------------------------------------------------------------------

def _upgrade(dc: Any, ex: Exchange, up: Stream, resp: Response,
             attempt: UpstreamAttempt, started: float) -> ProxyResult:
    loc = ex.location
    head = _client_head(ex, resp, keep_alive=False, chunked=False, length=None)
    ex.status = 101
    client = dc.stream
    client.write(head)
    ex.bytes_sent += len(head)
    timeouts = TunnelTimeouts(read=loc.proxy_read_timeout, client_send=loc.send_timeout,
                              upstream_send=loc.proxy_send_timeout)
    client_pending, upstream_pending = client.detach(), up.detach()
    tunnel = open_tunnel(client.transport, up.transport, client_pending=client_pending,
                         upstream_pending=upstream_pending, timeouts=timeouts,
                         half_close=True, client_eof=client.eof and not client.lost,
                         upstream_eof=up.eof and not up.lost)
    ex.extra["tunnel"] = tunnel
    attempt.response_time = time.monotonic() - started
    return ProxyResult(relayed=True, tunnel=tunnel, tunnel_head_bytes=len(head))


# -- the response body -----------------------------------------------------------------

def _client_framing(ex: Exchange, resp: Response, kind: str) -> tuple[bool, int | None, bool]:
    """(chunked to the client, Content-Length to announce, keep-alive possible)."""
    req = ex.request
    if kind == "none":
        length = resp.content_length if ex.head_request else None
        if resp.status in (204, 304) or resp.status < 200:
            length = None
        return False, length, True
    if kind == "length":
        return False, resp.content_length, True
    if req.version >= (1, 1):
        return True, None, True
    return False, None, False


async def _relay(dc: Any, ex: Exchange, up: Stream, resp: Response,
                 attempt: UpstreamAttempt, started: float) -> ProxyResult:
    loc = ex.location
    kind = response_body_kind(resp, ex.request.method)
    if ex.head_request and kind != "none":
        kind = "none"
    chunked, length, can_keep = _client_framing(ex, resp, kind)
    keep_alive = ex.keep_alive and can_keep
    ex.status = ex.extra.get("err_status") or resp.status
    head = _client_head(ex, resp, keep_alive=keep_alive, chunked=chunked, length=length)
    client = dc.stream
    client.write(head)
    ex.bytes_sent += len(head)
    result = ProxyResult(relayed=True, keep_alive=keep_alive)
    if kind == "none":
        attempt.response_time = time.monotonic() - started
        return result
    reader: Any
    if kind == "chunked":
        reader = framing.ChunkedReader(role="upstream")
    elif kind == "length":
        reader = framing.ContentLengthReader(resp.content_length or 0, role="upstream")
    else:
        reader = framing.CloseDelimitedReader()
    writer = framing.ChunkedWriter() if chunked else None
    ok = await _pump(dc, ex, up, reader, writer, attempt)
    attempt.response_time = time.monotonic() - started
    if not ok:
        result.keep_alive = False
        dc.stream.close()
    return result


async def _pump(dc: Any, ex: Exchange, up: Stream, reader: Any, writer: Any,
                attempt: UpstreamAttempt) -> bool:
    """Relay body pieces until EndOfMessage; False when the response was cut."""
    loc = ex.location
    client = dc.stream
    while True:
        try:
            data = await up.read(loc.proxy_read_timeout)
        except ReadTimeout:
            dc.log_error("error", "upstream timed out", ex,
                         "reading upstream", err=110, upstream=ex.upstream_url)
            return False
        attempt.bytes_received += len(data)
        try:
            events, _ = reader.feed(data)
        except RemoteProtocolError as exc:
            dc.log_error("error", str(exc), ex, "reading upstream", upstream=ex.upstream_url)
            return False
        for event in events:
            if isinstance(event, Data):
                out = writer.write(event.data) if writer is not None else event.data
                client.write(out)
                ex.bytes_sent += len(out)
                ex.vars.body_bytes_sent += len(event.data)
                attempt.response_length += len(event.data)
            elif isinstance(event, EndOfMessage):
                if writer is not None:
                    tail = writer.end()
                    client.write(tail)
                    ex.bytes_sent += len(tail)
                return True
        if client.lost:
            return False
        await client.drain(loc.send_timeout)


async def _relay_http09(dc: Any, ex: Exchange, up: Stream, attempt: UpstreamAttempt,
                        started: float) -> ProxyResult:
    """An upstream without a status line: nginx relays its bytes as they are."""
    dc.log_error("error", "upstream sent no valid HTTP/1.0 header", ex,
                 "reading response header from upstream", upstream=ex.upstream_url)
    ex.status = 200
    reader = framing.CloseDelimitedReader()
    await _pump(dc, ex, up, reader, None, attempt)
    attempt.response_time = time.monotonic() - started
    dc.stream.close()
    return ProxyResult(relayed=True, keep_alive=False)


def replace(obj: Any, **kw: Any) -> Any:
    return dataclasses.replace(obj, **kw)
