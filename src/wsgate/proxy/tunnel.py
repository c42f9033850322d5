"""The byte tunnel: one symmetric relay between a client and an upstream after a 101.

Theory of operation. The HTTP layer, once the upstream answered 101 to a client that
asked to upgrade, hands over both established transports and whatever bytes it
already read past each side's head (`open_tunnel`). The tunnel switches both
transports to a `_Leg` protocol each; a leg reads from its own transport and writes
to its peer's. Both legs are the same class, parameterised only by which side they
read (nginx's one `ngx_http_upstream_process_upgraded(from_upstream)`).

    client transport --(client leg: data_received)--> upstream.write
    upstream transport --(upstream leg: data_received)--> client.write

Hot path: `data_received` does `out.write(data)` (`out` is the peer's transport), an
int add and a compare; nothing else.
Bulk: once a direction has carried `splice.SPLICE_AFTER` bytes (1 MiB), the tunnel
tries to move it to os.splice (splice.py: socket -> pipe -> socket in the kernel, no
copy through Python); a leg then changes class, to `_SplicedLeg` (its transport no
longer reads) or, where splicing is impossible (TLS, the frame-aware tunnel), to
`_SteadyLeg`; neither asks again. Idle and chatty tunnels never reach it.
Flow control: when a transport's write buffer passes its high-water mark it calls
`pause_writing` on its leg, which pauses reading on the *other* transport (the
source of those bytes); `resume_writing` undoes it. Memory per tunnel stays below
two high-water marks plus a read chunk each way.

Ending:
- EOF from one side: with `half_close` the other side gets `write_eof()` (after its
  buffer drains) and the other direction keeps flowing; the tunnel closes when both
  directions saw EOF. Without `half_close` (nginx 1.22's upgraded-connection
  behaviour) or when the other side cannot half-close (TLS), both are closed after
  their buffers drain.
- reset or any error on one side: the other is aborted (buffered bytes dropped,
  as nginx drops its buffers when it finalizes on an error).
- `close()`: graceful, for shutdown; `abort()`: immediate.
The stats callback runs once both transports are gone.

Timeouts, mapped from nginx (ngx_http_upstream_process_upgraded, nginx 1.22):
- `read` = proxy_read_timeout. nginx arms it on the upstream read event and re-arms
  it on every event of the tunnel, in either direction, so it fires when the
  tunnel carried nothing for that long; it is off while nginx cannot read because a
  write is blocked. wsgate: fires when no byte was read from either side for
  `read` seconds while nothing sat in a write buffer.
- `client_send` = send_timeout (writes to the client) and `upstream_send` =
  proxy_send_timeout (writes to the upstream): fire when that side's write buffer
  holds bytes and none of them was flushed for that long.
All three are checked by the worker's coarse ticker (timers.py), never by a timer
re-armed per chunk; on expiry both connections are aborted.

Frame-aware mode. `open_tunnel(..., ws=WsOptions(...))` builds a `WsTunnel`
(wstunnel.py) instead: the same class with a leg that parses frame headers, used
only where a `websocket_*` directive needs it. The byte tunnel below is its base.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Literal

from wsgate.proxy import splice
from wsgate.proxy.flow import WriteStall, set_watermarks
from wsgate.proxy.timers import Ticker, ticker_for

if TYPE_CHECKING:
    from wsgate.proxy.wstunnel import WsOptions

Side = Literal["client", "upstream"]
Closer = Literal["client", "upstream", "proxy"]
How = Literal["eof", "reset", "error", "read_timeout", "send_timeout", "closed",
              "ping_timeout", "protocol_error", "too_big"]


@dataclass(frozen=True, slots=True)
class TunnelTimeouts:
    """Idle limits in seconds; None disables one. Defaults are nginx's 60 s."""

    read: float | None = 60.0           # proxy_read_timeout
    client_send: float | None = 60.0    # send_timeout
    upstream_send: float | None = 60.0  # proxy_send_timeout


@dataclass(frozen=True, slots=True)
class TunnelStats:
    """What the access log needs about a finished tunnel."""

    bytes_up: int          # client -> upstream, including bytes pipelined after the request
    bytes_down: int        # upstream -> client, including bytes after the 101 head
    started: float         # loop.time() when the tunnel opened
    duration: float        # seconds until both connections were gone
    closed_by: Closer      # who ended it first
    how: How
    error: str | None = None


