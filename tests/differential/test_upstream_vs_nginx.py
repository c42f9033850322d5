"""wsgate's upstream groups behave as real nginx 1.22's, through both proxies.

Each test runs the same `upstream` block and the same request sequence through real
nginx (single process) and through wsgate, and compares what the client saw: which
backend answered (each backend answers with its port, its connection number and the
request's sequence number on that connection, so keep-alive reuse is visible), the
status, and `$upstream_addr`/`$upstream_status` from the access log. Client source
addresses 127.A.B.C drive ip_hash; `?x=` drives `hash $arg_x`. Dead backends are
closed ports (connection refused).
"""

from __future__ import annotations

import http.server
import itertools
import re
import socket
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest

from helpers.fixtures import nginx_server, procs, wsgate_server  # noqa: F401
from helpers.ports import free_port, free_ports

pytestmark = pytest.mark.timeout(90)

Request = tuple[str, str]          # (client source address, ?x= key)


class _Handler(http.server.BaseHTTPRequestHandler):
    """Answers "PORT CONN SEQ"; status from the server's `statuses` table."""

    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        super().setup()
        self.conn_id = next(self.server.conn_ids)  # type: ignore[attr-defined]
        self.seq = 0

    def do_GET(self) -> None:  # noqa: N802 (stdlib name)
        srv: Any = self.server
        body = f"{srv.server_address[1]} {self.conn_id} {self.seq}".encode()
        self.seq += 1
        self.send_response(srv.status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_POST = do_GET

    def log_message(self, format: str, *args: object) -> None:
        pass


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, status: int = 200) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.status = status
        self.conn_ids = itertools.count(1)


@pytest.fixture
def backends() -> Iterator[Callable[..., list[int]]]:
    """backends(n, statuses=None) -> ports of n live backends (stopped at teardown)."""
    started: list[_Server] = []

    def start(n: int, statuses: Sequence[int] | None = None) -> list[int]:
        out = []
        for i in range(n):
            srv = _Server(statuses[i] if statuses else 200)
            threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05},
                             daemon=True).start()
            started.append(srv)
            out.append(srv.server_address[1])
        return out
    yield start
    for srv in started:
        srv.shutdown()
        srv.server_close()


def fetch(port: int, path: str, source: str = "127.0.0.1",
          method: str = "GET") -> tuple[int, str]:
    """One HTTP/1.0 request from `source`; (status, body)."""
    with socket.create_connection(("127.0.0.1", port), timeout=20,
                                  source_address=(source, 0)) as sock:
        sock.sendall(f"{method} {path} HTTP/1.0\r\nHost: t\r\nContent-Length: 0\r\n\r\n"
                     .encode())
        data = b""
        for _ in range(1000):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body.decode()


CONF = """
error_log error.log warn;
events {}
http {
    log_format up "$upstream_addr|$upstream_status|$status";
    access_log access.log up;
    upstream u {
%(upstream)s
    }
    server {
        listen 127.0.0.1:{{port}};
        location / {
            proxy_pass http://u;
%(location)s
        }
    }
}
"""


def run(factory: Any, upstream: str, requests: Sequence[Request], location: str = "",
        method: str = "GET", conf: str = CONF) -> tuple[list[str], list[str], str]:
    """(answers, access-log lines, error log) of the sequence through one proxy."""
    srv = factory(conf % {"upstream": upstream, "location": location}, port=free_port())
    answers = []
    for client, key in requests:
        status, body = fetch(srv.port, f"/?x={key}" if key else "/", client, method)
        answers.append(f"{status} {body}" if status == 200 else str(status))
    srv.stop()
    return answers, srv.access_log().splitlines(), srv.error_log()


def both(nginx_server: Any, wsgate_server: Any, upstream: str,
         requests: Sequence[Request], location: str = "",
         method: str = "GET") -> tuple[list[str], list[str], str]:
    """Run through nginx then wsgate; assert identical answers and logs."""
    ng = run(nginx_server, upstream, requests, location, method)
    ws = run(wsgate_server, upstream, requests, location, method)
    assert [_port(a) for a in ws[0]] == [_port(a) for a in ng[0]]
    assert ws[1] == ng[1]
    return ws


def _port(answer: str) -> str:
    """"200 PORT" or the error status: who answered, not on which connection."""
    return " ".join(answer.split()[:2])


