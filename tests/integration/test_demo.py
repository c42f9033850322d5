"""`wsgate demo`: the built-in backend alone (real sockets, the `websockets` library and
raw frames as clients), the generated config (accepted by real nginx and by wsgate -t),
and the whole command end to end (`--check`, the live view, Ctrl-C, failures).
"""

from __future__ import annotations

import asyncio
import json
import os
import pathlib
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import websockets
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosedError

from helpers.client import CLOSE, PING, PONG, TEXT, RawClient, RawWebSocket
from helpers.procs import wait_log
from wsgate.demo.app import DemoApp
from wsgate.demo.conf import DemoPaths, render_config
from wsgate.demo.room import Room, RoomEvent, SessionClosed, SessionOpened
from wsgate.demo.run import DemoError, DemoOptions, choose_listen, start_proxy, stop_proxy

NGINX = "/usr/sbin/nginx"
DEMO = [sys.executable, "-m", "wsgate", "demo"]


def with_app(scenario: Callable[[DemoApp, str], Awaitable[None]],
             events: list[RoomEvent] | None = None) -> None:
    """Run `scenario(app, ws_url)` against a fresh backend on a free loopback port."""
    async def main() -> None:
        app = DemoApp(Room(on_event=events.append if events is not None else None))
        host, port = await app.start()
        try:
            await asyncio.wait_for(scenario(app, f"ws://{host}:{port}/ws"), 20)
        finally:
            await app.stop()
    asyncio.run(main())


def app_port(url: str) -> int:
    return int(url.rsplit(":", 1)[1].split("/")[0])


async def recv_json(ws: Any, kind: str) -> dict[str, Any]:
    """The next JSON message of type `kind`, skipping others (bounded)."""
    for _ in range(20):
        body = json.loads(await asyncio.wait_for(ws.recv(), 5))
        if body["type"] == kind:
            return dict(body)
    raise AssertionError(f"no {kind!r} message among 20")


# -- the backend: HTTP --------------------------------------------------------------------


def http(port: int, raw: bytes) -> tuple[str, dict[str, str], bytes]:
    with RawClient.connect("127.0.0.1", port, timeout=5) as c:
        c.send(raw)
        return c.read_response()