class _Leg(asyncio.Protocol):
    """The protocol of one transport: reads it, writes what it reads to the peer."""

    # Slots, and no bound method kept per leg (`out.write` is looked up per chunk):
    # thousands of idle tunnels per worker.
    __slots__ = ("tunnel", "side", "transport", "peer", "out", "nread",
                 "pending", "eof", "lost", "stall")

    def __init__(self, tunnel: Tunnel, side: Side, transport: asyncio.Transport):
        self.tunnel = tunnel
        self.side = side
        self.transport = transport
        self.peer: _Leg = self
        self.out: asyncio.Transport = transport   # the peer's, once linked
        self.nread = 0       # bytes read from this side (hot-path counter)
        self.pending = 0     # bytes written to this side before the tunnel started
        self.eof = False
        self.lost = False
        self.stall: WriteStall | None = None  # made on the first buffered tick

    def link(self, peer: _Leg) -> None:
        self.peer = peer
        self.out = peer.transport

    #: Bytes read after which the tunnel considers splicing this direction (splice.py);
    #: the classes a leg switches to (_SplicedLeg, _SteadyLeg) never ask again.
    bulk_at = splice.SPLICE_AFTER

    def data_received(self, data: bytes) -> None:
        self.out.write(data)
        self.nread += len(data)
        if self.nread > self.bulk_at:
            self.tunnel._bulk(self)

    def eof_received(self) -> bool:
        if not self.eof:  # uvloop may report EOF again after resume_reading()
            self.tunnel._on_eof(self)
        # keep the write side open; the tunnel decides when to close (not on TLS,
        # which cannot half-close: there True would only make asyncio warn)
        get = getattr(self.transport, "get_extra_info", None)
        return get is None or get("sslcontext") is None

    def pause_writing(self) -> None:
        if type(self.peer) is not _SplicedLeg:   # a spliced source is not the loop's
            self.peer.transport.pause_reading()

    def resume_writing(self) -> None:
        if type(self.peer) is not _SplicedLeg:
            self.peer.transport.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self.tunnel._on_lost(self, exc)

    def written(self) -> int:
        """Bytes ever handed to this side's transport."""
        return self.pending + self.peer.nread


class _SteadyLeg(_Leg):
    """A leg whose direction stays with the transports (it cannot be spliced)."""

    __slots__ = ()
    bulk_at = 1 << 62


class _SplicedLeg(_Leg):
    """A leg whose direction is spliced (splice.py): its transport does not read."""

    __slots__ = ()
    bulk_at = 1 << 62


