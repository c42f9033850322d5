"""One client connection: read request heads, route, run the content handler, keep
alive or close, log.

Lifecycle (nginx's ngx_http_wait_request_handler / keepalive handler):
  wait for bytes (client_header_timeout for the first request, keepalive_timeout
  between requests) -> parse the head (client_header_timeout; on timeout nginx
  closes without a response) -> a bad head: nginx's status page, close ->
  server by Host, location by URI -> 413 when Content-Length > client_max_body_size
  -> content: redirect | return | proxy_pass | static -> error_page on errors ->
  discard an unread body when keeping alive -> access log -> next request.
Pipelined bytes stay in the stream's buffer for the next head; after a 101 the
tunnel gets them.

Two modes, one request at a time. Between requests the connection lives in its
stream's callbacks (`Stream.on_event`): no task waits for the next head. A plain
proxied request stays there (inline.py); any other request, or the rest of one that
leaves the simple case, runs in a task (`hand_over`) through the async phases below,
and the connection goes back to the callbacks when it ends.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, AsyncIterator, Awaitable, Callable, Coroutine

from wsgate.errors import RemoteProtocolError
from wsgate.http import framing
from wsgate.http.events import NEED_DATA, Data, EndOfMessage, Request
from wsgate.http.parse import BadRequest, RequestHeadParser, quick_request
from wsgate.limits import HeaderLimits
from wsgate.observe.errorlog import context
from wsgate.observe.metrics import handle_metrics
from wsgate.observe.status import handle_status, handle_stub_status
from wsgate.proxy import inline, route
from wsgate.proxy.context import ConnInfo, Exchange, log_host, make_exchange, \
    server_tokens
from wsgate.proxy.handlers import LocalResponse, absolute_location, add_headers, \
    error_response, keepalive_header, local_head, return_response
from wsgate.proxy.keepalive import location_keeps_alive
from wsgate.proxy.relay import proxy
from wsgate.proxy.reqbody import remove_body_file, store_body
from wsgate.proxy.rewrite import MAX_URI_CHANGES, ScriptResult, run_script
from wsgate.proxy.ssi_run import run_with_ssi, wants_ssi
from wsgate.proxy.static import send_file, serve_static
from wsgate.proxy.stream import ReadTimeout, Stream
from wsgate.proxy.timers import Deadline
from wsgate.tls.serving import request_check
from wsgate.tls.variables import tls_variables
from wsgate.proxy.tryfiles import try_files
from wsgate.proxy.tunnellife import TunnelLife, route_info
from wsgate.proxy.wsfeatures import refused_origin

__all__ = ["Downstream", "BodyTooLarge"]


class BodyTooLarge(Exception):
    """The request body exceeds client_max_body_size (413)."""


class _ClientGone(Exception):
    """The client closed (400) or timed out (408) while we read its body; nginx
    terminates the request without a response and logs that status."""

    def __init__(self, status: int = 400) -> None:
        super().__init__(status)
        self.status = status


class _BadBody(Exception):
    """The request body's framing is invalid (nginx: 400, "client sent invalid
    chunked body")."""


_LIMITS: dict[tuple[int, int, int], HeaderLimits] = {}


def _limits(server: Any) -> HeaderLimits:
    """The server's header limits, one frozen object per distinct setting (built
    per request they were a measurable share of a small request)."""
    num, size = server.large_client_header_buffers
    key = (server.client_header_buffer_size, num, size)
    limits = _LIMITS.get(key)
    if limits is None:
        limits = _LIMITS[key] = HeaderLimits(buffer_size=key[0], large_num=num,
                                             large_size=size)
    return limits


