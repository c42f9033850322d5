"""wsgate's own WebSocket directives, end to end: `websocket on`, proxy-side pings
and ping timeouts, message limits, `websocket_allow_origin`, `$ws_*` session
variables and `websocket_log_open`, polite Close 1001 on QUIT and on a reload that
removes a tunnel's route.

A real wsgate process (nginx-syntax configs) between real clients (Python
`websockets`, `aiohttp`, node `ws`) and a real backend. Most tests use an in-test
`websockets` echo server (`EchoBackend`) running on the test's own event loop, so
that they can see how the backend's side of each session was closed.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import socket
import struct
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed, InvalidStatus

from helpers.backends import NODE_DIR, node_available
from helpers.fixtures import procs, recording_backend, wsgate_server  # noqa: F401
from helpers.ports import free_port

pytestmark = pytest.mark.timeout(90)

CONF = """
error_log error.log info;
events { }
http {
    access_log access.log;
    server {
        listen 127.0.0.1:{{port}};
%(locations)s
    }
}
"""


def conf(locations: str, http: str = "") -> str:
    text = CONF % {"locations": locations}
    return text.replace("http {\n", "http {\n" + http, 1)


class EchoBackend:
    """An echo server that records each session's handshake and how it closed."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.handshakes: list[dict[str, str]] = []
        self.closes: list[tuple[int | None, str | None, float]] = []

    async def _handler(self, ws: ServerConnection) -> None:
        self.handshakes.append({k.lower(): v for k, v in ws.request.headers.raw_items()})
        try:
            async for message in ws:
                await ws.send(message)
        except ConnectionClosed:
            pass
        self.closes.append((ws.close_code, ws.close_reason, time.monotonic()))

    def serve(self) -> Any:
        return serve(self._handler, "127.0.0.1", self.port, ping_interval=None,
                     compression=None)

    async def wait_closes(self, n: int, timeout: float = 10.0) -> None:
        await until(lambda: len(self.closes) >= n, timeout)


