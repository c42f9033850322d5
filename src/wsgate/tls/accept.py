"""Serving a `listen ... ssl` socket: accept, peek one byte, then TLS or plain.

nginx (ngx_http_ssl_handshake) peeks the first byte of a connection on an ssl port:
0x16 (a TLS handshake record) or a set high bit (an SSLv2 hello) starts the
handshake; anything else is read as plain HTTP and answered, once its head is read,
with `400 The plain HTTP request was sent to HTTPS port` (status 497 internally).

asyncio cannot hand bytes it has already read to a TLS layer, so the byte is peeked
before any transport exists: an accept loop takes the socket, waits until it is
readable (bounded by client_header_timeout, as nginx's post-accept timer), looks at
one byte with MSG_PEEK, and only then gives the socket to the loop with
`connect_accepted_socket(..., ssl=context)` or without TLS. The protocol sees
`transport.get_extra_info("ssl_object")`: None on an ssl listener means plain HTTP.

Cost, compared with the loop's native accept for plain listeners: a Python-level
accept per connection, one readiness wait, one recv(MSG_PEEK) syscall and a task
until the handshake is done. A failed or stalled handshake closes that one socket;
it is logged at [info] as nginx does ("SSL_do_handshake() failed ... while SSL
handshaking"), never raised.
"""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
import time
from collections.abc import Callable
from typing import Any

__all__ = ["TlsServer", "start_tls_serving", "is_tls_start"]

_TLS_HANDSHAKE = 0x16


def is_tls_start(first: int) -> bool:
    """ngx_http_ssl_handshake's test of the first byte."""
    return first == _TLS_HANDSHAKE or bool(first & 0x80)


class TlsServer:
    """An AbstractServer-like handle of one ssl listener (close / wait_closed)."""

    def __init__(self, sock: socket.socket, factory: Callable[[], asyncio.BaseProtocol],
                 get_context: Callable[[], ssl.SSLContext | None],
                 get_timeout: Callable[[], float],
                 log: Callable[[str, str], None] | None = None) -> None:
        self.sock = sock
        self.factory = factory
        self.get_context = get_context
        self.get_timeout = get_timeout
        self.log = log or (lambda level, text: None)
        self.pending: set[asyncio.Task[None]] = set()
        self.task: asyncio.Task[None] | None = None

    def start(self) -> "TlsServer":
        self.task = asyncio.get_running_loop().create_task(self._accept_loop())
        return self

    def is_serving(self) -> bool:
        return self.task is not None and not self.task.done()

    def close(self) -> None:
        """Stop accepting and drop handshakes in progress (established connections
        belong to their protocols)."""
        if self.task is not None:
            self.task.cancel()
        for task in list(self.pending):
            task.cancel()
        self.sock.close()

    async def wait_closed(self) -> None:
        if self.task is not None:
            await asyncio.gather(self.task, return_exceptions=True)

    async def _accept_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                conn, _ = await loop.sock_accept(self.sock)
            except asyncio.CancelledError:
                raise
            except OSError as exc:          # EMFILE and the like: nginx logs, goes on
                self.log("crit", f"accept() failed ({exc.errno}: {exc.strerror})")
                await asyncio.sleep(0.1)
                continue
            task = loop.create_task(self._start(conn))
            self.pending.add(task)
            task.add_done_callback(self.pending.discard)

    async def _start(self, conn: socket.socket) -> None:
        deadline = time.monotonic() + self.get_timeout()
        client = _client(conn)
        try:
            first = await _peek(conn, self.get_timeout())
            if first is None:
                conn.close()
                return
            await self._handover(conn, first, deadline)
        except asyncio.CancelledError:
            conn.close()
            raise
        except (OSError, ssl.SSLError, asyncio.TimeoutError, EOFError) as exc:
            if _handshake_timed_out(exc, deadline):
                exc = asyncio.TimeoutError()     # the loop's ssl_handshake_timeout fired
            self.log("info", _handshake_words(exc, client))
            conn.close()

    async def _handover(self, conn: socket.socket, first: int, deadline: float) -> None:
        loop = asyncio.get_running_loop()
        context = self.get_context() if is_tls_start(first) else None
        if context is None:
            await loop.connect_accepted_socket(self.factory, conn)
            return
        remaining = max(0.001, deadline - time.monotonic())
        await loop.connect_accepted_socket(self.factory, conn, ssl=context,
                                           ssl_handshake_timeout=remaining)


async def _peek(conn: socket.socket, timeout: float) -> int | None:
    """The first byte without consuming it; None on EOF, reset or timeout."""
    loop = asyncio.get_running_loop()
    conn.setblocking(False)
    deadline = time.monotonic() + timeout
    while True:                  # more than one turn only after a spurious wake-up
        try:
            data = conn.recv(1, socket.MSG_PEEK)
            return data[0] if data else None
        except (BlockingIOError, InterruptedError):
            pass
        except OSError:
            return None
        if not await _readable(loop, conn.fileno(), deadline - time.monotonic()):
            return None


async def _readable(loop: asyncio.AbstractEventLoop, fd: int, timeout: float) -> bool:
    if timeout <= 0:
        return False
    ready: asyncio.Future[None] = loop.create_future()
    def wake() -> None:
        if not ready.done():
            ready.set_result(None)
    loop.add_reader(fd, wake)
    try:
        await asyncio.wait_for(ready, timeout)
        return True
    except asyncio.TimeoutError:
        return False
    finally:
        loop.remove_reader(fd)


# asyncio's and uvloop's words when ssl_handshake_timeout fires (ConnectionAbortedError)
_HANDSHAKE_TIMEOUT = "SSL handshake is taking longer than"


def _handshake_timed_out(exc: BaseException, deadline: float) -> bool:
    """The loop's handshake timer aborted the connection. Its timer may fire a hair
    before `deadline` by our clock, so its message counts as much as the time."""
    if not isinstance(exc, ConnectionAbortedError):
        return False
    return _HANDSHAKE_TIMEOUT in str(exc) or time.monotonic() >= deadline


def _client(conn: socket.socket) -> str:
    try:
        peer = conn.getpeername()
    except OSError:
        return "unknown"
    return str(peer[0]) if isinstance(peer, tuple) else "unix:"


def _handshake_words(exc: BaseException, client: str) -> str:
    if isinstance(exc, ssl.SSLError):
        what = f"SSL_do_handshake() failed (SSL: {exc.reason or exc})"
    elif isinstance(exc, (asyncio.TimeoutError, TimeoutError)):
        what = "client timed out (110: Connection timed out)"
    else:
        what = f"SSL_do_handshake() failed ({exc})"
    return f"{what} while SSL handshaking, client: {client}"


async def start_tls_serving(sock: socket.socket, factory: Callable[[], Any],
                            get_context: Callable[[], ssl.SSLContext | None],
                            get_timeout: Callable[[], float],
                            log: Callable[[str, str], None] | None = None, *,
                            keep: bool = True) -> TlsServer:
    """Serve a bound, listening socket with the peek-then-TLS accept loop.

    `get_context` is called per connection (None: serve it without TLS), so a
    reload that swaps contexts applies to the next handshake. With `keep` (as
    wsgate.proxy.listen.start_serving) the server uses a duplicate of the fd and
    closing it leaves `sock` open for the next generation.
    """
    served = socket.socket(sock.family, sock.type, sock.proto,
                           fileno=os.dup(sock.fileno())) if keep else sock
    served.setblocking(False)
    return TlsServer(served, factory, get_context, get_timeout, log).start()