class Tunnel:
    """A running tunnel; see the module docstring. Create it with `open_tunnel`."""

    # Slots: thousands of idle tunnels per worker; per-tunnel bytes matter.
    __slots__ = ("client", "upstream", "timeouts", "half_close", "on_end",
                 "ticker", "started", "stats", "_waiters", "_closed_by", "_how",
                 "_error", "_closing", "_seen_reads", "_active_at", "info")

    def __init__(self, client: asyncio.Transport, upstream: asyncio.Transport, *,
                 timeouts: TunnelTimeouts, half_close: bool,
                 on_end: Callable[[TunnelStats], None] | None, ticker: Ticker):
        self.ticker = ticker
        self.client = self._make_leg("client", client)
        self.upstream = self._make_leg("upstream", upstream)
        self.client.link(self.upstream)
        self.upstream.link(self.client)
        self.timeouts = timeouts
        self.half_close = half_close
        self.on_end = on_end
        self.started = self.loop.time()
        self.stats: TunnelStats | None = None  # set when the tunnel has ended
        self._waiters: list[asyncio.Future[TunnelStats]] | None = None
        self._closed_by: Closer | None = None
        self._how: How | None = None
        self._error: str | None = None
        self._closing = False
        self._seen_reads = -1
        self._active_at = self.started
        self.info: Any = None  # the engine's: route and drain settings (wsfeatures)

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return self.ticker.loop

    def _make_leg(self, side: Side, transport: asyncio.Transport) -> _Leg:
        return _Leg(self, side, transport)

    # -- start -------------------------------------------------------------------

    def _start(self, client_pending: bytes, upstream_pending: bytes,
               high_water: int | None, eofs: tuple[bool, bool]) -> None:
        for leg in (self.client, self.upstream):
            set_watermarks(leg.transport, high_water)
            leg.transport.resume_reading()
            leg.transport.set_protocol(leg)
        # Pending bytes go first and in order: nothing else can run before them.
        self._relay_pending(client_pending, upstream_pending)
        for leg in (self.client, self.upstream):
            self._apply_backpressure(leg)
        self.ticker.add(self)
        for leg, eof in zip((self.client, self.upstream), eofs):
            if eof and not leg.eof:
                self._on_eof(leg)

    def _relay_pending(self, client_pending: bytes, upstream_pending: bytes) -> None:
        self._write_pending(self.upstream, client_pending)
        self._write_pending(self.client, upstream_pending)

    @staticmethod
    def _write_pending(leg: _Leg, data: bytes) -> None:
        if data:
            leg.pending = len(data)
            leg.transport.write(data)

    @staticmethod
    def _apply_backpressure(leg: _Leg) -> None:
        # The transport may have been over its high-water mark before the switch,
        # in which case pause_writing went to the HTTP layer's protocol, not to us.
        high = leg.transport.get_write_buffer_limits()[1]
        if leg.transport.get_write_buffer_size() > high:
            leg.pause_writing()

    # -- ending ------------------------------------------------------------------

    def _record(self, closer: Closer, how: How, error: str | None = None) -> None:
        if self._how is None:
            self._closed_by, self._how, self._error = closer, how, error

    def _on_eof(self, leg: _Leg) -> None:
        leg.eof = True
        self._record(leg.side, "eof")
        peer = leg.peer
        if peer.eof:
            self.close_transports()
        elif self.half_close and peer.transport.can_write_eof():
            peer.transport.write_eof()
        else:
            self.close_transports()

    def _on_lost(self, leg: _Leg, exc: Exception | None) -> None:
        leg.lost = True
        splice.release(self)
        if exc is not None:
            how: How = "reset" if isinstance(exc, ConnectionError) else "error"
            self._record(leg.side, how, f"{type(exc).__name__}: {exc}")
            leg.peer.transport.abort()
        else:
            self._record(leg.side, "eof")
            self.close_transports()
        if leg.peer.lost:
            self._finish()

    def _finish(self) -> None:
        self.ticker.discard(self)
        splice.release(self)
        stats = self._make_stats()
        self.stats = stats
        for waiter in self._waiters or ():
            if not waiter.done():
                waiter.set_result(stats)
        if self.on_end is not None:
            self.on_end(stats)

    def _make_stats(self) -> TunnelStats:
        return TunnelStats(
            bytes_up=self.upstream.written(), bytes_down=self.client.written(),
            started=self.started, duration=self.loop.time() - self.started,
            closed_by=self._closed_by or "proxy", how=self._how or "closed",
            error=self._error)

    async def wait(self) -> TunnelStats:
        """Wait until both connections are gone; returns the tunnel's stats."""
        if self.stats is not None:
            return self.stats
        return await self.ended()

    def ended(self) -> asyncio.Future[TunnelStats]:
        """A future that gets the tunnel's stats once both connections are gone
        (made on demand: an idle tunnel has none)."""
        waiter: asyncio.Future[TunnelStats] = self.loop.create_future()
        if self.stats is not None:
            waiter.set_result(self.stats)
        else:
            self._waiters = [*(self._waiters or ()), waiter]
        return waiter

    def close_transports(self) -> None:
        """Close both sides once their write buffers (and splice pipes) drain."""
        self._closing = True
        if not splice.drain_then(self, self._close_legs):
            self._close_legs()

    def _close_legs(self) -> None:
        for leg in (self.client, self.upstream):
            leg.transport.close()

    def close(self) -> None:
        """Graceful end requested by the proxy (shutdown, reload drain)."""
        self._record("proxy", "closed")
        self.close_transports()

    def close_politely(self, code: int = 1001, reason: str = "server going away",
                       timeout: float | None = None) -> None:
        """Shutdown/reload drain. A byte tunnel cannot speak WebSocket: it closes
        gracefully (`close()`); the frame-aware tunnel sends Close frames first."""
        self.close()

    def abort(self, how: How = "closed") -> None:
        """Immediate end: both connections dropped, buffered bytes discarded."""
        self._record("proxy", how)
        self._abort_legs()

    def _abort_legs(self) -> None:
        self._closing = True
        splice.release(self)
        for leg in (self.client, self.upstream):
            leg.transport.abort()

    # -- bulk directions (splice.py) ---------------------------------------------

    def _bulk(self, leg: _Leg) -> None:
        """`leg`'s direction has carried splice.SPLICE_AFTER bytes: splice it if it
        can be (then its transport stops reading), else never ask again."""
        switched = splice.start(self, leg)
        if switched is not None:
            leg.__class__ = _SplicedLeg if switched else _SteadyLeg

    def _splice_failed(self, leg: _Leg, exc: OSError) -> None:
        """A spliced socket failed: a reset, handled as the transports' would be."""
        how: How = "reset" if isinstance(exc, ConnectionError) else "error"
        self._record(leg.side, how, f"{type(exc).__name__}: {exc}")
        self._abort_legs()

    # -- timeouts (called by the ticker) -----------------------------------------

    def tick(self, now: float) -> None:
        if self._send_stalled(now):
            self.abort("send_timeout")
        elif self._read_idle(now):
            self.abort("read_timeout")

    def _send_stalled(self, now: float) -> bool:
        limits = ((self.client, self.timeouts.client_send),
                  (self.upstream, self.timeouts.upstream_send))
        for leg, limit in limits:
            if limit is None or leg.lost:
                continue
            buffered = self._buffered(leg)
            if leg.stall is None:
                if not buffered:
                    continue
                leg.stall = WriteStall()
            if leg.stall.stalled_for(now, leg.written(), buffered) >= limit:
                return True
        return False

    def _buffered(self, leg: _Leg) -> int:
        """Bytes written toward `leg` and not yet flushed (a splice's pipe too)."""
        return leg.transport.get_write_buffer_size() + splice.pending(self, leg)

    def _read_idle(self, now: float) -> bool:
        limit = self.timeouts.read
        if limit is None or self._closing:
            return False
        reads = self.client.nread + self.upstream.nread
        buffered = self._buffered(self.client) + self._buffered(self.upstream)
        if reads != self._seen_reads or buffered:
            self._seen_reads, self._active_at = reads, now
            return False
        return now - self._active_at >= limit


