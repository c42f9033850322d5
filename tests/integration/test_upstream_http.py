"""Upstream-side HTTP behaviour of wsgate: keep-alive pool edge cases, retries on
read timeouts, streamed request bodies, upstream head limits and strict framing.

Backends are small raw-socket servers run in threads, scripted per test, so the
bytes on the upstream side are exactly what the test says.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from helpers.fixtures import procs, recording_backend, wsgate_server  # noqa: F401
from helpers.ports import free_port

pytestmark = pytest.mark.timeout(60)

Handler = Callable[[socket.socket, int], None]


class RawBackend:
    """Accepts connections on 127.0.0.1 and runs `handler(conn, n)` for each."""

    def __init__(self, handler: Handler) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.handler = handler
        self.accepted = 0
        self.stopping = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stopping:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.accepted += 1
            threading.Thread(target=self._run, args=(conn, self.accepted),
                             daemon=True).start()

    def _run(self, conn: socket.socket, n: int) -> None:
        conn.settimeout(10)
        try:
            self.handler(conn, n)
        except OSError:
            pass
        finally:
            conn.close()

    def stop(self) -> None:
        self.stopping = True
        self.thread.join(timeout=5)
        self.sock.close()


@pytest.fixture
def raw_backend() -> Iterator[Callable[[Handler], RawBackend]]:
    made: list[RawBackend] = []

    def make(handler: Handler) -> RawBackend:
        made.append(RawBackend(handler))
        return made[-1]
    yield make
    for b in made:
        b.stop()


def read_head(conn: socket.socket) -> bytes:
    data = b""
    for _ in range(1000):
        if b"\r\n\r\n" in data:
            return data
        chunk = conn.recv(65536)
        if not chunk:
            return data
        data += chunk
    return data


def request(port: int, raw: bytes, timeout: float = 10) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(raw)
        data = b""
        for _ in range(1000):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    return data


GET = b"GET /x HTTP/1.0\r\nHost: t\r\n\r\n"


def conf(upstream: str, location: str = "") -> str:
    return """
