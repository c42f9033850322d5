"""The shared test helpers work: each backend starts, answers as documented, stops;
the nginx runner proxies to the recording backend; the wsgate runner runs `-t`."""

from __future__ import annotations

import base64
import json
import time

import pytest

from helpers.client import BINARY, TEXT, RawClient, RawWebSocket
from helpers.fixtures import (nginx_server, node_backend, procs, recording_backend,  # noqa: F401
                              shared_config, websockets_backend, wsgate_server)
from helpers.nginx import (NginxServer, WsgateServer, listen_addresses, substitute_ports)
from helpers.ports import free_port, port_open, wait_port

pytestmark = pytest.mark.timeout(60)

UPGRADE_10 = (b"GET / HTTP/1.0\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
              b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")


def get(port: int, path: str, extra: bytes = b"") -> tuple[str, dict[str, str], bytes]:
    with RawClient.connect("127.0.0.1", port) as c:
        c.send(f"GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n".encode()
               + extra + b"\r\n")
        return c.read_response()


# --- ports and processes -----------------------------------------------------------------

def test_free_port_is_bindable_and_wait_port_times_out() -> None:
    port = free_port()
    assert not port_open("127.0.0.1", port)
    start = time.monotonic()
    with pytest.raises(TimeoutError):
        wait_port("127.0.0.1", port, timeout=0.3)
    assert time.monotonic() - start < 5


def test_process_group_kills_children(procs) -> None:  # noqa: F811
    proc = procs.start(["sh", "-c", "sleep 300 & sleep 300; echo never"], name="sleepers")
    assert proc.alive()
    procs.stop_all()
    assert not proc.alive()


# --- websockets backend ------------------------------------------------------------------

def test_websockets_backend_echo_http_and_http10_refusal(websockets_backend) -> None:  # noqa: F811
    ws_backend = websockets_backend()
    ws = RawWebSocket.connect("127.0.0.1", ws_backend.port, "/echo")
    ws.send_text("héllo")
    assert ws.recv_message() == (TEXT, "héllo".encode())
    ws.send_binary(b"\x00\x01" * 200)
    assert ws.recv_message() == (BINARY, b"\x00\x01" * 200)
    assert ws.close(1000)[:2] == b"\x03\xe8"

    status, _, body = get(ws_backend.port, "/http")
    assert status == "HTTP/1.1 200 OK" and body == b"hello from websockets /http\n"
    status, _, _ = get(ws_backend.port, "/")
    assert status == "HTTP/1.1 426 Upgrade Required"
    with RawClient.connect("127.0.0.1", ws_backend.port) as c:
        c.send(UPGRADE_10)
        status, _, body = c.read_response()
    assert status == "HTTP/1.1 505 HTTP Version Not Supported"
    assert b"unsupported HTTP version: HTTP/1.0" in body
    ws_backend.stop()
    assert not port_open("127.0.0.1", ws_backend.port)


# --- node ws backend ---------------------------------------------------------------------

@pytest.mark.node
def test_node_backend_echo_and_426(node_backend) -> None:  # noqa: F811
    node = node_backend()
    ws = RawWebSocket.connect("127.0.0.1", node.port, "/")
    ws.send_text("x" * 70000)
    assert ws.recv_message() == (TEXT, b"x" * 70000)
    ws.close()
    status, headers, body = get(node.port, "/")
    assert status == "HTTP/1.1 426 Upgrade Required" and body == b"Upgrade Required"
    assert "server" not in headers
    node.stop()
    assert not port_open("127.0.0.1", node.port)


# --- recording backend -------------------------------------------------------------------

def test_recording_backend_records_keepalive_and_bodies(recording_backend) -> None:  # noqa: F811
    rec = recording_backend()
    with RawClient.connect("127.0.0.1", rec.port) as c:
        c.send(b"POST /a?b=1 HTTP/1.1\r\nHost: h\r\nX-One: 1\r\nx-one: 2\r\n"
               b"Content-Length: 5\r\n\r\nhello", split=[7, 30])
        _, headers, body = c.read_response()
        first = json.loads(body)
        c.send(b"PUT /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"3\r\nabc\r\n2;x=y\r\nde\r\n0\r\nT: v\r\n\r\n")
        _, _, body = c.read_response()
        second = json.loads(body)
    assert headers["content-type"] == "application/json"
    assert first["request_line"] == "POST /a?b=1 HTTP/1.1"
    assert first["header_lines"] == ["Host: h", "X-One: 1", "x-one: 2", "Content-Length: 5"]
    assert base64.b64decode(first["body_b64"]) == b"hello"
    assert (second["conn"], second["seq"]) == (first["conn"], 1)
    assert base64.b64decode(second["body_b64"]) == b"abcde"
    assert base64.b64decode(second["raw_body_b64"]).startswith(b"3\r\nabc\r\n2;x=y")
    assert second["trailer_lines"] == ["T: v"]
    assert [r["target"] for r in rec.records()] == ["/a?b=1", "/c"]


def test_recording_backend_upgrade_echoes_bytes_after_101(recording_backend) -> None:  # noqa: F811
    rec = recording_backend()
    ws = RawWebSocket.connect("127.0.0.1", rec.port, "/ws")   # checks the accept key
    ws.client.send(b"raw bytes, not even frames", split=[3])
    assert ws.client.read_exactly(26) == b"raw bytes, not even frames"
    ws.client.shutdown_write()
    assert ws.client.read_until_eof() == b""
    assert rec.records()[0]["upgraded"] is True


def test_recording_backend_scripted_responses(recording_backend) -> None:  # noqa: F811
    rec = recording_backend(spec={"routes": [
        {"path": "/chunked", "response": {"status": 201, "body": "abc", "framing": "chunked",
                                          "headers": [["X-A", "1"]]}},
        {"path": "/once", "times": 1, "response": {"status": 503, "body": "busy"}},
        {"path": "/garbage", "response": {"raw": "NOT HTTP\r\n\r\n"}},
        {"path": "/cut", "response": {"status": 200, "headers": [["Content-Length", "10"]],
                                      "framing": "none", "body": "12", "keep_alive": False}},
        {"path": "/reset", "response": {"reset": True}},
        {"path": "/slow", "response": {"delay": 0.5, "body": "late"}},
        {"path": "/badaccept", "response": {"upgrade": True, "accept": "wrong="}},
    ]})
    status, headers, body = get(rec.port, "/chunked")
    assert (status, headers["transfer-encoding"], headers["x-a"], body) == \
        ("HTTP/1.1 201 Created", "chunked", "1", b"abc")
    assert get(rec.port, "/once")[0] == "HTTP/1.1 503 Service Unavailable"
    assert get(rec.port, "/once")[0] == "HTTP/1.1 200 OK"      # falls through to default
    with RawClient.connect("127.0.0.1", rec.port) as c:
        c.send(b"GET /garbage HTTP/1.1\r\nHost: x\r\n\r\n")
        assert c.read_until_eof() == b"NOT HTTP\r\n\r\n"
    with RawClient.connect("127.0.0.1", rec.port) as c:
        c.send(b"GET /cut HTTP/1.1\r\nHost: x\r\n\r\n")
        assert c.read_until_eof().endswith(b"Content-Length: 10\r\n\r\n12")
    with RawClient.connect("127.0.0.1", rec.port) as c:
        c.send(b"GET /reset HTTP/1.1\r\nHost: x\r\n\r\n")
        with pytest.raises(ConnectionResetError):
            c.read_until_eof()
    start = time.monotonic()
    assert get(rec.port, "/slow")[2] == b"late"
    assert time.monotonic() - start >= 0.5
    ws = RawWebSocket.connect("127.0.0.1", rec.port, "/badaccept", check=False)
    assert ws.status_line.startswith("HTTP/1.1 101") and ws.headers["sec-websocket-accept"] == "wrong="


# --- nginx and wsgate runners ------------------------------------------------------------

PROXY_CONF = """events {}
http {
    server {
        listen 127.0.0.1:{{port}};
        location / {
            proxy_pass http://127.0.0.1:{{backend}};
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection "upgrade";
        }
    }
}
"""


@pytest.mark.nginx
def test_nginx_runner_proxies_to_recording_backend(nginx_server, recording_backend) -> None:  # noqa: F811
    rec = recording_backend()
    srv = nginx_server(PROXY_CONF, port=free_port(), backend=rec.port)
    status, _, body = get(srv.port, "/x?y")
    assert status == "HTTP/1.1 200 OK"
    seen = json.loads(body)
    assert seen["request_line"] == "GET /x?y HTTP/1.1"
    assert f"Host: 127.0.0.1:{rec.port}" in seen["header_lines"]
    assert "Connection: upgrade" in seen["header_lines"]
    ws = RawWebSocket.connect("127.0.0.1", srv.port, "/tunnel")
    ws.client.send(b"through nginx")
    assert ws.client.read_exactly(13) == b"through nginx"
    ws.client.close()
    assert "GET /x?y HTTP/1.1" in srv.access_log()
    assert srv.alerts() == []
    srv.stop()
    assert not port_open("127.0.0.1", srv.port)


@pytest.mark.nginx
def test_nginx_runner_reports_startup_failure(nginx_server) -> None:  # noqa: F811
    with pytest.raises(Exception, match="unknown directive"):
        nginx_server("events {}\nhttp { bogus_directive on; server { listen 127.0.0.1:{{p}}; } }",
                     p=free_port())


def test_substitute_ports_and_loopback_guard(shared_config) -> None:  # noqa: F811
    text = substitute_ports(shared_config("docs-chat-map.conf"), {8080: 41000, 3000: 42000, 3001: 42001})
    assert "listen 127.0.0.1:41000;" in text
    assert "server 127.0.0.1:42000;" in text and "server 127.0.0.1:42001;" in text
    assert listen_addresses(text) == [("127.0.0.1", 41000)]
    text = substitute_ports(shared_config("article-map-complete.conf"), {8080: 41000, 3000: 42000})
    assert "proxy_pass http://localhost:42000;" in text
    with pytest.raises(ValueError, match="loopback"):
        listen_addresses("listen 0.0.0.0:80;")
    with pytest.raises(ValueError, match="binds every address"):
        listen_addresses("  listen 80;")


def test_wsgate_runner_builds_the_same_command_as_nginx(tmp_path) -> None:
    conf = PROXY_CONF
    params = {"port": 1, "backend": 2}
    ng = NginxServer(conf, tmp_path / "n", params=params)
    wg = WsgateServer(conf, tmp_path / "w", params=params)
    assert ng.command()[1:] == [a.replace(str(tmp_path / "w"), str(tmp_path / "n"))
                                for a in wg.command()[1:]]
    assert ng.command()[0] == "/usr/sbin/nginx" and wg.command()[0].endswith("/wsgate")
    assert "daemon off; master_process off;" in ng.command()[-1]


@pytest.mark.nginx
def test_nginx_accepts_the_runner_flags(tmp_path) -> None:
    srv = NginxServer(PROXY_CONF, tmp_path / "n", params={"port": free_port(), "backend": 9})
    done = srv.test_config()
    assert done.returncode == 0, done.stderr
    assert "test is successful" in done.stderr


def test_wsgate_runner_t(wsgate_server) -> None:  # noqa: F811
    """`wsgate -t` through the runner, with exactly the flags nginx gets."""
    srv = wsgate_server(PROXY_CONF, start=False, port=free_port(), backend=9)
    done = srv.test_config()
    assert done.returncode == 0, done.stdout + done.stderr
    assert "test is successful" in done.stderr
