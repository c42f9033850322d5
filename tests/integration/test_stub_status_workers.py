"""stub_status and /metrics with `worker_processes 2`: every worker shows the sum.

`listen ... reuseport` gives each worker its own socket and lets the kernel spread
connections over them by address hash, so 20 connections land on both workers
(checked through /proc: which worker holds which client port). Then every page
must show the true totals, whichever worker answers it -- real nginx does the same
sequence first, to prove the arithmetic is nginx's. A worker killed with SIGKILL is
replaced by the master; the totals keep their cumulative part and lose the dead
worker's connections (nginx would count those forever: wsgate corrects them).
"""

from __future__ import annotations

import os
import pathlib
import re
import signal
import time
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from helpers.client import RawClient, RawWebSocket
from helpers.fixtures import nginx_server, procs, websockets_backend, wsgate_server  # noqa: F401
from helpers.ports import free_port

CONF = """
worker_processes 2;
events {}
http {
    map $http_upgrade $connection_upgrade { default upgrade; '' close; }
    server {
        listen 127.0.0.1:{{port}} reuseport;
        server_name example.test;
        location = /basic_status { stub_status; }
        location / {
            proxy_pass http://127.0.0.1:{{backend}};
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
        }
    }
}
"""

#: wsgate only: real nginx has no `metrics;`
METRICS_CONF = CONF.replace("{ stub_status; }", "{ stub_status; }\n"
                            "        location = /metrics { metrics; }")
HELD = 20
_STATUS = re.compile(rb"Active connections: (\d+) \nserver accepts handled requests\n"
                     rb" (\d+) (\d+) (\d+) \nReading: (\d+) Writing: (\d+) Waiting: (\d+) \n")


# -- /proc: the workers and the client connections each one holds -----------------------

def _workers(master: int) -> list[int]:
    out = []
    for entry in pathlib.Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if int(stat.rpartition(")")[2].split()[1]) == master:
            out.append(int(entry.name))
    return sorted(out)


def _socket_inodes(pid: int) -> set[str]:
    out = set()
    fd_dir = pathlib.Path(f"/proc/{pid}/fd")
    for fd in fd_dir.iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            out.add(target[8:-1])
    return out


def _client_ports_by_worker(master: int, port: int) -> dict[int, set[int]]:
    """worker pid -> the remote ports of its established connections on `port`."""
    established: dict[str, int] = {}
    for line in pathlib.Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote, state, inode = fields[1], fields[2], fields[3], fields[9]
        if state == "01" and int(local.split(":")[1], 16) == port:
            established[inode] = int(remote.split(":")[1], 16)
    return {pid: {established[i] for i in _socket_inodes(pid) if i in established}
            for pid in _workers(master)}


def _wait_workers(master: int, count: int, without: int = 0) -> list[int]:
    """Wait (bounded) until the master has `count` workers, none of them `without`."""
    pids: list[int] = []
    for _ in range(200):
        pids = _workers(master)
        if len(pids) == count and without not in pids:
            return pids
        time.sleep(0.05)
    pytest.fail(f"workers never became {count} without {without}: {pids}")


def _held_by(master: int, port: int, clients: list[RawClient]) -> dict[int, int]:
    """worker pid -> how many of `clients` it holds; all of them are accounted for."""
    ours = {c.sock.getsockname()[1] for c in clients}
    by_worker = {pid: len(ports & ours)
                 for pid, ports in _client_ports_by_worker(master, port).items()}
    assert sum(by_worker.values()) == len(clients), by_worker
    return by_worker


# -- stub_status ----------------------------------------------------------------------

def _status(port: int) -> bytes:
    with RawClient.connect("127.0.0.1", port, timeout=5.0) as c:
        c.send(b"GET /basic_status HTTP/1.0\r\n\r\n")
        data = c.read_until_eof()
    return data.partition(b"\r\n\r\n")[2]


def _numbers(page: bytes) -> tuple[int, ...]:
    m = _STATUS.fullmatch(page)
    assert m, page
    return tuple(int(x) for x in m.groups())


def _expected(states: tuple[int, int, int], accepted: int, requests: int) -> bytes:
    return (f"Active connections: {sum(states)} \nserver accepts handled requests\n"
            f" {accepted} {accepted} {requests} \n"
            f"Reading: {states[0]} Writing: {states[1]} Waiting: {states[2]} \n").encode()


