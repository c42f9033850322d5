"""Live differential: real nginx 1.22 in front of a raw recording backend; the
bytes nginx sends upstream and back must equal what wsgate.http builds.

Runs only where Debian's nginx is installed (scripts/setup.sh installs it).
"""

import os
import pathlib
import re
import socket
import subprocess
import threading
import time

import pytest

from wsgate.http.headers import build_client_response_head, build_upstream_request
from wsgate.http.parse import RequestHeadParser
from wsgate.http.response import ResponseHeadParser, response_body_kind

NGINX = "/usr/sbin/nginx"
pytestmark = [pytest.mark.nginx,
              pytest.mark.skipif(not os.path.exists(NGINX), reason="nginx not installed")]

CONF = """
daemon off; master_process off; worker_processes 1;
error_log {prefix}/error.log info; pid {prefix}/nginx.pid;
events {{ worker_connections 32; }}
http {{
  access_log off;
  client_body_temp_path {prefix}/body; proxy_temp_path {prefix}/proxy;
  server {{
    listen 127.0.0.1:{port};
    location /p/ {{ proxy_pass http://127.0.0.1:{backend}; }}
    location /ws/ {{ proxy_pass http://127.0.0.1:{backend}; proxy_http_version 1.1;
      proxy_set_header Upgrade $http_upgrade; proxy_set_header Connection "upgrade";
      proxy_set_header X-Real-IP $remote_addr; }}
    location /nh/ {{ proxy_pass http://127.0.0.1:{backend};
      proxy_pass_request_headers off; proxy_set_header Host "h"; }}
    location /hide/ {{ proxy_pass http://127.0.0.1:{backend};
      proxy_hide_header X-Secret; proxy_pass_header Server; }}
  }}
}}
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Backend:
    """Accepts one connection per exchange, records the request head (+ body by
    Content-Length), answers with a canned response and closes."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(4)
        self.sock.settimeout(5)
        self.port = self.sock.getsockname()[1]

    def exchange(self, response: bytes, box: list):
        conn, _ = self.sock.accept()
        with conn:
            conn.settimeout(5)
            data = b""
            for _ in range(1000):
                if b"\r\n\r\n" in data:
                    head = data.split(b"\r\n\r\n", 1)[0]
                    m = re.search(rb"(?i)\r\ncontent-length: (\d+)", head)
                    if len(data) >= len(head) + 4 + (int(m.group(1)) if m else 0):
                        break
                chunk = conn.recv(65536)
                if not chunk:
                    break
                data += chunk
            box.append(data)
            conn.sendall(response)


@pytest.fixture(scope="module")
def proxy(tmp_path_factory):
    prefix = tmp_path_factory.mktemp("nginx")
    backend = Backend()
    port = _free_port()
    (prefix / "nginx.conf").write_text(CONF.format(prefix=prefix, port=port,
                                                   backend=backend.port))
    proc = subprocess.Popen([NGINX, "-p", str(prefix), "-c", str(prefix / "nginx.conf")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.05)
        yield port, backend
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        backend.sock.close()


def through(proxy, request: bytes, response: bytes):
    port, backend = proxy
    box: list = []
    t = threading.Thread(target=backend.exchange, args=(response, box))
    t.start()
    with socket.create_connection(("127.0.0.1", port), timeout=5) as c:
        c.sendall(request)
        got = b""
        for _ in range(1000):
            chunk = c.recv(65536)
            if not chunk:
                break
            got += chunk
    t.join(timeout=10)
    return box[0], got


OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
CLOSE = b"Connection: close\r\n\r\n"

REQUESTS = [
    ("/p/", "1.0", [], True,
     b"GET /p/x?a=1 HTTP/1.1\r\nHost: h.example\r\nUser-Agent: t\r\nConnection: Upgrade\r\n"
     b"Upgrade: websocket\r\nKeep-Alive: 5\r\nTE: trailers\r\nProxy-Connection: x\r\n"
     b"X-A: 1\r\nX-a: 2\r\nX_U: ignored\r\nX@Y: ignored\r\nhOST-x: 3\r\n" + CLOSE),
    ("/ws/", "1.1", [("Upgrade", "websocket"), ("Connection", "upgrade"),
                     ("X-Real-IP", "127.0.0.1")], True,
     b"GET /ws/x HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nX-B: 1\r\n" + CLOSE),
    ("/nh/", "1.0", [("Host", "h")], False,
     b"POST /nh/ HTTP/1.1\r\nHost: h\r\nX-B: 1\r\nContent-Length: 5\r\n" + CLOSE + b"hello"),
    ("/p/", "1.0", [], True,
     b"POST /p/a/../b HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nX-C: 1\r\n"
     + CLOSE + b"5\r\nhello\r\n0\r\n\r\n"),
]


@pytest.mark.parametrize("location,version,sets,pass_headers,raw", REQUESTS,
                         ids=[r[0] + str(i) for i, r in enumerate(REQUESTS)])
def test_upstream_request_bytes_equal_nginx(proxy, location, version, sets, pass_headers,
                                            raw):
    upstream, _ = through(proxy, raw, OK)
    parser = RequestHeadParser()
    req = parser.feed(raw)
    body = b"hello" if b"hello" in raw else b""
    expected = build_upstream_request(
        req.method, req.request_uri, version, req.headers, sets,
        pass_request_headers=pass_headers,
        body_length=len(body) if (req.content_length is not None or req.chunked) else None,
        proxy_host=f"127.0.0.1:{proxy[1].port}")
    assert upstream == expected + body


RESPONSES = [
    ("/p/", b"HTTP/1.1 200 Fine\r\nX-First: 1\r\nServer: back\r\nDate: d\r\nX-Pad: p\r\n"
            b"X-Accel-Buffering: no\r\nConnection: close, X-First\r\nKeep-Alive: 1\r\n"
            b"Upgrade: h2c\r\nContent-Type: text/x\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\n"
            b"Content-Length: 2\r\nX-Last: 1\r\n\r\nok"),
    ("/p/", b"HTTP/1.0 200 OK\r\nX-First: 1\r\n\r\nok"),
    ("/p/", b"HTTP/1.1 204 No Content\r\nX-A: 1\r\nConnection: close\r\n\r\n"),
    ("/hide/", b"HTTP/1.1 200 OK\r\nServer: back\r\nX-Secret: s\r\nContent-Length: 2\r\n\r\nok"),
]


@pytest.mark.parametrize("location,response", RESPONSES)
def test_client_response_head_equals_nginx(proxy, location, response):
    _, got = through(proxy, b"GET %s HTTP/1.1\r\nHost: h\r\n%s" % (location.encode(), CLOSE), response)
    head = got.split(b"\r\n\r\n", 1)[0] + b"\r\n\r\n"
    date = re.search(rb"\r\nDate: ([^\r]*)", head).group(1)
    parsed = ResponseHeadParser().feed(response)
    kind = response_body_kind(parsed)
    hide = {b"x-secret"} if location == "/hide/" else set()
    pass_ = {b"server"} if location == "/hide/" else set()
    ours = build_client_response_head(
        parsed, keep_alive=False, chunked=kind == "close", date=date, hide=hide, pass_=pass_,
        content_length=parsed.content_length if kind == "length" else None)
    assert ours.replace(b"wsgate/0.1.0", b"nginx/1.22.1") == head
