"""Timeouts on the request path still fire as nginx's after the hot-path changes
(one loop timer per wait instead of asyncio.wait_for, asyncio.timeout on connect,
the response head sent together with the first body bytes):

- proxy_read_timeout while waiting for the response head: 504, not before the
  timeout;
- proxy_read_timeout in the middle of a body: the head and the bytes so far reach
  the client at once (not held back until the body ends), then the connection is
  closed;
- keepalive_timeout closes an idle client connection, not before the timeout;
- proxy_connect_timeout against a peer whose accept queue is full: 504.

Upstreams are small threads in this process on 127.0.0.1; every loop is bounded.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest

from helpers.client import RawClient
from helpers.fixtures import procs, wsgate_server  # noqa: F401
from helpers.ports import free_port

pytestmark = pytest.mark.timeout(60)

CONF = """
events { worker_connections 256; }
http {
    keepalive_timeout 1s;
    server {
        listen 127.0.0.1:{{port}};
        location / {
            proxy_pass http://127.0.0.1:{{backend}};
            proxy_http_version 1.1;
            proxy_read_timeout 1s;
            proxy_connect_timeout 1s;
        }
        location /nb/ {
            proxy_pass http://127.0.0.1:{{backend}};
            proxy_http_version 1.1;
            proxy_read_timeout 1s;
            proxy_buffering off;
        }
        location = /r { return 200 "r\\n"; }
    }
}
"""

GET = b"GET /x HTTP/1.1\r\nHost: x\r\n\r\n"


class _Stalling:
    """Accepts connections, reads a request head, answers `reply`, then stays silent."""

    def __init__(self, reply: bytes) -> None:
        self.reply = reply
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.stop = threading.Event()
        self.conns: list[socket.socket] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        deadline = time.monotonic() + 50
        while not self.stop.is_set() and time.monotonic() < deadline:
            try:
                conn, _ = self.sock.accept()
            except socket.timeout:
                continue
            self.conns.append(conn)
            conn.settimeout(5)
            data = b""
            while b"\r\n\r\n" not in data and len(data) < 65536:
                piece = conn.recv(65536)
                if not piece:
                    break
                data += piece
            if self.reply:
                conn.sendall(self.reply)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)
        for conn in self.conns:
            conn.close()
        self.sock.close()


@pytest.fixture
def stalling() -> Iterator[list[_Stalling]]:
    made: list[_Stalling] = []
    yield made
    for s in made:
        s.close()


def _start(wsgate_server, stalling: list[_Stalling], reply: bytes):  # type: ignore[no-untyped-def]
    backend = _Stalling(reply)
    stalling.append(backend)
    return wsgate_server(CONF, port=free_port(), backend=backend.port)


def test_read_timeout_before_head_is_504(wsgate_server, stalling) -> None:  # noqa: F811
    srv = _start(wsgate_server, stalling, b"")
    with RawClient.connect("127.0.0.1", srv.port, timeout=10) as c:
        start = time.monotonic()
        c.send(GET)
        status, _, _ = c.read_response(timeout=10)
        took = time.monotonic() - start
    assert status.split()[1] == "504"
    assert took >= 0.95


# With proxy_buffering on, nginx holds a head until body bytes come (its output
# chain); with it off the head is flushed at once. Either way what arrived goes out
# before the timeout.
@pytest.mark.parametrize(("first", "uri"), [(b"abc", b"/x"), (b"abc", b"/nb/x"),
                                            (b"", b"/nb/x")],
                         ids=["head+bytes", "head+bytes-unbuffered", "head-alone-unbuffered"])
def test_read_timeout_mid_body_sends_head_then_closes(wsgate_server, stalling,  # noqa: F811
                                                      first: bytes, uri: bytes) -> None:
    reply = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n" + first
    srv = _start(wsgate_server, stalling, reply)
    with RawClient.connect("127.0.0.1", srv.port, timeout=10) as c:
        start = time.monotonic()
        c.send(GET.replace(b"/x", uri))
        head = c.read_until_marker(b"\r\n\r\n" + first, timeout=0.9)  # before the timeout
        assert head.startswith(b"HTTP/1.1 200 OK\r\n")
        assert b"Content-Length: 10\r\n" in head
        rest = c.read_until_eof(timeout=10)
        took = time.monotonic() - start
    assert rest == b""                        # cut: no more bytes, then EOF
    assert took >= 0.95


def test_head_and_body_arriving_together(wsgate_server, stalling) -> None:  # noqa: F811
    reply = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"
    srv = _start(wsgate_server, stalling, reply)
    with RawClient.connect("127.0.0.1", srv.port, timeout=10) as c:
        c.send(GET)
        status, headers, body = c.read_response(timeout=5)
    assert status.split()[1] == "200"
    assert body == b"hello"


def test_keepalive_timeout_closes_idle_connection(wsgate_server) -> None:  # noqa: F811
    srv = wsgate_server(CONF, port=free_port(), backend=free_port())
    with RawClient.connect("127.0.0.1", srv.port, timeout=10) as c:
        c.send(b"GET /r HTTP/1.1\r\nHost: x\r\n\r\n")
        status, _, body = c.read_response(timeout=5)
        assert body == b"r\n"
        start = time.monotonic()
        assert c.read_until_eof(timeout=10) == b""
        took = time.monotonic() - start
    assert status.split()[1] == "200"
    assert 0.9 <= took < 8


def test_connect_timeout_is_504(wsgate_server) -> None:  # noqa: F811
    # A listener that never accepts, its queue filled: further SYNs go unanswered.
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(0)
    fillers = []
    try:
        for _ in range(8):
            s = socket.socket()
            s.setblocking(False)
            s.connect_ex(lsock.getsockname())
            fillers.append(s)
        time.sleep(0.2)
        srv = wsgate_server(CONF, port=free_port(), backend=lsock.getsockname()[1])
        with RawClient.connect("127.0.0.1", srv.port, timeout=10) as c:
            start = time.monotonic()
            c.send(GET)
            status, _, _ = c.read_response(timeout=10)
            took = time.monotonic() - start
        assert status.split()[1] == "504"
        assert took >= 0.95
    finally:
        for s in fillers:
            s.close()
        lsock.close()


class _Conn:
    """The least a pooled connection is (upstream_conn.UpstreamStream's fields)."""

    def __init__(self) -> None:
        self.requests = 1
        self.started = time.monotonic()
        self.pool = None
        self.pool_key = None
        self.closed_at: float | None = None

    def close(self) -> None:
        if self.closed_at is None:
            self.closed_at = time.monotonic()

    def reusable_now(self) -> bool:
        return self.closed_at is None


def test_pool_closes_each_idle_connection_after_keepalive_timeout() -> None:
    import asyncio

    from wsgate.proxy.pool import Pool

    async def scenario() -> tuple[list[_Conn], float]:
        pool = Pool(size=8, requests=100, max_time=3600, timeout=0.3)
        t0 = time.monotonic()
        a, b, c = _Conn(), _Conn(), _Conn()
        assert pool.put(a, "k", t0)
        await asyncio.sleep(0.15)
        assert pool.put(b, "k", time.monotonic())
        assert pool.put(c, "other", time.monotonic())
        assert pool.get("other") is c            # taken out: never expires
        for _ in range(40):                      # <= 2 s
            if a.closed_at is not None and b.closed_at is not None:
                break
            await asyncio.sleep(0.05)
        assert len(pool) == 0
        pool.close()
        return [a, b, c], t0

    (a, b, c), t0 = asyncio.run(scenario())
    assert a.closed_at is not None and b.closed_at is not None
    assert 0.29 <= a.closed_at - t0 < 1.0
    assert 0.44 <= b.closed_at - t0 < 1.2      # its own 0.3 s, from when it was cached
    assert c.closed_at is None
