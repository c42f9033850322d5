"""Listening sockets: IPv4, [::1], unix sockets, nginx's error wording, serving."""

from __future__ import annotations

import asyncio
import os
import pathlib
import socket
import stat

import pytest

from wsgate.errors import WsgateError
from wsgate.proxy import loop as loops
from wsgate.proxy.listen import (DEFAULT_BACKLOG, ListenError, ListenSpec, bind_socket,
                                 bound_address, parse_address, start_serving,
                                 unlink_unix)

KINDS = loops.available()


def has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.parametrize("text, expected", [
    ("8080", ListenSpec(host="0.0.0.0", port=8080)),
    ("*:8080", ListenSpec(host="0.0.0.0", port=8080)),
    ("127.0.0.1:81", ListenSpec(host="127.0.0.1", port=81)),
    ("127.0.0.1", ListenSpec(host="127.0.0.1", port=80)),
    ("localhost:82", ListenSpec(host="127.0.0.1", port=82)),
    ("[::1]:8080", ListenSpec(host="::1", port=8080)),
    ("[::]:443", ListenSpec(host="::", port=443)),
    ("unix:/run/x.sock", ListenSpec(unix="/run/x.sock")),
])
def test_parse_address(text: str, expected: ListenSpec) -> None:
    assert parse_address(text) == expected


@pytest.mark.parametrize("text", ["127.0.0.1:0x", "[::1]8080", "1.2.3.4:70000",
                                  "example.org:80", "[zz]:80"])
def test_parse_address_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_address(text)


@pytest.mark.parametrize("spec, shown", [
    (ListenSpec(), "0.0.0.0:80"),
    (ListenSpec(host="::1", port=8080), "[::1]:8080"),
    (ListenSpec(unix="/tmp/s"), "unix:/tmp/s"),
])
def test_display_is_nginx_spelling(spec: ListenSpec, shown: str) -> None:
    assert spec.display() == shown


async def _echo_once(spec: ListenSpec) -> bytes:
    sock = bind_socket(spec)
    try:
        address = bound_address(sock)
        server = await start_serving(sock, _Echo)
        if address.unix is not None:
            reader, writer = await asyncio.open_unix_connection(address.unix)
        else:
            reader, writer = await asyncio.open_connection(address.host, address.port)
        writer.write(b"ping")
        answer = await reader.readexactly(4)
        writer.close()
        server.close()
        await server.wait_closed()
        # keep=True: the server had its own fd; the caller's socket still listens.
        assert sock.fileno() != -1
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN) == 1
        return answer
    finally:
        sock.close()


class _Echo(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        nodelay = transport.get_extra_info("socket")
        if nodelay.family != socket.AF_UNIX:
            assert nodelay.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)  # type: ignore[attr-defined]


def run(kind: str, coro: object) -> object:
    with asyncio.Runner(loop_factory=lambda: loops.new_event_loop(kind)) as runner:  # type: ignore[arg-type]
        return runner.run(asyncio.wait_for(coro, 20))  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", KINDS)
def test_ipv4_listener_serves(kind: str) -> None:
    assert run(kind, _echo_once(ListenSpec(host="127.0.0.1", port=0))) == b"ping"


@pytest.mark.skipif(not has_ipv6_loopback(), reason="no IPv6 loopback here")
@pytest.mark.parametrize("kind", KINDS)
def test_ipv6_listener_serves(kind: str) -> None:
    assert run(kind, _echo_once(ListenSpec(host="::1", port=0))) == b"ping"


@pytest.mark.parametrize("kind", KINDS)
def test_unix_listener_serves_and_is_world_writable(kind: str, tmp_path: pathlib.Path) -> None:
    path = str(tmp_path / "w.sock")
    assert run(kind, _echo_once(ListenSpec(unix=path))) == b"ping"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o666


def test_socket_options_are_applied() -> None:
    sock = bind_socket(ListenSpec(host="127.0.0.1", port=0, reuseport=True,
                                  rcvbuf=65536, sndbuf=65536))
    with sock:
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR) == 1
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT) == 1
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) >= 65536
        assert sock.getblocking() is False


def test_reuseport_lets_two_sockets_share_a_port() -> None:
    first = bind_socket(ListenSpec(host="127.0.0.1", port=0, reuseport=True))
    with first:
        port = first.getsockname()[1]
        with bind_socket(ListenSpec(host="127.0.0.1", port=port, reuseport=True)):
            pass


def test_address_in_use_reads_like_nginx() -> None:
    taken = bind_socket(ListenSpec(host="127.0.0.1", port=0))
    with taken:
        port = taken.getsockname()[1]
        with pytest.raises(ListenError) as caught:
            bind_socket(ListenSpec(host="127.0.0.1", port=port))
    assert str(caught.value) == (
        f"bind() to 127.0.0.1:{port} failed (98: Address already in use)")
    assert caught.value.errno == 98
    assert isinstance(caught.value, WsgateError)


def test_stale_unix_socket_file_is_not_removed_like_nginx(tmp_path: pathlib.Path) -> None:
    path = str(tmp_path / "stale.sock")
    with socket.socket(socket.AF_UNIX) as stale:
        stale.bind(path)  # bound, never listening, then closed: a stale file
    with pytest.raises(ListenError) as caught:
        bind_socket(ListenSpec(unix=path))
    assert str(caught.value) == f"bind() to unix:{path} failed (98: Address already in use)"
    unlink_unix(ListenSpec(unix=path))  # what nginx does at exit
    assert not os.path.exists(path)
    bind_socket(ListenSpec(unix=path)).close()


def test_default_backlog_is_nginx_linux_default() -> None:
    assert DEFAULT_BACKLOG == 511
