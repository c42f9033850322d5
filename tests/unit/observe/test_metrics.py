"""The Prometheus exposition: names, types, labels, buckets, peer state, formats."""

import gzip

import pytest
from prometheus_client import REGISTRY
from prometheus_client.openmetrics.parser import text_string_to_metric_families as om_parse
from prometheus_client.parser import text_string_to_metric_families

from wsgate.observe.metrics import (
    DURATION_BUCKETS, Metrics, handle_metrics, status_class)
from wsgate.upstream import ServerSpec, build_peer_set


def _families(m: Metrics) -> dict:
    _, body = m.render("text/plain")
    return {f.name: f for f in text_string_to_metric_families(body.decode())}


def _value(m: Metrics, sample: str, **labels: str) -> float | None:
    for fam in _families(m).values():
        for s in fam.samples:
            if s.name == sample and s.labels == labels:
                return s.value
    return None


def _spec(name: str, port: int, **kw: object) -> ServerSpec:
    return ServerSpec(name, [(name, ("127.0.0.1", port))], **kw)  # type: ignore[arg-type]


@pytest.fixture
def m() -> Metrics:
    return Metrics(process=False)


def test_families_names_and_types(m: Metrics) -> None:
    m.tunnel_opened("s", "app")
    m.handshake("s", 101)
    m.request_done("s", 200, None)
    m.tunnel_closed("s", "app", close_code=1000, closed_by="client", duration=1.0,
                    bytes_in=1, bytes_out=1)
    types = {name: f.type for name, f in _families(m).items()}
    expected = {
        "wsgate_http_requests": "counter", "wsgate_websocket_handshakes": "counter",
        "wsgate_tunnels_active": "gauge", "wsgate_tunnels_opened": "counter",
        "wsgate_tunnels_closed": "counter", "wsgate_tunnel_bytes": "counter",
        "wsgate_tunnel_messages": "counter", "wsgate_tunnel_duration_seconds": "histogram",
        "wsgate_connections_accepted": "counter", "wsgate_connections_handled": "counter",
        "wsgate_connections_active": "gauge", "wsgate_connections": "gauge",
        "wsgate_upstream_peer_up": "gauge", "wsgate_upstream_peer_fails": "gauge",
        "wsgate_upstream_peer_active": "gauge",
    }
    for name, kind in expected.items():
        assert types.get(name) == kind, name


def test_tunnel_gauge_goes_up_and_down(m: Metrics) -> None:
    m.tunnel_opened("ex", "app")
    m.tunnel_opened("ex", "app")
    assert _value(m, "wsgate_tunnels_active", server="ex", upstream="app") == 2
    assert _value(m, "wsgate_tunnels_opened_total", server="ex", upstream="app") == 2
    m.tunnel_closed("ex", "app", close_code=1001, closed_by="upstream", duration=90.0,
                    bytes_in=100, bytes_out=250, messages_in=3, messages_out=5)
    m.tunnel_closed("ex", "app", close_code=None, closed_by="proxy", duration=0.2,
                    bytes_in=7, bytes_out=0)
    assert _value(m, "wsgate_tunnels_active", server="ex", upstream="app") == 0
    assert _value(m, "wsgate_tunnels_closed_total", server="ex", upstream="app",
                  close_code="1001", closed_by="upstream") == 1
    assert _value(m, "wsgate_tunnels_closed_total", server="ex", upstream="app",
                  close_code="none", closed_by="proxy") == 1
    assert _value(m, "wsgate_tunnel_bytes_total", server="ex", upstream="app",
                  direction="in") == 107
    assert _value(m, "wsgate_tunnel_bytes_total", server="ex", upstream="app",
                  direction="out") == 250
    assert _value(m, "wsgate_tunnel_messages_total", server="ex", upstream="app",
                  direction="in") == 3
    assert _value(m, "wsgate_tunnel_messages_total", server="ex", upstream="app",
                  direction="out") == 5


def test_no_upstream_is_an_empty_label(m: Metrics) -> None:
    m.tunnel_opened("ex", None)
    assert _value(m, "wsgate_tunnels_active", server="ex", upstream="") == 1


def test_duration_histogram_buckets(m: Metrics) -> None:
    assert DURATION_BUCKETS[0] == 1.0 and DURATION_BUCKETS[-1] == 86400.0
    for d in (0.5, 4.0, 3600.0, 100000.0):
        m.tunnel_opened("ex", "app")
        m.tunnel_closed("ex", "app", close_code=1000, closed_by="client", duration=d,
                        bytes_in=0, bytes_out=0)
    fam = _families(m)["wsgate_tunnel_duration_seconds"]
    buckets = {s.labels["le"]: s.value for s in fam.samples
               if s.name.endswith("_bucket")}
    assert list(buckets) == [str(b) for b in DURATION_BUCKETS] + ["+Inf"]
    assert buckets["1.0"] == 1 and buckets["5.0"] == 2
    assert buckets["3600.0"] == 3 and buckets["86400.0"] == 3 and buckets["+Inf"] == 4
    assert _value(m, "wsgate_tunnel_duration_seconds_sum", server="ex",
                  upstream="app") == pytest.approx(103604.5)