events {}
http {
    log_format up "$upstream_addr|$upstream_status|$upstream_connect_time|$status";
    access_log access.log up;
    upstream u {
%s
    }
    server {
        listen 127.0.0.1:{{port}};
        location / {
            proxy_pass http://u;
            %s
        }
    }
}
""" % (upstream, location)


KEEP = 'proxy_http_version 1.1; proxy_set_header Connection "";'


def test_pooled_connection_closed_by_upstream_is_discarded(wsgate_server,  # type: ignore[no-untyped-def]
                                                           raw_backend) -> None:
    """The upstream closes an idle kept-alive connection; the next request goes on
    a fresh connection, with no error (nginx's keepalive close handler)."""
    def handler(conn: socket.socket, n: int) -> None:
        read_head(conn)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        time.sleep(0.2)           # then close while the proxy holds it idle

    back = raw_backend(handler)
    srv = wsgate_server(conf(f"        server 127.0.0.1:{back.port};\n        keepalive 4;",
                             KEEP), port=free_port())
    for _ in range(3):
        assert request(srv.port, GET).startswith(b"HTTP/1.1 200")
        time.sleep(0.5)
    assert back.accepted == 3
    assert "[error]" not in srv.error_log()


def test_keepalive_reuses_one_connection(wsgate_server, raw_backend) -> None:  # type: ignore[no-untyped-def]
    seen: list[int] = []

    def handler(conn: socket.socket, n: int) -> None:
        for _ in range(20):
            head = read_head(conn)
            if not head:
                return
            seen.append(n)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")

    back = raw_backend(handler)
    srv = wsgate_server(conf(f"        server 127.0.0.1:{back.port};\n"
                             "        keepalive 2; keepalive_requests 4;", KEEP),
                        port=free_port())
    for _ in range(6):
        assert request(srv.port, GET).startswith(b"HTTP/1.1 200")
    assert seen == [1, 1, 1, 1, 2, 2]     # keepalive_requests 4 ends the first one


def test_read_timeout_moves_to_next_peer(wsgate_server, raw_backend) -> None:  # type: ignore[no-untyped-def]
    def silent(conn: socket.socket, n: int) -> None:
        read_head(conn)
        time.sleep(3)

    def ok(conn: socket.socket, n: int) -> None:
        read_head(conn)
        conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok")

    slow, good = raw_backend(silent), raw_backend(ok)
    srv = wsgate_server(conf(f"        server 127.0.0.1:{slow.port};\n"
                             f"        server 127.0.0.1:{good.port};",
                             "proxy_read_timeout 500ms;"), port=free_port())
    assert request(srv.port, GET).endswith(b"ok")
    line = srv.access_log().splitlines()[0]
    addr, status, _, final = line.split("|")
    assert addr == f"127.0.0.1:{slow.port}, 127.0.0.1:{good.port}"
    assert status == "504, 200" and final == "200"
    assert "upstream timed out (110: Connection timed out) while reading response " \
        "header from upstream" in srv.error_log()


def test_non_idempotent_not_retried_after_sending(wsgate_server, raw_backend) -> None:  # type: ignore[no-untyped-def]
    def reset(conn: socket.socket, n: int) -> None:
        read_head(conn)

    def ok(conn: socket.socket, n: int) -> None:
        read_head(conn)
        conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok")

    bad, good = raw_backend(reset), raw_backend(ok)
    srv = wsgate_server(conf(f"        server 127.0.0.1:{bad.port};\n"
                             f"        server 127.0.0.1:{good.port};"), port=free_port())
    post = b"POST /x HTTP/1.0\r\nHost: t\r\nContent-Length: 1\r\n\r\nz"
    assert request(srv.port, post).startswith(b"HTTP/1.1 502")
    assert request(srv.port, GET).endswith(b"ok")          # round robin: the good one
    assert request(srv.port, GET).startswith(b"HTTP/1.1 200")   # bad is failed now


def test_request_body_streamed_with_buffering_off(wsgate_server, raw_backend) -> None:  # type: ignore[no-untyped-def]
    """The upstream sees the head and the first half of the body before the client
    sends the second half."""
    got_first = threading.Event()
    bodies: list[bytes] = []

    def handler(conn: socket.socket, n: int) -> None:
        data = read_head(conn)
        while not data.endswith(b"first"):
            chunk = conn.recv(65536)
            if not chunk:
                return
            data += chunk
        got_first.set()
        while b"second" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                break
            data += chunk
        bodies.append(data)
        conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok")

    back = raw_backend(handler)
    srv = wsgate_server(conf(f"        server 127.0.0.1:{back.port};",
                             "proxy_request_buffering off;"), port=free_port())
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as sock:
        sock.sendall(b"POST /x HTTP/1.1\r\nHost: t\r\nContent-Length: 11\r\n"
                     b"Connection: close\r\n\r\nfirst")
        assert got_first.wait(5)
        sock.sendall(b"second")
        data = b""
        for _ in range(100):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    assert data.endswith(b"ok")
    assert b"Content-Length: 11\r\n" in bodies[0]
    assert bodies[0].endswith(b"\r\n\r\nfirstsecond")


def test_chunked_body_streamed_chunked_to_http11(wsgate_server, recording_backend) -> None:  # type: ignore[no-untyped-def]
    rec = recording_backend()
    srv = wsgate_server(conf(f"        server {rec.address};",
                             "proxy_request_buffering off; proxy_http_version 1.1;"),
                        port=free_port())
    raw = (b"POST /c HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n"
           b"Connection: close\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
    assert request(srv.port, raw).startswith(b"HTTP/1.1 200")
    record = rec.records()[-1]
    assert record["chunked"] is True
    import base64
    assert base64.b64decode(record["body_b64"]) == b"hello world"


@pytest.mark.parametrize("head, message", [
    (b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n",
     "upstream sent too big header while reading response header from upstream"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok",
     'upstream sent duplicate header line: "Content-Length: 3", previous value: '
     '"Content-Length: 2" while reading response header from upstream'),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nok",
     'upstream sent unknown "Transfer-Encoding": "gzip" while reading response header'),
])
def test_bad_upstream_heads_are_502(wsgate_server, raw_backend,  # type: ignore[no-untyped-def]
                                    head: bytes, message: str) -> None:
    def handler(conn: socket.socket, n: int) -> None:
        read_head(conn)
        conn.sendall(head)

    back = raw_backend(handler)
    srv = wsgate_server(conf(f"        server 127.0.0.1:{back.port};"), port=free_port())
    assert request(srv.port, GET).startswith(b"HTTP/1.1 502")
    assert message.split(" while")[0].split(", previous")[0] in srv.error_log()


def test_proxy_next_upstream_tries_limits(wsgate_server) -> None:  # type: ignore[no-untyped-def]
    dead = [free_port() for _ in range(3)]
    ups = "\n".join(f"        server 127.0.0.1:{p};" for p in dead)
    srv = wsgate_server(conf(ups, "proxy_next_upstream_tries 2;"), port=free_port())
    assert request(srv.port, GET).startswith(b"HTTP/1.1 502")
    addr, status, connect, _ = srv.access_log().splitlines()[0].split("|")
    assert len(addr.split(", ")) == 2 and status == "502, 502" and connect == "-, -"


def test_header_times_are_dash_for_failed_peers(wsgate_server, raw_backend) -> None:  # type: ignore[no-untyped-def]
    def ok(conn: socket.socket, n: int) -> None:
        read_head(conn)
        conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok")

    good = raw_backend(ok)
    dead = free_port()
    srv = wsgate_server(conf(f"        server 127.0.0.1:{dead};\n"
                             f"        server 127.0.0.1:{good.port};"), port=free_port())
    assert request(srv.port, GET).endswith(b"ok")
    _, status, connect, _ = srv.access_log().splitlines()[0].split("|")
    first, second = connect.split(", ")
    assert status == "502, 200" and first == "-" and second != "-"




def _answer_with(name: bytes) -> Handler:
    def handler(conn: socket.socket, n: int) -> None:
        for _ in range(50):
            if not read_head(conn):
                return
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s"
                         % (len(name), name))
    return handler