async def until(pred: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


def wait_for_text(read: Callable[[], str], pattern: str, timeout: float = 10.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = read()
        if re.search(pattern, text, re.M):
            return text
        time.sleep(0.05)
    raise AssertionError(f"{pattern!r} not found in:\n{read()}")


async def ws_connect(url: str, **kw: Any) -> ClientConnection:
    kw.setdefault("ping_interval", None)
    kw.setdefault("compression", None)
    return await asyncio.wait_for(connect(url, open_timeout=10, **kw), 15)


async def echo(ws: ClientConnection, message: str) -> bool:
    await ws.send(message)
    return await asyncio.wait_for(ws.recv(), 10) == message


async def closed_with(ws: ClientConnection, timeout: float = 10.0) -> tuple[int | None, str]:
    with pytest.raises(ConnectionClosed):
        await asyncio.wait_for(ws.recv(), timeout)
    assert ws.close_code is not None
    return ws.close_code, ws.close_reason or ""


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(scenario())


# -- websocket on ----------------------------------------------------------------------

def test_websocket_on_alone_proxies_websocket_and_plain_http(wsgate_server,
                                                               recording_backend) -> None:
    rec = recording_backend()
    backend = EchoBackend(free_port())
    srv = wsgate_server(conf(f"""
        location / {{ websocket on; proxy_pass http://127.0.0.1:{rec.port}; }}
        location /v10 {{ websocket on; proxy_http_version 1.0;
                        proxy_set_header Connection "x"; proxy_pass http://127.0.0.1:{rec.port}; }}
        location /echo {{ websocket on; proxy_pass http://127.0.0.1:{backend.port}; }}
"""), port=free_port())

    async def scenario() -> None:
        ws = await ws_connect(srv.url("/ws"))       # the recording backend answers 101
        ws.transport.abort()
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{srv.port}/plain") as resp:
                assert resp.status == 200
                assert json.loads(await resp.text())["target"] == "/plain"
            async with http.get(f"http://127.0.0.1:{srv.port}/v10") as resp:
                assert resp.status == 200
        async with backend.serve():
            py = await ws_connect(srv.url("/echo"))
            assert await echo(py, "hello")
            await py.close()
            if node_available():
                node = await asyncio.create_subprocess_exec(
                    shutil.which("node") or "node", str(NODE_DIR / "ws_client.js"),
                    srv.url("/echo"), "echo", "50", "7", stdout=asyncio.subprocess.PIPE)
                out, _ = await asyncio.wait_for(node.communicate(), 30)
                assert json.loads(out.splitlines()[0])["ok"] is True
    run(scenario)
    records = {r["target"]: r for r in rec.records()}
    up = dict((k.lower(), v) for k, v in records["/ws"]["headers"])
    assert records["/ws"]["version"] == "HTTP/1.1"
    assert up["upgrade"] == "websocket" and up["connection"] == "upgrade"
    plain = dict((k.lower(), v) for k, v in records["/plain"]["headers"])
    assert records["/plain"]["version"] == "HTTP/1.1"
    assert plain["connection"] == "close" and "upgrade" not in plain
    v10 = dict((k.lower(), v) for k, v in records["/v10"]["headers"])
    assert records["/v10"]["version"] == "HTTP/1.0" and v10["connection"] == "x"
    assert srv.alerts() == []


def test_websocket_on_keepalive_upstream_sends_no_connection_close(wsgate_server,
                                                                   recording_backend) -> None:
    rec = recording_backend()
    srv = wsgate_server(conf("""
        location / { websocket on; proxy_pass http://ka; }
""", http=f"    upstream ka {{ server 127.0.0.1:{rec.port}; keepalive 4; }}\n"),
        port=free_port())

    async def scenario() -> None:
        async with aiohttp.ClientSession() as http:
            for path in ("/one", "/two"):
                async with http.get(f"http://127.0.0.1:{srv.port}{path}") as resp:
                    assert resp.status == 200
    run(scenario)
    records = rec.records()
    assert [r["target"] for r in records] == ["/one", "/two"]
    for r in records:
        assert "connection" not in {k.lower() for k, _ in r["headers"]}
    assert records[0]["conn"] == records[1]["conn"]       # the connection was kept


# -- pings -----------------------------------------------------------------------------

PING_LOC = """
        location / {
            websocket on;
            proxy_pass http://127.0.0.1:{{backend}};
            proxy_read_timeout 1500ms;
%s
        }
"""


def test_pings_keep_an_idle_tunnel_past_proxy_read_timeout(wsgate_server) -> None:
    backend = EchoBackend(free_port())
    srv = wsgate_server(conf(PING_LOC % "websocket_ping_interval 500ms;"),
                        port=free_port(), backend=backend.port)

    async def scenario() -> None:
        async with backend.serve():
            async with aiohttp.ClientSession() as http:
                async with http.ws_connect(srv.url("/idle"), autoping=True,
                                           heartbeat=None) as ws:
                    await asyncio.sleep(5.0)        # idle: only the proxy's pings move
                    await ws.send_str("still here")
                    msg = await asyncio.wait_for(ws.receive(), 10)
                    assert msg.type == aiohttp.WSMsgType.TEXT and msg.data == "still here"
    run(scenario)
    assert "timed out" not in srv.error_log()


def test_without_pings_the_same_idle_tunnel_is_cut(wsgate_server) -> None:
    backend = EchoBackend(free_port())
    srv = wsgate_server(conf(PING_LOC % ""), port=free_port(), backend=backend.port)

    async def scenario() -> None:
        async with backend.serve():
            ws = await ws_connect(srv.url("/idle"))
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 10)
    run(scenario)
    wait_for_text(srv.error_log, r"upstream timed out .* while proxying upgraded connection")


def test_ping_timeout_detects_a_stopped_node_client(wsgate_server) -> None:
    if not node_available():
        pytest.fail("node or tests/node/node_modules/ws missing: run scripts/setup.sh test")
    interval, timeout = 0.5, 1.0
    backend = EchoBackend(free_port())
    srv = wsgate_server(conf(PING_LOC % "websocket_ping_interval 500ms;\n"
                                        "            websocket_ping_timeout 1s;"),
                        port=free_port(), backend=backend.port)

    async def scenario() -> None:
        async with backend.serve():
            node = await asyncio.create_subprocess_exec(
                shutil.which("node") or "node", str(NODE_DIR / "ws_client.js"),
                srv.url("/dead"), "idle", stdout=asyncio.subprocess.PIPE)
            try:
                line = await asyncio.wait_for(node.stdout.readline(), 15)  # type: ignore[union-attr]
                assert json.loads(line)["open"] is True
                await asyncio.sleep(2.0)        # pings answered: the tunnel stays
                assert backend.closes == []
                os.kill(node.pid, signal.SIGSTOP)
                stopped = time.monotonic()
                await backend.wait_closes(1, timeout=10)
                code, _, at = backend.closes[0]
                assert code == 1001
                # interval + timeout, plus the coarse ticker's two half-second steps
                assert at - stopped <= interval + timeout + 1.0 + 0.5
            finally:
                os.kill(node.pid, signal.SIGCONT)
                node.kill()
                await node.wait()
    run(scenario)
    log = wait_for_text(srv.error_log, r"client did not answer WebSocket ping")
    assert re.search(r"\[info\] .*client did not answer WebSocket ping while proxying "
                     r"upgraded connection, client: 127\.0\.0\.1", log)


# -- limits ----------------------------------------------------------------------------

def test_max_message_size_closes_1009_toward_sender_1001_toward_other(wsgate_server) -> None:
    backend = EchoBackend(free_port())
    srv = wsgate_server(conf("""
        location / {
            websocket on;
            proxy_pass http://127.0.0.1:{{backend}};
            websocket_max_message_size 1k client;
        }
"""), port=free_port(), backend=backend.port)

    async def scenario() -> None:
        async with backend.serve():
            ws = await ws_connect(srv.url("/big"), max_size=None)
            assert await echo(ws, "x" * 1000)           # under the limit: passes
            await ws.send("y" * 3000)
            code, _ = await closed_with(ws)
            assert code == 1009
            await backend.wait_closes(1)
            assert backend.closes[0][0] == 1001
            # the upstream may send big messages: the limit is for the client only
            ws2 = await ws_connect(srv.url("/big"), max_size=None)
            assert await echo(ws2, "z" * 1000)
            await ws2.close()
    run(scenario)
    assert re.search(r"\[info\] .*client sent too big WebSocket data: .*exceeds the limit "
                     r"of 1024 while proxying upgraded connection", srv.error_log())


# -- websocket_allow_origin ------------------------------------------------------------

def test_allow_origin_refuses_foreign_handshakes_with_403(wsgate_server) -> None:
    backend = EchoBackend(free_port())
    srv = wsgate_server(conf("""
        location / {
            websocket on;
            proxy_pass http://127.0.0.1:{{backend}};
            websocket_allow_origin https://app.example.com *.trusted.example $host;
        }
"""), port=free_port(), backend=backend.port)

    async def scenario() -> None:
        async with backend.serve():
            for origin in ("https://evil.example", "http://app.example.com",
                           "https://trusted.example", "http://127.0.0.1:1"):
                with pytest.raises(InvalidStatus) as info:
                    await ws_connect(srv.url("/o"), origin=origin)  # type: ignore[arg-type]
                assert info.value.response.status_code == 403
                assert b"<center><h1>403 Forbidden</h1></center>" in info.value.response.body
            assert backend.handshakes == []               # nothing reached the upstream
            for origin in ("https://app.example.com", "https://a.trusted.example",
                           f"http://127.0.0.1:{srv.port}", None):
                ws = await ws_connect(srv.url("/o"), origin=origin)  # type: ignore[arg-type]
                assert await echo(ws, "ok")
                await ws.close()
            assert len(backend.handshakes) == 4
            # a plain request is not a handshake: the Origin check does not apply
            async with aiohttp.ClientSession() as http:
                async with http.get(f"http://127.0.0.1:{srv.port}/",
                                    headers={"Origin": "https://evil.example"}) as resp:
                    assert resp.status != 403
    run(scenario)
    log = srv.error_log()
    assert re.search(r'\[warn\] .*origin "https://evil\.example" is not allowed by '
                     r"websocket_allow_origin, client: 127\.0\.0\.1", log)
    assert re.search(r'"GET /o HTTP/1\.1" 403 ', srv.access_log())


# -- session variables -------------------------------------------------------------------

LOG_FORMAT = ("    log_format ws '$request_uri $status $ws_messages_in $ws_messages_out "
              "$ws_bytes_in $ws_bytes_out $ws_close_code \"$ws_close_reason\" "
              "$ws_closed_by $ws_duration';\n")


def test_access_log_has_exact_session_values(wsgate_server) -> None:
    backend = EchoBackend(free_port())
    srv = wsgate_server(conf("""
        location / {
            websocket on;
            proxy_pass http://127.0.0.1:{{backend}};
            access_log access.log ws;
        }
""", http=LOG_FORMAT), port=free_port(), backend=backend.port)

    async def scenario() -> None:
        async with backend.serve():
            ws = await ws_connect(srv.url("/s"))
            for message in ("a", "bb", "ccc"):
                assert await echo(ws, message)
            await ws.send(b"\x00" * 10)
            assert await asyncio.wait_for(ws.recv(), 10) == b"\x00" * 10
            await ws.close(1000, "bye")
    run(scenario)
    line = wait_for_text(srv.access_log, r"^/s 101 ").strip()
    assert re.fullmatch(r'/s 101 4 4 16 16 1000 "bye" client \d+\.\d{3}', line), line


def test_upstream_close_and_plain_requests_in_the_same_format(wsgate_server) -> None:
    backend = EchoBackend(free_port())
    srv = wsgate_server(conf("""
        location / {
            websocket on;
            proxy_pass http://127.0.0.1:{{backend}};
            access_log access.log ws;
        }
        location = /plain { return 200 "x"; access_log access.log ws; }
""", http=LOG_FORMAT), port=free_port(), backend=backend.port)

    async def scenario() -> None:
        async with backend.serve() as server:
            ws = await ws_connect(srv.url("/u"))
            assert await echo(ws, "hi")
            for conn in list(server.connections):
                await conn.close(4000, "backend says bye")
            assert await closed_with(ws) == (4000, "backend says bye")
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{srv.port}/plain") as resp:
                assert await resp.text() == "x"
    run(scenario)
    text = wait_for_text(srv.access_log, r"^/plain ")
    lines = dict(line.split(" ", 1) for line in text.splitlines())
    assert re.fullmatch(r'101 1 1 2 2 4000 "backend says bye" upstream \d+\.\d{3}',
                        lines["/u"])
    assert lines["/plain"] == '200 - - - - - "-" - -'


def test_websocket_log_open_writes_a_line_at_open_and_at_close(wsgate_server) -> None:
    backend = EchoBackend(free_port())
    srv = wsgate_server(conf("""
        location / {
            websocket on;
            proxy_pass http://127.0.0.1:{{backend}};
            websocket_log_open on;
            access_log access.log open;
        }
""", http="    log_format open '$request_uri $status $request_time $ws_close_code';\n"),
        port=free_port(), backend=backend.port)

    async def scenario() -> None:
        async with backend.serve():
            ws = await ws_connect(srv.url("/lo"))
            assert await echo(ws, "x")
            text = wait_for_text(srv.access_log, r"^/lo 101 ")
            assert re.fullmatch(r"/lo 101 \d+\.\d{3} -\n", text), text
            await asyncio.sleep(0.3)
            await ws.close()
    run(scenario)
    text = wait_for_text(srv.access_log, r"\n/lo 101 .* 1000\n")
    first, second = text.splitlines()
    assert float(second.split()[2]) >= float(first.split()[2]) + 0.3


# -- polite shutdown and drain -----------------------------------------------------------

DRAIN_LOCS = """
        location /a {
            websocket on;
            proxy_pass http://127.0.0.1:{{backend}};
            websocket_ping_interval 30s;
            websocket_drain_spread 0;
        }
        location /b {
            websocket on;
            proxy_pass http://127.0.0.1:{{backend}};
            websocket_ping_interval 30s;
            websocket_drain_spread 0;
        }
        location = /plain { return 200 "{{text}}"; }
"""


async def node_idle(url: str) -> asyncio.subprocess.Process:
    proc = await asyncio.create_subprocess_exec(
        shutil.which("node") or "node", str(NODE_DIR / "ws_client.js"), url, "idle",
        stdout=asyncio.subprocess.PIPE)
    line = await asyncio.wait_for(proc.stdout.readline(), 15)  # type: ignore[union-attr]
    assert json.loads(line)["open"] is True
    return proc


def test_quit_sends_close_1001_to_both_sides_and_exits(wsgate_server) -> None:
    if not node_available():
        pytest.fail("node or tests/node/node_modules/ws missing: run scripts/setup.sh test")
    backend = EchoBackend(free_port())
    srv = wsgate_server(conf(DRAIN_LOCS), port=free_port(), backend=backend.port, text="one")

    async def scenario() -> None:
        async with backend.serve():
            py = await ws_connect(srv.url("/a"))
            async with aiohttp.ClientSession() as http:
                aio = await http.ws_connect(srv.url("/b"), autoclose=True, heartbeat=None)
                node = await node_idle(srv.url("/a"))
                assert await echo(py, "before")
                srv.send_signal(signal.SIGQUIT)
                assert await closed_with(py) == (1001, "server going away")
                msg = await asyncio.wait_for(aio.receive(), 10)
                assert msg.type == aiohttp.WSMsgType.CLOSE and msg.data == 1001
                assert msg.extra == "server going away"
                await aio.close()
                line = await asyncio.wait_for(node.stdout.readline(), 10)  # type: ignore[union-attr]
                assert json.loads(line) == {"close": 1001, "reason": "server going away"}
                await node.wait()
            await backend.wait_closes(3)
            assert [c[:2] for c in backend.closes] == [(1001, "server going away")] * 3
    run(scenario)
    assert srv.proc is not None and srv.proc.wait(15) == 0
    assert srv.alerts() == []


def test_reload_removing_a_location_closes_its_tunnels_only(wsgate_server) -> None:
    backend = EchoBackend(free_port())
    srv = wsgate_server(conf(DRAIN_LOCS), master=True, workers=1, port=free_port(),
                        backend=backend.port, text="one")

    def reload(text: str) -> None:
        srv.conf_path.write_text(text)
        srv.send_signal(signal.SIGHUP)

    async def plain() -> str:
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{srv.port}/plain") as resp:
                return await resp.text()

    async def wait_plain(text: str) -> None:
        deadline = time.monotonic() + 10
        while await plain() != text:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.1)

    async def scenario() -> None:
        async with backend.serve():
            a = await ws_connect(srv.url("/a"))
            b = await ws_connect(srv.url("/b"))
            # an unchanged route: both tunnels untouched
            reload(srv.conf_text.replace('"one"', '"two"'))
            await wait_plain("two")
            assert await echo(a, "a1") and await echo(b, "b1")
            # /b removed: its tunnel gets 1001 both ways, /a lives on
            without_b = re.sub(r"location /b \{.*?\n        \}\n", "", srv.conf_text,
                               flags=re.S).replace('"one"', '"three"')
            assert "location /b" not in without_b
            reload(without_b)
            assert await closed_with(b) == (1001, "route removed")
            await backend.wait_closes(1)
            assert backend.closes[0][:2] == (1001, "route removed")
            await wait_plain("three")
            assert await echo(a, "a2")
            await a.close()
    run(scenario)
    assert srv.alerts() == []
    assert srv.stop() == 0


