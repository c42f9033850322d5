"""Listening sockets: bind them from plain parameters, hand them to the event loop.

The master binds every listening socket once (`bind_socket`) and passes the bound
sockets to workers, so a reload can keep them; a worker serves a pre-bound socket
with `start_serving`. Nothing here knows about the config model: the config layer
turns `listen` directives into `ListenSpec`s.

nginx facts mirrored here (checked against nginx 1.22.1):
- `listen 80` and `listen *:80` mean 0.0.0.0:80; `[::]` gets IPV6_V6ONLY on
  (nginx's `ipv6only=on` default); the backlog defaults to 511 on Linux.
- SO_REUSEADDR on every TCP listener; SO_REUSEPORT only when asked (`reuseport`).
- A stale unix socket file is NOT removed before bind: nginx fails with
  `bind() to unix:/path failed (98: Address already in use)` and removes the file
  only when it exits; `unlink_unix` is that exit-time cleanup. After bind the file
  is made world-writable (0666), as nginx does.
- Errors read exactly like nginx's: `bind() to 127.0.0.1:8080 failed (98: Address
  already in use)`. nginx's master retries bind() 5 times, 500 ms apart, on
  EADDRINUSE; that retry policy belongs to the caller (master), not here.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import os
import socket
import stat
from dataclasses import dataclass
from typing import Callable

from wsgate.errors import WsgateError

DEFAULT_BACKLOG = 511  # NGX_LISTEN_BACKLOG on Linux


class ListenError(WsgateError):
    """A listening socket could not be set up; str() is nginx's emerg message."""

    def __init__(self, message: str, errno_: int | None = None):
        self.message = message
        self.errno = errno_
        super().__init__(message)


@dataclass(frozen=True, slots=True)
class ListenSpec:
    """One listening address and its socket options (nginx `listen` parameters)."""

    host: str = "0.0.0.0"
    port: int = 80
    unix: str | None = None
    backlog: int = DEFAULT_BACKLOG
    reuseport: bool = False
    ipv6only: bool = True
    rcvbuf: int | None = None
    sndbuf: int | None = None

    @property
    def family(self) -> socket.AddressFamily:
        if self.unix is not None:
            return socket.AF_UNIX
        return socket.AF_INET6 if ":" in self.host else socket.AF_INET

    def display(self) -> str:
        """The address as nginx prints it: 127.0.0.1:80, [::1]:80, unix:/p."""
        if self.unix is not None:
            return f"unix:{self.unix}"
        if self.family == socket.AF_INET6:
            return f"[{self.host}]:{self.port}"
        return f"{self.host}:{self.port}"

    def sockaddr(self) -> str | tuple[str, int]:
        return self.unix if self.unix is not None else (self.host, self.port)


def parse_address(text: str, **options: object) -> ListenSpec:
    """`8080`, `*:8080`, `127.0.0.1:8080`, `[::1]:8080`, `unix:/path` -> ListenSpec.

    Only literal addresses (and `localhost`, `*`) are accepted; host names are the
    config layer's business. Raises ValueError on anything else.
    """
    if text.startswith("unix:"):
        return ListenSpec(unix=text[5:], **options)  # type: ignore[arg-type]
    host, port = _split_host_port(text)
    return ListenSpec(host=host, port=port, **options)  # type: ignore[arg-type]


def _split_host_port(text: str) -> tuple[str, int]:
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or not rest.startswith(":"):
            raise ValueError(f'invalid IPv6 address "{text}"')
        ipaddress.IPv6Address(host)
        return host, _port(rest[1:], text)
    if text.isdigit():
        return "0.0.0.0", _port(text, text)
    host, sep, port = text.rpartition(":")
    if not sep:
        host, port = text, "80"
    if host == "*":
        host = "0.0.0.0"
    elif host == "localhost":
        host = "127.0.0.1"
    ipaddress.IPv4Address(host)
    return host, _port(port, text)


