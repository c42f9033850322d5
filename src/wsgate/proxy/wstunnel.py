"""The frame-aware tunnel: the byte tunnel plus frame boundaries, proxy-side pings,
frame/message limits, polite Close, and per-session WebSocket statistics.

Used only where a `websocket_*` directive needs it (`WsOptions.from_location`);
otherwise the plain byte tunnel (tunnel.py) runs. `WsTunnel` is a `Tunnel` whose two
legs are `_FrameLeg`s: one class for both directions, parameterised by the side it
reads (its FrameParser expects masked frames from the client, unmasked from the
upstream), as in the byte tunnel.

Theory of operation. A leg feeds every chunk it reads to its parser, which only
counts through payloads (nothing is unmasked or copied but control frames):

- Hot path (`slow` is False): the chunk's events are data frames only; the leg adds
  the finished messages to its counters and writes the chunk as is (no copy).
- Slow path (`_process`): a control frame, a frame to inject, bytes to drop or hold.
  The leg cuts the chunk at stream offsets: it removes the Pong answering its own
  Ping, swallows Close replies during a proxy-initiated close, and inserts queued
  frames at the first frame boundary. It holds back an incomplete frame header or
  control frame (<= 139 bytes) until its next read, so that a Pong split across
  reads can still be removed whole and a header found bad when it completes was
  not half forwarded.

Frames the proxy originates go into the stream *toward* a side, i.e. into the
output of the leg reading the other side, and only at that stream's frame boundary
(`inject`); toward the client unmasked, toward the upstream masked with a fresh key.

Close state per leg: `discard` means a Close was written toward the leg's peer
(forwarded or injected); from then on the leg forwards nothing more, but keeps
parsing its own side's stream to see that side's Close.

    proxy-initiated close (_begin_close):  Close toward each side -> swallow each
        side's reply (or its EOF) -> close that side's TCP; `close_timeout` after
        the start, whatever remains is aborted (checked by the coarse ticker).
    protocol violation / over a limit on side V: bytes before the bad frame are
        forwarded; Close 1002/1007/1009 toward V, 1001 toward the other side; V's
        stream is no longer parsed, so V gets a FIN after its Close.
    ping timeout of side D: Close 1001 toward the other side, D aborted.
    peer-initiated close: Close frames are relayed; the peers end TCP as usual.

Session statistics: `ws_messages_*` count finished data messages; `ws_bytes_*` are
their payload bytes (as on the wire, i.e. compressed when permessage-deflate is
on); in = client -> upstream. The first Close decides `ws_close_code`,
`ws_close_reason` and `ws_closed_by`; a tunnel that ended without any Close reports
1006 with the TCP ending (`eof`, `reset`, `read_timeout` ...) as the reason. The
engine copies them into the access log's VarContext after `await tunnel.wait()`:
`for name, value in stats.session_vars().items(): setattr(vars, name, value)`.

Cost (measured with 50 connections x 2000 echoed 64-byte messages, proxy CPU from
/proc): about 1.25x the byte tunnel's CPU per message, with pings and limits on.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Callable

from wsgate.errors import WebSocketError
from wsgate.proxy.timers import Ticker
from wsgate.proxy.tunnel import (Closer, How, Side, Tunnel, TunnelStats, TunnelTimeouts,
                                 _Leg)
from wsgate.websocket.control import close_frame, parse_close, ping_frame
from wsgate.websocket.frames import (ControlFrame, Event, FrameError, FrameParser,
                                     MessageDone, Opcode)

__all__ = ["WsOptions", "WsTunnel", "WsTunnelStats", "WS_FIELDS", "drain",
           "PING_PREFIX"]

PING_PREFIX = b"wsg"  # the proxy's own Pings carry b"wsg" + a 5-byte counter
GOING_AWAY = 1001

# The access-log variables (VarContext attributes) a WsTunnelStats fills.
WS_FIELDS = ("ws_messages_in", "ws_messages_out", "ws_bytes_in", "ws_bytes_out",
             "ws_close_code", "ws_close_reason", "ws_closed_by", "ws_duration")


@dataclass(frozen=True, slots=True)
class WsOptions:
    """The frame-aware tunnel's settings; None/0 limits mean unlimited."""

    ping_interval: float | None = None       # websocket_ping_interval
    ping_timeout: float | None = 30.0        # websocket_ping_timeout
    max_message_client: int | None = None    # websocket_max_message_size ... client
    max_message_upstream: int | None = None  # websocket_max_message_size ... upstream
    max_frame_size: int | None = None        # websocket_max_frame_size (both ways)
    close_timeout: float = 5.0               # websocket_close_timeout

    @classmethod
    def from_location(cls, loc: Any, *, session_vars: bool = False) -> WsOptions | None:
        """Options for a location, or None when the byte tunnel suffices.

        Frame-aware when pings or limits are configured, or when the caller says the
        access log uses `$ws_*` variables (`session_vars`). `websocket on` alone only
        writes the upgrade headers (config/websocket.py): the byte tunnel suffices."""
        size, side = getattr(loc, "websocket_max_message_size", (0, "both"))
        interval = getattr(loc, "websocket_ping_interval", 0.0) or None
        frame = getattr(loc, "websocket_max_frame_size", 0) or None
        wanted = interval or size or frame or session_vars
        if not wanted:
            return None
        return cls(ping_interval=interval,
                   ping_timeout=getattr(loc, "websocket_ping_timeout", 30.0) or None,
                   max_message_client=(size or None) if side != "upstream" else None,
                   max_message_upstream=(size or None) if side != "client" else None,
                   max_frame_size=frame,
                   close_timeout=getattr(loc, "websocket_close_timeout", 5.0))


