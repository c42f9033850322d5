"""Bad input on a TLS port at run time, wsgate next to real nginx on the same config:
a client that stalls after a complete ClientHello (mid-handshake, the server's
flight sent) is closed after client_header_timeout; SSLv2-looking garbage and a
corrupt record after the handshake close that one connection; an established wss
tunnel and new clients are served meanwhile, with no traceback or [alert].

(Garbage after a handshake byte and a stall inside the ClientHello are in
test_tls_proxy.py and test_tls_accept.py.)"""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
from typing import Any

import pytest
from websockets.asyncio.client import connect

from helpers.fixtures import nginx_server, procs, websockets_backend, wsgate_server  # noqa: F401
from helpers.ports import free_port
from integration.test_tls_proxy import WS, client_ctx, https_get, pki, tls_conf  # noqa: F401

pytestmark = pytest.mark.timeout(60)

SERVERS = ["wsgate", "nginx"]


def start(kind: str, request: pytest.FixtureRequest, pki: dict[str, Any], body: str,
          tmp_path: Any) -> tuple[Any, int, Any]:
    port = free_port()
    info_log = tmp_path / f"{kind}-info.log"
    factory = request.getfixturevalue(f"{kind}_server")
    srv = factory(tls_conf(pki, port, "client_header_timeout 1s; " + body,
                           main=f"error_log {info_log} info;"))
    return srv, port, info_log


def stall_after_client_hello(port: int, pki: dict[str, Any]) -> tuple[socket.socket, bytes]:
    """Send a whole ClientHello, read the server's flight, then say nothing more."""
    ctx = client_ctx(pki)
    ctx.check_hostname = False
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ctx.wrap_bio(incoming, outgoing, server_hostname="a.example")
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(outgoing.read())
    return sock, sock.recv(65536)


def assert_clean(srv: Any, info_log: Any) -> None:
    """No [alert], no traceback: not on the output, not in the error log."""
    assert srv.alerts() == [] and "Traceback" not in srv.output()
    assert "Traceback" not in info_log.read_text()


def wait_for(path: Any, text: str, timeout: float = 5.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        log = path.read_text() if path.exists() else ""
        if text in log:
            return log
        time.sleep(0.05)
    return path.read_text() if path.exists() else ""


@pytest.mark.parametrize("kind", SERVERS)
def test_a_stall_after_the_client_hello_is_closed_after_the_header_timeout(
        kind, request, pki, tmp_path):
    srv, port, info_log = start(kind, request, pki, 'location / { return 200 "ok\\n"; }',
                                tmp_path)
    sock, flight = stall_after_client_hello(port, pki)
    assert flight[:1] == b"\x16"                     # the ServerHello came back
    started = time.monotonic()
    assert https_get(port, pki)[0].endswith(b"ok\n")     # others are served meanwhile
    sock.settimeout(10)
    assert sock.recv(1024) == b""                    # then the server closes it
    waited = time.monotonic() - started
    sock.close()
    assert 0.3 < waited < 5
    log = wait_for(info_log, "client timed out")
    assert "client timed out (110: Connection timed out) while SSL handshaking" in log
    assert_clean(srv, info_log)


@pytest.mark.parametrize("kind", SERVERS)
@pytest.mark.parametrize("garbage", [
    b"\x80\x2e\x01\x03\x01" + b"\xee" * 64,          # an SSLv2-style hello, nonsense
    b"\xff" * 300,                                    # high bit set: TLS, not HTTP
    b"\x16\x03\x03\x40\x00" + b"\x01" * 200,          # a record longer than allowed
], ids=["sslv2", "high-bit", "oversized-record"])
def test_garbage_instead_of_a_client_hello_closes_that_connection(
        kind, garbage, request, pki, websockets_backend, tmp_path):
    backend = websockets_backend()
    srv, port, info_log = start(
        kind, request, pki,
        f"location / {{ proxy_pass http://127.0.0.1:{backend.port}; {WS} }}", tmp_path)

    async def scenario() -> None:
        ctx = client_ctx(pki)
        async with connect(f"wss://127.0.0.1:{port}/", ssl=ctx, open_timeout=10,
                           server_hostname="a.example", ping_interval=None) as tunnel:
            await tunnel.send("before")
            assert await asyncio.wait_for(tunnel.recv(), 10) == "before"
            for _ in range(5):
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.write(garbage)
                rest = await asyncio.wait_for(reader.read(), 10)   # an alert at most
                assert len(rest) < 100
                writer.close()
            await tunnel.send("after")                # the tunnel did not notice
            assert await asyncio.wait_for(tunnel.recv(), 10) == "after"
    asyncio.run(scenario())
    assert wait_for(info_log, "while SSL handshaking").count("while SSL handshaking") >= 1
    assert_clean(srv, info_log)


@pytest.mark.parametrize("kind", SERVERS)
def test_a_corrupt_record_after_the_handshake_closes_that_connection(kind, request, pki,
                                                                     tmp_path):
    srv, port, info_log = start(kind, request, pki, 'location / { return 200 "ok\\n"; }',
                                tmp_path)
    ctx = client_ctx(pki)
    ctx.check_hostname = False
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    tls = ctx.wrap_socket(raw, server_hostname="a.example")
    under = socket.fromfd(tls.fileno(), socket.AF_INET, socket.SOCK_STREAM)
    under.settimeout(10)
    # application data whose MAC cannot verify, written under the TLS layer
    under.sendall(b"\x17\x03\x03\x00\x40" + b"\x5a" * 64)
    rest = b""
    try:
        while chunk := under.recv(1024):
            rest += chunk
    except ConnectionResetError:
        pass
    under.close()
    tls.close()
    assert len(rest) < 600            # session tickets and an alert at most, then EOF
    assert https_get(port, pki)[0].endswith(b"ok\n")
    assert_clean(srv, info_log)