def servers(lines: Sequence[tuple[int, str]]) -> str:
    return "\n".join(f"        server 127.0.0.1:{p} {extra};" for p, extra in lines)


def plain(n: int) -> list[Request]:
    return [("127.0.0.1", "") for _ in range(n)]


def test_round_robin_weights_backup_and_dead_peer(nginx_server, wsgate_server,  # type: ignore[no-untyped-def]
                                                  backends) -> None:
    a, b, c, bk = backends(4)
    (dead,) = free_ports(1)
    ups = servers([(a, "weight=5"), (b, "weight=2"), (dead, "weight=3 max_fails=2"),
                   (c, ""), (bk, "backup")])
    answers, _, _ = both(nginx_server, wsgate_server, ups, plain(40))
    assert not any(a.startswith(f"200 {bk} ") for a in answers)


def test_backup_takes_over(nginx_server, wsgate_server, backends) -> None:  # type: ignore[no-untyped-def]
    b1, b2 = backends(2)
    d1, d2 = free_ports(2)
    ups = servers([(d1, ""), (d2, ""), (b1, "backup"), (b2, "backup weight=2")])
    answers, log, _ = both(nginx_server, wsgate_server, ups, plain(10))
    assert all(a.startswith("200 ") for a in answers)
    assert log[0].startswith(f"127.0.0.1:{d1}, 127.0.0.1:{d2}, ")


def test_ip_hash(nginx_server, wsgate_server, backends) -> None:  # type: ignore[no-untyped-def]
    a, b, c, d = backends(4)
    ups = "        ip_hash;\n" + servers([(a, ""), (b, "weight=3"), (c, ""), (d, "down")])
    reqs = [(f"127.{(i * 37) % 256}.{(i * 11) % 256}.{1 + i % 200}", "") for i in range(40)]
    both(nginx_server, wsgate_server, ups, reqs)


def hash_requests(n: int) -> list[Request]:
    return [("127.0.0.1", f"k{i * 7919}") for i in range(n)] + plain(3)


def test_hash(nginx_server, wsgate_server, backends) -> None:  # type: ignore[no-untyped-def]
    a, b, c = backends(3)
    (dead,) = free_ports(1)
    ups = "        hash $arg_x;\n" + servers([(a, ""), (b, "weight=2"), (c, ""), (dead, "")])
    both(nginx_server, wsgate_server, ups, hash_requests(40))


def test_hash_consistent(nginx_server, wsgate_server, backends) -> None:  # type: ignore[no-untyped-def]
    a, b, c, d = backends(4)
    (dead,) = free_ports(1)
    ups = "        hash $arg_x consistent;\n" + servers(
        [(a, ""), (b, "weight=2"), (c, ""), (d, ""), (dead, "")])
    both(nginx_server, wsgate_server, ups, hash_requests(40))


def test_least_conn_sequential(nginx_server, wsgate_server, backends) -> None:  # type: ignore[no-untyped-def]
    a, b, c = backends(3)
    ups = "        least_conn;\n" + servers([(a, "weight=3"), (b, ""), (c, "")])
    both(nginx_server, wsgate_server, ups, plain(20))


def test_no_live_upstreams(nginx_server, wsgate_server) -> None:  # type: ignore[no-untyped-def]
    d1, d2 = free_ports(2)
    ups = servers([(d1, ""), (d2, "")])
    answers, log, errors = both(nginx_server, wsgate_server, ups, plain(3))
    assert answers == ["502"] * 3
    assert log[1].startswith("u|502|502")
    line = next(ln for ln in errors.splitlines() if "no live upstreams" in ln)
    tail = line[line.index("no live upstreams"):]
    assert tail == ('no live upstreams while connecting to upstream, client: 127.0.0.1, '
                    'server: , request: "GET / HTTP/1.0", upstream: "http://u/", '
                    'host: "t"')


def test_temporarily_disabled_warning(nginx_server, wsgate_server, backends) -> None:  # type: ignore[no-untyped-def]
    (a,) = backends(1)
    (dead,) = free_ports(1)
    ups = servers([(dead, "max_fails=1"), (a, "")])
    logs = [run(f, ups, plain(4))[2] for f in (nginx_server, wsgate_server)]
    tails = [[re.sub(r"^.*? \d+#\d+: \*\d+ ", "", ln) for ln in log.splitlines()]
             for log in logs]
    assert tails[1] == tails[0]
    assert any(t.startswith("upstream server temporarily disabled while connecting to "
                            "upstream") for t in tails[1])