@dataclass(frozen=True, slots=True)
class WsTunnelStats(TunnelStats):
    """TunnelStats plus the WebSocket session; field names match VarContext's."""

    ws_messages_in: int = 0
    ws_messages_out: int = 0
    ws_bytes_in: int = 0
    ws_bytes_out: int = 0
    ws_close_code: int | None = None
    ws_close_reason: str = ""
    ws_closed_by: Closer | None = None
    ws_duration: float = 0.0
    error_side: Side | None = None   # whose fault a protocol_error/too_big/ping_timeout was

    def session_vars(self) -> dict[str, object]:
        """{VarContext attribute: value}; the engine does setattr for each."""
        return {name: getattr(self, name) for name in WS_FIELDS}


class _FrameLeg(_Leg):
    """One direction of a frame-aware tunnel; see the module docstring."""

    __slots__ = ("ws", "parser", "forwarded", "messages", "payload", "held", "queue", "expect",
                 "ping_at", "seen", "active_at", "discard", "dead", "got_close",
                 "eof_sent", "slow")

    peer: _FrameLeg  # linked by Tunnel to the other _FrameLeg

    def __init__(self, tunnel: WsTunnel, side: Side, transport: asyncio.Transport,
                 parser: FrameParser):
        super().__init__(tunnel, side, transport)
        self.ws = tunnel
        self.parser = parser
        self.forwarded = 0          # bytes written toward the peer (relayed + injected)
        self.messages = 0           # finished data messages read from this side
        self.payload = 0            # their payload bytes
        self.held = b""             # read, parsed, not yet forwarded (a split control frame)
        self.queue: list[tuple[bytes, bool]] = []  # (frame, is_close) waiting for a boundary
        self.expect: bytes | None = None  # payload of our unanswered Ping toward this side
        self.ping_at = 0.0
        self.seen = 0               # nread when the ticker last looked
        self.active_at = tunnel.loop.time()
        self.discard = False        # a Close went toward the peer: forward nothing more
        self.dead = False           # this side's stream can no longer be parsed
        self.got_close = False      # this side sent a Close
        self.eof_sent = False
        self.slow = False

    # -- reading -----------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        self.nread += len(data)
        if self.dead:
            return
        base = self.parser.offset
        try:
            events = self.parser.feed(data)
        except FrameError as err:
            self._process(data, base, err.events, err.offset)
            self.ws._violation(self, err.close_code, err.message)
            return
        if self.slow or self.parser.hold_from is not None:
            self._process(data, base, events, None)
            return
        messages = payload = 0
        for event in events:
            if event.__class__ is MessageDone:
                messages += 1
                payload += event.size
            elif event.__class__ is ControlFrame:
                self._process(data, base, events, None)
                return
        self.messages += messages
        self.payload += payload
        self.forwarded += len(data)
        self.out.write(data)

    def _process(self, data: bytes, base: int, events: list[Event],
                 limit: int | None) -> None:
        """The slow path: forward [held + data] up to `limit` (or all), minus what the
        proxy removes, plus what it injects at boundaries."""
        cut = _Cut(self, self.held + data if self.held else data, base - len(self.held))
        self.held = b""
        violation: tuple[int, str] | None = None
        for event in events:
            if isinstance(event, MessageDone):
                if not self.discard:
                    self.messages += 1
                    self.payload += event.size
                continue
            cut.boundary(event.start_offset)
            if isinstance(event, ControlFrame):
                violation = self._control(event, cut)
                if violation is not None:
                    break
        if violation is not None:
            stop = cut.pos                     # forwarded up to the bad frame
        elif limit is not None:
            stop = limit                       # where the parser found the bad frame
        else:
            stop = self._hold_or_flush(cut, base + len(data))
        cut.emit_to(stop)
        cut.write()
        self._update_slow()
        if violation is not None:
            self.ws._violation(self, *violation)
        elif self.ws.ws_closing:
            self.ws._check_done_all()

    def _hold_or_flush(self, cut: _Cut, stop: int) -> int:
        """Where forwarding stops at the end of a chunk: before an incomplete header
        or control frame, so that what was forwarded always ends at a frame boundary
        or inside a data payload (a Pong split across reads can still be removed, and
        a frame found bad when its header completes was not half forwarded);
        injected frames go in at a boundary."""
        hold = self.parser.hold_from
        if hold is not None:
            cut.boundary(hold)
            if not self.discard:
                self.held = cut.buf[hold - cut.start:]
            return hold
        if self.parser.at_boundary:
            cut.boundary(stop)
        return stop

    def _control(self, frame: ControlFrame, cut: _Cut) -> tuple[int, str] | None:
        """Decide a control frame's fate: forward (Ping, others' Pongs, a first
        Close), remove (our Pong, a Close while the proxy closes), or violation."""
        opcode = frame.header.opcode
        if opcode is Opcode.PONG:
            if self.expect is not None and frame.payload == self.expect:
                self.expect = None
                cut.drop(frame.start_offset, frame.end_offset)
            return None
        if opcode is not Opcode.CLOSE:
            return None
        try:
            code, reason = parse_close(frame.payload)
        except WebSocketError as err:
            cut.emit_to(frame.start_offset)
            return err.close_code, err.message
        self.got_close = True
        self.ws._close_seen(self.side, code, reason)
        if self.ws.ws_closing or self.discard:
            cut.drop(frame.start_offset, frame.end_offset)  # a reply to the proxy's Close
        else:
            cut.emit_to(frame.end_offset)
            self.discard = True  # the peer has its Close: nothing more goes there
        return None

    # -- injecting frames toward the peer ------------------------------------------

    def inject(self, frame: bytes, is_close: bool) -> None:
        """Send a frame of the proxy's own toward this leg's peer, now if the stream
        toward it is at a frame boundary, else at the next one."""
        if self.discard:
            return  # the peer already has a Close: nothing may follow it
        self.queue.append((frame, is_close))
        if self.dead or self.held or self.parser.at_boundary:
            for piece in self.take_queue():
                self.forwarded += len(piece)
                self.out.write(piece)
        self._update_slow()

    def take_queue(self) -> list[bytes]:
        frames = []
        for frame, is_close in self.queue:
            frames.append(frame)
            if is_close:
                self.discard = True
                break
        self.queue.clear()
        return frames

    def written(self) -> int:
        """Bytes ever handed to this side's transport (send_timeout, stats): what the
        peer leg forwarded and injected, not what it read."""
        return self.peer.forwarded

    def _update_slow(self) -> None:
        self.slow = bool(self.queue or self.held or self.discard
                         or self.expect is not None)