def test_handshakes_by_status(m: Metrics) -> None:
    for status in (101, 101, 426, 502):
        m.handshake("ex", status)
    assert _value(m, "wsgate_websocket_handshakes_total", server="ex", status="101") == 2
    assert _value(m, "wsgate_websocket_handshakes_total", server="ex", status="426") == 1
    assert _value(m, "wsgate_websocket_handshakes_total", server="ex", status="502") == 1


@pytest.mark.parametrize("status,cls", [(101, "1xx"), (200, "2xx"), (304, "3xx"),
                                        (404, "4xx"), (499, "4xx"), (502, "5xx"),
                                        (0, "other"), (600, "other")])
def test_status_class(status: int, cls: str) -> None:
    assert status_class(status) == cls


def test_requests_by_status_class(m: Metrics) -> None:
    for status in (200, 204, 404, 502):
        m.request_done("ex", status, "app")
    assert _value(m, "wsgate_http_requests_total", server="ex", upstream="app",
                  status_class="2xx") == 2
    assert _value(m, "wsgate_http_requests_total", server="ex", upstream="app",
                  status_class="5xx") == 1


def test_connection_counters_read_at_scrape(m: Metrics) -> None:
    a = m.connections.open()
    a.reading()
    b = m.connections.open()
    b.writing()
    assert _value(m, "wsgate_connections_accepted_total") == 2
    assert _value(m, "wsgate_connections_handled_total") == 2
    assert _value(m, "wsgate_connections_active") == 2
    assert _value(m, "wsgate_connections", state="reading") == 1
    assert _value(m, "wsgate_connections", state="writing") == 1
    assert _value(m, "wsgate_connections", state="waiting") == 0
    a.close()
    assert _value(m, "wsgate_connections_active") == 1


def test_upstream_peer_state_read_from_live_peers() -> None:
    now = 1_000_000
    group = build_peer_set("app", [_spec("127.0.0.1:1", 1), _spec("127.0.0.1:2", 2),
                                   _spec("127.0.0.1:3", 3, down=True),
                                   _spec("127.0.0.1:4", 4, backup=True)])
    m = Metrics(process=False, peers=lambda: {"app": group}, clock=lambda: now)
    first, second = group.peers[0], group.peers[1]
    first.conns = 3
    second.fails, second.checked = 1, now - 2  # max_fails 1 within fail_timeout 10
    up = {p: _value(m, "wsgate_upstream_peer_up", upstream="app", peer=p)
          for p in ("127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3", "127.0.0.1:4")}
    assert up == {"127.0.0.1:1": 1, "127.0.0.1:2": 0, "127.0.0.1:3": 0, "127.0.0.1:4": 1}
    assert _value(m, "wsgate_upstream_peer_active", upstream="app", peer="127.0.0.1:1") == 3
    assert _value(m, "wsgate_upstream_peer_fails", upstream="app", peer="127.0.0.1:2") == 1
    second.checked = now - 11  # the fail_timeout window passed: usable again
    assert _value(m, "wsgate_upstream_peer_up", upstream="app", peer="127.0.0.1:2") == 1


def test_peer_source_can_be_swapped() -> None:
    m = Metrics(process=False)
    assert _families(m)["wsgate_upstream_peer_up"].samples == []
    group = build_peer_set("b", [_spec("127.0.0.1:9", 9)])
    m.set_peer_source(lambda: {"b": group})
    assert _value(m, "wsgate_upstream_peer_up", upstream="b", peer="127.0.0.1:9") == 1


def test_registries_are_private() -> None:
    one, two = Metrics(process=False), Metrics(process=False)
    one.tunnel_opened("ex", "app")
    assert _value(one, "wsgate_tunnels_active", server="ex", upstream="app") == 1
    assert _value(two, "wsgate_tunnels_active", server="ex", upstream="app") is None
    assert not any(name.startswith("wsgate_") for name in REGISTRY._names_to_collectors)


def test_process_metrics() -> None:
    names = set(_families(Metrics()))
    assert {"process_cpu_seconds", "process_resident_memory_bytes", "python_info",
            "python_gc_collections"} <= names
    assert "process_cpu_seconds" not in _families(Metrics(process=False))


def test_openmetrics_when_asked(m: Metrics) -> None:
    m.tunnel_opened("ex", "app")
    ctype, body = m.render("application/openmetrics-text; version=1.0.0,text/plain;q=0.5")
    assert ctype.startswith("application/openmetrics-text")
    assert body.endswith(b"# EOF\n")
    names = {f.name for f in om_parse(body.decode())}
    assert "wsgate_tunnels_active" in names
    ctype, body = m.render(None)
    assert ctype.startswith("text/plain") and not body.endswith(b"# EOF\n")


def test_handle_metrics(m: Metrics) -> None:
    status, headers, body = handle_metrics(m, "GET", "*/*")
    assert status == 200
    assert dict(headers)["Content-Type"].startswith("text/plain; version=0.0.4")
    assert b"wsgate_connections_active" in body
    assert handle_metrics(m, "HEAD")[0] == 200
    assert handle_metrics(m, "POST") == (405, [], b"")


def test_handle_metrics_gzip(m: Metrics) -> None:
    _, headers, body = handle_metrics(m, "GET", None, "deflate, gzip;q=0.8")
    assert dict(headers)["Content-Encoding"] == "gzip"
    assert b"wsgate_connections_active" in gzip.decompress(body)
    _, headers, _ = handle_metrics(m, "GET", None, "gzip;q=0")
    assert "Content-Encoding" not in dict(headers)