@pytest.mark.parametrize("location, method", [
    ("proxy_next_upstream error http_500;", "GET"),
    ("proxy_next_upstream error http_500 http_503;", "GET"),
    ("proxy_next_upstream http_500;", "POST"),
    ("proxy_next_upstream http_500 non_idempotent;", "POST"),
    ("proxy_next_upstream http_500; proxy_next_upstream_tries 2;", "GET"),
    ("proxy_next_upstream off;", "GET"),
])
def test_next_upstream_on_status(nginx_server, wsgate_server, backends,  # type: ignore[no-untyped-def]
                                 location: str, method: str) -> None:
    p500, p503, ok1, ok2 = backends(4, [500, 503, 200, 200])
    ups = servers([(p500, ""), (p503, ""), (ok1, ""), (ok2, "")])
    both(nginx_server, wsgate_server, ups, plain(8), location, method)


KEEPALIVE_LOC = 'proxy_http_version 1.1;\n            proxy_set_header Connection "";'


@pytest.mark.parametrize("upstream_extra, location, reuse", [
    ("keepalive 4;", KEEPALIVE_LOC, True),
    ("keepalive 4;", "", False),                         # Connection: close: no reuse
    ("keepalive 4; keepalive_requests 3;", KEEPALIVE_LOC, True),
    ("keepalive 1;", KEEPALIVE_LOC, False),              # two peers evict each other
])
def test_keepalive_reuse(nginx_server, wsgate_server, backends,  # type: ignore[no-untyped-def]
                         upstream_extra: str, location: str, reuse: bool) -> None:
    """The recorded (connection, sequence) per answer shows the same reuse."""
    a, b = backends(2)
    ups = servers([(a, ""), (b, "")]) + f"\n        {upstream_extra}"
    ng = run(nginx_server, ups, plain(12), location)
    ws = run(wsgate_server, ups, plain(12), location)
    # connection numbers continue across runs on the same backends: compare shapes
    assert _shape(ws[0]) == _shape(ng[0])
    reused = any(seq != "0" for _, _, seq in _shape(ws[0]))
    assert reused == reuse


def _shape(answers: list[str]) -> list[tuple[str, int, str]]:
    """Answers with connection numbers renumbered from 1 per backend."""
    first: dict[tuple[str, str], int] = {}
    out = []
    for ans in answers:
        status, port, conn, seq = ans.split()
        key = (port, conn)
        first.setdefault(key, len([k for k in first if k[0] == port]) + 1)
        out.append((port, first[key], seq))
    return out


def test_upstream_variables_across_retries(nginx_server, wsgate_server, backends) -> None:  # type: ignore[no-untyped-def]
    (ok,) = backends(1)
    d1, d2 = free_ports(2)
    ups = servers([(d1, ""), (d2, ""), (ok, "")])
    _, log, _ = both(nginx_server, wsgate_server, ups, plain(2),
                     "proxy_next_upstream error timeout;")
    assert re.fullmatch(rf"127\.0\.0\.1:{d1}, 127\.0\.0\.1:{d2}, 127\.0\.0\.1:{ok}"
                        r"\|502, 502, 200\|200", log[0])


HEADER_VARS_CONF = CONF.replace(
    '"$upstream_addr|$upstream_status|$status"',
    '"$status|$sent_http_content_type|$sent_http_connection|$sent_http_content_length'
    '|$upstream_http_content_type|$upstream_http_connection|$upstream_http_nothere"')


def test_sent_and_upstream_header_variables(nginx_server, wsgate_server, backends) -> None:  # type: ignore[no-untyped-def]
    """$sent_http_* (what went to the client) and $upstream_http_* (what came from
    the upstream) in the access log, on plain proxied requests, as nginx logs them."""
    (ok,) = backends(1)
    ups = servers([(ok, "")])
    ng = run(nginx_server, ups, plain(3), conf=HEADER_VARS_CONF)
    ws = run(wsgate_server, ups, plain(3), conf=HEADER_VARS_CONF)
    assert ws[1] == ng[1]
    assert len(ws[1]) == 3 and ws[1][0].startswith("200|")
