"""A buffered asyncio.Protocol with awaitable reads, for the request/response phase.

Both the client connection and the upstream connection use it while HTTP messages
are exchanged: `data_received` appends to a bounded buffer (reading pauses above
`limit`), coroutines take bytes with `read()`. When a connection becomes a tunnel,
`detach()` returns the bytes read but not consumed, which the tunnel relays first,
so nothing read past a head is lost or reordered. EOF is kept as a flag and the
transport stays open (`eof_received` returns True) so half-close can be relayed.
"""

from __future__ import annotations

import asyncio
from typing import Callable

__all__ = ["Stream", "ReadTimeout", "StreamClosed"]


class ReadTimeout(Exception):
    """No bytes arrived within the read timeout."""


class StreamClosed(Exception):
    """The connection was lost (reset or closed by us) while waiting."""


class PeerClosed(Exception):
    """The watched peer (the client, while we wait for the upstream's head) reached
    EOF with nothing left to read: nginx's broken-connection check (recv() == 0)."""


class Stream(asyncio.Protocol):
    """Bytes in through `read()`, out through `write()`/`drain()`."""

    def __init__(self, limit: int = 65536) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.eof = False
        self.lost = False
        self.limit = limit
        self._waiter: asyncio.Future[None] | None = None
        # the loop, looked up once: asyncio.get_running_loop() makes a getpid()
        # system call on every use in Python 3.11 (6% of a proxied request)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._drain: asyncio.Future[None] | None = None
        self._paused = False
        self._write_paused = False
        self.on_lost: object = None
        # A stream whose current wait our EOF interrupts (see PeerClosed).
        self.eof_watcher: "Stream | None" = None
        # Called after every read, EOF and loss while set: the callback mode of a
        # connection (downstream.py, inline.py), where no coroutine waits.
        self.on_event: Callable[[], None] | None = None

    # -- protocol callbacks --------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer
        buffer += data
        if len(buffer) > self.limit and not self._paused and self.transport:
            self._paused = True
            self.transport.pause_reading()
        waiter = self._waiter          # _wake(), inline: called for every read
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        if self.on_event is not None:
            self.on_event()

    def eof_received(self) -> bool:
        self.eof = True
        self._wake()
        self._tell_watcher()
        if self.on_event is not None:
            self.on_event()
        # TLS cannot half-close: True would only make asyncio warn (it closes anyway)
        get = getattr(self.transport, "get_extra_info", None)
        return get is None or get("sslcontext") is None

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self.eof = True
        self._wake()
        if self._drain is not None and not self._drain.done():
            self._drain.set_result(None)
        if callable(self.on_lost):
            self.on_lost()
        self._tell_watcher()
        if self.on_event is not None:
            self.on_event()

    def _tell_watcher(self) -> None:
        # Pipelined bytes still buffered mean the client is not gone (nginx peeks).
        watcher = self.eof_watcher
        if watcher is not None and not self.buffer:
            waiter = watcher._waiter
            if waiter is not None and not waiter.done():
                waiter.set_exception(PeerClosed())

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        if self._drain is not None and not self._drain.done():
            self._drain.set_result(None)

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    # -- reading -------------------------------------------------------------------

    async def wait_data(self, timeout: float | None) -> None:
        """Wait until the buffer is non-empty or EOF; ReadTimeout after `timeout`.

        One loop timer on the waiter itself, not asyncio.wait_for: wait_for wraps
        the wait in extra callbacks and exceptions on every read, which measured as
        a visible share of a proxied request's CPU."""
        if self.buffer or self.eof:
            return
        if timeout is not None and timeout <= 0:
            raise ReadTimeout()
        self._resume()
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        waiter = self._waiter = loop.create_future()
        timer = loop.call_later(timeout, _expire, waiter) if timeout is not None else None
        try:
            await waiter
        finally:
            self._waiter = None
            if timer is not None:
                timer.cancel()

    async def read(self, timeout: float | None) -> bytes:
        """Everything buffered (b"" at EOF)."""
        await self.wait_data(timeout)
        return self.take()

    def take(self) -> bytes:
        data = bytes(self.buffer)
        self.buffer.clear()
        self._resume()
        return data

    def unread(self, data: bytes) -> None:
        """Put bytes back in front (leftovers of a parser)."""
        if data:
            self.buffer[0:0] = data

    def _resume(self) -> None:
        if self._paused and self.transport and len(self.buffer) <= self.limit:
            self._paused = False
            self.transport.resume_reading()

    # -- writing -------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.lost and data:
            self.transport.write(data)

    async def drain(self, timeout: float | None = None) -> None:
        """Wait until the write buffer is below its high-water mark."""
        if not self._write_paused or self.lost:
            return
        if timeout is not None and timeout <= 0:
            raise ReadTimeout()
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        drained = self._drain = loop.create_future()
        timer = loop.call_later(timeout, _expire, drained) if timeout is not None else None
        try:
            await drained
        finally:
            self._drain = None
            if timer is not None:
                timer.cancel()

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def detach(self) -> bytes:
        """Hand the transport over (to a tunnel): returns the unconsumed bytes."""
        data = bytes(self.buffer)
        self.buffer.clear()
        self._paused = False
        return data


def _expire(waiter: "asyncio.Future[None]") -> None:
    """The timer of a wait: the waiter fails with ReadTimeout unless already woken."""
    if not waiter.done():
        waiter.set_exception(ReadTimeout())
