"""A client that closes while wsgate waits for the upstream's response head.

nginx's broken-connection check (ngx_http_upstream_check_broken_connection) sees the
client's FIN, closes the upstream connection at once and finalizes with 499, logging
no header time for that upstream; a client that pipelined more bytes before closing
is not gone yet. nginx's own proxy.t checks the first part ("header time log -
client close"); these are the project's tests of the same behaviour.
"""

from __future__ import annotations

import asyncio
import re
import time

import pytest

from helpers.fixtures import procs, wsgate_server  # noqa: F401
from helpers.ports import free_port

pytestmark = pytest.mark.timeout(60)

CONF = """
error_log error.log info;
events { }
http {
    log_format t '$request $status $upstream_header_time $upstream_response_time';
    access_log access.log t;
    server {
        listen 127.0.0.1:{{port}};
        location / { proxy_pass http://127.0.0.1:%(up)d; proxy_read_timeout 30s; }
    }
}
"""


def _wait_for(read, pattern: str, timeout: float = 10.0) -> re.Match[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = re.search(pattern, read(), re.M)
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError(f"{pattern!r} not found in:\n{read()}")


def _slow_upstream_scenario(port: int, up_port: int, request: bytes) -> float:
    """Send `request`, close after 0.3 s; return how long after that the upstream
    saw its connection end (the upstream would answer only after 1.5 s)."""
    ended: list[float] = []

    async def upstream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        try:
            await asyncio.wait_for(reader.read(), 1.5)     # EOF: the proxy gave up
        except asyncio.TimeoutError:
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            await writer.drain()
            await reader.read()
        ended.append(time.monotonic())
        writer.close()

    async def scenario() -> float:
        server = await asyncio.start_server(upstream, "127.0.0.1", up_port)
        async with server:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(request)
            await writer.drain()
            await asyncio.sleep(0.3)
            writer.close()
            left = time.monotonic()
            for _ in range(200):
                if ended:
                    break
                await asyncio.sleep(0.05)
            assert ended, "the upstream connection never ended"
            return ended[0] - left

    return asyncio.run(scenario())


def test_client_close_before_the_head_is_499_and_frees_the_upstream(wsgate_server) -> None:
    up = free_port()
    srv = wsgate_server(CONF % {"up": up}, port=free_port())
    after = _slow_upstream_scenario(srv.port, up, b"GET /gone HTTP/1.1\r\nHost: x\r\n\r\n")
    assert after < 1.0, f"the upstream connection lasted {after:.2f} s after the client left"
    line = _wait_for(srv.access_log, r"^GET /gone HTTP/1\.1 (\S+) (\S+) (\S+)$")
    status, header_time, response_time = line.groups()
    assert status == "499"
    assert header_time == "-"
    assert float(response_time) >= 0.2
    assert "client prematurely closed connection" in srv.error_log()


def test_pipelined_bytes_mean_the_client_is_not_gone(wsgate_server) -> None:
    """With a second request already buffered, the FIN does not abort the first
    (nginx peeks and finds data): the first is answered by the upstream."""
    up = free_port()
    srv = wsgate_server(CONF % {"up": up}, port=free_port())
    _slow_upstream_scenario(srv.port, up, b"GET /first HTTP/1.1\r\nHost: x\r\n\r\n"
                                      b"GET /second HTTP/1.1\r\nHost: x\r\n\r\n")
    line = _wait_for(srv.access_log, r"^GET /first HTTP/1\.1 (\S+) (\S+) ")
    assert line.group(1) == "200" and line.group(2) != "-"
