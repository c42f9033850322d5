"""The live status page (`websocket_status;`) lists open tunnels, HTML and JSON."""

from __future__ import annotations

import json
import time

import pytest
from websockets.sync.client import connect

from helpers.client import RawClient
from helpers.fixtures import procs, websockets_backend, wsgate_server  # noqa: F401
from helpers.ports import free_port

CONF = """
events {}
http {
    server {
        listen 127.0.0.1:{{port}};
        server_name example.test;
        location = /status { websocket_status; }
        location /ws {
            proxy_pass http://127.0.0.1:{{backend}};
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection "upgrade";
        }
    }
}
"""


def _get(port: int, target: str, accept: str = "*/*") -> tuple[dict[str, str], bytes]:
    with RawClient.connect("127.0.0.1", port, timeout=5.0) as c:
        c.send(f"GET {target} HTTP/1.1\r\nHost: example.test\r\nAccept: {accept}\r\n"
               f"Connection: close\r\n\r\n".encode())
        status, fields, body = c.read_response()
    assert status == "HTTP/1.1 200 OK", status
    return fields, body


def _tunnels(port: int, count: int) -> list[dict]:
    """The JSON page's tunnels once there are `count` (bounded: 100 polls)."""
    doc: dict = {}
    for _ in range(100):
        _, body = _get(port, "/status?format=json")
        doc = json.loads(body)
        if len(doc["tunnels"]) == count:
            return doc["tunnels"]
        time.sleep(0.05)
    pytest.fail(f"never {count} tunnels: {doc}")


def test_status_page_lists_live_tunnels(wsgate_server, websockets_backend) -> None:
    backend = websockets_backend()
    srv = wsgate_server(CONF, port=free_port(), backend=backend.port)
    assert _tunnels(srv.port, 0) == []
    with connect(f"ws://127.0.0.1:{srv.port}/ws/a?x=1", open_timeout=5,
                 compression=None) as ws:  # so the byte counts are the frames
        ws.send("x" * 100)
        assert ws.recv(timeout=5) == "x" * 100
        (row,) = _tunnels(srv.port, 1)
        assert row["server"] == "example.test" and row["uri"] == "/ws/a?x=1"
        assert row["upstream"] == f"127.0.0.1:{backend.port}"
        assert row["peer"] == f"127.0.0.1:{backend.port}"
        assert row["client"].startswith("127.0.0.1:")
        assert row["bytes_in"] >= 106 and row["bytes_out"] >= 102  # one frame each way
        fields, page = _get(srv.port, "/status", accept="text/html")
        assert fields["content-type"] == "text/html; charset=utf-8"
        assert b"<h2>Open tunnels: 1</h2>" in page and b"/ws/a?x=1" in page
    assert _tunnels(srv.port, 0) == []
    srv.stop()
    assert srv.alerts() == []
