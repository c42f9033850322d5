"""Fuzzing the running proxy with mutated request heads (byte flips, inserted
CR/LF/NUL/SP/TAB/colon/high bytes, deleted bytes, duplicated header lines, truncation)
of a few valid requests.

Invariant, per example, on one fresh connection that sends the bytes and then
half-closes: within a few seconds the server either answers with a well-formed
status line (`HTTP/1.x NNN ...`; an HTTP/0.9 request may get a bare body) or closes
the connection; it never hangs, never logs [alert]/[crit]/[emerg] or a traceback, and
keeps serving a normal request afterwards.
"""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from helpers import backends
from helpers.nginx import WsgateServer
from helpers.ports import free_port
from helpers.procs import ProcessGroup

pytestmark = pytest.mark.timeout(180)

CONF = """
events {}
http {
    client_header_timeout 2s;
    client_body_timeout 2s;
    keepalive_timeout 2s;
    large_client_header_buffers 4 1k;
    server {
        listen 127.0.0.1:{{port}};
        location / { proxy_pass http://127.0.0.1:{{backend}}; proxy_read_timeout 3s; }
        location /ws { proxy_pass http://127.0.0.1:{{backend}};
                       proxy_http_version 1.1;
                       proxy_set_header Upgrade $http_upgrade;
                       proxy_set_header Connection "upgrade"; }
        location = /r { return 200 "r\\n"; }
    }
}
"""

SEEDS = [
    b"GET /a/b?x=1 HTTP/1.1\r\nHost: example.com\r\nUser-Agent: f\r\nAccept: */*\r\n"
    b"Connection: close\r\n\r\n",
    b"POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
    b"POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    b"5\r\nhello\r\n0\r\n\r\n",
    b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    b"GET /r HTTP/1.0\r\n\r\n",
]
INSERTS = [b"\r", b"\n", b"\x00", b" ", b"\t", b":", b"\xff", b"\x7f", b"\r\n", b"\r\n\r\n"]
STATUS = re.compile(rb"HTTP/1\.[01] [1-5]\d\d[ \r]")
DEADLINE = 6.0            # > client_header_timeout + proxy_read_timeout slack


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.sampled_from(["flip", "insert", "delete", "dup", "truncate"]))
        pos = draw(st.integers(0, max(0, len(data) - 1)))
        if op == "flip" and data:
            data[pos] ^= draw(st.integers(1, 255))
        elif op == "insert":
            data[pos:pos] = draw(st.sampled_from(INSERTS))
        elif op == "delete" and data:
            del data[pos]
        elif op == "dup":
            data = bytearray(_duplicate_line(bytes(data), pos))
        elif op == "truncate":
            del data[pos:]
    return bytes(data)


def _duplicate_line(data: bytes, pos: int) -> bytes:
    """Repeat the CRLF-terminated line that contains `pos` (a duplicated header)."""
    start = data.rfind(b"\r\n", 0, pos) + 2       # 0 when there is no earlier CRLF
    end = data.find(b"\r\n", pos)
    if end < 0:
        return data
    return data[:end + 2] + data[start:end + 2] + data[end + 2:]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WsgateServer]:
    base = tmp_path_factory.mktemp("proxyfuzz")
    procs = ProcessGroup(base)
    try:
        backend = backends.start_recording(procs, spec={"default": {"body": "ok\n"}})
        srv = WsgateServer(CONF, base / "wsgate", procs=procs,
                           params={"port": free_port(), "backend": backend.port})
        yield srv.start()
    finally:
        procs.stop_all()


def exchange(port: int, data: bytes) -> tuple[bytes, str]:
    """Send, half-close, read until EOF/RST or DEADLINE: (bytes, "eof"|"reset"|"hang")."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        try:
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            return b"", "reset"
        got, end = bytearray(), time.monotonic() + DEADLINE
        while (left := end - time.monotonic()) > 0:
            sock.settimeout(left)
            try:
                chunk = sock.recv(65536)
            except socket.timeout:
                break
            except ConnectionResetError:
                return bytes(got), "reset"
            if not chunk:
                return bytes(got), "eof"
            got += chunk
        return bytes(got), "hang"


def _is_http09(data: bytes) -> bool:
    first = data.split(b"\n", 1)[0]
    return b" HTTP/" not in first and b"\tHTTP/" not in first


def _healthy(server: WsgateServer) -> list[str]:
    bad = list(server.alerts())
    log = server.error_log() + server.output()
    if "Traceback" in log:
        bad.append(log[log.find("Traceback"):][:3000])
    return bad


def _serves(port: int) -> bool:
    got, _ = exchange(port, b"GET /r HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    return got.startswith(b"HTTP/1.1 200 OK") and got.endswith(b"\r\n\r\nr\n")


@settings(max_examples=200, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=mutated())
def test_mutated_heads_get_a_status_line_or_a_clean_close(server: WsgateServer,
                                                          data: bytes) -> None:
    got, end = exchange(server.port, data)
    assert end != "hang", f"no answer and no close within {DEADLINE}s for {data!r}: {got!r}"
    if got and not _is_http09(data):
        assert STATUS.match(got), f"malformed reply to {data!r}: {got[:200]!r}"
    assert _healthy(server) == [], f"after {data!r}"
    assert _serves(server.port), f"no longer serving after {data!r}"


def test_still_serving_after_fuzz(server: WsgateServer) -> None:
    for seed in SEEDS:
        exchange(server.port, seed)
    assert _serves(server.port)
    assert _healthy(server) == []

