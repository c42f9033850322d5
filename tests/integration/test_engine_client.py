"""The engine's client side against wsgate alone, where nginx cannot be compared
byte for byte (timing) or where the point is wsgate's own log: an SSI include
whose upstream answers 101 (never upgraded; nginx's error line), keepalive_time
and keepalive_timeout, client_body_timeout (408 in the access log, no answer)."""

from __future__ import annotations

import base64
import os
import time
from pathlib import Path
from typing import Any, Callable

import pytest

from helpers.client import RawClient
from helpers.fixtures import procs, websockets_backend, wsgate_server  # noqa: F401
from helpers.ports import free_port

pytestmark = pytest.mark.timeout(60)

SSI_UPGRADE = r"""
events {}
http {
    log_format t "$request_uri $status $body_bytes_sent";
    access_log {{prefix}}/t.log t;
    server {
        listen 127.0.0.1:{{port}};
        root {{root}};
        location /ws {
            proxy_pass http://{{backend}};
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection "upgrade";
        }
        location /ssi.html { ssi on; }
    }
}
"""


def _handshake(path: str) -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    return (f"GET {path} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n").encode()


def test_ssi_include_never_upgrades(tmp_path: Path, wsgate_server: Callable[..., Any],
                                    websockets_backend: Callable[..., Any]) -> None:
    backend = websockets_backend()
    root = tmp_path / "root"
    root.mkdir()
    (root / "ssi.html").write_bytes(b'before<!--# include virtual="/ws" -->after')
    server = wsgate_server(SSI_UPGRADE, port=_port(), root=root, backend=backend.address,
                           prefix=tmp_path / "wsgate-1")
    # the real thing works: the main request to /ws is upgraded
    with RawClient.connect("127.0.0.1", server.port) as client:
        client.send(_handshake("/ws"))
        status, _, _ = client.read_head(timeout=10)
        assert status.startswith("HTTP/1.1 101")
    # through SSI it is a subrequest: no 101 reaches the client, the page is cut
    with RawClient.connect("127.0.0.1", server.port) as client:
        client.send(_handshake("/ssi.html"))
        data = client.read_until_eof(10)
    assert b" 101 " not in data
    assert data.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"before" in data and b"after" not in data
    assert "connection upgrade in subrequest" in server.error_log()
    assert server.alerts() == []


def test_ssi_page_for_upgrade_request_without_proxy(tmp_path: Path,
                                                    wsgate_server: Callable[..., Any],
                                                    websockets_backend: Callable[..., Any]
                                                    ) -> None:
    """Upgrade asked of a static SSI page: SSI runs (only proxy_pass can upgrade)."""
    backend = websockets_backend()
    root = tmp_path / "root"
    root.mkdir()
    (root / "ssi.html").write_bytes(b'<!--# echo var="http_upgrade" -->')
    server = wsgate_server(SSI_UPGRADE, port=_port(), root=root, backend=backend.address,
                           prefix=tmp_path / "wsgate-1")
    with RawClient.connect("127.0.0.1", server.port) as client:
        client.send(_handshake("/ssi.html")[:-2] + b"Connection: close\r\n\r\n")
        data = client.read_until_eof(10)
    assert data.endswith(b"\r\n\r\n9\r\nwebsocket\r\n0\r\n\r\n")


KEEPALIVE = r"""
events {}
http {
    log_format t "$request_uri $status $body_bytes_sent";
    access_log {{prefix}}/t.log t;
    server {
        listen 127.0.0.1:{{port}};
        keepalive_timeout 1 9;
        location /time { keepalive_time 1s; keepalive_timeout 30; return 200 "t\n"; }
        location /short { return 200 "s\n"; }
        location /body { client_body_timeout 1s; proxy_pass http://127.0.0.1:{{port}}/short; }
    }
}
"""


def _get(path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode()


def test_keepalive_time_closes_after_the_connection_lifetime(
        tmp_path: Path, wsgate_server: Callable[..., Any]) -> None:
    server = wsgate_server(KEEPALIVE, port=_port(), prefix=tmp_path / "wsgate-1")
    with RawClient.connect("127.0.0.1", server.port) as client:
        client.send(_get("/time"))
        status, headers, _ = client.read_response(timeout=5)
        assert headers.get("connection") == "keep-alive" and "keep-alive" not in headers
        time.sleep(1.2)
        client.send(_get("/time"))
        status, headers, _ = client.read_response(timeout=5)
        assert status.startswith("HTTP/1.1 200") and headers.get("connection") == "close"


def test_keepalive_timeout_header_and_idle_close(tmp_path: Path,
                                                 wsgate_server: Callable[..., Any]) -> None:
    server = wsgate_server(KEEPALIVE, port=_port(), prefix=tmp_path / "wsgate-1")
    with RawClient.connect("127.0.0.1", server.port) as client:
        client.send(_get("/short"))
        _, headers, _ = client.read_response(timeout=5)
        assert headers.get("keep-alive") == "timeout=9"
        started = time.monotonic()
        assert client.read_until_eof(5) == b""       # closed after keepalive_timeout 1
        assert time.monotonic() - started < 4


def test_client_body_timeout_is_408_without_answer(tmp_path: Path,
                                                   wsgate_server: Callable[..., Any]) -> None:
    server = wsgate_server(KEEPALIVE, port=_port(), prefix=tmp_path / "wsgate-1")
    with RawClient.connect("127.0.0.1", server.port) as client:
        client.send(b"POST /body HTTP/1.1\r\nHost: localhost\r\nContent-Length: 10\r\n\r\n12")
        assert client.read_until_eof(5) == b""
    deadline = time.monotonic() + 5
    log = ""
    while time.monotonic() < deadline and "/body" not in log:
        log = (tmp_path / "wsgate-1" / "t.log").read_text() \
            if (tmp_path / "wsgate-1" / "t.log").exists() else ""
        time.sleep(0.05)
    assert "/body 408 0" in log


def _port() -> int:
    return free_port()