class Downstream:
    """Serves one accepted client connection (see the module docstring)."""

    def __init__(self, runtime: Any, group: route.AddressServers, stream: Stream,
                 conn: ConnInfo) -> None:
        self.runtime = runtime
        self.group = group
        self.stream = stream
        self.conn = conn
        self.idle = True
        self.tunnel: Any = None
        self.tls_port = False            # accepted on a `listen ... ssl` socket
        self._tls_vars: dict[str, str | None] | None = None
        self.stat = runtime.metrics.connections.open()  # stub_status's states
        # the last request's location decides the idle wait (ngx_http_set_keepalive)
        self.keepalive_timeout: float = group.default.root.keepalive_timeout[0]
        # callback mode (start()): the head being read, its timers, the end
        self.loop: asyncio.AbstractEventLoop = None  # type: ignore[assignment]
        self._spawn: Callable[[Coroutine[Any, Any, None]], Any] = _no_spawn
        self._on_end: Callable[[], None] = _nothing
        self._parser: RequestHeadParser | None = None
        self._started = 0.0
        self._pipelined = False
        self._timer: asyncio.TimerHandle | None = None    # a partial head's
        # the wait for a request's first byte (client_header_timeout, then
        # keepalive_timeout): one lazily moved timer for all the connection's waits
        self._idle: Deadline = None  # type: ignore[assignment]
        self._head_wait: Deadline | None = None     # inline.py's upstream head wait
        self._ended: asyncio.Future[None] | None = None
        self.closed = False

    # -- the connection: callbacks between requests and for plain proxied ones ----

    def start(self, loop: asyncio.AbstractEventLoop,
              spawn: Callable[[Coroutine[Any, Any, None]], Any],
              on_end: Callable[[], None]) -> None:
        """Serve the connection. It waits for heads in protocol callbacks; a plain
        proxied request runs there too (inline.py); any other request is handed to a
        task (`_hand_over`) that runs the phases below and gives the connection back
        to the callbacks when the request is done."""
        self.loop, self._spawn, self._on_end = loop, spawn, on_end
        self._idle = Deadline(loop, self._wait_expired)
        self._serve_next()

    def _serve_next(self) -> None:
        """Between requests: serve what is buffered, or wait for it (the first byte
        within client_header_timeout, later ones within keepalive_timeout)."""
        stream = self.stream
        while True:       # a round per request answered at once: bounded by the buffer
            self.idle = True
            self.stat.waiting()
            self._pipelined = self.conn.requests > 0 and bool(stream.buffer)
            if not stream.buffer:
                if stream.eof:
                    self._close()
                    return
                stream.on_event = self._client_event
                timeout = self.group.default.client_header_timeout \
                    if self.conn.requests == 0 else self.keepalive_timeout
                self._idle.set(timeout)
                return
            stream.on_event = self._client_event
            if not self._head_arrived():
                return

    def _client_event(self) -> None:
        """The client sent bytes, EOF, or left, while no request was being served."""
        try:
            stream = self.stream
            if self._parser is None and not stream.buffer:
                if stream.eof:
                    self._close()
                return
            if self._parser is None:
                self._idle.clear()
            if self._head_arrived():
                self._serve_next()
        except Exception as exc:  # never let a connection kill the worker
            self._alert(exc)
            self._close()

    def _head_arrived(self) -> bool:
        """Feed the buffered bytes to the head parser; a whole head is served. True
        when that request ended here and the connection goes on to the next."""
        parser = self._parser
        if parser is None:
            self.idle = False
            self.stat.reading()
            self._started = time.time()
            stream = self.stream
            data = stream.take()
            limits = _limits(self.group.default)
            request = quick_request(data, limits)
            if request is not None:     # the common head, whole: no parser needed
                if len(data) > request.raw_head_len:
                    stream.unread(data[request.raw_head_len:])
                return self._request(request)
            parser = self._parser = self._head_parser(limits)
            request = self._feed_head(parser, self._started, data)
        else:
            request = self._feed_head(parser, self._started, self.stream.take())
        if request is NEED_DATA:
            if self._timer is None:   # client_header_timeout, from the head's first part
                self._timer = self.loop.call_later(self.group.default.client_header_timeout,
                                                   self._head_expired)
            return False
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._parser = None
        if request is None:           # a bad head (answered) or the client left
            self._close()
            return False
        return self._request(request)

    def _wait_expired(self) -> None:
        if self._parser is None and not self.stream.buffer:
            self._close()

    def _head_expired(self) -> None:
        self._timer = None
        default = self.group.default
        self.runtime.log.write("info", "client timed out", err=110,
                               connection=self.conn.number,
                               tail=context("reading client request headers",
                                            client=self.conn.remote_addr,
                                            server=_name(default)))
        self._close()

    def _close(self) -> None:
        """The connection's end (not a tunnel's: TunnelLife ends those)."""
        if self.closed:
            return
        self.closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._stop_waits()
        stream = self.stream
        stream.on_event = None
        if self.tunnel is None:
            self.stat.close()
            stream.close()
        self._on_end()
        self._set_ended()

    def _set_ended(self) -> None:
        ended = self._ended
        if ended is not None and not ended.done():
            ended.set_result(None)

    def ended(self) -> "asyncio.Future[None]":
        """Done when this connection's requests are over (closed, or a tunnel now):
        what a graceful stop waits for."""
        if self._ended is None:
            self._ended = self.loop.create_future()
            if self.closed or self.tunnel is not None:
                self._ended.set_result(None)
        return self._ended

    def _alert(self, exc: BaseException) -> None:
        self.runtime.log.write("alert", f"unexpected error: {type(exc).__name__}: {exc}",
                               connection=self.conn.number)

    def _request(self, request: Request) -> bool:
        """A whole head: a plain proxied request goes on in callbacks (inline.py),
        anything else in a task. True when it ended here (the connection goes on)."""
        ex = self._exchange(request)
        if self.tls_port or ex.server.root.rewrite:
            return self.hand_over(self._respond(ex))
        if self.runtime.closing:
            ex.keep_alive = False
        refusal = self._find_config(ex)
        if refusal or getattr(ex.location, "rewrite", None):
            return self.hand_over(self._respond_located(ex, refusal))
        if not inline.takes(self, ex):
            return self.hand_over(self._respond_content(ex))
        return inline.start(self, ex)

    def hand_over(self, work: Coroutine[Any, Any, bool | None]) -> bool:
        """The request goes on in a task; the callbacks stand aside until it ends."""
        self.stream.on_event = None
        self._spawn(self._in_task(work))
        return False

    async def _in_task(self, work: Coroutine[Any, Any, bool | None]) -> None:
        """Run `work`, the rest of a request. Its answer: True, the connection goes
        on to the next request (back in callbacks); False, it ends; None, the
        request itself went back to callbacks (inline.py's connect)."""
        keep: bool | None = False
        try:
            keep = await work
        except Exception as exc:  # never let a connection kill the worker
            self._alert(exc)
            keep = False
        except BaseException:     # cancelled: a fast stop
            self._task_ended(False)
            raise
        self._task_ended(keep)

    def _task_ended(self, keep: bool | None) -> None:
        if keep is None:
            return
        if self.tunnel is not None:
            self._became_tunnel()
        elif not keep or self.runtime.closing:
            self._close()
        else:
            try:
                self._serve_next()
            except Exception as exc:  # never let a connection kill the worker
                self._alert(exc)
                self._close()

    def client_gone(self, ex: Exchange) -> None:
        """The client left while the upstream's head was awaited: 499, as `_error`
        answers relay's ProxyResult(status=499)."""
        ex.status, ex.keep_alive = 499, False
        self.stream.abort()
        self.request_done(ex)

    def request_done(self, ex: Exchange) -> None:
        """A request answered in callbacks ended: the next one, or the end."""
        if self.tunnel is not None:
            self._became_tunnel()
        elif self._finish(ex) and not self.runtime.closing:
            self._serve_next()
        else:
            self._close()

    def _became_tunnel(self) -> None:
        """The connection lives on as its tunnel (tunnellife.py ends it)."""
        self.stream.on_event = None
        self._stop_waits()
        self._set_ended()

    def head_wait(self) -> Deadline:
        """The timer inline.py's requests wait for their upstream's head with (one
        per connection, moved lazily: see timers.Deadline)."""
        if self._head_wait is None:
            self._head_wait = Deadline(self.loop, _nothing)
        return self._head_wait

    def _stop_waits(self) -> None:
        """Armed timers hold this connection: cancel them when it ends."""
        if self._idle is not None:
            self._idle.cancel()
        if self._head_wait is not None:
            self._head_wait.cancel()

    def _exchange(self, request: Request) -> Exchange:
        self.stat.writing()
        self.conn.requests += 1
        server, m = route.find_server(self.group, _host(request))
        ex = make_exchange(request, self.conn, server, self._started)
        ex.extra["prefix"] = self.runtime.prefix
        ex.vars.pipelined = self._pipelined
        if m is not None:
            ex.vars.set_captures(m)
        return ex

    # -- a request in a task: nginx's phases ---------------------------------------------

    async def _respond(self, ex: Exchange) -> bool:
        """Every phase after the head; True when the connection goes on."""
        if self.tls_port and not await self._tls_request(ex):
            return await self._tail(ex)
        if self.runtime.closing:
            ex.keep_alive = False
        if ex.server.root.rewrite:
            await self._serve(ex)
            return await self._tail(ex)
        return await self._respond_located(ex, self._find_config(ex))

    async def _respond_located(self, ex: Exchange, refusal: int) -> bool:
        """After the location was found (`_find_config`'s answer in `refusal`)."""
        if refusal > 0:
            await self._error(ex, refusal)
        elif refusal == 0 and (not getattr(ex.location, "rewrite", None)
                               or await self._phases(ex, ex.location)):
            await self._content(ex)
        return await self._tail(ex)

    async def _respond_content(self, ex: Exchange) -> bool:
        await self._content(ex)
        return await self._tail(ex)

    async def respond_proxied(self, ex: Exchange, work: Awaitable[Any]) -> bool:
        """A proxied request the callbacks handed over: the rest of proxy_pass
        (`work` gives its ProxyResult), then what follows it."""
        try:
            await self._after_proxy(ex, await work)
        except (BodyTooLarge, _ClientGone, _BadBody) as exc:
            await self._content_failed(ex, exc)
        return await self._tail(ex)

    async def _tail(self, ex: Exchange) -> bool:
        if self._body_left(ex):
            await self.discard_body(ex)
        return self._finish(ex)

    async def _tls_request(self, ex: Exchange) -> bool:
        """$https/$scheme/$ssl_*, then nginx's TLS refusals (497/495/496 as 400 pages,
        through error_page); False when a response was sent."""
        transport = self.stream.transport
        sslobj = transport.get_extra_info("ssl_object") if transport else None
        if sslobj is not None:
            if self._tls_vars is None:
                self._tls_vars = tls_variables(sslobj)
            ex.vars.scheme, ex.vars.https = "https", True
            ex.vars.ssl = self._tls_vars
        check = request_check(True, ex.server, sslobj, ex.vars.host or "")
        if check is None:
            return True
        self.log_error("info", check.log, ex, "reading client request headers")
        ex.keep_alive = False
        await self._error(ex, check.status)
        return False

    def _head_parser(self, limits: HeaderLimits) -> RequestHeadParser:
        default = self.group.default
        return RequestHeadParser(limits,
                                 ignore_invalid_headers=default.ignore_invalid_headers,
                                 underscores_in_headers=default.underscores_in_headers)

    def _feed_head(self, parser: RequestHeadParser, started: float,
                   data: bytes) -> Request | None | Any:
        """Feed `data`, the bytes taken from the stream: the request, None (a bad
        head, answered, or the client closed), or NEED_DATA."""
        stream = self.stream
        if not data and stream.eof:
            return None
        try:
            result = parser.feed(data)
        except RemoteProtocolError as exc:
            self._bad_request(exc, started)
            return None
        if result is not NEED_DATA:
            stream.unread(parser.trailing_data)
            return result
        if stream.eof:
            return None
        return NEED_DATA

    def _bad_request(self, exc: RemoteProtocolError, started: float) -> None:
        status = getattr(exc, "status_hint", 400) or 400
        self.runtime.log.write("info", str(exc), connection=self.conn.number,
                               tail=context("reading client request headers",
                                            client=self.conn.remote_addr,
                                            server=_name(self.group.default)))
        fake = Request(method=b"GET", target=b"/", version=(1, 1), headers=(),
                       keep_alive=False, expect_continue=False, upgrade=None,
                       content_length=None, chunked=False, raw_head_len=0)
        ex = make_exchange(fake, self.conn, self.group.default, started)
        ex.vars.request_line = ""
        ex.keep_alive = False
        resp = error_response(ex, status, keep_alive=False)
        if getattr(exc, "http09", False):
            resp.head = b""
        self._send(ex, resp)
        self.runtime.access_log(ex)

    # -- content ---------------------------------------------------------------------

    def _route(self, ex: Exchange) -> route.Match:
        m = route.find_location(ex.server, ex.uri)
        ex.location = m.location
        if m.regex_match is not None:
            ex.vars.set_captures(m.regex_match)
        if ex.keep_alive and not location_keeps_alive(ex, self.conn):
            ex.keep_alive = False
        return m

    async def _serve(self, ex: Exchange) -> None:
        if await self._phases(ex, None):
            await self._content(ex)

    async def _phases(self, ex: Exchange, named: Any) -> bool:
        """nginx's server-rewrite, find-config and rewrite phases, with the "find the
        location again" loop after a changed URI; False when a response was sent.
        A named location (error_page @x) skips server rewrite and location search."""
        # a level without rewrite directives has nothing to run (most locations)
        ops = ex.server.root.rewrite
        if named is None and ops:
            res = run_script(ops, ex, self._script_log(ex))
            if res.respond:
                await self._script_response(ex, res)
                return False
        while True:
            if named is not None:
                ex.location, named = named, None
            else:
                refusal = self._find_config(ex)
                if refusal:
                    if refusal > 0:
                        await self._error(ex, refusal)
                    return False
            ops = getattr(ex.location, "rewrite", None)
            if not ops:
                return True
            res = run_script(ops, ex, self._script_log(ex))
            if res.respond:
                await self._script_response(ex, res)
                return False
            if not res.uri_changed:
                return True
            if not await self._uri_change(ex, f'processing "{ex.uri}"'):
                return False

    def _find_config(self, ex: Exchange) -> int:
        """Location by URI, then client_max_body_size and the slash redirect: 0 to
        go on, -1 when answered (the redirect), or a status for _error (413).
        A plain function: most requests pass, and need no coroutine for it."""
        m = self._route(ex)
        req = ex.request
        limit = ex.location.client_max_body_size
        if limit and req.content_length is not None and req.content_length > limit \
                and not ex.body_read:
            self.log_error("error", f"client intended to send too large body: "
                           f"{req.content_length} bytes", ex, None)
            ex.keep_alive = False
            return 413
        if m.redirect_slash:
            target = ex.uri + "/" + (f"?{ex.vars.args}" if ex.vars.args else "")
            self._send(ex, error_response(ex, 301, location=absolute_location(ex, target),
                                            relative=True))
            return -1
        return 0

    def _script_log(self, ex: Exchange) -> Any:
        return lambda level, message: self.log_error(level, message, ex, None)

    async def _script_response(self, ex: Exchange, res: ScriptResult) -> None:
        """`return` or a redirecting `rewrite` answers (error_page applies)."""
        if res.location is not None:
            target = res.location
            self._send(ex, error_response(ex, res.status,
                                          location=absolute_location(ex, target),
                                          relative=target.startswith("/")))
            return
        code, text = res.status, res.text
        if code >= 400 and text is None or code == 444 or text is None and code == 500:
            await self._error(ex, code)
        else:
            self._send(ex, return_response(ex, code, text))

    def _content(self, ex: Exchange) -> Awaitable[None]:
        """The content phase's coroutine (a plain function: one frame less under
        every wait of a request without try_files or SSI)."""
        conf = getattr(ex.location, "try_files", None)
        if conf is not None:
            return self._content_after_try_files(ex, conf)
        return self._content_ssi(ex)

    async def _content_after_try_files(self, ex: Exchange, conf: Any) -> None:
        if await self._try_files(ex, conf):
            await self._content_ssi(ex)

    def _content_ssi(self, ex: Exchange) -> Awaitable[None]:
        if getattr(ex.location, "ssi", False) and wants_ssi(ex):   # ssi off: never
            return run_with_ssi(self, ex, self._content_plain)
        return self._content_plain(ex)

    async def _try_files(self, ex: Exchange, conf: Any) -> bool:
        """The precontent phase; True when this location's content handler runs."""
        res = try_files(ex, conf)
        if res.kind == "file":
            ex.uri = ex.vars.uri = res.uri
            return True
        if res.kind == "code":
            await self._error(ex, res.code)
        elif res.kind == "named":
            named = route.named_location(ex.server, res.uri)
            if named is None:
                self.log_error("error", f'could not find named location "{res.uri}"',
                               ex, None)
                await self._error(ex, 500)
            else:
                await self._go_named(ex, named)
        else:
            ex.vars.args = res.args
            await self._internal_redirect(ex, res.uri)
        return False

    async def _uri_change(self, ex: Exchange, action: str) -> bool:
        """Spend one of nginx's URI changes (rewrite, internal or named redirect);
        the last one ends the request with 500 and a "cycle" error. False then."""
        changes = ex.extra.get("uri_changes", MAX_URI_CHANGES + 1) - 1
        ex.extra["uri_changes"] = changes
        if changes:
            return True
        self.log_error("error", f"rewrite or internal redirection cycle while {action}",
                       ex, None)
        await self._error(ex, 500)
        return False

    async def _go_named(self, ex: Exchange, named: Any) -> None:
        """ngx_http_named_location: counts as a URI change (cycles end in 500)."""
        if not await self._uri_change(ex, f'redirect to named location "{named.pattern}"'):
            return
        if await self._phases(ex, named):
            await self._content(ex)

    async def serve_subrequest(self, ex: Exchange) -> None:
        """An SSI `include virtual`: every phase, output to the current stream."""
        await self._serve(ex)

    async def _content_plain(self, ex: Exchange) -> None:
        loc = ex.location
        try:
            if loc.return_ is not None and not getattr(loc, "rewrite", None):
                code, text = loc.return_
                if code >= 400 and text is None or code == 444:
                    await self._error(ex, code)
                else:
                    self._send(ex, return_response(ex, code, text))
            elif loc.stub_status or loc.metrics or loc.websocket_status:
                await self._observe(ex)
            elif loc.proxy_pass is not None and self._origin_refused(ex):
                await self._error(ex, 403)
            elif loc.proxy_pass is not None:
                await self._after_proxy(ex, await proxy(self, ex))
            else:
                await self._static(ex)
        except (BodyTooLarge, _ClientGone, _BadBody) as exc:
            await self._content_failed(ex, exc)

    async def _after_proxy(self, ex: Exchange, result: Any) -> None:
        if result.tunnel is not None:
            self._tunnel(ex, result)
        elif result.redirect is not None:
            await self._accel_redirect(ex, result.redirect)
        elif result.status:
            await self._error(ex, result.status)
        else:
            ex.keep_alive = result.keep_alive

    async def _content_failed(self, ex: Exchange, exc: Exception) -> None:
        """The request body could not be read whole."""
        ex.keep_alive = False
        if isinstance(exc, BodyTooLarge):
            await self._error(ex, 413)
        elif isinstance(exc, _ClientGone):
            ex.status = ex.status or exc.status
        elif ex.status == 0:          # _BadBody, and nothing was answered yet
            await self._error(ex, 400)

    async def _static(self, ex: Exchange) -> None:
        resp = serve_static(ex, self.log_error)
        if isinstance(resp, str):         # index: an internal redirect to the file
            await self._internal_redirect(ex, resp)
            return
        if resp.status >= 400 and self._error_page_for(ex, resp.status) is not None:
            await self._error(ex, resp.status)
            return
        self._send(ex, resp)
        if resp.file is not None:
            try:
                sent = await send_file(self.stream, resp.file, ex.location.send_timeout)
            except (OSError, ReadTimeout):
                sent, ex.keep_alive = 0, False
                self.stream.abort()
            ex.bytes_sent += sent
            ex.vars.body_bytes_sent += sent
            if sent < resp.file.length:
                ex.keep_alive = False

    async def _internal_redirect(self, ex: Exchange, uri: str) -> None:
        """ngx_http_internal_redirect: a new URI through every phase again."""
        if not await self._uri_change(ex, f'internally redirecting to "{uri}"'):
            return
        ex.uri = ex.vars.uri = uri
        ex.extra["uri_changed"] = True
        if await self._phases(ex, None):
            await self._content(ex)

    async def _accel_redirect(self, ex: Exchange, target: str) -> None:
        """X-Accel-Redirect: a named location or a URI with its own args; the
        method becomes GET (relay sends GET for an internal request)."""
        ex.internal = True
        if target.startswith("@"):
            named = route.named_location(ex.server, target)
            if named is None:
                await self._error(ex, 404)
            else:
                await self._go_named(ex, named)
            return
        path, _, args = target.partition("?")
        ex.vars.args = args or None
        await self._internal_redirect(ex, path)

    async def _observe(self, ex: Exchange) -> None:
        """`stub_status;`, `metrics;`, `websocket_status;`: this worker's pages."""
        method = ex.request.method.decode("latin-1")
        metrics = self.runtime.metrics
        if ex.location.stub_status:
            status, fields, body = handle_stub_status(metrics.connections, method)
        elif ex.location.websocket_status:
            tunnels = self.runtime.live_tunnels.snapshot(time.time())
            status, fields, body = handle_status(
                tunnels, method, counters=metrics.connections,
                accept=_header(ex, "accept"), args=ex.vars.args)
        else:
            status, fields, body = handle_metrics(metrics, method, _header(ex, "accept"),
                                                  _header(ex, "accept-encoding"))
        if status != 200:
            await self._error(ex, status)
            return
        self._send(ex, _page(ex, fields, body))

    def _origin_refused(self, ex: Exchange) -> bool:
        """websocket_allow_origin: a WebSocket handshake from a foreign Origin is
        answered 403 before anything reaches the upstream."""
        origin = refused_origin(ex)
        if origin is None:
            return False
        self.log_error("warn", f'origin "{origin}" is not allowed by '
                       "websocket_allow_origin", ex, None)
        return True

    def _tunnel(self, ex: Exchange, result: Any) -> None:
        """The tunnel runs: this connection's coroutine ends now (an idle tunnel must
        not cost a suspended coroutine chain and the request's state); the tunnel's
        end does the rest of the request's end (TunnelLife, tunnellife.py)."""
        self.tunnel = tunnel = result.tunnel
        ex.keep_alive = False
        # first: from here on the tunnel's end ends the request, whatever follows
        self._tunnel_opened(ex, tunnel, result.tunnel_head_bytes)
        tunnel.info = info = route_info(ex, self.runtime.upstreams)
        if ex.location.websocket_log_open:
            self._log_open(ex, result.tunnel_head_bytes)
        if self.runtime.draining and tunnel.stats is None:
            # opened during a graceful stop: close it politely
            tunnel.close_politely(1001, "server going away", info.close_timeout)

    def _log_open(self, ex: Exchange, head_bytes: int) -> None:
        """websocket_log_open: an access-log line as the tunnel opens (101, the
        request time so far); the usual line follows when it ends."""
        ex.vars.status, ex.vars.bytes_sent = 101, head_bytes
        ex.vars.now = time.time()
        self.runtime.access_log(ex)

    def _tunnel_opened(self, ex: Exchange, tunnel: Any, head_bytes: int) -> None:
        life = TunnelLife(self.runtime, self.conn, self.stat, ex, tunnel,
                          server=_name(ex.server), label=_upstream_label(ex),
                          head_bytes=head_bytes)
        life.start(self)

    # -- errors and error_page -------------------------------------------------------

    def _error_page_for(self, ex: Exchange, status: int) -> tuple[int | None, str] | None:
        if ex.internal:
            return None
        for codes, overwrite, uri in ex.location.error_page:
            if status in codes:
                return overwrite, uri
        return None

    async def _error(self, ex: Exchange, status: int) -> None:
        if status in (444, 499):      # nginx closes without a response
            ex.status, ex.keep_alive = status, False
            self.stream.abort()
            return
        page = self._error_page_for(ex, status)
        if page is None:
            if not ex.body_read and ex.keep_alive:
                await self.discard_body(ex)
            self._send(ex, error_response(ex, status))
            return
        overwrite, uri = page
        rendered = uri
        if not ex.body_read and ex.keep_alive and status not in (413,):
            await self.discard_body(ex)
        named = None
        if uri.startswith("@"):
            named = route.named_location(ex.server, uri)
            if named is None:
                self._send(ex, error_response(ex, status))
                return
            ex.internal = True
        elif uri.startswith("/"):
            path, _, args = rendered.partition("?")
            ex.internal = True
            ex.uri = path
            ex.vars.uri = path
            ex.vars.args = args or None
        else:
            code = overwrite if overwrite in (301, 302, 303, 307, 308) else 302
            self._send(ex, error_response(ex, code, location=rendered.encode("latin-1")))
            return
        if overwrite != 0:
            ex.extra["err_status"] = overwrite or status
        if await self._phases(ex, named):
            await self._content(ex)

    # -- writing ---------------------------------------------------------------------

    def _send(self, ex: Exchange, resp: LocalResponse) -> None:
        override = ex.extra.get("err_status")
        head = resp.head
        status = resp.status
        if override and head.startswith(b"HTTP/1.1 "):
            from wsgate.http.pages import status_line
            head = status_line(override) + head.split(b"\r\n", 1)[1]
            status = override
        ex.status = status
        ex.keep_alive = resp.keep_alive and ex.keep_alive
        if ex.request.version == (0, 9):
            head = b""            # an HTTP/0.9 client gets the body alone
        ex.vars.response_headers = _head_fields(head)    # $sent_http_*
        self.stream.write(head)
        self.stream.write(resp.body)
        ex.bytes_sent += len(head) + len(resp.body)
        ex.vars.body_bytes_sent += len(resp.body)

    def _body_left(self, ex: Exchange) -> bool:
        """A body to discard before the next request (not after a tunnel)."""
        return self.tunnel is None and ex.keep_alive and not ex.body_read \
            and _has_body(ex.request)

    def _finish(self, ex: Exchange) -> bool:
        """The request's end (after _body_left's discard): a plain function."""
        if self.tunnel is not None:
            return False    # counted and logged when the tunnel ends (tunnellife.py)
        ex.vars.status = ex.status
        ex.vars.bytes_sent = ex.bytes_sent
        self._count(ex)
        self.runtime.access_log(ex)
        remove_body_file(ex)
        self.keepalive_timeout = ex.location.keepalive_timeout[0]
        return ex.keep_alive and not self.stream.lost

    def _count(self, ex: Exchange) -> None:
        """Per-request metrics, once the request is done (a tunnel: once it ended)."""
        metrics, server = self.runtime.metrics, _name(ex.server)
        metrics.request_done(server, ex.status, _upstream_label(ex))
        upgrade = ex.request.upgrade
        if upgrade is not None and b"websocket" in upgrade.lower():
            metrics.handshake(server, ex.status)

    # -- the request body --------------------------------------------------------------

    async def body_pieces(self, ex: Exchange) -> AsyncIterator[bytes]:
        """The request body piece by piece (100-continue, limits, timeouts)."""
        req = ex.request
        reader = framing.body_reader(req.content_length, req.chunked)
        if ex.body_read:
            return
        if req.expect_continue and not ex.extra.get("continued"):
            # ngx_http_test_expect: once, whenever the body is to be read
            ex.extra["continued"] = True
            self.stream.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        if reader is None or req.content_length == 0:
            ex.body_read = True
            return
        ex.extra.setdefault("preread", self._preread(ex))
        limit = ex.location.client_max_body_size
        total = 0
        while True:
            try:
                data = await self.stream.read(ex.location.client_body_timeout)
            except ReadTimeout:
                self.log_error("info", "client timed out", ex, "reading client request body",
                               err=110)
                ex.body_read = True
                raise _ClientGone(408) from None
            try:
                events, rest = reader.feed(data)
            except RemoteProtocolError as exc:
                self.log_error("info", str(exc), ex, "reading client request body")
                ex.body_read = True
                if "prematurely" in str(exc):
                    raise _ClientGone() from None
                raise _BadBody() from None
            self.stream.unread(rest)
            for event in events:
                if isinstance(event, Data):
                    total += len(event.data)
                    if limit and total > limit:
                        self.log_error("error", f"client intended to send too large "
                                       f"chunked body: {total} bytes", ex, None)
                        raise BodyTooLarge()
                    ex.vars.request_length += len(event.data)
                    yield event.data
                elif isinstance(event, EndOfMessage):
                    ex.body_read = True
                    return

    def _preread(self, ex: Exchange) -> int:
        """Body bytes nginx would have read together with the head: what is
        buffered now, bounded by the header buffer the head was read into."""
        req, server = ex.request, self.group.default
        size = int(server.client_header_buffer_size)
        if req.raw_head_len > size:
            size = int(server.large_client_header_buffers[1])
        room = max(0, size - req.raw_head_len)
        if req.content_length is not None:
            room = min(room, req.content_length)
        return min(room, len(self.stream.buffer))

    async def read_body(self, ex: Exchange) -> bytes:
        """The whole request body, recorded as nginx does ($request_body in memory
        or $request_body_file, see reqbody.py)."""
        chunks = [piece async for piece in self.body_pieces(ex)]
        body = b"".join(chunks)
        if ex.request.content_length is not None or ex.request.chunked:
            store_body(ex, body)
        return body

    async def discard_body(self, ex: Exchange) -> None:
        if ex.body_read:
            return
        try:
            async for _ in self.body_pieces(ex):
                pass
        except (_ClientGone, BodyTooLarge, _BadBody):
            ex.keep_alive = False
        ex.body_read = True

    # -- logging ---------------------------------------------------------------------

    def log_error(self, level: str, message: str, ex: Exchange, action: str | None, *,
                  err: int | None = None, upstream: str | None = None) -> None:
        tail = context(action, client=self.conn.remote_addr, server=_name(ex.server),
                       request=ex.vars.request_line or None, upstream=upstream,
                       host=log_host(ex.vars))
        self.runtime.log.write(level, message, err=err, connection=self.conn.number,
                               tail=tail)

    def close_idle(self) -> None:
        """Graceful shutdown: an idle keep-alive connection is closed at once."""
        if self.idle:
            self.stream.close()


