"""Flow control: write-buffer watermarks, pause/resume of reading, drain, stalls.

Back-pressure in wsgate is the transports' own: a transport calls its protocol's
`pause_writing()` when its write buffer passes the high-water mark and
`resume_writing()` when it drains below the low one. Whoever feeds that transport
stops reading from its source in between, so memory per connection is bounded by
the high-water mark plus one read chunk.

- `set_watermarks` applies a high-water mark (low = high / 4, asyncio's ratio).
- `FlowControl` is the awaitable form for coroutine-style relays (request bodies):
  `await flow.drain()` until the transport can take more.
- `WriteStall` detects a write that makes no progress (send_timeout /
  proxy_send_timeout) from numbers sampled by the coarse ticker, at no per-chunk cost.
"""

from __future__ import annotations

import asyncio

DEFAULT_HIGH_WATER = 64 * 1024  # asyncio's and uvloop's default


def set_watermarks(transport: asyncio.WriteTransport, high: int | None) -> None:
    """Set `transport`'s high-water mark (None keeps the loop's default)."""
    if high is not None:
        transport.set_write_buffer_limits(high=high, low=high // 4)


class FlowControl:
    """Pause/resume bookkeeping for one transport, with an awaitable drain.

    The owning protocol forwards its `pause_writing`/`resume_writing` callbacks here.
    """

    __slots__ = ("_transport", "_writable", "read_paused")

    def __init__(self, transport: asyncio.Transport):
        self._transport = transport
        self._writable = asyncio.Event()
        self._writable.set()
        self.read_paused = False

    @property
    def write_paused(self) -> bool:
        return not self._writable.is_set()

    async def drain(self) -> None:
        """Return once the transport's write buffer is below its low-water mark."""
        if not self._writable.is_set():
            await self._writable.wait()

    def pause_reading(self) -> None:
        if not self.read_paused:
            self.read_paused = True
            self._transport.pause_reading()

    def resume_reading(self) -> None:
        if self.read_paused:
            self.read_paused = False
            self._transport.resume_reading()

    def pause_writing(self) -> None:
        self._writable.clear()

    def resume_writing(self) -> None:
        self._writable.set()

    def connection_lost(self) -> None:
        # Wake drainers; their next write finds the transport closing.
        self._writable.set()


class WriteStall:
    """Tracks whether a transport's write buffer has stopped draining.

    `written` is the total ever written to the transport, `buffered` its current
    write-buffer size; bytes flushed to the kernel = written - buffered. A write
    is stalled while bytes are buffered and that flushed count does not move.
    """

    __slots__ = ("_since", "_flushed")

    def __init__(self) -> None:
        self._since: float | None = None
        self._flushed = -1

    def stalled_for(self, now: float, written: int, buffered: int) -> float:
        """Seconds the write has made no progress (0.0 if idle or progressing)."""
        if buffered == 0:
            self._since = None
            return 0.0
        flushed = written - buffered
        if self._since is None or flushed != self._flushed:
            self._since, self._flushed = now, flushed
            return 0.0
        return now - self._since
