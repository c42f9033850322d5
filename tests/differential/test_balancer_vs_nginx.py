"""wsgate's balancers choose the same backends as real nginx 1.22, in the same order.

Each test starts N stateless backends on 127.0.0.1 (each answers with its own
port), runs real nginx (single process: `master_process off`, so one balancer
state) with an `upstream` block, sends a fixed sequence of requests one at a
time, and replays the same sequence through wsgate.upstream with the same
servers. Client source addresses 127.A.B.C (all loopback) drive ip_hash; `?x=`
drives `hash $arg_x`. Dead backends (closed ports) exercise nginx's
fail/retry path: connection refused -> free(FAILED) -> next peer.
"""

from __future__ import annotations

import http.server
import socket
import threading
from collections.abc import Iterator, Sequence

import pytest

from helpers.fixtures import nginx_server, procs  # noqa: F401
from helpers.ports import free_port, free_ports
from wsgate.upstream import (
    BalancerParams, FailureKind, Outcome, PickContext, ServerSpec, build,
    build_peer_set, peer_outcome, should_retry)
from wsgate.upstream.failure import DEFAULT_NEXT_UPSTREAM

pytestmark = pytest.mark.timeout(60)

NOW = 1_000_000.0  # the whole run fits in one fail_timeout window (10 s)


class _PortHandler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (stdlib name)
        body = str(self.server.server_address[1]).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def backends() -> Iterator[list[int]]:
    """Four live backends; yields their ports."""
    servers = [http.server.ThreadingHTTPServer(("127.0.0.1", 0), _PortHandler)
               for _ in range(4)]
    threads = [threading.Thread(target=s.serve_forever, kwargs={"poll_interval": 0.05},
                                daemon=True) for s in servers]
    for t in threads:
        t.start()
    yield [s.server_address[1] for s in servers]
    for s in servers:
        s.shutdown()
        s.server_close()
    for t in threads:
        t.join(timeout=5)


def fetch(port: int, path: str, source: str = "127.0.0.1") -> tuple[int, str]:
    """One HTTP/1.0 request from `source`; returns (status, body)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10,
                                  source_address=(source, 0)) as sock:
        sock.sendall(f"GET {path} HTTP/1.0\r\nHost: t\r\n\r\n".encode())
        data = b""
        for _ in range(1000):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body.decode()


def nginx_conf(upstream_body: str) -> str:
    return f"""
