"""The live status page: a pure function from a tunnel snapshot to HTML or JSON."""

import json

from wsgate.observe.status import (
    ConnectionCounters, LiveTunnels, TunnelInfo, TunnelRecord, handle_status,
    render_status_html, render_status_json)


def _info(**kw: object) -> TunnelInfo:
    base = dict(id=1, server="example.com", client="127.0.0.1:5555", upstream="app",
                peer="127.0.0.1:3000", uri="/ws", age=75.4, bytes_in=10, bytes_out=20,
                messages_in=1, messages_out=2)
    base.update(kw)
    return TunnelInfo(**base)  # type: ignore[arg-type]


def test_live_tunnels_snapshot_reads_probes() -> None:
    live = LiveTunnels()
    counts = [5, 6, 1, 2]
    a = live.add(TunnelRecord("s", "127.0.0.1:1", "app", "127.0.0.1:3000", "/a",
                              started=100.0, probe=lambda: tuple(counts)))  # type: ignore
    b = live.add(TunnelRecord("s", "127.0.0.1:2", "app", "127.0.0.1:3001", "/b",
                              started=130.0))
    assert (a.id, b.id, len(live)) == (1, 2, 2)
    snap = live.snapshot(now=160.0)
    assert [t.uri for t in snap] == ["/a", "/b"]
    assert snap[0].age == 60.0 and snap[0].bytes_in == 5 and snap[0].messages_out == 2
    assert (snap[1].bytes_in, snap[1].messages_in) == (0, 0)
    counts[0] = 50
    assert live.snapshot(now=160.0)[0].bytes_in == 50
    live.remove(a)
    live.remove(a)
    assert [t.id for t in live.snapshot(now=200.0)] == [2]


def test_json_document() -> None:
    c = ConnectionCounters()
    c.open().writing()
    doc = json.loads(render_status_json([_info(), _info(id=2, age=1.23456)], c))
    assert doc["connections"] == {"active": 1, "accepted": 1, "handled": 1,
                                  "requests": 1, "reading": 0, "writing": 1,
                                  "waiting": 0}
    assert doc["tunnels"][0] == {"id": 1, "server": "example.com",
                                 "client": "127.0.0.1:5555", "upstream": "app",
                                 "peer": "127.0.0.1:3000", "uri": "/ws", "age": 75.4,
                                 "bytes_in": 10, "bytes_out": 20, "messages_in": 1,
                                 "messages_out": 2}
    assert doc["tunnels"][1]["age"] == 1.235


def test_html_lists_tunnels_escaped() -> None:
    page = render_status_html([_info(uri="/ws?<script>", age=3725.0)]).decode()
    assert page.startswith("<!DOCTYPE html>")
    assert '<meta http-equiv="refresh" content="5">' in page
    assert "<h2>Open tunnels: 1</h2>" in page
    assert "&lt;script&gt;" in page and "<script>" not in page
    assert "<td>1:02:05</td>" in page  # age h:mm:ss
    assert "<td>127.0.0.1:5555</td>" in page and "<td>20</td>" in page


def test_html_when_empty() -> None:
    page = render_status_html([], ConnectionCounters()).decode()
    assert "<h2>Open tunnels: 0</h2>" in page and ">none</td>" in page
    assert "active: 0" in page


def test_handle_status_picks_format() -> None:
    status, headers, body = handle_status([_info()], "GET")
    assert status == 200 and dict(headers)["Content-Type"] == "text/html; charset=utf-8"
    assert dict(headers)["Cache-Control"] == "no-store"
    _, headers, body = handle_status([_info()], "GET", args="format=json")
    assert dict(headers)["Content-Type"] == "application/json"
    assert json.loads(body)["tunnels"][0]["id"] == 1
    _, headers, _ = handle_status([], "GET", accept="application/json")
    assert dict(headers)["Content-Type"] == "application/json"
    _, headers, _ = handle_status([], "GET", accept="text/html,application/json;q=0.9")
    assert dict(headers)["Content-Type"].startswith("text/html")
    _, headers, _ = handle_status([], "GET", accept="application/json",
                                  args="a=1&format=html")
    assert dict(headers)["Content-Type"].startswith("text/html")
    assert handle_status([], "POST") == (405, [], b"")
