"""A plain proxied request served in protocol callbacks, without a task.

Most requests a WebSocket proxy sees are the simplest kind: a GET without a body to
a location whose content is `proxy_pass`, answered with a small Content-Length
response or a 101. For those, a task and its coroutine chain cost more than the
request's own work: every wait (the client's head, the upstream's head) goes through
a future, a timer, a task step and each frame of the chain. Here such a request runs
in the connections' `data_received` callbacks instead (the `Stream.on_event` hook):

  the head is parsed (downstream.py) -> `takes`: nothing but proxy_pass to do and no
  body -> `start`: the target, the $upstream_* group, a peer from the balancer, an
  idle keep-alive connection to it (or a new one, connected in a task) -> the request head
  is written -> `_Wait`: the upstream's bytes feed the response head parser (a timer
  keeps proxy_read_timeout, the client's EOF means 499) -> `relay.response_now`
  relays a response with nothing to wait for, or opens the tunnel of a 101 -> the
  connection serves its next request (Downstream.request_done).

It is the same request as relay.py's: the same objects (`_Proxying`, the attempt,
the parsers) and the same functions for every decision and every log line. Whenever
the request leaves the simple case -- a peer fails (proxy_next_upstream), a body must
be relayed as it comes, an X-Accel-Redirect, an error page -- the rest goes to a task
at exactly that point (`Downstream.hand_over`), so nothing is done twice.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from wsgate.config.variables import UpstreamAttempt
from wsgate.http.response import ResponseHeadParser
from wsgate.proxy.context import Exchange
from wsgate.proxy.timers import Deadline
from wsgate.proxy.relay import ProxyResult, _Next, _proxying, _Proxying, plan_of, \
    response_body, response_now
from wsgate.proxy.upstream_conn import UpstreamStream, open_peer, resolve_target
from wsgate.proxy.wsfeatures import refused_origin
from wsgate.upstream import Peer

__all__ = ["takes", "start"]


def takes(dc: Any, ex: Exchange) -> bool:
    """Is `ex` (its location found) a request this module serves: proxy_pass the
    only thing to do, nothing to read from the client, plain http upstream?"""
    loc = ex.location
    if loc.proxy_pass is None:
        return False
    plan = plan_of(loc)
    if plan.inline is None:
        plan.inline = _location_takes(loc)
    if not plan.inline:
        return False
    req = ex.request
    # even "Content-Length: 0" is a body to pass (relay.proxy() sends its length)
    if req.content_length is not None or req.chunked or req.expect_continue:
        return False
    return refused_origin(ex) is None


def _location_takes(loc: Any) -> bool:
    """The location's part of `takes`, the same for all its requests."""
    pp = loc.proxy_pass
    if loc.return_ is not None or loc.stub_status or loc.metrics \
            or loc.websocket_status or getattr(loc, "try_files", None) is not None \
            or getattr(loc, "ssi", False) or loc.proxy_set_body is not None:
        return False
    return getattr(pp, "scheme", "http") in (None, "http") and pp.template is None


def start(dc: Any, ex: Exchange) -> bool:
    """Begin proxying `ex` (see the module docstring); True when it already ended."""
    try:
        target = resolve_target(ex, dc.runtime)
    except (LookupError, ValueError, KeyError):
        # relay.proxy() answers these (the log line, 502/500): let it, in a task
        return dc.hand_over(dc._respond_content(ex))  # type: ignore[no-any-return]
    ex.vars.proxy_host, ex.vars.proxy_port = target.proxy_host, target.proxy_port
    ex.body_read = True                 # nothing to read: what relay.proxy() does
    px = _proxying(dc, ex, target, None, False)
    peer = px.pick.get(time.time())
    if peer is None:
        return dc.hand_over(dc.respond_proxied(ex, _ready(px._no_live())))  # type: ignore[no-any-return]
    _try(dc, ex, px, peer)
    return False


async def _ready(result: ProxyResult) -> ProxyResult:
    return result


def _try(dc: Any, ex: Exchange, px: _Proxying, peer: Peer) -> None:
    """One try on `peer` (relay's `_Proxying._try`, for a request without a body):
    an idle keep-alive connection, or a new one connected in a task."""
    attempt, t0, up = px.begin_try(peer)
    if up is None:
        dc.hand_over(_connect(dc, ex, px, peer, attempt, t0))
        return
    _send(dc, ex, px, peer, up, attempt, t0)