def test_page_stats_and_errors() -> None:
    async def scenario(app: DemoApp, url: str) -> None:
        port = app_port(url)
        get = await asyncio.to_thread(http, port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert get[0].startswith("HTTP/1.1 200")
        assert get[1]["content-type"].startswith("text/html")
        page = get[2].decode()
        assert "<title>wsgate demo" in page and 'location.host + "/ws"' in page
        assert not re.search(r'(src|href)="https?:', page), "the page must not load external assets"
        stats = await asyncio.to_thread(http, port, b"GET /api/stats?x=1 HTTP/1.1\r\nHost: x\r\n\r\n")
        assert stats[0].startswith("HTTP/1.1 200") and stats[1]["content-type"] == "application/json"
        body = json.loads(stats[2])
        assert body["clients"] == 0 and body["sessions_total"] == 0 and body["http_requests"] == 2
        missing = await asyncio.to_thread(http, port, b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n")
        assert missing[0].startswith("HTTP/1.1 404")
        post = await asyncio.to_thread(http, port, b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
        assert post[0].startswith("HTTP/1.1 405") and post[1]["allow"] == "GET, HEAD"
        plain = await asyncio.to_thread(http, port, b"GET /ws HTTP/1.1\r\nHost: x\r\n\r\n")
        assert plain[0].startswith("HTTP/1.1 426") and plain[1]["upgrade"] == "websocket"
    with_app(scenario)


def test_bad_handshake_is_400_with_the_reason() -> None:
    async def scenario(app: DemoApp, url: str) -> None:
        raw = (b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               b"Sec-WebSocket-Key: short\r\nSec-WebSocket-Version: 13\r\n\r\n")
        status, _, body = await asyncio.to_thread(http, app_port(url), raw)
        assert status.startswith("HTTP/1.1 400")
        assert b"Sec-WebSocket-Key" in body
    with_app(scenario)


def test_head_too_large_is_431() -> None:
    async def scenario(app: DemoApp, url: str) -> None:
        raw = b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n"
        status, _, _ = await asyncio.to_thread(http, app_port(url), raw)
        assert status.startswith("HTTP/1.1 431")
    with_app(scenario)


# -- the backend: WebSocket ----------------------------------------------------------------


def test_broadcast_between_two_clients() -> None:
    async def scenario(app: DemoApp, url: str) -> None:
        async with connect(url) as a, connect(url) as b:
            id_a = (await recv_json(a, "welcome"))["id"]
            welcome_b = await recv_json(b, "welcome")
            assert welcome_b["clients"] == 2 and welcome_b["id"] != id_a
            joined = await recv_json(a, "join")
            assert joined["id"] == welcome_b["id"]
            before = time.time() * 1000
            await a.send("hello, room")
            for ws in (a, b):
                chat = await recv_json(ws, "chat")
                assert chat["from"] == id_a and chat["text"] == "hello, room"
                assert before - 1000 <= chat["ts"] <= time.time() * 1000 + 1000
            await b.send("and back")
            assert (await recv_json(a, "chat"))["from"] == welcome_b["id"]
    with_app(scenario)


def test_ping_text_gets_pong_only_to_the_sender() -> None:
    async def scenario(app: DemoApp, url: str) -> None:
        async with connect(url) as a, connect(url) as b:
            await recv_json(a, "welcome")
            await recv_json(b, "welcome")
            await recv_json(a, "join")
            await a.send("ping")
            assert await asyncio.wait_for(a.recv(), 5) == "pong"
            await b.send("marker")        # b's next message must be the marker, not a pong
            assert (await recv_json(b, "chat"))["text"] == "marker"
    with_app(scenario)


def test_ping_frame_answered_and_binary_echoed() -> None:
    async def scenario(app: DemoApp, url: str) -> None:
        async with connect(url) as ws:
            await recv_json(ws, "welcome")
            latency = await asyncio.wait_for(await ws.ping(b"abc"), 5)
            assert latency >= 0
            await ws.send(b"\x00\x01binary\xff")
            assert await asyncio.wait_for(ws.recv(), 5) == b"\x00\x01binary\xff"
    with_app(scenario)


@pytest.mark.parametrize("code", [1000, 1001, 4001])
def test_close_code_is_echoed(code: int) -> None:
    async def scenario(app: DemoApp, url: str) -> None:
        ws = await connect(url)
        await recv_json(ws, "welcome")
        await ws.close(code, "bye")
        assert ws.protocol.close_rcvd is not None and ws.protocol.close_rcvd.code == code
    with_app(scenario)


def test_close_without_code_is_echoed_without_code() -> None:
    async def scenario(app: DemoApp, url: str) -> None:
        ws = await asyncio.to_thread(RawWebSocket.connect, "127.0.0.1", app_port(url), "/ws")
        _, payload = await asyncio.to_thread(ws.recv_message, 5)
        assert json.loads(payload)["type"] == "welcome"
        ws.send_frame(CLOSE, b"")
        fin, op, payload = await asyncio.to_thread(ws.recv_frame, 5)
        assert (op, payload) == (CLOSE, b"")
        assert await asyncio.to_thread(ws.client.read_until_eof, 5) == b""
    with_app(scenario)


def test_message_limit_64k_and_1009_over_it() -> None:
    async def scenario(app: DemoApp, url: str) -> None:
        async with connect(url, max_size=None) as ws:
            await recv_json(ws, "welcome")
            await ws.send(b"x" * 65536)                       # exactly the limit: fine
            assert len(await asyncio.wait_for(ws.recv(), 5)) == 65536
            await ws.send(b"x" * 65537)
            with pytest.raises(ConnectionClosedError):
                await asyncio.wait_for(ws.recv(), 5)
            assert ws.protocol.close_rcvd is not None and ws.protocol.close_rcvd.code == 1009
    with_app(scenario)


def test_invalid_utf8_text_is_1007_and_pipelined_frame_is_read() -> None:
    async def scenario(app: DemoApp, url: str) -> None:
        port = app_port(url)
        c = await asyncio.to_thread(RawClient.connect, "127.0.0.1", port, 5)
        frame = bytes([0x81, 0x80 | 4]) + b"\0\0\0\0" + b"ping"     # masked with key 0
        c.send(b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
               + frame)                                            # the frame rides with the head
        status, headers, _ = await asyncio.to_thread(c.read_head, 5)
        assert status.startswith("HTTP/1.1 101")
        assert headers["sec-websocket-accept"] == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        ws = RawWebSocket(c, (status, headers))
        assert json.loads((await asyncio.to_thread(ws.recv_message, 5))[1])["type"] == "welcome"
        assert await asyncio.to_thread(ws.recv_message, 5) == (TEXT, b"pong")
        ws.send_frame(TEXT, b"\xff\xfe")
        fin, op, payload = await asyncio.to_thread(ws.recv_frame, 5)
        assert op == CLOSE and int.from_bytes(payload[:2], "big") == 1007
    with_app(scenario)


def test_session_events_and_stats() -> None:
    events: list[RoomEvent] = []

    async def scenario(app: DemoApp, url: str) -> None:
        async with connect(url) as ws:
            await recv_json(ws, "welcome")
            await ws.send("one")
            await recv_json(ws, "chat")
            await ws.send("ping")
            assert await asyncio.wait_for(ws.recv(), 5) == "pong"
        for _ in range(100):                          # the server side ends just after
            if any(isinstance(e, SessionClosed) for e in events):
                break
            await asyncio.sleep(0.02)
        stats = app.room.stats()
        assert stats["sessions_total"] == 1 and stats["clients"] == 0
        assert stats["messages_in"] == 2 and stats["messages_out"] == 3
    with_app(scenario, events)
    opened, closed = events
    assert isinstance(opened, SessionOpened) and opened.addr == "127.0.0.1"
    assert isinstance(closed, SessionClosed) and closed.id == opened.id
    assert (closed.messages_in, closed.messages_out) == (2, 3)
    assert (closed.close_code, closed.closed_by) == (1000, "client")


def test_x_real_ip_names_the_client() -> None:
    events: list[RoomEvent] = []

    async def scenario(app: DemoApp, url: str) -> None:
        async with connect(url, additional_headers={"X-Real-IP": "192.0.2.7"}) as ws:
            await recv_json(ws, "welcome")
    with_app(scenario, events)
    assert isinstance(events[0], SessionOpened) and events[0].addr == "192.0.2.7"


def test_stop_says_going_away() -> None:
    async def main() -> None:
        app = DemoApp()
        host, port = await app.start()
        ws = await connect(f"ws://{host}:{port}/ws")
        await recv_json(ws, "welcome")
        await asyncio.wait_for(app.stop(), 10)
        with pytest.raises(websockets.exceptions.ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 5)
        assert ws.protocol.close_rcvd is not None and ws.protocol.close_rcvd.code == 1001
    asyncio.run(main())


def test_pings_are_answered_with_their_payload_raw() -> None:
    async def scenario(app: DemoApp, url: str) -> None:
        ws = await asyncio.to_thread(RawWebSocket.connect, "127.0.0.1", app_port(url), "/ws")
        await asyncio.to_thread(ws.recv_message, 5)
        ws.send_frame(PING, b"payload-123")
        assert (await asyncio.to_thread(ws.recv_frame, 5))[1:] == (PONG, b"payload-123")
        assert await asyncio.to_thread(ws.close, 1000) == (1000).to_bytes(2, "big")
    with_app(scenario)


# -- the generated config ------------------------------------------------------------------


def demo_conf(tmp_path: pathlib.Path) -> DemoPaths:
    paths = DemoPaths(str(tmp_path))
    pathlib.Path(paths.conf).write_text(render_config("127.0.0.1:18080", "127.0.0.1:18081", paths))
    return paths


def test_config_is_the_classic_idiom(tmp_path: pathlib.Path) -> None:
    text = pathlib.Path(demo_conf(tmp_path).conf).read_text()
    for line in ("map $http_upgrade $connection_upgrade", "proxy_http_version 1.1;",
                 "proxy_set_header Upgrade $http_upgrade;",
                 "proxy_set_header Connection $connection_upgrade;"):
        assert line in text


@pytest.mark.nginx
def test_real_nginx_accepts_the_config(tmp_path: pathlib.Path) -> None:
    if not os.path.exists(NGINX):
        pytest.fail(f"{NGINX} is missing (scripts/setup.sh installs it)")
    paths = demo_conf(tmp_path)
    done = subprocess.run([NGINX, "-t", "-p", f"{tmp_path}/", "-c", "demo.conf", "-e", paths.error_log],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr


def test_wsgate_accepts_the_config(tmp_path: pathlib.Path) -> None:
    paths = demo_conf(tmp_path)
    done = subprocess.run([sys.executable, "-m", "wsgate", "-t", "-p", f"{tmp_path}/", "-c",
                           "demo.conf", "-e", paths.error_log],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr


# -- choosing the address --------------------------------------------------------------------


def test_default_port_taken_falls_back_and_says_so() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        said: list[str] = []
        host, port = choose_listen(DemoOptions(), said.append, default=("127.0.0.1", taken))
        assert host == "127.0.0.1" and port != taken
        assert said == [f"127.0.0.1:{taken} is in use; listening on 127.0.0.1:{port} instead"]
        with pytest.raises(DemoError, match="already in use"):
            choose_listen(DemoOptions(listen=f"127.0.0.1:{taken}"), said.append)


def test_proxy_that_cannot_start_is_a_clear_error(tmp_path: pathlib.Path) -> None:
    paths = DemoPaths(str(tmp_path))
    pathlib.Path(paths.conf).write_text("events {}\nhttp { server { listen 127.0.0.1:1; bogus_directive on; } }\n")

    async def main() -> None:
        with pytest.raises(DemoError) as info:
            proxy = await start_proxy(paths, ("127.0.0.1", 1))
            await stop_proxy(proxy)
        message = str(info.value)
        assert "the proxy did not start: wsgate exited with status 1" in message
        assert 'unknown directive "bogus_directive"' in message
    asyncio.run(main())


# -- the command ---------------------------------------------------------------------------


def run_demo_cmd(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*DEMO, *args], capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def test_print_config() -> None:
    done = run_demo_cmd("--print-config", "--listen", "127.0.0.1:0")
    assert done.returncode == 0, done.stderr
    assert "map $http_upgrade $connection_upgrade" in done.stdout
    assert re.search(r"listen 127\.0\.0\.1:\d+;", done.stdout)


def test_explicit_listen_taken_is_one_line_error() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        done = run_demo_cmd("--listen", f"127.0.0.1:{busy.getsockname()[1]}")
    assert done.returncode == 1
    assert "already in use" in done.stderr and "Traceback" not in done.stderr


def test_bad_listen_is_a_usage_error() -> None:
    done = run_demo_cmd("--listen", "127.0.0.1:http")
    assert done.returncode == 1 and 'invalid --listen "127.0.0.1:http"' in done.stderr
    assert "Traceback" not in done.stderr


def test_self_test_through_wsgate() -> None:
    """The README's first command: everything through the real proxy."""
    done = run_demo_cmd("--check", timeout=90)
    assert done.returncode == 0, f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    assert done.stdout.rstrip().endswith("OK")
    assert "ok    websocket:" in done.stdout


def test_live_view_and_ctrl_c(tmp_path: pathlib.Path) -> None:
    log = tmp_path / "demo.out"
    with open(log, "wb") as out:
        proc = subprocess.Popen([*DEMO, "--listen", "127.0.0.1:0", "--dir", str(tmp_path / "d"),
                                 "--stats-interval", "0.5"], stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        port = wait_for_url(log, proc)
        pid = int((tmp_path / "d" / "wsgate.pid").read_text())

        async def chat() -> None:
            async with connect(f"ws://127.0.0.1:{port}/ws") as ws:
                await recv_json(ws, "welcome")
                await ws.send("hi")
                await recv_json(ws, "chat")
        asyncio.run(asyncio.wait_for(chat(), 20))
        for line in (r"close .* msgs in 1 / out 2  close 1000 by client",
                     r"counts: 0 online, 1 sessions",
                     r'wsgate 127\.0\.0\.1 "GET /ws HTTP/1\.1" 101'):
            wait_log(log, line, lambda: proc.poll() is None)
        os.killpg(proc.pid, signal.SIGINT)               # what a terminal's Ctrl-C does
        assert proc.wait(timeout=20) == 0
        text = log.read_text()
        assert "open   c1" in text and "stopping..." in text and "Traceback" not in text
        assert not pid_alive(pid), "wsgate outlived the demo"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def wait_for_url(log: pathlib.Path, proc: subprocess.Popen[bytes]) -> int:
    match = wait_log(log, r"open http://127\.0\.0\.1:(\d+)/", lambda: proc.poll() is None)
    return int(match.group(1))


def pid_alive(pid: int) -> bool:
    for _ in range(100):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        time.sleep(0.05)
    return True


def test_client_that_does_not_read_is_cut_off() -> None:
    """Memory stays bounded: a member that stops reading is dropped (1008, server)
    once MAX_WRITE_BUFFER bytes wait for it, while the room goes on."""
    events: list[RoomEvent] = []

    async def scenario(app: DemoApp, url: str) -> None:
        slow = socket.socket()
        slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        slow.connect(("127.0.0.1", app_port(url)))
        slow.sendall(b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
        try:
            async with connect(url, max_size=None) as fast:
                await recv_json(fast, "welcome")
                big = "y" * 60000
                for _ in range(600):               # at most ~36 MB toward the slow client
                    if any(isinstance(e, SessionClosed) for e in events):
                        break
                    await fast.send(big)
                    assert json.loads(await asyncio.wait_for(fast.recv(), 5))["type"] in ("chat", "join")
                closed = [e for e in events if isinstance(e, SessionClosed)]
                assert closed and (closed[0].close_code, closed[0].closed_by) == (1008, "server")
                await fast.send("still here")
                for _ in range(5):                 # at most one lagging echo before it
                    if (await recv_json(fast, "chat"))["text"] == "still here":
                        break
                else:
                    raise AssertionError("the room stopped working after the cut")
        finally:
            slow.close()
    with_app(scenario, events)
