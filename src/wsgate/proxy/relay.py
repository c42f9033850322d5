"""proxy_pass: pick a peer, send the request, relay the response, or open the tunnel.

Phases, with the I/O steps marked (*) (nginx's ngx_http_upstream_* handlers):
  resolve target (group) -> read body (*, when buffered) -> pick a peer (balancer;
  none: `no live upstreams`, 502) -> take an idle keep-alive connection to it or
  connect (*, proxy_connect_timeout) -> send head + body (*, streamed with
  proxy_request_buffering off) -> read response head (*, proxy_read_timeout)
  -> a failure (connect error/timeout, reset, bad head, or a status listed in
     proxy_next_upstream) releases the peer to the balancer and, when
     `should_retry` says so (tries, proxy_next_upstream_timeout, non_idempotent),
     goes back to the pick; nothing has been sent to the client yet
  -> 101 to an Upgrade request: relay the head, hand both transports to the tunnel;
     the peer is released when the tunnel ends (least_conn counts tunnels)
  -> intercepted error: close upstream, error_page takes over
  -> otherwise relay the head and the body with the client's framing (*); a fully
     read HTTP/1.1 response without `Connection: close` returns the connection to
     the upstream block's keep-alive pool.

Each try appends an `UpstreamAttempt` for the $upstream_* variables. Returns a
`ProxyResult`; errors before anything was sent to the client become a status
(502/504/...) for the downstream to answer with nginx's page.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import time
from dataclasses import dataclass
from typing import Any, Awaitable, Iterator

from wsgate.config.variables import UpstreamAttempt
from wsgate.config import redirect
from wsgate.errors import RemoteProtocolError
from wsgate.http import framing, headers as hdr, pages
from wsgate.http.events import NEED_DATA, Data, EndOfMessage, Response
from wsgate.http.response import ResponseHeadParser, response_body_kind
from wsgate.proxy.context import Decoded, Exchange, server_tokens
from wsgate.proxy.handlers import absolute_location, connection_field, header_filter, \
    keepalive_header_of
from wsgate.proxy.stream import PeerClosed, ReadTimeout, Stream
from wsgate.proxy.timers import Ticker, ticker_for
from wsgate.proxy.tunnel import Tunnel, TunnelTimeouts, open_tunnel
from wsgate.proxy.tunnellife import access_logged
from wsgate.tls.serving import UpstreamHandshakeError, open_tls_peer
from wsgate.proxy.upstream_conn import Target, UpstreamStream, connect_error_message, \
    open_peer, resolve_target
from wsgate.upstream import (
    FailureKind, Outcome, Peer, Pick, PickContext, disabled_now,
    effective_next_upstream, failure_status, is_idempotent, parse_next_upstream,
    peer_outcome, should_retry)

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
    redirect: str | None = None     # X-Accel-Redirect: the downstream redirects here


class _Failed(Exception):
    def __init__(self, status: int):
        super().__init__(status)
        self.status = status


class _LocPlan:
    """What proxying through one location needs that the configuration alone
    decides, made on its first request instead of on every one: the user's
    proxy_set_header templates and the upstream head plan; the response fields
    not copied, the proxy_pass_header names, the Server line."""

    __slots__ = ("loc", "templates", "renders", "head", "skip", "passed", "server_line",
                 "next_mask", "inline", "own_server_date", "filters", "_sd", "ka_timeout",
                 "ka_line")

    def __init__(self, loc: Any) -> None:
        self.loc = loc      # kept to check identity: ids are reused after a reload
        # a line without file/line is a default the config layer merged in (see
        # merge_set_headers); http.headers adds those in nginx's order
        self.templates = tuple((h.name, h.value) for h in loc.proxy_set_header
                               if h.file or h.line)
        # a Template's own render function (one call less per value); other
        # values (websocket on's Connection) have only render()
        self.renders = tuple(value.renderer() if hasattr(value, "renderer")
                             else value.render for _, value in self.templates)
        self.head = hdr.UpstreamHeadPlan(loc.proxy_http_version,
                                         tuple(name for name, _ in self.templates),
                                         loc.proxy_pass_request_headers)
        hide, pass_ = _encoded(tuple(loc.proxy_hide_header)), \
            _encoded(tuple(loc.proxy_pass_header))
        self.skip = hdr.not_copied(hide, pass_)
        self.passed = frozenset(p.lower() for p in pass_)
        self.server_line = b"Server: " + \
            pages.server_token(server_tokens(loc)).encode() + b"\r\n"
        self.next_mask = _next_mask(loc.proxy_next_upstream)
        # the client head's Server and Date are ours unless proxy_pass_header passes
        # the upstream's; then one cached line for both, remade once a second
        self.own_server_date = b"server" not in self.passed and b"date" not in self.passed
        self._sd: tuple[bytes, bytes] = (b"", b"")
        # expires / add_header: header_filter has work to do (most locations: none)
        self.filters = getattr(loc, "expires", None) is not None \
            or bool(getattr(loc, "add_header", None))
        self.inline: bool | None = None     # inline.takes()'s answer for the location
        # a kept-alive answer's Connection (and Keep-Alive) line
        self.ka_timeout = keepalive_header_of(loc)
        self.ka_line = connection_field(True, self.ka_timeout)


    def server_date(self) -> bytes:
        """The Server and Date lines together, remade when the Date changes."""
        date = _date()
        stamp, line = self._sd
        if stamp is not date:
            line = self.server_line + b"Date: " + date + b"\r\n"
            self._sd = (date, line)
        return line


# id(location) -> its plan; cleared when large, so old generations cannot pile up
_PLANS: dict[int, _LocPlan] = {}


def plan_of(loc: Any) -> _LocPlan:
    plan = _PLANS.get(id(loc))
    if plan is None or plan.loc is not loc:
        if len(_PLANS) >= 4096:
            _PLANS.clear()
        plan = _PLANS[id(loc)] = _LocPlan(loc)
    return plan


async def read_client_body(dc: Any, ex: Exchange) -> bytes:
    """The whole request body (nginx's proxy_request_buffering on), recorded in
    $request_body / $request_body_file by the downstream."""
    return await dc.read_body(ex)  # type: ignore[no-any-return]


def _request_head(ex: Exchange, target: Target, body: bytes | None,
                  chunked: bool, streamed_length: int | None = None) -> bytes:
    loc = ex.location
    method = ex.request.method
    if loc.proxy_method is not None:
        method = loc.proxy_method.render(ex.vars).encode("latin-1")
    elif ex.internal and method != b"HEAD":
        method = b"GET"
    length = len(body) if body is not None and not chunked else streamed_length
    plan = plan_of(loc)
    ctx = ex.vars
    values = [render(ctx) for render in plan.renders]
    return plan.head.build(method, target.uri, ex.request.headers, values, length,
                           chunked, target.proxy_host)


def _request_body(ex: Exchange) -> tuple[bool, bool]:
    """(has a body to pass, pass it with chunked encoding while streaming)."""
    req = ex.request
    has = (req.content_length is not None or req.chunked) and not ex.internal
    return has, False


def proxy(dc: Any, ex: Exchange) -> Awaitable[ProxyResult]:
    """Run proxy_pass for `ex` (see the module docstring): returns the request's
    coroutine. A plain function, so a request without a body to read waits for
    its upstream one coroutine frame shallower (each wait resumes through every
    frame of the chain)."""
    loc = ex.location
    try:
        target = resolve_target(ex, dc.runtime)
    except LookupError as exc:
        dc.log_error("error", f"{exc} could not be resolved (3: Host not found)", ex, None)
        return _at_once(ProxyResult(status=502))
    except (ValueError, KeyError):
        return _at_once(ProxyResult(status=500))
    ex.vars.proxy_host, ex.vars.proxy_port = target.proxy_host, target.proxy_port
    req = ex.request
    if loc.proxy_set_body is None and not (loc.proxy_pass_request_body
                                           and _request_body(ex)[0]) \
            and (ex.body_read or not (req.content_length or req.chunked
                                      or req.expect_continue)):
        ex.body_read = True           # nothing to read (what _discard would do)
        return _proxying(dc, ex, target, None, False).run()
    return _proxy_body(dc, ex, target)


async def _at_once(result: ProxyResult) -> ProxyResult:
    return result


async def _proxy_body(dc: Any, ex: Exchange, target: Target) -> ProxyResult:
    """proxy() when a request body is to be read, streamed or discarded first."""
    loc = ex.location
    body: bytes | None = None
    streaming = False
    if loc.proxy_set_body is not None:
        body = loc.proxy_set_body.render(ex.vars).encode("latin-1")
        if not ex.body_read:
            await dc.discard_body(ex)
    elif loc.proxy_pass_request_body and _request_body(ex)[0]:
        streaming = _streams_body(ex)
        if not streaming:
            body = await read_client_body(dc, ex)
    elif not ex.body_read:
        await _discard(dc, ex)
    return await _proxying(dc, ex, target, body, streaming).run()


def _proxying(dc: Any, ex: Exchange, target: Target, body: bytes | None,
              streaming: bool) -> _Proxying:
    """The upstream request's head, a new $upstream_* group, the walk over peers."""
    if body is not None:
        ex.vars.proxy_internal_body_length = str(len(body))
    chunked = streaming and ex.request.content_length is None
    head = _request_head(ex, target, body, chunked,
                         ex.request.content_length if streaming else None)
    group: list[UpstreamAttempt] = []
    ex.vars.upstream_groups.append(group)
    return _Proxying(dc, ex, target, head, body, streaming, chunked, group)


async def _discard(dc: Any, ex: Exchange) -> None:
    """The downstream's discard_body, skipped for the common request without a
    body (it would only mark the body read)."""
    req = ex.request
    if not (req.content_length or req.chunked or req.expect_continue):
        ex.body_read = True
        return
    await dc.discard_body(ex)


def _streams_body(ex: Exchange) -> bool:
    """proxy_request_buffering off: stream the body (nginx buffers a chunked body
    anyway when it must be sent to an HTTP/1.0 upstream)."""
    loc = ex.location
    if loc.proxy_request_buffering or ex.body_read or loc.client_body_in_file_only != "off":
        return False
    return ex.request.content_length is not None or loc.proxy_http_version == "1.1"


@functools.lru_cache(maxsize=64)
def _next_mask(tokens: frozenset[str] | None) -> int:
    return effective_next_upstream(parse_next_upstream(sorted(tokens))[0]
                                   if tokens else None)


_STATUS_KINDS = {500: FailureKind.HTTP_500, 502: FailureKind.HTTP_502,
                 503: FailureKind.HTTP_503, 504: FailureKind.HTTP_504,
                 403: FailureKind.HTTP_403, 404: FailureKind.HTTP_404,
                 429: FailureKind.HTTP_429}


class _Next(Exception):
    """This try failed with `kind`; the peer is released, maybe retried."""

    def __init__(self, kind: FailureKind):
        super().__init__(kind.name)
        self.kind = kind


class _Proxying:
    """One proxied request's walk over the group's peers (nginx's upstream_next)."""

    __slots__ = ("dc", "ex", "target", "group", "head", "body", "streaming", "chunked",
                 "mask", "started", "uri", "request_sent", "cached", "pick",
                 "action")

    def __init__(self, dc: Any, ex: Exchange, target: Target, head: bytes,
                 body: bytes | None, streaming: bool, chunked: bool,
                 group: list[UpstreamAttempt]) -> None:
        loc = ex.location
        self.dc, self.ex, self.target, self.group = dc, ex, target, group
        self.head, self.body, self.streaming, self.chunked = head, body, streaming, chunked
        self.mask = plan_of(loc).next_mask
        self.started = time.monotonic()
        self.uri = target.uri.decode("latin-1")
        self.request_sent = False
        self.cached = False
        self.pick = self._pick()
        self.action = "connecting to upstream"

    def idempotent(self) -> bool:
        """Asked only when a try failed: most requests never need it."""
        return is_idempotent(self.ex.request.method.decode("latin-1"))

    def _pick(self) -> Pick:
        ex, group = self.ex, self.target.group
        addr = ex.conn.remote_addr
        key = group.hash_key.render(ex.vars) if group.hash_key is not None else ""
        ctx = PickContext(time.time(), client_addr=None if addr.startswith("unix:") else addr,
                          key=key,
                          next_upstream_tries=ex.location.proxy_next_upstream_tries)
        return group.balancer.pick(ctx)

    async def run(self, peer: Peer | None = None) -> ProxyResult:
        """The walk over peers; `peer`: the first one, already picked (inline.py)."""
        while True:
            if peer is None:
                peer = self.pick.get(time.time())
                if peer is None:
                    return self._no_live()
            try:
                return await self._try(peer)
            except _Next as failed:
                if not self._next(peer, failed.kind):
                    return ProxyResult(status=failure_status(failed.kind))
            peer = None

    async def run_after(self, peer: Peer, kind: FailureKind) -> ProxyResult:
        """The walk, after a try on `peer` failed with `kind` outside it (inline.py)."""
        if not self._next(peer, kind):
            return ProxyResult(status=failure_status(kind))
        return await self.run()

    def _no_live(self) -> ProxyResult:
        name = self.target.group.name
        self.ex.upstream_url = f"{self.target.scheme}://{name}{self.uri}"
        self.dc.log_error("error", "no live upstreams", self.ex, "connecting to upstream",
                          upstream=self.ex.upstream_url)
        self.group.append(UpstreamAttempt(addr=name, status=502, response_time=0.0))
        return ProxyResult(status=502)

    def _next(self, peer: Peer, kind: FailureKind) -> bool:
        """Release the failed peer; True when nginx would try another one."""
        self.release(peer, peer_outcome(kind))
        if self.cached and kind == FailureKind.ERROR:
            self.pick.tries += 1       # a stale keep-alive connection: one more try
        return should_retry(kind, self.mask, self.request_sent, self.idempotent(),
                            self.pick.tries_done, self.pick.initial_tries,
                            time.monotonic() - self.started,
                            self.ex.location.proxy_next_upstream_timeout,
                            self.streaming)

    def release(self, peer: Peer, outcome: Outcome) -> None:
        self.pick.release(peer, outcome, time.time())
        if outcome and disabled_now(peer, outcome):     # OK never disables
            self.dc.log_error("warn", "upstream server temporarily disabled", self.ex,
                              self.action, upstream=self.ex.upstream_url)

    # -- one try -----------------------------------------------------------------------

    def begin_try(self, peer: Peer) -> tuple[UpstreamAttempt, float, UpstreamStream | None]:
        """A try on `peer` starts: its $upstream_* entry, its start time, and an idle
        keep-alive connection to the peer if the pool has one (None: connect)."""
        attempt = UpstreamAttempt(addr=peer.name)
        self.group.append(attempt)
        self.ex.upstream_url = f"{self.target.scheme}://{peer.name}{self.uri}"
        t0 = time.monotonic()
        self.action = "connecting to upstream"
        pool = self.target.group.pool
        up: UpstreamStream | None = pool.get(peer.sockaddr) if pool is not None \
            else None  # type: ignore[assignment]
        if up is not None:
            self.cached = True
            self.connected(up, attempt, t0)
        return attempt, t0, up

    async def _try(self, peer: Peer) -> ProxyResult:
        ex = self.ex
        attempt, t0, up = self.begin_try(peer)
        if up is None:
            up = await self._connect(peer, attempt, t0)
        try:
            if self.streaming:
                await self._send(up, attempt)
            else:                     # the whole request in one write, no coroutine
                first = self.head + (self.body or b"")
                up.write(first)
                self.request_sent = True
                attempt.bytes_sent = len(first)
            self.action = "reading response header from upstream"
            resp = await self._read_head(up, attempt, t0)
        except PeerClosed:
            return self.client_gone(up, peer, attempt, t0)
        except _Next:
            up.close()
            raise
        except BaseException:
            up.close()
            self.release(peer, Outcome.OK)
            raise
        return await _response(self, peer, up, resp, attempt, t0)

    async def _connect(self, peer: Peer, attempt: UpstreamAttempt,
                       t0: float) -> UpstreamStream:
        """A new connection to `peer` (no idle keep-alive one was pooled)."""
        self.cached = False
        try:
            up = await self._open(peer)
        except (UpstreamHandshakeError, OSError, asyncio.TimeoutError) as exc:
            raise _Next(self.connect_failed(exc, attempt, t0)) from None
        self.connected(up, attempt, t0)
        return up

    def connected(self, up: UpstreamStream, attempt: UpstreamAttempt, t0: float) -> None:
        attempt.connect_time = time.monotonic() - t0
        up.requests += 1

    def connect_failed(self, exc: BaseException, attempt: UpstreamAttempt,
                       t0: float) -> FailureKind:
        """Log a failed connect (or upstream TLS handshake) in nginx's words and set
        the try's figures; the failure's kind for proxy_next_upstream."""
        if isinstance(exc, UpstreamHandshakeError):
            self.dc.log_error("error", exc.message, self.ex, "SSL handshaking to upstream",
                              upstream=self.ex.upstream_url)
            self._failed(attempt, 502, t0)
            return FailureKind.ERROR
        timeout = isinstance(exc, asyncio.TimeoutError)
        msg, err = connect_error_message(exc)
        self.dc.log_error("error", msg, self.ex, self.action, err=err,
                          upstream=self.ex.upstream_url)
        self._failed(attempt, 504 if timeout else 502, t0)
        return FailureKind.TIMEOUT if timeout else FailureKind.ERROR

    async def _open(self, peer: Peer) -> UpstreamStream:
        """A new connection to `peer`: TLS for https:// (wsgate.tls.serving)."""
        timeout = self.ex.location.proxy_connect_timeout
        tls = self.dc.runtime.tls.upstream(self.ex.location) \
            if self.target.scheme == "https" else None
        if tls is None:
            return await open_peer(peer.sockaddr, timeout)
        _, up = await open_tls_peer(UpstreamStream, peer.sockaddr, timeout, tls, peer.name,
                                    self.target.proxy_host, self.ex.vars)
        return up  # type: ignore[no-any-return]

    @staticmethod
    def _failed(attempt: UpstreamAttempt, status: int, t0: float) -> None:
        attempt.status = status
        attempt.response_time = time.monotonic() - t0

    async def _send(self, up: UpstreamStream, attempt: UpstreamAttempt) -> None:
        # head and body in one write, as nginx's writev: an upstream that reads
        # the request with one recv sees both (preread body bytes likewise below)
        first = self.head + (self.body or b"")
        preread = self.streaming and bool(self.dc.stream.buffer)
        if preread:
            first = b""
        else:
            up.write(first)
        sent = len(first)
        self.request_sent = True
        if self.streaming:
            sent += await self._stream_body(up, self.head if preread else b"")
        attempt.bytes_sent = sent

    async def _stream_body(self, up: UpstreamStream, head: bytes) -> int:
        """proxy_request_buffering off: each piece goes upstream as it arrives
        (`head`, when not yet sent, goes with the first piece)."""
        loc = self.ex.location
        writer = framing.ChunkedWriter() if self.chunked else None
        sent = 0
        kept: list[bytes] | None = []   # nginx keeps a body that fits its buffer
        async for piece in self.dc.body_pieces(self.ex):
            if kept is not None:
                kept.append(piece)
                if sum(map(len, kept)) > loc.client_body_buffer_size:
                    kept = None
            out = writer.write(piece) if writer is not None else piece
            out, head = head + out, b""
            up.write(out)
            sent += len(out)
            try:
                await up.drain(loc.proxy_send_timeout)
            except ReadTimeout:
                self.dc.log_error("error", "upstream timed out", self.ex,
                                  "sending request to upstream", err=110,
                                  upstream=self.ex.upstream_url)
                raise _Next(FailureKind.TIMEOUT) from None
        if head:                          # no body piece came: the head alone
            up.write(head)
            sent += len(head)
        if writer is not None:
            tail = writer.end()
            up.write(tail)
            sent += len(tail)
        if kept is not None:
            self.ex.vars.request_body = b"".join(kept).decode("latin-1")
        return sent

    async def _read_head(self, up: UpstreamStream, attempt: UpstreamAttempt,
                         t0: float) -> Response:
        loc = self.ex.location
        parser = ResponseHeadParser(loc.proxy_buffer_size, strict=True)
        client = self.dc.stream
        if client.eof and not client.buffer:
            raise PeerClosed()
        client.eof_watcher = up
        timeout = loc.proxy_read_timeout
        try:
            while True:
                # up.read() inlined: one coroutine less per wait
                if not up.buffer and not up.eof:
                    try:
                        await up.wait_data(timeout)
                    except ReadTimeout:
                        self.head_timed_out(attempt, t0)
                result = self.feed_head(up, parser, attempt, t0)
                if result is not None:
                    return result
        finally:
            client.eof_watcher = None

    def feed_head(self, up: UpstreamStream, parser: ResponseHeadParser,
                  attempt: UpstreamAttempt, t0: float) -> Response | None:
        """Feed what `up` has read to the head parser: the head, or None for more.
        Raises _Next (logged, the try's figures set) on EOF, a bad or a too big head.
        The callback path (inline.py) calls it from data_received."""
        data = up.take()
        if not data:
            self._header_failed("upstream prematurely closed connection", attempt, 502, t0)
            raise _Next(FailureKind.ERROR)
        attempt.bytes_received += len(data)
        try:
            result = parser.feed(data)
        except RemoteProtocolError as exc:
            self._header_failed(str(exc), attempt, 502, t0)
            raise _Next(FailureKind.INVALID_HEADER) from None
        if result is NEED_DATA:
            return None
        if result.raw_head_len > self.ex.location.proxy_buffer_size:
            # nginx reads the head into one proxy_buffer_size buffer
            self._header_failed("upstream sent too big header", attempt, 502, t0)
            raise _Next(FailureKind.INVALID_HEADER)
        up.unread(parser.trailing_data)
        attempt.bytes_received -= len(parser.trailing_data)
        return result

    def head_timed_out(self, attempt: UpstreamAttempt, t0: float) -> None:
        """proxy_read_timeout expired before the whole head: raises _Next."""
        self._header_failed("upstream timed out", attempt, 504, t0, err=110)
        raise _Next(FailureKind.TIMEOUT) from None

    def client_gone(self, up: UpstreamStream, peer: Peer, attempt: UpstreamAttempt,
                    t0: float) -> ProxyResult:
        """ngx_http_upstream_check_broken_connection: the client closed while we
        waited for the head: 499, no header time, nothing sent."""
        self.dc.log_error("info", "client prematurely closed connection, so upstream "
                          "connection is closed too", self.ex, self.action,
                          upstream=self.ex.upstream_url)
        attempt.response_time = time.monotonic() - t0
        up.close()
        self.release(peer, Outcome.OK)
        return ProxyResult(status=499)

    def _header_failed(self, message: str, attempt: UpstreamAttempt, status: int,
                       t0: float, err: int | None = None) -> None:
        self.dc.log_error("error", message, self.ex, self.action, err=err,
                          upstream=self.ex.upstream_url)
        self._failed(attempt, status, t0)

    def retries_status(self, status: int) -> FailureKind | None:
        """nginx's ngx_http_upstream_test_next: move on after this status?"""
        kind = _STATUS_KINDS.get(status)
        if kind is None:
            return None
        pick = self.pick
        if pick.tries <= 1:
            return None
        if not should_retry(kind, self.mask, self.request_sent, self.idempotent(),
                            0, pick.tries, time.monotonic() - self.started,
                            self.ex.location.proxy_next_upstream_timeout,
                            self.streaming):
            return None
        return kind


def response_now(px: _Proxying, peer: Peer, up: UpstreamStream, resp: Response,
                 attempt: UpstreamAttempt, t0: float) -> ProxyResult | None:
    """What can be done with the response head without waiting: raises _Next for a
    status proxy_next_upstream retries; the result for a 101, an X-Accel-Redirect,
    an intercepted error, or a response without a body or whose Content-Length body
    came whole with the head (most); None when the body must be relayed as it comes
    (`_response` then awaits it). Callable from a protocol callback (inline.py)."""
    ex = px.ex
    attempt.status = resp.status
    attempt.header_time = time.monotonic() - t0
    kind = px.retries_status(resp.status) if resp.status in _STATUS_KINDS else None
    if kind is not None:
        attempt.response_time = time.monotonic() - t0
        up.close()
        raise _Next(kind)
    ex.vars.upstream_headers = Decoded(resp.headers)
    if resp.status == 101 and ex.request.upgrade is not None and resp.version != (0, 9):
        return _upgrade(px, peer, up, resp, attempt, t0)
    if resp.version == (0, 9):
        return None
    result: ProxyResult | None = None
    done = True                       # False: response_body takes the connection on
    try:
        accel = _accel_redirect(ex, resp)
        if accel is not None:
            attempt.response_time = time.monotonic() - t0
            up.close()                # its body is not read: never reused
            result = ProxyResult(redirect=accel)
        elif _intercepted(ex, resp.status):
            attempt.response_time = time.monotonic() - t0
            if resp.status == 401:    # nginx keeps the challenge (ticket #485)
                ex.extra["carry_headers"] = [
                    (b"WWW-Authenticate", v) for n, v in resp.headers
                    if n.lower() == b"www-authenticate"]
            result = ProxyResult(status=resp.status)
        else:
            result = _relay_now(px, up, resp, attempt, t0)
            done = result is not None
        return result
    finally:
        if done:
            _done_with(px, peer, up)


def _done_with(px: _Proxying, peer: Peer, up: UpstreamStream) -> None:
    """The response was relayed (or abandoned): an unpooled connection closes, the
    peer goes back to the balancer."""
    if up.pool is None:
        up.close()
    px.release(peer, Outcome.OK)


async def _response(px: _Proxying, peer: Peer, up: UpstreamStream, resp: Response,
                    attempt: UpstreamAttempt, t0: float) -> ProxyResult:
    result = response_now(px, peer, up, resp, attempt, t0)
    if result is not None:
        return result
    return await response_body(px, peer, up, resp, attempt, t0)


async def response_body(px: _Proxying, peer: Peer, up: UpstreamStream, resp: Response,
                        attempt: UpstreamAttempt, t0: float) -> ProxyResult:
    """The rest of a response `response_now` left: a body relayed as it arrives."""
    try:
        if resp.version == (0, 9):
            return await _relay_http09(px.dc, px.ex, up, attempt, t0)
        return await _relay(px, up, resp, attempt, t0)
    finally:
        _done_with(px, peer, up)


def _accel_redirect(ex: Exchange, resp: Response) -> str | None:
    """ngx_http_upstream_process_headers: X-Accel-Redirect (unless ignored)."""
    if "X-Accel-Redirect" in (ex.location.proxy_ignore_headers or ()):
        return None
    value = _last(resp, b"x-accel-redirect")
    return value.decode("latin-1") if value else None


def _intercepted(ex: Exchange, status: int) -> bool:
    loc = ex.location
    if not loc.proxy_intercept_errors or status < 300:
        return False
    return any(status in codes for codes, _, _ in loc.error_page)


# -- response head ---------------------------------------------------------------------

def _rewrite_location(ex: Exchange, value: bytes, refresh: bool = False) -> bytes:
    """proxy_redirect over a Location (or the url= part of a Refresh) value."""
    loc = ex.location
    text = value.decode("latin-1")
    prefix = redirect.refresh_prefix(text) if refresh else 0
    if prefix is None:
        return value
    pairs = redirect.effective_rules(loc.proxy_redirect, loc.proxy_pass, loc.pattern)
    new = redirect.rewrite_value(pairs, text, prefix, lambda t: t.render(ex.vars),
                                 ex.vars.set_captures)
    return new.encode("latin-1")


def _client_head(ex: Exchange, resp: Response, *, keep_alive: bool, chunked: bool,
                 length: int | None) -> bytes:
    loc = ex.location
    plan = plan_of(loc)
    skip = plan.skip
    location: bytes | None = None
    ctype: bytes | None = None
    rest: list[tuple[bytes, bytes]] = []
    # one pass: the copied fields in upstream order (hdr.filter_upstream_response_
    # headers' rule), the last Content-Type, proxy_redirect over Location/Refresh
    for name, value in resp.headers:
        lname = name.lower()
        if lname in skip:
            if lname == b"content-type":
                ctype = value
            continue
        if lname == b"location" or lname == b"refresh":
            new = _rewrite_location(ex, value, lname == b"refresh")
            if lname == b"location" and new != value and new.startswith(b"/"):
                # a rewritten relative Location is made absolute by nginx's header
                # filter and written in its fixed place
                location = absolute_location(ex, new.decode("latin-1"))
                continue
            value = new
        rest.append((name, value))
    passed = plan.passed
    override = ex.extra.get("err_status")
    if override:
        lines = [pages.status_line(override)]
    else:
        lines = [b"HTTP/1.1 " + (resp.status_line or b"%d" % resp.status) + b"\r\n"]
    if plan.own_server_date:          # the usual case: no proxy_pass_header for them
        lines.append(plan.server_date())
    else:
        if b"server" not in passed or _last(resp, b"server") is None:
            lines.append(plan.server_line)
        if b"date" not in passed or _last(resp, b"date") is None:
            lines.append(b"Date: " + _date() + b"\r\n")
    if ctype is not None:
        lines.append(b"Content-Type: " + ctype + b"\r\n")
    if length is not None:
        lines.append(b"Content-Length: %d\r\n" % length)
    if location is not None:
        lines.append(b"Location: " + location + b"\r\n")
    if chunked:
        lines.append(b"Transfer-Encoding: chunked\r\n")
    ka_timeout = None
    if resp.status == 101:
        lines.append(b"Connection: upgrade\r\n")
    elif keep_alive:
        ka_timeout = plan.ka_timeout
        lines.append(plan.ka_line)
    else:
        lines.append(b"Connection: close\r\n")
    if plan.filters or ex.extra.get("carry_headers"):
        rest = header_filter(loc, ex, resp.status, rest)
    for n, v in rest:
        lines += (n, b": ", v, b"\r\n")
    ex.vars.response_headers = _Sent(
        rest, ctype, length, location, chunked,
        b"upgrade" if resp.status == 101 else b"keep-alive" if keep_alive else b"close",
        ka_timeout)
    lines.append(b"\r\n")
    if ex.request.version == (0, 9):
        return b""                # an HTTP/0.9 client gets the body alone
    return b"".join(lines)


class _Sent:
    """What $sent_http_* sees, made when read: the fields nginx keeps in
    r->headers_out (the copied and added ones, Content-Type, Content-Length,
    Location) and the ones its variables compute (Transfer-Encoding, Connection,
    Keep-Alive); not Server or Date, which its header filter writes unkept."""

    __slots__ = ("rest", "ctype", "length", "location", "chunked", "connection",
                 "ka_timeout")

    def __init__(self, rest: list[tuple[bytes, bytes]], ctype: bytes | None,
                 length: int | None, location: bytes | None, chunked: bool,
                 connection: bytes, ka_timeout: float | None) -> None:
        self.rest, self.ctype, self.length, self.location = rest, ctype, length, location
        self.chunked, self.connection, self.ka_timeout = chunked, connection, ka_timeout

    def __iter__(self) -> Iterator[tuple[str, str]]:
        sent = list(self.rest)
        if self.ctype is not None:
            sent.append((b"Content-Type", self.ctype))
        if self.length is not None:
            sent.append((b"Content-Length", b"%d" % self.length))
        if self.location is not None:
            sent.append((b"Location", self.location))
        if self.chunked:
            sent.append((b"Transfer-Encoding", b"chunked"))
        sent.append((b"Connection", self.connection))
        if self.ka_timeout is not None:
            sent.append((b"Keep-Alive", b"timeout=%d" % int(self.ka_timeout)))
        return iter(Decoded(sent))


@functools.lru_cache(maxsize=256)
def _encoded(names: tuple[str, ...]) -> tuple[bytes, ...]:
    return tuple(name.encode("latin-1") for name in names)


_date_cache: list[Any] = [0, b""]


def _date() -> bytes:
    """The Date value, formatted once per second (nginx caches its time strings
    the same way; email.utils formatting measured ~3% of a proxied request)."""
    now = int(time.time())
    if now != _date_cache[0]:
        _date_cache[:] = [now, pages.http_date(now)]
    return _date_cache[1]  # type: ignore[no-any-return]


def _last(resp: Response, lname: bytes) -> bytes | None:
    found = None
    for name, value in resp.headers:
        if name.lower() == lname:
            found = value
    return found


# -- the tunnel ------------------------------------------------------------------------

def _upgrade(px: Any, peer: Peer, up: Stream, resp: Response,
             attempt: UpstreamAttempt, started: float) -> ProxyResult:
    dc, ex = px.dc, px.ex
    loc = ex.location
    client = dc.stream
    attempt.response_time = time.monotonic() - started
    if client.lost:
        # The client left while the upstream answered: no tunnel, or the upstream
        # would stay open until proxy_read_timeout (nginx: 499).
        up.close()
        px.release(peer, Outcome.OK)
        ex.status = 499
        return ProxyResult(relayed=True)
    head = _client_head(ex, resp, keep_alive=False, chunked=False, length=None)
    ex.status = 101
    client.write(head)
    ex.bytes_sent += len(head)
    client_pending, upstream_pending = client.detach(), up.detach()
    # The tunnel outlives this request's objects: its end callback keeps only the
    # balancer's handles, and the try's figures only when the access log shows them.
    logged = access_logged(loc)
    ended = _PeerRelease(px.pick.balancer, peer, px.pick.peers.single,
                         attempt if logged else None, started if logged else 0.0)
    assert client.transport is not None and up.transport is not None
    tunnel = open_tunnel(client.transport, up.transport, client_pending=client_pending,
                         upstream_pending=upstream_pending,
                         timeouts=_timeouts(loc.proxy_read_timeout, loc.send_timeout,
                                            loc.proxy_send_timeout),
                         half_close=True, client_eof=client.eof and not client.lost,
                         upstream_eof=up.eof and not up.lost, on_end=ended,
                         ws=dc.runtime.ws.options(loc), ticker=_ticker(dc))
    return ProxyResult(relayed=True, tunnel=tunnel, tunnel_head_bytes=len(head))


def _ticker(dc: Any) -> Ticker | None:
    """The worker's ticker by the connection's loop (open_tunnel would find the loop
    with get_running_loop(): a getpid() system call per tunnel in Python 3.11)."""
    loop = getattr(dc, "loop", None)
    return ticker_for(loop) if loop is not None else None


@functools.lru_cache(maxsize=64)
def _timeouts(read: float | None, client_send: float | None,
              upstream_send: float | None) -> TunnelTimeouts:
    """One (frozen) TunnelTimeouts per distinct setting, shared by the tunnels."""
    return TunnelTimeouts(read=read, client_send=client_send, upstream_send=upstream_send)


class _PeerRelease:
    """A tunnel's end callback from the relay: frees the upstream peer (least_conn
    counts the tunnel until here: nginx frees the peer when it finalizes) and
    completes the try's $upstream_bytes_received / $upstream_response_time."""

    __slots__ = ("balancer", "peer", "single", "attempt", "started")

    def __init__(self, balancer: Any, peer: Peer, single: bool,
                 attempt: UpstreamAttempt | None, started: float) -> None:
        self.balancer, self.peer, self.single = balancer, peer, single
        self.attempt, self.started = attempt, started

    def __call__(self, stats: Any) -> None:
        attempt = self.attempt
        if attempt is not None:
            attempt.bytes_received += stats.bytes_down
            attempt.response_time = time.monotonic() - self.started   # nginx: at finalize
        # Pick.release's accounting; Outcome.OK never disables a peer, so there is
        # no "temporarily disabled" line to log here.
        self.balancer.release(self.peer, Outcome.OK, time.time(), single=self.single)


# -- the response body -----------------------------------------------------------------

def _client_framing(ex: Exchange, resp: Response, kind: str) -> tuple[bool, int | None, bool]:
    """(chunked to the client, Content-Length to announce, keep-alive possible)."""
    req = ex.request
    if kind == "none":
        length = resp.content_length if ex.head_request else None
        if resp.status in (204, 304) or resp.status < 200:
            length = None
        # A 101 the client did not ask for: the upstream has switched protocols, so
        # nothing after it on either connection is HTTP any more; nginx closes.
        return False, length, resp.status != 101
    if kind == "length":
        return False, resp.content_length, True
    if req.version >= (1, 1):
        return True, None, True
    return False, None, False


def _framing_of(ex: Exchange, resp: Response,
                kind: str | None = None) -> tuple[str, bool, int | None, bool]:
    """(body kind, chunked to the client, Content-Length to announce, keep-alive)."""
    if kind is None:
        kind = response_body_kind(resp, ex.request.method)
    if ex.head_request and kind != "none":
        kind = "none"
    chunked, length, can_keep = _client_framing(ex, resp, kind)
    return kind, chunked, length, ex.keep_alive and can_keep


def _relay_now(px: Any, up: UpstreamStream, resp: Response, attempt: UpstreamAttempt,
               started: float) -> ProxyResult | None:
    """A response with nothing to wait for, relayed at once: no body, or
    "Content-Length: 0" (reading would stall until proxy_read_timeout; nginx answers
    at once), or a Content-Length body already read whole. None otherwise."""
    ex = px.ex
    kind = response_body_kind(resp, ex.request.method)
    if kind != "none" and not ex.head_request and not (
            kind == "length" and len(up.buffer) >= (resp.content_length or 0)):
        return None
    kind, chunked, length, keep_alive = _framing_of(ex, resp, kind)
    # a stop or reload began while the upstream answered: say the connection closes
    keep_alive = keep_alive and not px.dc.runtime.closing
    ex.status = ex.extra.get("err_status") or resp.status
    head = _client_head(ex, resp, keep_alive=keep_alive, chunked=chunked, length=length)
    ex.bytes_sent += len(head)
    if kind == "none" or not resp.content_length:
        px.dc.stream.write(head)
    else:
        _whole_body(ex, px.dc.stream, up, resp.content_length or 0, attempt, head)
    attempt.response_time = time.monotonic() - started
    _keep_upstream(px, up, resp)
    return ProxyResult(relayed=True, keep_alive=keep_alive)


async def _relay(px: Any, up: UpstreamStream, resp: Response,
                 attempt: UpstreamAttempt, started: float) -> ProxyResult:
    """A body relayed as it arrives (`_relay_now` took the rest)."""
    dc, ex = px.dc, px.ex
    kind, chunked, length, keep_alive = _framing_of(ex, resp)
    keep_alive = keep_alive and not dc.runtime.closing
    ex.status = ex.extra.get("err_status") or resp.status
    head = _client_head(ex, resp, keep_alive=keep_alive, chunked=chunked, length=length)
    ex.bytes_sent += len(head)
    result = ProxyResult(relayed=True, keep_alive=keep_alive)
    reader: Any
    if kind == "chunked":
        reader = framing.ChunkedReader(role="upstream")
    elif kind == "length":
        reader = framing.ContentLengthReader(resp.content_length or 0, role="upstream")
    else:
        reader = framing.CloseDelimitedReader()
    writer = framing.ChunkedWriter() if chunked else None
    complete = await _pump(dc, ex, up, reader, writer, attempt, head)
    if not complete:
        result.keep_alive = False
        dc.stream.close()
    attempt.response_time = time.monotonic() - started
    if complete and kind != "close":
        _keep_upstream(px, up, resp)
    return result


def _whole_body(ex: Exchange, client: Stream, up: UpstreamStream, length: int,
                attempt: UpstreamAttempt, head: bytes) -> None:
    """A Content-Length body that arrived whole with the head (most small
    responses): what _pump would do in its one round, without a reader, events
    or a coroutine. Head and body go out in one write; bytes past the body stay
    in the upstream's buffer (the connection is then not reused)."""
    data = up.take()
    attempt.bytes_received += len(data)
    if len(data) > length:
        up.unread(data[length:])
        data = data[:length]
    ex.bytes_sent += length
    ex.vars.body_bytes_sent += length
    attempt.response_length += length
    client.write(head + data)


def _keep_upstream(px: Any, up: UpstreamStream, resp: Response) -> None:
    """Return a fully read connection to the pool, if the upstream allowed it
    (nginx's u->keepalive: HTTP/1.1 and no `Connection: close`)."""
    pool = px.target.group.pool
    if pool is None or resp.version < (1, 1) or resp.connection_close or resp.status == 101:
        return
    peer = px.pick.current
    if peer is not None:
        pool.put(up, peer.sockaddr, time.monotonic())


async def _pump(dc: Any, ex: Exchange, up: Stream, reader: Any, writer: Any,
                attempt: UpstreamAttempt, head: bytes = b"") -> bool:
    """Relay body pieces until EndOfMessage; False when the response was cut.

    Every read is written to the client at once, in one write (proxy_buffering off
    flushes each read; `on` may coalesce, and this does no worse), and reading waits
    while the client's write buffer is above its high-water mark, so memory stays
    bounded. `head` (the response head, already counted in ex.bytes_sent) goes out
    with the first body bytes: one send instead of two, as nginx's writev. With
    proxy_buffering off and no body bytes yet, the head goes first; with it on, the
    head waits for the body, so a body that fails before its first bytes sends the
    client nothing, as nginx (whose header sits in its output chain) does."""
    loc = ex.location
    client = dc.stream
    while True:
        # With proxy_buffering on (nginx's default) the head waits for the first
        # body bytes, as nginx's output chain holds it: a body that fails to parse
        # then reaches the client as nothing at all, not as a cut 200. With
        # buffering off nginx flushes the head at once.
        if head and not up.buffer and not up.eof and not loc.proxy_buffering:
            client.write(head)
            head = b""
        try:
            data = await up.read(loc.proxy_read_timeout)
        except ReadTimeout:
            dc.log_error("error", "upstream timed out", ex,
                         "reading upstream", err=110, upstream=ex.upstream_url)
            return False
        attempt.bytes_received += len(data)
        try:
            events, rest = reader.feed(data)
        except RemoteProtocolError as exc:
            dc.log_error("error", str(exc), ex, "reading upstream",
                         upstream=ex.upstream_url)
            return False
        out, done = _body_out(ex, events, writer, attempt)
        if head:
            out, head = head + out, b""
        client.write(out)
        if done:
            if rest:
                up.unread(rest)      # extra bytes: the connection is not reusable
            return True
        if client.lost:
            return False
        await client.drain(loc.send_timeout)


def _body_out(ex: Exchange, events: list[Any], writer: Any,
              attempt: UpstreamAttempt) -> tuple[bytes, bool]:
    """The bytes for the client from one read's events, and whether the body ended."""
    outs = []
    done = False
    for event in events:
        if isinstance(event, Data):
            out = writer.write(event.data) if writer is not None else event.data
            outs.append(out)
            ex.bytes_sent += len(out)
            ex.vars.body_bytes_sent += len(event.data)
            attempt.response_length += len(event.data)
        elif isinstance(event, EndOfMessage):
            if writer is not None:
                tail = writer.end()
                outs.append(tail)
                ex.bytes_sent += len(tail)
            done = True
            break
    return (outs[0] if len(outs) == 1 else b"".join(outs)), done


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