def test_reload_moving_the_upstream_peer_closes_the_tunnel(wsgate_server) -> None:
    backend = EchoBackend(free_port())
    other = free_port()
    srv = wsgate_server(conf(DRAIN_LOCS), master=True, workers=1, port=free_port(),
                        backend=backend.port, text="one")

    async def scenario() -> None:
        async with backend.serve():
            a = await ws_connect(srv.url("/a"))
            text = srv.conf_text.replace(f"/a {{\n            websocket on;\n"
                                         f"            proxy_pass http://127.0.0.1:"
                                         f"{backend.port};",
                                         f"/a {{\n            websocket on;\n"
                                         f"            proxy_pass http://127.0.0.1:{other};")
            assert text != srv.conf_text
            srv.conf_path.write_text(text)
            srv.send_signal(signal.SIGHUP)
            assert await closed_with(a) == (1001, "route removed")
    run(scenario)
    assert srv.stop() == 0


# -- a client gone before the 101 ------------------------------------------------------

@pytest.mark.parametrize("how", ["reset", "fin"])
def test_client_gone_before_the_101_closes_the_upstream_at_once(wsgate_server, how) -> None:
    """The handshake's client left while the upstream was answering: the upstream
    connection ends now, not after proxy_read_timeout, and no tunnel opens (499).
    That holds for a half-close too: real nginx 1.22, given this very scenario,
    logs 499 and "client prematurely closed connection, so upstream connection is
    closed too" (its broken-connection check treats recv() == 0 as gone)."""
    port = free_port()
    srv = wsgate_server(conf(f"""
        location / {{ websocket on; proxy_pass http://127.0.0.1:{port};
                     proxy_read_timeout 30s; }}
"""), port=free_port())
    ended: list[float] = []

    async def upstream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        await asyncio.sleep(1.0)                 # the client leaves meanwhile
        writer.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                     b"Connection: Upgrade\r\n\r\n")
        await reader.read()                      # until the proxy closes its side
        ended.append(time.monotonic())
        writer.close()

    async def scenario() -> None:
        server = await asyncio.start_server(upstream, "127.0.0.1", port)
        async with server:
            reader, writer = await asyncio.open_connection("127.0.0.1", srv.port)
            writer.write(b"GET /gone HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                         b"Connection: Upgrade\r\n\r\n")
            await writer.drain()
            await asyncio.sleep(0.3)
            if how == "reset":
                sock = writer.get_extra_info("socket")
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.close()
            left = time.monotonic()
            await until(lambda: bool(ended), 10)
            assert ended[0] - left < 10             # proxy_read_timeout is 30 s
    run(scenario)
    assert re.search(r'"GET /gone HTTP/1\.1" 499 ', wait_for_text(srv.access_log, "/gone"))
