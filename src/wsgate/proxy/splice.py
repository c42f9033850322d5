"""Zero-copy relay for the bulk directions of a plain byte tunnel: os.splice.

Why: once a tunnel carries bulk data, nearly all of its CPU is the kernel copying
every byte into Python and back out (recv + send). splice(2) moves the bytes
socket -> pipe -> socket inside the kernel instead.

When: only in the plain byte tunnel (tunnel.py, not the frame-aware one), only with
plain sockets on both sides (TCP or unix, no TLS), and only for a direction that has
already carried `SPLICE_AFTER` bytes: an idle or chatty tunnel never pays for it
(each spliced direction costs a pipe and two duplicated descriptors, created at the
switch and closed when the tunnel closes).

How: the event loop refuses readiness callbacks on a descriptor that a transport
owns, so a switching direction duplicates its two sockets (the same open sockets
under new numbers), pauses the source transport's reading, and drives splice from
readiness callbacks on the duplicates:

    readable(src): splice src -> pipe, then pipe -> dst
    dst full (EAGAIN): stop reading src, wait for writable(dst), flush the pipe,
    read again (flow control: at most one pipe of bytes in flight per direction)

The other direction keeps using the transports: each socket then has two users (the
loop reads it and we write it, or the reverse), and bytes stay in order because a
direction switches only while its destination transport's write buffer is empty.

Counting: the source leg's `nread` counts the bytes spliced in, exactly as
data_received counts, so byte counts ($bytes_sent, tunnel stats, the status page)
and the ticker's read timeout see the same numbers; bytes sitting in the pipe count
as the destination's write buffer (send_timeout, and no read timeout while a write
is blocked, as for a transport's buffer).

Ending: a read of 0 bytes is EOF, handed to the tunnel's usual EOF handling (half
close: `write_eof` on the destination transport, whose buffer is empty). An error
on either socket is handled like a reset: both connections are aborted. Because
the duplicates keep the sockets open, the tunnel ends its splices before it closes
its transports: gracefully (`drain_then`) once every pipe has been flushed, at once
(`release`) on abort, on a lost connection, or when the tunnel ends.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    from wsgate.proxy.tunnel import Tunnel, _Leg

__all__ = ["SPLICE_AFTER", "available", "start", "release", "drain_then", "pending"]

SPLICE_AFTER = 1 << 20      # bytes a direction carries through the transports first
PIPE_SIZE = 1 << 20         # asked of the kernel (F_SETPIPE_SZ); 64 KiB if refused
ROUNDS = 8                  # pipe fills per readiness callback: other connections' turn
_FLAGS = getattr(os, "SPLICE_F_MOVE", 1) | getattr(os, "SPLICE_F_NONBLOCK", 2)

# The splices of each tunnel that has any (none for the vast majority of tunnels).
_active: dict[Tunnel, list[_Splice]] = {}


def available() -> bool:
    return hasattr(os, "splice")


def start(tunnel: Tunnel, src: _Leg) -> bool | None:
    """Switch `src`'s direction (src -> its peer) to splice. True: switched; False:
    this direction can never be (TLS, frame-aware tunnel, ending, no splice);
    None: not now (the destination transport still holds bytes)."""
    dst = src.peer
    if dst.transport.get_write_buffer_size() and not dst.transport.is_closing():
        return None
    if not _eligible(tunnel, src, dst):
        return False
    splice = _Splice(tunnel, src, dst)
    try:
        splice.open()
    except OSError:
        splice.close_fds()
        return False
    _active.setdefault(tunnel, []).append(splice)
    src.transport.pause_reading()
    splice.want(read=True)
    return True


def _eligible(tunnel: Tunnel, src: _Leg, dst: _Leg) -> bool:
    from wsgate.proxy.tunnel import Tunnel   # the class itself: not a subclass
    if type(tunnel) is not Tunnel or not available() or tunnel._closing:
        return False
    if src.eof:                 # nothing more to read (dst's own EOF does not matter)
        return False
    for leg in (src, dst):
        transport = leg.transport
        if leg.lost or transport.is_closing():
            return False
        if transport.get_extra_info("sslcontext") is not None \
                or transport.get_extra_info("ssl_object") is not None:
            return False        # TLS: the bytes on the socket are not the payload
        if transport.get_extra_info("socket") is None:
            return False
    return True


def pending(tunnel: Tunnel, dst: _Leg) -> int:
    """Bytes spliced in and not yet written toward `dst` (its extra write buffer)."""
    return sum(s.in_pipe for s in _active.get(tunnel, ()) if s.dst is dst)


def release(tunnel: Tunnel) -> None:
    """End every splice of `tunnel` now (abort, lost connection, tunnel ended):
    bytes still in a pipe are dropped, as a transport's buffer is on abort."""
    for splice in _active.pop(tunnel, ()):
        splice.close_fds()