class _Cut:
    """Output assembly for one slow-path chunk: `buf` holds stream bytes from
    offset `start`; `pos` is the first offset not yet forwarded or dropped."""

    __slots__ = ("leg", "buf", "start", "pos", "out")

    def __init__(self, leg: _FrameLeg, buf: bytes, start: int):
        self.leg = leg
        self.buf = buf
        self.start = start
        self.pos = start
        self.out: list[bytes] = []

    def emit_to(self, offset: int) -> None:
        if offset > self.pos:
            if not self.leg.discard:
                self.out.append(self.buf[self.pos - self.start:offset - self.start])
            self.pos = offset

    def drop(self, begin: int, end: int) -> None:
        self.emit_to(begin)
        self.pos = end

    def boundary(self, offset: int) -> None:
        """A frame starts (or the stream rests) at `offset`: queued frames go here,
        unless bytes past it were already forwarded (a header split across reads)."""
        if self.leg.queue and not self.leg.discard and offset >= self.pos:
            self.emit_to(offset)
            self.out.extend(self.leg.take_queue())

    def write(self) -> None:
        write = self.leg.out.write
        for piece in self.out:
            self.leg.forwarded += len(piece)
            write(piece)


class WsTunnel(Tunnel):
    """A frame-aware tunnel; create it with `open_tunnel(..., ws=WsOptions(...))`."""

    __slots__ = ("options", "ws_closing", "deadline", "close_info", "_ping_seq",
                 "error_side")

    client: _FrameLeg
    upstream: _FrameLeg

    def __init__(self, client: asyncio.Transport, upstream: asyncio.Transport, *,
                 timeouts: TunnelTimeouts, half_close: bool,
                 on_end: Callable[[TunnelStats], None] | None, ticker: Ticker,
                 options: WsOptions):
        self.options = options
        self.ws_closing = False
        self.deadline = 0.0
        self.close_info: tuple[int, str, Closer] | None = None
        self._ping_seq = 0
        self.error_side: Side | None = None
        super().__init__(client, upstream, timeouts=timeouts, half_close=half_close,
                         on_end=on_end, ticker=ticker)

    def _make_leg(self, side: Side, transport: asyncio.Transport) -> _Leg:
        opts = self.options
        limit = opts.max_message_client if side == "client" else opts.max_message_upstream
        parser = FrameParser(client_side=side == "client",
                             max_frame_size=opts.max_frame_size, max_message_size=limit)
        return _FrameLeg(self, side, transport, parser)

    def _relay_pending(self, client_pending: bytes, upstream_pending: bytes) -> None:
        # Bytes read past the heads are frames too: they go through the parsers.
        for leg, data in ((self.client, client_pending), (self.upstream, upstream_pending)):
            if data and not leg.dead:
                leg.data_received(data)

    # -- closing -----------------------------------------------------------------

    def close_politely(self, code: int = GOING_AWAY, reason: str = "server going away",
                       timeout: float | None = None) -> None:
        """Close both sides with a WebSocket closing handshake: Close `code` toward
        each, wait up to `timeout` (default websocket_close_timeout) for the replies,
        then close TCP."""
        if self.ws_closing or self._closing or self.stats is not None:
            return
        self._begin_close({"client": (code, reason), "upstream": (code, reason)},
                          "closed", code, reason, timeout)

    def _begin_close(self, codes: dict[Side, tuple[int, str]], how: How, code: int,
                     reason: str, timeout: float | None = None) -> None:
        self._record("proxy", how, None if how == "closed" else reason)  # error: to log
        if self.close_info is None:
            self.close_info = (code, reason, "proxy")
        self.ws_closing = True
        wait = self.options.close_timeout if timeout is None else timeout
        self.deadline = self.loop.time() + wait
        for side, (side_code, side_reason) in codes.items():
            writer = self.upstream if side == "client" else self.client
            writer.inject(close_frame(side_code, side_reason, mask=side == "upstream"), True)
        self._check_done_all()

    def _violation(self, leg: _FrameLeg, code: int, reason: str) -> None:
        """`leg`'s side broke the protocol or a limit; its stream is no longer parsed."""
        leg.dead = True
        leg.held = b""
        leg._update_slow()
        if self.ws_closing:
            self._check_done_all()
            return
        how: How = "too_big" if code == 1009 else "protocol_error"
        self.error_side = leg.side
        self._begin_close({leg.side: (code, reason), leg.peer.side: (GOING_AWAY, "going away")},
                          how, code, reason)

    def _ping_timeout(self, leg: _FrameLeg) -> None:
        self.error_side = leg.side
        self._begin_close({leg.peer.side: (GOING_AWAY, "going away")},
                          "ping_timeout", GOING_AWAY, "ping timeout")
        leg.dead = True
        leg.transport.abort()

    def _close_seen(self, side: Side, code: int | None, reason: str) -> None:
        if self.close_info is None:
            self.close_info = (1005 if code is None else code, reason, side)

    def _check_done_all(self) -> None:
        for leg in (self.client, self.upstream):
            self._check_done(leg)

    def _check_done(self, leg: _FrameLeg) -> None:
        """Close `leg`'s TCP once its closing handshake is over (or cannot happen)."""
        if not self.ws_closing or leg.lost or not leg.peer.discard:
            return  # the Close toward this side has not been written yet
        if leg.eof or leg.got_close:
            leg.transport.close()
        elif leg.dead and not leg.eof_sent:
            # Its reply cannot be parsed: a FIN after the Close lets it finish.
            leg.eof_sent = True
            if leg.transport.can_write_eof():
                leg.transport.write_eof()
            else:
                leg.transport.close()

    def _on_eof(self, leg: _Leg) -> None:
        if not self.ws_closing:
            super()._on_eof(leg)
            return
        leg.eof = True
        self._check_done(leg)  # type: ignore[arg-type]

    def _on_lost(self, leg: _Leg, exc: Exception | None) -> None:
        if not self.ws_closing:
            super()._on_lost(leg, exc)
            return
        leg.lost = True
        if leg.peer.lost:
            self._finish()
        elif leg.queue:  # type: ignore[attr-defined]
            leg.peer.transport.close()  # the Close toward the peer can never go now

    # -- the ticker ----------------------------------------------------------------

    def tick(self, now: float) -> None:
        if self.ws_closing:
            if now >= self.deadline:
                for leg in (self.client, self.upstream):
                    if not leg.lost:
                        leg.transport.abort()
            return
        super().tick(now)
        interval = self.options.ping_interval
        if interval is None or self._closing:
            return
        for leg in (self.client, self.upstream):
            if not self.ws_closing:
                self._check_ping(leg, now, interval)

    def _check_ping(self, leg: _FrameLeg, now: float, interval: float) -> None:
        if leg.nread != leg.seen:
            leg.seen, leg.active_at = leg.nread, now
        if leg.expect is not None:
            limit = self.options.ping_timeout
            if limit is not None and now - leg.ping_at >= limit:
                self._ping_timeout(leg)
            return
        if now - leg.active_at >= interval:
            self._ping_seq += 1
            payload = PING_PREFIX + self._ping_seq.to_bytes(5, "big")
            leg.expect, leg.ping_at = payload, now
            leg.peer.inject(ping_frame(payload, mask=leg.side == "upstream"), False)
            leg._update_slow()

    # -- statistics ----------------------------------------------------------------

    def _make_stats(self) -> TunnelStats:
        base = super()._make_stats()
        code, reason, closer = self.close_info or (1006, base.how, base.closed_by)
        fields = {f.name: getattr(base, f.name) for f in dataclasses.fields(base)}
        return WsTunnelStats(
            **fields, ws_messages_in=self.client.messages,
            ws_messages_out=self.upstream.messages, ws_bytes_in=self.client.payload,
            ws_bytes_out=self.upstream.payload, ws_close_code=code,
            ws_close_reason=reason, ws_closed_by=closer, ws_duration=base.duration,
            error_side=self.error_side)


async def drain(tunnels: Iterable[Tunnel], spread: float,
                close_timeout: float | None = None, *, code: int = GOING_AWAY,
                reason: str = "server going away") -> list[TunnelStats]:
    """Close `tunnels` politely, their starts spread evenly over `spread` seconds
    (websocket_drain_spread) so that clients do not all reconnect at once; returns
    when all have ended. Byte tunnels are just closed at their turn."""
    todo = list(tunnels)
    if not todo:
        return []
    loop = asyncio.get_running_loop()
    step = spread / len(todo)
    handles = [loop.call_later(i * step, t.close_politely, code, reason, close_timeout)
               for i, t in enumerate(todo)]
    try:
        return list(await asyncio.gather(*(t.wait() for t in todo)))
    finally:
        for handle in handles:
            handle.cancel()
