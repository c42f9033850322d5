"""`metrics;` through a running wsgate: scrape during and after a live WebSocket
session, and check handshakes, tunnels, bytes, requests and process metrics."""

from __future__ import annotations

import gzip
import time
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from websockets.sync.client import connect

from helpers.client import RawClient, RawWebSocket
from helpers.fixtures import procs, websockets_backend, wsgate_server  # noqa: F401
from helpers.ports import free_port

CONF = """
events {}
http {
    map $http_upgrade $connection_upgrade { default upgrade; '' close; }
    upstream app { server 127.0.0.1:{{backend}}; }
    server {
        listen 127.0.0.1:{{port}};
        server_name example.test;
        location = /metrics { metrics; }
        location /ws {
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
        }
        location /plain { proxy_pass http://app; }   # Upgrade not passed: 426/505
    }
}
"""


def _scrape(port: int, extra: bytes = b"") -> tuple[dict[str, str], bytes]:
    with RawClient.connect("127.0.0.1", port, timeout=5.0) as c:
        c.send(b"GET /metrics HTTP/1.1\r\nHost: example.test\r\nConnection: close\r\n"
               + extra + b"\r\n")
        status, fields, body = c.read_response()
    assert status == "HTTP/1.1 200 OK", status
    return fields, body


def _samples(port: int) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    _, body = _scrape(port)
    out = {}
    for fam in text_string_to_metric_families(body.decode()):
        for s in fam.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def _value(samples: dict[Any, float], name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def _wait_for(port: int, name: str, want: float, **labels: str) -> dict[Any, float]:
    """Scrape until `name{labels}` is `want` (bounded: 100 scrapes)."""
    samples: dict[Any, float] = {}
    for _ in range(100):
        samples = _samples(port)
        if _value(samples, name, **labels) == want:
            return samples
        time.sleep(0.05)
    pytest.fail(f"{name}{labels} never became {want}: "
                f"{_value(samples, name, **labels)}")


TUNNEL = dict(server="example.test", upstream="app")


def test_tunnel_gauge_during_and_after_a_session(wsgate_server, websockets_backend) -> None:
    backend = websockets_backend()
    srv = wsgate_server(CONF, port=free_port(), backend=backend.port)
    with connect(f"ws://127.0.0.1:{srv.port}/ws/chat", open_timeout=5,
                 compression=None) as ws:
        ws.send("hello")
        assert ws.recv(timeout=5) == "hello"
        during = _wait_for(srv.port, "wsgate_tunnels_active", 1, **TUNNEL)
        assert _value(during, "wsgate_tunnels_opened_total", **TUNNEL) == 1
        assert _value(during, "wsgate_connections", state="writing") >= 2
    after = _wait_for(srv.port, "wsgate_tunnels_active", 0, **TUNNEL)
    # The byte tunnel sees no Close frames (close_code "none"), only TCP: after the
    # closing handshake the server closes TCP first (RFC 6455 7.1.1), so "upstream".
    assert _value(after, "wsgate_tunnels_closed_total", close_code="none",
                  closed_by="upstream", **TUNNEL) == 1
    assert _value(after, "wsgate_websocket_handshakes_total", server="example.test",
                  status="101") == 1
    assert _value(after, "wsgate_http_requests_total", server="example.test",
                  upstream="app", status_class="1xx") == 1
    # "hello" masked from the client: 2 + 4 + 5 bytes, plus the client's Close frame
    assert _value(after, "wsgate_tunnel_bytes_total", direction="in", **TUNNEL) >= 11
    assert _value(after, "wsgate_tunnel_bytes_total", direction="out", **TUNNEL) >= 7
    assert _value(after, "wsgate_tunnel_duration_seconds_count", **TUNNEL) == 1
    assert _value(after, "wsgate_tunnel_duration_seconds_bucket", le="86400.0",
                  **TUNNEL) == 1
    srv.stop()
    assert srv.alerts() == []


def test_failed_handshakes_by_status(wsgate_server, websockets_backend) -> None:
    backend = websockets_backend()
    srv = wsgate_server(CONF, port=free_port(), backend=backend.port)
    # nginx's defaults send HTTP/1.0 and drop Upgrade: the backend refuses.
    ws = RawWebSocket.connect("127.0.0.1", srv.port, "/plain", check=False)
    refused = int(ws.status_line.split()[1])
    ws.client.close()
    assert refused != 101
    samples = _wait_for(srv.port, "wsgate_websocket_handshakes_total", 1,
                        server="example.test", status=str(refused))
    assert _value(samples, "wsgate_tunnels_opened_total", **TUNNEL) is None
    srv.stop()


def test_exposition_formats_and_process_metrics(wsgate_server, websockets_backend) -> None:
    backend = websockets_backend()
    srv = wsgate_server(CONF, port=free_port(), backend=backend.port)
    fields, body = _scrape(srv.port)
    assert fields["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert int(fields["content-length"]) == len(body)
    names = {f.name for f in text_string_to_metric_families(body.decode())}
    assert {"process_cpu_seconds", "process_open_fds", "python_info",
            "wsgate_connections_accepted", "wsgate_connections"} <= names
    fields, body = _scrape(srv.port, b"Accept: application/openmetrics-text; "
                                     b"version=1.0.0\r\n")
    assert fields["content-type"].startswith("application/openmetrics-text")
    assert body.endswith(b"# EOF\n")
    fields, body = _scrape(srv.port, b"Accept-Encoding: gzip\r\n")
    assert fields["content-encoding"] == "gzip"
    assert b"wsgate_connections_active" in gzip.decompress(body)
    with RawClient.connect("127.0.0.1", srv.port) as c:
        c.send(b"DELETE /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        status, _, _ = c.read_response()
    assert status == "HTTP/1.1 405 Not Allowed"
    srv.stop()