def test_reload_switches_peers_and_closes_old_pool(wsgate_server, raw_backend) -> None:  # type: ignore[no-untyped-def]
    import signal
    a, b = raw_backend(_answer_with(b"A")), raw_backend(_answer_with(b"B"))
    srv = wsgate_server(conf(f"        server 127.0.0.1:{a.port};\n        keepalive 4;",
                             KEEP), port=free_port())
    assert request(srv.port, GET).endswith(b"A")
    srv.conf_path.write_text(srv.conf_text.replace(str(a.port), str(b.port)))
    srv.send_signal(signal.SIGHUP)
    for _ in range(100):                      # the reload is asynchronous
        if request(srv.port, GET).endswith(b"B"):
            break
        time.sleep(0.05)
    assert request(srv.port, GET).endswith(b"B")
    assert "[alert]" not in srv.error_log()


def test_zone_keeps_peer_state_across_reload(wsgate_server, raw_backend) -> None:  # type: ignore[no-untyped-def]
    """With `zone`, an unchanged block keeps its round-robin position and fails."""
    import signal
    a, b = raw_backend(_answer_with(b"A")), raw_backend(_answer_with(b"B"))
    ups = (f"        zone u 64k;\n        server 127.0.0.1:{a.port};\n"
           f"        server 127.0.0.1:{b.port};")
    srv = wsgate_server(conf(ups), port=free_port())
    assert request(srv.port, GET).endswith(b"A")
    srv.conf_path.write_text(srv.conf_text.replace("proxy_pass http://u;",
                                                   "proxy_pass http://u; # reloaded"))
    srv.send_signal(signal.SIGHUP)
    time.sleep(1.0)
    # without zone a fresh generation would start again at A
    assert request(srv.port, GET).endswith(b"B")
    assert request(srv.port, GET).endswith(b"A")