def open_tunnel(client: asyncio.Transport, upstream: asyncio.Transport, *,
                client_pending: bytes = b"", upstream_pending: bytes = b"",
                timeouts: TunnelTimeouts = TunnelTimeouts(), half_close: bool = True,
                on_end: Callable[[TunnelStats], None] | None = None,
                client_eof: bool = False, upstream_eof: bool = False,
                high_water: int | None = None,
                ticker: Ticker | None = None, ws: WsOptions | None = None) -> Tunnel:
    """Start relaying between two established transports; returns the Tunnel.

    `client_pending` are bytes the client sent after its upgrade request head (sent
    to the upstream first); `upstream_pending` bytes after the upstream's 101 head
    (sent to the client first). `client_eof`/`upstream_eof` say that side's EOF
    was already read (its transport must have been kept open: eof_received returned
    True); it is relayed after the pending bytes. Both transports must be open; must
    be called on the loop that owns them. `ws` selects the frame-aware tunnel
    (a `WsTunnel`, see wstunnel.py) with those WebSocket options.
    """
    ticker = ticker if ticker is not None else ticker_for(asyncio.get_running_loop())
    tunnel: Tunnel
    if ws is None:
        tunnel = Tunnel(client, upstream, timeouts=timeouts, half_close=half_close,
                        on_end=on_end, ticker=ticker)
    else:
        from wsgate.proxy.wstunnel import WsTunnel  # wstunnel builds on this module
        tunnel = WsTunnel(client, upstream, timeouts=timeouts, half_close=half_close,
                          on_end=on_end, ticker=ticker, options=ws)
    tunnel._start(client_pending, upstream_pending, high_water,
                  (client_eof, upstream_eof))
    return tunnel