def _port(text: str, whole: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ValueError(f'invalid port in "{whole}"')
    return int(text)


def bind_socket(spec: ListenSpec) -> socket.socket:
    """Create, configure, bind and listen() a socket for `spec` (non-blocking)."""
    try:
        sock = socket.socket(spec.family, socket.SOCK_STREAM)
    except OSError as exc:
        raise _error(f"socket() {spec.display()} failed", exc) from exc
    try:
        _configure(sock, spec)
        _bind(sock, spec)
        _listen(sock, spec)
    except BaseException:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


def _configure(sock: socket.socket, spec: ListenSpec) -> None:
    options: list[tuple[int, int, int, str]] = []
    if spec.unix is None:
        options.append((socket.SOL_SOCKET, socket.SO_REUSEADDR, 1, "SO_REUSEADDR"))
    if spec.reuseport:
        options.append((socket.SOL_SOCKET, socket.SO_REUSEPORT, 1, "SO_REUSEPORT"))
    if spec.family == socket.AF_INET6:
        options.append((socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, int(spec.ipv6only),
                        "IPV6_V6ONLY"))
    if spec.rcvbuf is not None:
        options.append((socket.SOL_SOCKET, socket.SO_RCVBUF, spec.rcvbuf, "SO_RCVBUF"))
    if spec.sndbuf is not None:
        options.append((socket.SOL_SOCKET, socket.SO_SNDBUF, spec.sndbuf, "SO_SNDBUF"))
    for level, name, value, label in options:
        try:
            sock.setsockopt(level, name, value)
        except OSError as exc:
            raise _error(f"setsockopt({label}) {spec.display()} failed", exc) from exc


def _bind(sock: socket.socket, spec: ListenSpec) -> None:
    try:
        sock.bind(spec.sockaddr())
    except OSError as exc:
        raise _error(f"bind() to {spec.display()} failed", exc) from exc
    if spec.unix is not None:
        try:
            os.chmod(spec.unix, 0o666)  # nginx: so that workers and clients can connect
        except OSError as exc:
            raise _error(f'chmod() "{spec.unix}" failed', exc) from exc


def _listen(sock: socket.socket, spec: ListenSpec) -> None:
    try:
        sock.listen(spec.backlog)
    except OSError as exc:
        raise _error(f"listen() to {spec.display()}, backlog {spec.backlog} failed",
                     exc) from exc


def _error(prefix: str, exc: OSError) -> ListenError:
    code = exc.errno or 0
    text = os.strerror(code) if code else str(exc)
    return ListenError(f"{prefix} ({code}: {text})", code or None)


def unlink_unix(spec: ListenSpec) -> None:
    """Remove a unix listener's socket file at exit (nginx does, not at startup)."""
    if spec.unix is None:
        return
    try:
        if stat.S_ISSOCK(os.lstat(spec.unix).st_mode):
            os.unlink(spec.unix)
    except FileNotFoundError:
        pass


def bound_address(sock: socket.socket) -> ListenSpec:
    """The ListenSpec describing where `sock` actually listens (port 0 resolved)."""
    name = sock.getsockname()
    if sock.family == socket.AF_UNIX:
        return ListenSpec(unix=name if isinstance(name, str) else name.decode())
    return ListenSpec(host=name[0], port=name[1])


def _nodelay_transports() -> tuple[type, ...]:
    """Transport classes known to set TCP_NODELAY themselves when created: uvloop's
    TCPTransport (TCPTransport.new) and asyncio's selector socket transport."""
    import importlib
    known: list[type] = []
    for module, name in (("asyncio.selector_events", "_SelectorSocketTransport"),
                         ("uvloop.loop", "TCPTransport")):
        try:
            cls = getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError):  # pragma: no cover - another version
            continue
        known.append(cls)
    return tuple(known)


_NODELAY_ALREADY = _nodelay_transports()


def set_nodelay(transport: asyncio.BaseTransport) -> None:
    """TCP_NODELAY on an accepted connection (small WebSocket frames must not wait
    for Nagle); a no-op on unix sockets. Both loops' TCP transports already do this
    (then nothing is done: the socket lookup and setsockopt measured ~1% of a
    handshake cycle); it stays explicit for any other transport, so the guarantee
    does not depend on a loop's internals."""
    if type(transport) in _NODELAY_ALREADY:
        return
    sock = transport.get_extra_info("socket")
    if sock is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOTCONN, errno.EBADF):
            raise


async def start_serving(sock: socket.socket,
                        factory: Callable[[], asyncio.BaseProtocol], *,
                        keep: bool = True,
                        backlog: int = DEFAULT_BACKLOG) -> asyncio.AbstractServer:
    """Serve a pre-bound listening socket with `factory` on the running loop.

    With `keep` (default) the server gets a duplicate of the fd, so closing the
    server (worker exit, reload) leaves the caller's socket open for the next
    generation. `backlog` must repeat the spec's: the loop calls listen() again.
    """
    loop = asyncio.get_running_loop()
    served = socket.socket(sock.family, sock.type, sock.proto,
                           fileno=os.dup(sock.fileno())) if keep else sock
    served.setblocking(False)
    return await loop.create_server(factory, sock=served, backlog=backlog)