def _poll(port: int, states: tuple[int, int, int], accepted: int,
          requests: int) -> tuple[int, ...]:
    """Poll until Reading/Writing/Waiting are `states`; each poll is one more
    accepted connection and request. Returns the last page's numbers."""
    body = b""
    for polls in range(1, 101):
        body = _status(port)
        if _numbers(body)[4:] == states:
            assert body == _expected(states, accepted + polls, requests + polls)
            return _numbers(body)
        time.sleep(0.05)
    pytest.fail(f"states never reached {states}: last page {body!r}")


def _settled(port: int) -> tuple[int, ...]:
    """A first page once the connections made before it are all counted. The
    fixture's readiness probe connects and closes without a request; on a busy
    machine the worker that accepted it may count it only after another worker
    served a page, and the accepted - requests difference then moves later."""
    prev = _numbers(_status(port))
    for _ in range(50):
        time.sleep(0.1)
        page = _numbers(_status(port))
        if page[1] - page[3] == prev[1] - prev[3]:
            return page
        prev = page
    pytest.fail(f"accepted - requests never settled: last {prev}")


def _hold_keepalive(port: int) -> list[RawClient]:
    """HELD connections, each after one answered keep-alive request (Waiting)."""
    held = []
    for _ in range(HELD):
        c = RawClient.connect("127.0.0.1", port, timeout=5.0)
        held.append(c)
        c.send(b"GET /basic_status HTTP/1.1\r\nHost: x\r\n\r\n")
        status, fields, _ = c.read_response()
        assert status == "HTTP/1.1 200 OK" and fields["connection"] == "keep-alive"
    return held


def _quiet_totals(port: int, master: int, held: list[RawClient],
                  workers: int = 2) -> tuple[int, ...]:
    """The page numbers once the held connections all wait; several more pages
    agree exactly, whichever worker answers them."""
    _, accepted, _, requests, *states = _numbers(_status(port))
    numbers = _poll(port, (0, 1, HELD), accepted, requests)
    for _ in range(6):
        page = _status(port)
        assert page == _expected((0, 1, HELD), numbers[1] + 1, numbers[3] + 1)
        numbers = _numbers(page)
    by_worker = _held_by(master, port, held)
    assert len(by_worker) == workers, by_worker
    assert sum(1 for n in by_worker.values() if n) >= 2, by_worker
    return numbers


def test_every_worker_shows_the_sum_like_nginx(nginx_server, wsgate_server,
                                               websockets_backend) -> None:
    backend = websockets_backend()
    for make in (nginx_server, wsgate_server):
        srv = make(CONF, master=True, port=free_port(), backend=backend.port)
        first = _settled(srv.port)
        assert first[4:] == (0, 1, 0), (make, first)
        held = _hold_keepalive(srv.port)
        try:
            numbers = _quiet_totals(srv.port, srv.proc.pid, held)
            # 20 held + 1 status request each, and the 1 + 1 + 6 polls at least
            assert numbers[1] - first[1] >= HELD + 8 and numbers[1] == numbers[2]
            assert numbers[3] - first[3] == numbers[1] - first[1]
        finally:
            for c in held:
                c.close()
        _poll(srv.port, (0, 1, 0), numbers[1], numbers[3])
        srv.stop()
        assert srv.alerts() == []


def test_totals_survive_a_reload_that_adds_a_worker(nginx_server, wsgate_server,
                                                    websockets_backend) -> None:
    """nginx allocates its stats zone once (ngx_event_module_init returns early on
    a reload): the totals go on across reloads, and so do wsgate's."""
    backend = websockets_backend()
    for make in (nginx_server, wsgate_server):
        srv = make(CONF, master=True, port=free_port(), backend=backend.port)
        held = _hold_keepalive(srv.port)
        try:
            numbers = _quiet_totals(srv.port, srv.proc.pid, held)
            srv.conf_path.write_text(srv.conf_text.replace("worker_processes 2;",
                                                           "worker_processes 3;"))
            srv.send_signal(signal.SIGHUP)
            _wait_workers(srv.proc.pid, 3)
            # a reload closes idle keep-alive connections; the totals go on
            numbers = _poll(srv.port, (0, 1, 0), numbers[1], numbers[3])
        finally:
            for c in held:
                c.close()
        held = _hold_keepalive(srv.port)
        try:
            after = _quiet_totals(srv.port, srv.proc.pid, held, workers=3)
            assert after[1] > numbers[1] + HELD
        finally:
            for c in held:
                c.close()
        srv.stop()
        assert srv.alerts() == [], make


def _signal_9_only(alerts: list[str]) -> list[str]:
    return [a for a in alerts if "exited on signal 9" not in a]