def drain_then(tunnel: Tunnel, then: Callable[[], None]) -> bool:
    """Graceful close: stop reading, flush every pipe, release, then call `then`.
    False when `tunnel` has no splice (call `then` yourself)."""
    splices = _active.get(tunnel)
    if not splices:
        return False
    waiting = [s for s in splices if not s.closed]

    def flushed() -> None:
        if all(s.in_pipe == 0 or s.closed for s in waiting):
            release(tunnel)
            then()

    for splice in waiting:
        splice.on_flushed = flushed
        splice.stop_reading()
        if splice.in_pipe:
            splice.want(write=True)
    flushed()
    return True


class _Splice:
    """One direction, src socket -> pipe -> dst socket; see the module docstring."""

    __slots__ = ("tunnel", "src", "dst", "loop", "src_fd", "dst_fd", "pipe_r", "pipe_w",
                 "room", "in_pipe", "reading", "writing", "done_reading", "closed",
                 "on_flushed")

    def __init__(self, tunnel: Tunnel, src: _Leg, dst: _Leg) -> None:
        self.tunnel, self.src, self.dst = tunnel, src, dst
        self.loop = tunnel.loop
        self.src_fd = self.dst_fd = self.pipe_r = self.pipe_w = -1
        self.room = 65536
        self.in_pipe = 0
        self.reading = self.writing = False     # callbacks registered
        self.done_reading = False                 # EOF seen, or closing
        self.closed = False
        self.on_flushed: Callable[[], None] | None = None

    def open(self) -> None:
        self.src_fd = os.dup(_fileno(self.src))
        self.dst_fd = os.dup(_fileno(self.dst))
        self.pipe_r, self.pipe_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            self.room = fcntl.fcntl(self.pipe_w, fcntl.F_SETPIPE_SZ, PIPE_SIZE)
        except OSError:
            self.room = fcntl.fcntl(self.pipe_w, fcntl.F_GETPIPE_SZ)

    def close_fds(self) -> None:
        self.closed = True
        self.want(read=False, write=False)
        for fd in (self.src_fd, self.dst_fd, self.pipe_r, self.pipe_w):
            if fd >= 0:
                os.close(fd)
        self.src_fd = self.dst_fd = self.pipe_r = self.pipe_w = -1
        self.in_pipe = 0

    def want(self, *, read: bool | None = None, write: bool | None = None) -> None:
        if read is not None and read != self.reading and not (read and self.closed):
            self.reading = read
            if read:
                self.loop.add_reader(self.src_fd, self._pump)
            else:
                self.loop.remove_reader(self.src_fd)
        if write is not None and write != self.writing and not (write and self.closed):
            self.writing = write
            if write:
                self.loop.add_writer(self.dst_fd, self._pump)
            else:
                self.loop.remove_writer(self.dst_fd)

    def stop_reading(self) -> None:
        self.done_reading = True
        self.want(read=False)

    # -- moving bytes --------------------------------------------------------------

    def _pump(self) -> None:
        for _ in range(ROUNDS):
            if self.closed:
                return
            if self.in_pipe and not self._flush():
                self.want(read=False, write=True)   # dst full: wait, read nothing more
                return
            self.want(write=False)
            if self.done_reading:
                if self.on_flushed is not None:
                    self.on_flushed()
                return
            got = self._fill()
            if got is None:                         # nothing to read now
                self.want(read=True)
                return
            if got == 0:
                self._eof()
                return
        # Rounds used up with bytes maybe still in the pipe: come back when dst can
        # take them (the reader stays registered too).
        if self.in_pipe and not self.closed:
            self.want(write=True)

    def _fill(self) -> int | None:
        """src -> pipe: bytes moved, 0 at EOF, None when there is nothing to read."""
        try:
            n = os.splice(self.src_fd, self.pipe_w, self.room, flags=_FLAGS)
        except BlockingIOError:
            return None
        except OSError as exc:
            self._failed(self.src, exc)
            return None
        self.in_pipe += n
        self.src.nread += n
        return n

    def _flush(self) -> bool:
        """pipe -> dst until the pipe is empty (True) or dst is full (False)."""
        while self.in_pipe:
            try:
                n = os.splice(self.pipe_r, self.dst_fd, self.in_pipe, flags=_FLAGS)
            except BlockingIOError:
                return False
            except OSError as exc:
                self._failed(self.dst, exc)
                return False
            self.in_pipe -= n
        return True

    def _eof(self) -> None:
        """src sent EOF (the pipe is empty: reading waits for it to drain)."""
        self.stop_reading()
        self.tunnel._on_eof(self.src)

    def _failed(self, leg: _Leg, exc: OSError) -> None:
        self.tunnel._splice_failed(leg, exc)


def _fileno(leg: _Leg) -> int:
    sock = leg.transport.get_extra_info("socket")
    return int(sock.fileno())
