"""Graceful stop and reload while a plain proxied request is under way in protocol
callbacks (proxy/inline.py: no task waits for it): the request must be answered in
full, an idle keep-alive connection must be closed at once, and the process must
exit (QUIT) or the old generation's connection close after its answer (HUP). The
answer says "Connection: close", as the connection does not stay. (Run against
nginx 1.22, this very test saw it close the busy connection without an answer on
QUIT, and keep it open after the answer on a reload: wsgate does not follow it
there.)"""

from __future__ import annotations

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
    log_format t "$request $status $upstream_status";
    access_log {{prefix}}/t.log t;
    upstream u {
        server 127.0.0.1:{{backend}};
        keepalive 4;
    }
    server {
        listen 127.0.0.1:{{port}};
        location / {
            proxy_pass http://u;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
"""

SPEC = {"routes": [
    {"path": "/slow", "response": {"delay": 1.0, "body": "slow answer\n"}},
    {"path": "/fast", "response": {"body": "fast answer\n"}},
]}


def _get(path: str, close: bool = False) -> bytes:
    extra = "Connection: close\r\n" if close else ""
    return f"GET {path} HTTP/1.1\r\nHost: x\r\n{extra}\r\n".encode()


@pytest.fixture
def setup(wsgate_server, recording_backend, tmp_path):  # noqa: F811
    backend = recording_backend(spec=SPEC)
    srv = wsgate_server(CONF, port=free_port(), backend=backend.port, prefix=tmp_path)
    return srv, tmp_path


def test_quit_answers_the_request_in_flight_and_closes_idle_ones(setup) -> None:
    srv, tmp = setup
    with RawClient.connect("127.0.0.1", srv.port) as idle, \
            RawClient.connect("127.0.0.1", srv.port) as busy:
        idle.send(_get("/fast"))
        assert idle.read_response()[2] == b"fast answer\n"   # now idle, kept alive
        busy.send(_get("/slow"))
        time.sleep(0.3)                          # the upstream is still thinking
        srv.send_signal(signal.SIGQUIT)
        t0 = time.monotonic()
        assert idle.read_until_eof(timeout=5) == b""         # closed at once
        assert time.monotonic() - t0 < 0.9, "the idle connection waited for the busy one"
        status, headers, body = busy.read_response(timeout=5)
        assert status == "HTTP/1.1 200 OK" and body == b"slow answer\n"
        assert headers.get("connection") == "close"
        assert busy.read_until_eof(timeout=5) == b""
    assert srv.proc is not None and srv.proc.wait(10) == 0
    log = (tmp / "t.log").read_text()
    assert "GET /slow HTTP/1.1 200 200" in log


def test_reload_answers_the_request_in_flight_then_closes(setup) -> None:
    srv, _ = setup
    with RawClient.connect("127.0.0.1", srv.port) as busy:
        busy.send(_get("/slow"))
        time.sleep(0.3)
        srv.send_signal(signal.SIGHUP)
        status, headers, body = busy.read_response(timeout=5)
        assert status == "HTTP/1.1 200 OK" and body == b"slow answer\n"
        assert headers.get("connection") == "close"
        # the old generation keeps no connection alive after its answer
        assert busy.read_until_eof(timeout=5) == b""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and "reconfiguring" not in srv.error_log():
        time.sleep(0.05)
    with RawClient.connect("127.0.0.1", srv.port) as fresh:
        fresh.send(_get("/fast", close=True))
        assert fresh.read_response(timeout=5)[2] == b"fast answer\n"