def _no_spawn(coro: Coroutine[Any, Any, None]) -> Any:
    coro.close()
    raise RuntimeError("Downstream.start() was not called")


def _nothing() -> None:
    pass


def _head_fields(head: bytes) -> list[tuple[str, str]]:
    """The (name, value) fields of a response head we wrote."""
    lines = head.decode("latin-1").split("\r\n")[1:]
    return [(n, v) for n, _, v in (line.partition(": ") for line in lines) if n]


def _has_body(request: Request) -> bool:
    return request.chunked or bool(request.content_length)


def _upstream_label(ex: Exchange) -> str:
    """The upstream as a metric label, bounded by the config: a proxy_pass with
    variables gives its own text, never a value the client chose."""
    pp = ex.location.proxy_pass
    if pp is None:
        return ""
    if pp.template is not None:
        return str(pp.url)
    return str(ex.vars.proxy_host or pp.url)


def _header(ex: Exchange, lname: str) -> str | None:
    return next((v for n, v in ex.vars.headers if n.lower() == lname), None)


def _page(ex: Exchange, fields: list[tuple[str, str]], body: bytes) -> LocalResponse:
    """A 200 page from a pure handler's (fields, body), as nginx's header filter
    writes it: Content-Type and Content-Length first, then the other fields."""
    ctype = next(v for n, v in fields if n == "Content-Type").encode("latin-1")
    extra = [(n.encode("latin-1"), v.encode("latin-1")) for n, v in fields
             if n != "Content-Type"] + add_headers(ex.location, ex, 200)
    head = local_head(200, tokens=server_tokens(ex.location), keep_alive=ex.keep_alive,
                      keepalive_header=keepalive_header(ex),
                      content_type=ctype, content_length=len(body), extra=extra)
    return LocalResponse(200, head, b"" if ex.head_request else body, ex.keep_alive)


def _host(request: Request) -> str | None:
    return request.host.decode("latin-1") if request.host else None


def _name(server: Any) -> str:
    for name in server.server_names:
        return str(name)
    return ""