def test_killed_worker_keeps_totals_and_loses_its_connections(
        wsgate_server, websockets_backend) -> None:
    backend = websockets_backend()
    srv = wsgate_server(CONF, master=True, port=free_port(), backend=backend.port)
    master = srv.proc.pid
    held = _hold_keepalive(srv.port)
    try:
        numbers = _quiet_totals(srv.port, master, held)
        victim, lost = max(_held_by(master, srv.port, held).items(), key=lambda i: i[1])
        os.kill(victim, signal.SIGKILL)
        _wait_workers(master, 2, without=victim)
        # Cumulative counters go on from where they were; the dead worker's
        # connections are no longer counted.
        numbers = _poll(srv.port, (0, 1, HELD - lost), numbers[1], numbers[3])
        # the replacement serves and counts in the same totals
        survivors = [c for c in held if c.sock.getsockname()[1] in
                     set().union(*_client_ports_by_worker(master, srv.port).values())]
        assert len(survivors) == HELD - lost
        _poll(srv.port, (0, 1, HELD - lost), numbers[1], numbers[3])
    finally:
        for c in held:
            c.close()
    srv.stop()
    assert _signal_9_only(srv.alerts()) == []
    assert f"worker process {victim} exited on signal 9" in srv.error_log()


# -- /metrics -------------------------------------------------------------------------

def _samples(port: int) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    with RawClient.connect("127.0.0.1", port, timeout=5.0) as c:
        c.send(b"GET /metrics HTTP/1.1\r\nHost: example.test\r\nConnection: close\r\n\r\n")
        status, _, body = c.read_response()
    assert status == "HTTP/1.1 200 OK", status
    out = {}
    for fam in text_string_to_metric_families(body.decode()):
        for s in fam.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def _value(samples: dict[Any, float], name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


TUNNEL = dict(server="example.test", upstream="127.0.0.1:{}")


def _wait_metric(port: int, name: str, want: float, **labels: str) -> dict[Any, float]:
    samples: dict[Any, float] = {}
    for _ in range(100):
        samples = _samples(port)
        if _value(samples, name, **labels) == want:
            return samples
        time.sleep(0.05)
    pytest.fail(f"{name}{labels} never became {want}: {_value(samples, name, **labels)}")


def test_tunnel_metrics_count_every_worker(wsgate_server, websockets_backend) -> None:
    backend = websockets_backend()
    srv = wsgate_server(METRICS_CONF, master=True, port=free_port(), backend=backend.port)
    master, tunnel = srv.proc.pid, dict(TUNNEL, upstream=f"127.0.0.1:{backend.port}")
    sockets = []
    try:
        for i in range(HELD):
            ws = RawWebSocket.connect("127.0.0.1", srv.port, "/ws")
            sockets.append(ws)
            ws.send_text(f"m{i}")
            assert ws.recv_message() == (1, f"m{i}".encode())
        clients = [ws.client for ws in sockets]
        by_worker = _held_by(master, srv.port, clients)
        assert len(by_worker) == 2 and all(by_worker.values()), by_worker
        for _ in range(5):       # every scrape, whichever worker answers it
            samples = _samples(srv.port)
            assert _value(samples, "wsgate_tunnels_active", **tunnel) == HELD
            assert _value(samples, "wsgate_tunnels_opened_total", **tunnel) == HELD
            assert _value(samples, "wsgate_connections", state="writing") == HELD + 1
            assert _value(samples, "wsgate_connections_active") == HELD + 1
        victim, lost = max(by_worker.items(), key=lambda i: i[1])
        os.kill(victim, signal.SIGKILL)
        _wait_workers(master, 2, without=victim)
        left = HELD - lost
        samples = _wait_metric(srv.port, "wsgate_tunnels_active", left, **tunnel)
        assert _value(samples, "wsgate_tunnels_opened_total", **tunnel) == HELD
        assert _value(samples, "wsgate_connections_active") == left + 1
        assert _value(samples, "wsgate_metrics_series_dropped_total") == 0
        for ws in sockets:
            ws.client.close()
        samples = _wait_metric(srv.port, "wsgate_tunnels_active", 0, **tunnel)
        closed = sum(v for (name, labels), v in samples.items()
                     if name == "wsgate_tunnels_closed_total")
        assert closed == left
        assert _value(samples, "wsgate_tunnel_duration_seconds_count", **tunnel) == left
        assert _value(samples, "wsgate_websocket_handshakes_total",
                      server="example.test", status="101") == left
    finally:
        for ws in sockets:
            ws.client.close()
    srv.stop()
    assert _signal_9_only(srv.alerts()) == []
