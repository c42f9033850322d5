"""Differential: the tunnel's end-of-life rules against real nginx 1.22.

The same raw scenario (an upgrade request, a backend answering 101, then traffic)
runs through nginx (`proxy_read_timeout 1s`) and through the wsgate tunnel in its
nginx mode (`half_close=False`, read timeout 1 s; the harness is test_tunnel.py run
as a script). Each scenario returns what the backend and the client observed, and
both proxies must produce the same observations.
"""

from __future__ import annotations

import os
import pathlib
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from helpers.nginx import NGINX_BIN, NginxServer
from helpers.ports import free_port

pytestmark = [pytest.mark.nginx,
              pytest.mark.skipif(not os.path.exists(NGINX_BIN), reason="no nginx")]

HARNESS = pathlib.Path(__file__).with_name("test_tunnel.py")
UPGRADE = (b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
           b"Connection: Upgrade\r\n\r\n")
CONF = """events {}
http { server { listen 127.0.0.1:{{port}};
  location / { proxy_pass http://127.0.0.1:{{backend}}; proxy_http_version 1.1;
               proxy_set_header Upgrade $http_upgrade;
               proxy_set_header Connection upgrade;
               proxy_read_timeout 1s; send_timeout 10s; } } }"""

Backend = Callable[[socket.socket, list[object]], None]


def read_head(sock: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        assert chunk, "closed inside the head"
        data += chunk
    return data


class RawBackend:
    """One connection: reads the head, answers 101, then runs `behaviour`."""

    def __init__(self, behaviour: Backend):
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.seen: list[object] = []
        self.thread = threading.Thread(target=self._run, args=(behaviour,), daemon=True)
        self.thread.start()

    def _run(self, behaviour: Backend) -> None:
        self.listener.settimeout(10)
        conn, _ = self.listener.accept()
        with conn:
            conn.settimeout(10)
            read_head(conn)
            conn.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                         b"Connection: upgrade\r\n\r\n")
            behaviour(conn, self.seen)

    def close(self) -> list[object]:
        self.thread.join(15)
        self.listener.close()
        return self.seen


def through_nginx(tmp_path: pathlib.Path, backend: int) -> Iterator[int]:
    port = free_port()
    server = NginxServer(CONF, tmp_path / "nginx",
                         params={"port": port, "backend": backend}).start()
    try:
        yield port
    finally:
        server.stop()


def through_wsgate(tmp_path: pathlib.Path, backend: int) -> Iterator[int]:
    child = subprocess.Popen([sys.executable, str(HARNESS), "uvloop", str(backend),
                              "heads", "nginx", "read=1"],
                             stdout=subprocess.PIPE, text=True)
    try:
        yield int(child.stdout.readline())  # type: ignore[union-attr]
    finally:
        child.kill()
        child.wait(5)
        child.stdout.close()  # type: ignore[union-attr]


PROXIES = {"nginx": through_nginx, "wsgate": through_wsgate}


def run_scenario(proxy: str, tmp_path: pathlib.Path, behaviour: Backend,
                 client: Callable[[socket.socket], list[object]]) -> list[object]:
    backend = RawBackend(behaviour)
    ports = PROXIES[proxy](tmp_path, backend.port)
    port = next(ports)
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(UPGRADE)
            assert read_head(sock).startswith(b"HTTP/1.1 101")
            observed = client(sock)
        return observed + backend.close()
    finally:
        ports.close()


def _backend_records(conn: socket.socket, seen: list[object]) -> None:
    while True:
        data = conn.recv(4096)
        seen.append(data)
        if not data:
            break


def _backend_replies_late(conn: socket.socket, seen: list[object]) -> None:
    _backend_records(conn, seen)
    try:
        conn.sendall(b"late reply")  # after the client's FIN
    except OSError:
        pass


def _client_pings_then_idles(sock: socket.socket) -> list[object]:
    for _ in range(8):  # 2.4 s of client-only traffic, longer than the 1 s timeout
        sock.sendall(b"ping")
        time.sleep(0.3)
    idle_from = time.monotonic()
    assert sock.recv(100) == b""
    idle = time.monotonic() - idle_from
    return ["closed after idle", 0.5 <= idle <= 5]


def _client_half_closes(sock: socket.socket) -> list[object]:
    sock.sendall(b"question")
    sock.shutdown(socket.SHUT_WR)
    received = b""
    while chunk := sock.recv(100):
        received += chunk
    return ["client got", received]


@pytest.mark.parametrize("proxy", PROXIES)
def test_client_traffic_keeps_the_upgraded_connection_alive(
        proxy: str, tmp_path: pathlib.Path) -> None:
    observed = run_scenario(proxy, tmp_path, _backend_records, _client_pings_then_idles)
    pings = b"".join(x for x in observed if isinstance(x, bytes))
    assert observed[:2] == ["closed after idle", True]
    assert pings == b"ping" * 8


@pytest.mark.parametrize("proxy", PROXIES)
def test_client_eof_ends_the_whole_tunnel_in_nginx_mode(
        proxy: str, tmp_path: pathlib.Path) -> None:
    observed = run_scenario(proxy, tmp_path, _backend_replies_late, _client_half_closes)
    assert observed[:2] == ["client got", b""]  # the late reply is not relayed
    assert b"".join(x for x in observed[2:] if isinstance(x, bytes)) == b"question"