async def _connect(dc: Any, ex: Exchange, px: _Proxying, peer: Peer,
                   attempt: UpstreamAttempt, t0: float) -> bool | None:
    """Only the connect runs in a task; the request goes back to callbacks (None),
    or, when the connect failed, relay's walk over peers goes on in this task."""
    px.cached = False
    try:
        up = await open_peer(peer.sockaddr, ex.location.proxy_connect_timeout, dc.loop)
    except (OSError, asyncio.TimeoutError) as exc:
        kind = px.connect_failed(exc, attempt, t0)
        return await dc.respond_proxied(ex, px.run_after(peer, kind))  # type: ignore[no-any-return]
    px.connected(up, attempt, t0)
    _send(dc, ex, px, peer, up, attempt, t0)
    return None


def _send(dc: Any, ex: Exchange, px: _Proxying, peer: Peer, up: UpstreamStream,
          attempt: UpstreamAttempt, t0: float) -> None:
    head = px.head
    up.write(head)
    px.request_sent = True
    attempt.bytes_sent = len(head)
    px.action = "reading response header from upstream"
    _Wait(dc, ex, px, peer, up, attempt, t0)


class _Wait:
    """The request head was sent on `up`: wait for the response head in callbacks."""

    __slots__ = ("dc", "ex", "px", "peer", "up", "attempt", "t0", "parser", "timer")

    def __init__(self, dc: Any, ex: Exchange, px: _Proxying, peer: Peer,
                 up: UpstreamStream, attempt: UpstreamAttempt, t0: float) -> None:
        self.dc, self.ex, self.px, self.peer, self.up = dc, ex, px, peer, up
        self.attempt, self.t0 = attempt, t0
        loc = ex.location
        self.parser = ResponseHeadParser(loc.proxy_buffer_size, strict=True)
        # proxy_read_timeout for the head: the connection's lazily moved timer
        # (timers.Deadline), not a loop timer per request
        self.timer: Deadline | None = None
        client = dc.stream
        if client.eof and not client.buffer:      # relay's PeerClosed, before waiting
            self._client_gone()
            return
        client.on_event = self._client_event
        up.on_event = self._upstream_event
        timeout = loc.proxy_read_timeout
        if timeout is not None:
            timer = self.timer = dc.head_wait()
            timer.callback = self._expired
            timer.set(timeout)
        if up.buffer or up.eof:
            self._upstream_event()

    def _stop(self) -> None:
        self.up.on_event = None
        self.dc.stream.on_event = None
        if self.timer is not None:
            self.timer.clear()
            self.timer = None

    def _upstream_event(self) -> None:
        up = self.up
        if not up.buffer and not up.eof:
            return
        dc = self.dc
        try:
            try:
                resp = self.px.feed_head(up, self.parser, self.attempt, self.t0)
                if resp is None:
                    return
                self._stop()
                result = response_now(self.px, self.peer, up, resp, self.attempt, self.t0)
            except _Next as failed:
                self._failed(failed)
                return
            if result is None:    # a body to relay as it comes
                dc.hand_over(dc.respond_proxied(self.ex, response_body(
                    self.px, self.peer, up, resp, self.attempt, self.t0)))
            elif result.redirect is not None or result.status:
                dc.hand_over(dc.respond_proxied(self.ex, _ready(result)))
            else:
                if result.tunnel is not None:
                    dc._tunnel(self.ex, result)
                else:
                    self.ex.keep_alive = result.keep_alive
                dc.request_done(self.ex)
        except Exception as exc:  # never let a connection kill the worker
            self._stop()
            up.close()
            dc._alert(exc)
            dc._close()

    def _failed(self, failed: _Next) -> None:
        """This try failed (relay's `_try` would raise _Next): the walk goes on in
        a task."""
        self._stop()
        self.up.close()
        dc = self.dc
        dc.hand_over(dc.respond_proxied(self.ex, self.px.run_after(self.peer, failed.kind)))

    def _expired(self) -> None:
        self.timer = None
        try:
            self.px.head_timed_out(self.attempt, self.t0)
        except _Next as failed:
            self._failed(failed)

    def _client_event(self) -> None:
        client = self.dc.stream
        if client.eof and not client.buffer:
            self._client_gone()

    def _client_gone(self) -> None:
        self._stop()
        self.px.client_gone(self.up, self.peer, self.attempt, self.t0)
        self.dc.client_gone(self.ex)