events {{}}
http {{
    upstream u {{
{upstream_body}
    }}
    server {{
        listen 127.0.0.1:{{{{port}}}};
        location / {{ proxy_pass http://u; }}
    }}
}}
"""


def spec(port: int, **kw: object) -> ServerSpec:
    name = f"127.0.0.1:{port}"
    return ServerSpec(name=name, addrs=[(name, ("127.0.0.1", port))], **kw)  # type: ignore[arg-type]


def simulate(params: BalancerParams, servers: Sequence[ServerSpec],
             requests: Sequence[tuple[str, str]], dead: set[int]) -> list[str]:
    """Run the requests through wsgate.upstream; the answering port (or 502)."""
    balancer = build(build_peer_set("u", servers), params)
    answers = []
    for client, key in requests:
        pick = balancer.pick(PickContext(NOW, client_addr=client, key=key))
        answers.append(_serve(pick, dead))
    return answers


def _serve(pick, dead: set[int]) -> str:  # type: ignore[no-untyped-def]
    peer = pick.get(NOW)
    while peer is not None:
        port = peer.sockaddr[1]
        if port not in dead:
            pick.release(peer, Outcome.OK, NOW)
            return str(port)
        kind = FailureKind.ERROR  # connection refused
        pick.release(peer, peer_outcome(kind), NOW)
        if not should_retry(kind, DEFAULT_NEXT_UPSTREAM, False, True,
                            pick.tries_done, pick.initial_tries):
            return "502"
        peer = pick.get(NOW)
    return "502"


def through_nginx(nginx_server, upstream_body: str,  # type: ignore[no-untyped-def]
                  requests: Sequence[tuple[str, str]]) -> list[str]:
    srv = nginx_server(nginx_conf(upstream_body), port=free_port())
    answers = []
    for client, key in requests:
        path = f"/?x={key}" if key else "/"
        status, body = fetch(srv.port, path, source=client)
        answers.append(body if status == 200 else str(status))
    srv.stop()
    return answers


def server_lines(servers: Sequence[ServerSpec], extra: Sequence[str]) -> str:
    return "\n".join(f"        server {s.name}{' ' + e if e else ''};"
                     for s, e in zip(servers, extra))


def plain_requests(n: int) -> list[tuple[str, str]]:
    return [("127.0.0.1", "") for _ in range(n)]


def test_round_robin_weights_and_backup(nginx_server, backends) -> None:  # type: ignore[no-untyped-def]
    a, b, c, bk = backends
    servers = [spec(a, weight=5, params=frozenset({"weight"})),
               spec(b, weight=2, params=frozenset({"weight"})), spec(c),
               spec(bk, backup=True, params=frozenset({"backup"}))]
    body = server_lines(servers, ["weight=5", "weight=2", "", "backup"])
    requests = plain_requests(60)
    got = through_nginx(nginx_server, body, requests)
    assert str(bk) not in got
    assert got == simulate(BalancerParams(), servers, requests, dead=set())


def test_round_robin_with_dead_peer(nginx_server, backends) -> None:  # type: ignore[no-untyped-def]
    """A refused peer is failed, skipped, and its effective weight drops."""
    a, b, _, _ = backends
    dead_port = free_ports(1)[0]
    servers = [spec(a, weight=3, params=frozenset({"weight"})),
               spec(dead_port, weight=4, max_fails=3,
                    params=frozenset({"weight", "max_fails"})),
               spec(b)]
    body = server_lines(servers, ["weight=3", "weight=4 max_fails=3", ""])
    requests = plain_requests(30)
    got = through_nginx(nginx_server, body, requests)
    assert got == simulate(BalancerParams(), servers, requests, dead={dead_port})


def test_backup_takes_over_when_primaries_are_dead(nginx_server, backends) -> None:  # type: ignore[no-untyped-def]
    _, _, b1, b2 = backends
    d1, d2 = free_ports(2)
    servers = [spec(d1), spec(d2), spec(b1, backup=True, params=frozenset({"backup"})),
               spec(b2, backup=True, weight=2, params=frozenset({"backup", "weight"}))]
    body = server_lines(servers, ["", "", "backup", "backup weight=2"])
    requests = plain_requests(12)
    got = through_nginx(nginx_server, body, requests)
    assert set(got) <= {str(b1), str(b2)}
    assert got == simulate(BalancerParams(), servers, requests, dead={d1, d2})


def ip_requests(n: int) -> list[tuple[str, str]]:
    return [(f"127.{(i * 37) % 256}.{(i * 11) % 256}.{1 + i % 200}", "")
            for i in range(n)]


def test_ip_hash(nginx_server, backends) -> None:  # type: ignore[no-untyped-def]
    a, b, c, d = backends
    servers = [spec(a), spec(b, weight=3, params=frozenset({"weight"})), spec(c),
               spec(d, down=True, params=frozenset({"down"}))]
    body = "        ip_hash;\n" + server_lines(servers, ["", "weight=3", "", "down"])
    requests = ip_requests(60)
    got = through_nginx(nginx_server, body, requests)
    assert str(d) not in got
    assert got == simulate(BalancerParams("ip_hash"), servers, requests, dead=set())


def hash_requests(n: int) -> list[tuple[str, str]]:
    return [("127.0.0.1", f"k{i * 7919}") for i in range(n)] + plain_requests(4)


def test_hash(nginx_server, backends) -> None:  # type: ignore[no-untyped-def]
    a, b, c, _ = backends
    dead_port = free_ports(1)[0]
    servers = [spec(a), spec(b, weight=2, params=frozenset({"weight"})), spec(c),
               spec(dead_port)]
    body = "        hash $arg_x;\n" + server_lines(servers, ["", "weight=2", "", ""])
    requests = hash_requests(60)
    got = through_nginx(nginx_server, body, requests)
    params = BalancerParams("hash", ("$arg_x",))
    assert got == simulate(params, servers, requests, dead={dead_port})


def test_hash_consistent(nginx_server, backends) -> None:  # type: ignore[no-untyped-def]
    a, b, c, d = backends
    dead_port = free_ports(1)[0]
    servers = [spec(a), spec(b, weight=2, params=frozenset({"weight"})), spec(c),
               spec(d), spec(dead_port)]
    body = "        hash $arg_x consistent;\n" + server_lines(
        servers, ["", "weight=2", "", "", ""])
    requests = hash_requests(60)
    got = through_nginx(nginx_server, body, requests)
    params = BalancerParams("hash", ("$arg_x", "consistent"))
    assert got == simulate(params, servers, requests, dead={dead_port})


def test_least_conn_ties_use_weighted_round_robin(nginx_server, backends) -> None:  # type: ignore[no-untyped-def]
    """Sequential requests leave every peer at 0 conns: all tie every time."""
    a, b, c, _ = backends
    dead_port = free_ports(1)[0]
    servers = [spec(a, weight=3, params=frozenset({"weight"})), spec(b),
               spec(dead_port, weight=2, params=frozenset({"weight"})), spec(c)]
    body = "        least_conn;\n" + server_lines(servers, ["weight=3", "", "weight=2", ""])
    requests = plain_requests(30)
    got = through_nginx(nginx_server, body, requests)
    params = BalancerParams("least_conn")
    assert got == simulate(params, servers, requests, dead={dead_port})
