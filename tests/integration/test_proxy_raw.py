"""Byte-level checks of the engine through raw sockets: split writes, pipelining,
keep-alive limits, bytes after the upgrade request head and after the 101 head,
half-close of a tunnel, the tunnel's access-log line, reload and graceful stop."""

from __future__ import annotations

import json
import signal
import time

import pytest

from helpers.client import RawClient
from helpers.fixtures import procs, recording_backend, wsgate_server  # noqa: F401
from helpers.ports import free_port

pytestmark = pytest.mark.timeout(60)

CONF = """
events {}
http {
    log_format t "$request $status $bytes_sent $upstream_addr";
    access_log {{prefix}}/t.log t;
    server {
        listen 127.0.0.1:{{port}};
        keepalive_requests 3;
        location / {
            proxy_pass http://127.0.0.1:{{backend}};
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection "upgrade";
        }
        location /plain/ { proxy_pass http://127.0.0.1:{{backend}}; }
        location /r { return 200 "r\\n"; }
    }
}
"""

UPGRADE = (b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")


@pytest.fixture
def setup(wsgate_server, recording_backend, tmp_path):
    backend = recording_backend()
    srv = wsgate_server(CONF, port=free_port(), backend=backend.port, prefix=tmp_path)
    return srv, backend, tmp_path


def test_split_request_head(setup) -> None:
    srv, _, _ = setup
    raw = b"GET /r HTTP/1.1\r\nHost: x\r\n\r\n"
    with RawClient.connect("127.0.0.1", srv.port) as c:
        c.send(raw, split=list(range(1, len(raw))), delay=0.002)
        status, _, body = c.read_response()
    assert status == "HTTP/1.1 200 OK" and body == b"r\n"


def test_pipelined_requests_in_order(setup) -> None:
    srv, backend, _ = setup
    raw = b"".join(b"GET /plain/%d HTTP/1.1\r\nHost: x\r\n\r\n" % i for i in range(3))
    with RawClient.connect("127.0.0.1", srv.port) as c:
        c.send(raw)
        bodies = [c.read_response() for _ in range(3)]
        rest = c.read_until_eof()
    targets = [json.loads(b)["target"] for _, _, b in bodies]
    assert targets == ["/plain/0", "/plain/1", "/plain/2"]
    # keepalive_requests 3: the third response closes the connection
    assert [h["connection"] for _, h, _ in bodies] == ["keep-alive", "keep-alive", "close"]
    assert rest == b""


def test_body_split_and_chunked(setup) -> None:
    srv, backend, _ = setup
    raw = (b"POST /plain/b HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
           b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n")
    with RawClient.connect("127.0.0.1", srv.port) as c:
        c.send(raw, split=[10, 60, 70, 75])
        status, _, body = c.read_response()
    record = json.loads(body)
    assert status.startswith("HTTP/1.1 200")
    assert record["request_line"] == "POST /plain/b HTTP/1.0"
    assert "Content-Length: 5" in record["header_lines"]


def test_bytes_after_upgrade_head_are_relayed(setup) -> None:
    srv, _, _ = setup
    with RawClient.connect("127.0.0.1", srv.port) as c:
        c.send(UPGRADE + b"early-bytes")      # pipelined after the request head
        status, headers, _ = c.read_head()
        assert status == "HTTP/1.1 101 Switching Protocols"
        assert headers["connection"] == "upgrade" and headers["upgrade"] == "websocket"
        assert c.read_exactly(len(b"early-bytes")) == b"early-bytes"
        payload = bytes(range(256)) * 400
        c.send(payload, split=[1, 1000, 50000])
        assert c.read_exactly(len(payload)) == payload


def test_half_close_of_tunnel(setup) -> None:
    srv, _, prefix = setup
    with RawClient.connect("127.0.0.1", srv.port) as c:
        c.send(UPGRADE)
        c.read_head()
        c.send(b"last words")
        c.shutdown_write()
        # the backend echoes, then half-closes in turn: we get the bytes and EOF
        assert c.read_until_eof() == b"last words"
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and "101" not in _read(prefix / "t.log"):
        time.sleep(0.05)
    line = [x for x in _read(prefix / "t.log").splitlines() if " 101 " in x][-1]
    request, status, sent, upstream = line.rsplit(" ", 3)
    assert request == "GET /ws HTTP/1.1" and status == "101"
    assert int(sent) > len(b"last words")     # the 101 head plus the tunnel bytes
    assert upstream.startswith("127.0.0.1:")


def test_reload_keeps_tunnel_and_uses_new_config(setup) -> None:
    srv, _, _ = setup
    with RawClient.connect("127.0.0.1", srv.port) as tunnel:
        tunnel.send(UPGRADE)
        tunnel.read_head()
        srv.conf_path.write_text(srv.conf_text.replace('"r\\n"', '"reloaded\\n"'))
        srv.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 5
        body = b""
        while time.monotonic() < deadline and body != b"reloaded\n":
            with RawClient.connect("127.0.0.1", srv.port) as c:
                c.send(b"GET /r HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                body = c.read_response()[2]
            time.sleep(0.05)
        assert body == b"reloaded\n"
        tunnel.send(b"still here")
        assert tunnel.read_exactly(10) == b"still here"


def test_bad_reload_keeps_old_config(setup) -> None:
    srv, _, _ = setup
    srv.conf_path.write_text(srv.conf_text + "\nbogus_directive;\n")
    srv.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and "bogus_directive" not in srv.error_log():
        time.sleep(0.05)
    assert "[emerg]" in srv.error_log() and "bogus_directive" in srv.error_log()
    with RawClient.connect("127.0.0.1", srv.port) as c:
        c.send(b"GET /r HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert c.read_response()[2] == b"r\n"


def test_graceful_quit_waits_for_tunnel(setup) -> None:
    srv, _, _ = setup
    with RawClient.connect("127.0.0.1", srv.port) as tunnel:
        tunnel.send(UPGRADE)
        tunnel.read_head()
        srv.send_signal(signal.SIGQUIT)
        time.sleep(0.3)
        assert srv.proc is not None and srv.proc.alive()
        tunnel.send(b"during quit")
        assert tunnel.read_exactly(11) == b"during quit"
        tunnel.shutdown_write()
        tunnel.read_until_eof()
    assert srv.proc.wait(10) == 0


def _read(path) -> str:
    try:
        return path.read_text()
    except FileNotFoundError:
        return ""


EMPTY_CONF = """
events {}
http {
    server {
        listen 127.0.0.1:{{port}};
        proxy_read_timeout 30s;
        # HTTP/1.1 without "Connection: close": the backend keeps the connection
        # open after the response, so no EOF can end a wait for body bytes
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        location / { proxy_pass http://127.0.0.1:{{backend}}; }
        location /unbuffered/ {
            proxy_pass http://127.0.0.1:{{backend}};
            proxy_buffering off;
        }
    }
}
"""


@pytest.mark.parametrize("path", ["/empty", "/unbuffered/empty"])
def test_empty_length_body_answers_at_once(wsgate_server, recording_backend, tmp_path,
                                           path) -> None:
    """An upstream "Content-Length: 0" response has nothing to wait for: nginx
    answers at once (wsgate used to wait for body bytes until proxy_read_timeout)."""
    backend = recording_backend(spec={"default": {"status": 200, "body": ""}})
    srv = wsgate_server(EMPTY_CONF, port=free_port(), backend=backend.port, prefix=tmp_path)
    with RawClient.connect("127.0.0.1", srv.port) as c:
        for _ in range(2):      # and the connection stays usable
            c.send(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            status, headers, body = c.read_response(timeout=5)
            assert status == "HTTP/1.1 200 OK" and body == b""
            assert headers["content-length"] == "0"
            assert headers["connection"] == "keep-alive"
