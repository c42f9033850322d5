"""Issue 6 item 3 at full length: proxy-side pings keep idle tunnels alive, and a
dead peer is found within websocket_ping_interval + websocket_ping_timeout.

    .venv/bin/python tests/soak/ping_soak.py [--scale 1.0] [--workdir DIR]

One real wsgate (nginx-syntax config, the map idiom, no `websocket on`) serves
three scenarios at once, each in its own location:

- survive: `proxy_read_timeout 60s; websocket_ping_interval 20s;
  websocket_ping_timeout 10s;` in front of the Python `websockets` echo backend and
  the node `ws` echo backend; one client of each library (Python websockets,
  aiohttp, node ws) per backend, all with their own keepalive pings OFF, stays idle
  5 min 10 s, then exchanges one message and closes 1000. All must survive.
- control: the same without websocket_ping_interval, `proxy_read_timeout 20s` (not
  60 s, to save time): every client must be cut at ~20 s.
- dead peer: a node ws client is SIGSTOPped 25 s after connecting (one ping round
  trip answered first); the backend (a recording echo server in this process) must
  see Close 1001 within interval + timeout + the coarse ticker's slack, and the
  error log must say "client did not answer WebSocket ping".

`--scale` multiplies every duration (0.05 gives a 20-second smoke run of the same
logic). Prints a result table; exits 0 if every row passed, else 1. Not part of the
default test suite (it takes ~6 minutes); tests/integration/test_ws_features.py has
the scaled-down versions. Every wait here is bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import pathlib
import re
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

HERE = pathlib.Path(__file__).resolve()
TESTS = HERE.parents[1]
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))

import aiohttp  # noqa: E402
from websockets.asyncio.client import connect  # noqa: E402
from websockets.asyncio.server import ServerConnection, serve  # noqa: E402
from websockets.exceptions import ConnectionClosed  # noqa: E402

from helpers.backends import (NODE_DIR, node_available, start_node_ws_echo,  # noqa: E402
                              start_websockets_echo)
from helpers.nginx import ConfServer, WsgateServer  # noqa: E402
from helpers.ports import free_port  # noqa: E402
from helpers.procs import ProcessGroup  # noqa: E402

TICKER_SLACK = 1.0          # the coarse ticker (0.5 s) may be late by one step on each check
NODE = shutil.which("node") or "node"

CONF = """
error_log error.log info;
events { }
http {
    map $http_upgrade $connection_upgrade { default upgrade; '' close; }
    server {
        listen 127.0.0.1:{{port}};
        proxy_http_version 1.1;
        proxy_set_header Upgrade $http_upgrade;
        proxy_set_header Connection $connection_upgrade;
        location /py/ {
            proxy_pass http://127.0.0.1:{{py}};
            proxy_read_timeout {{read}};
            websocket_ping_interval {{interval}};
            websocket_ping_timeout {{timeout}};
        }
        location /node/ {
            proxy_pass http://127.0.0.1:{{node}};
            proxy_read_timeout {{read}};
            websocket_ping_interval {{interval}};
            websocket_ping_timeout {{timeout}};
        }
        location /control/ {
            proxy_pass http://127.0.0.1:{{py}};
            proxy_read_timeout {{control_read}};
        }
        location /dead/ {
            proxy_pass http://127.0.0.1:{{recorder}};
            proxy_read_timeout {{read}};
            websocket_ping_interval {{interval}};
            websocket_ping_timeout {{timeout}};
        }
    }
}
"""

# A node `ws` client that idles, then echoes one message and closes 1000.
# (tests/node/ws_client.js has `idle` -- wait forever -- and `echo` -- send at once --
# but no "idle, then echo" mode.) ws clients send no pings of their own.
NODE_IDLE_ECHO = r"""
'use strict';
const [wsPath, url, idleMs] = process.argv.slice(2);
const WebSocket = require(wsPath);
const out = (o) => process.stdout.write(JSON.stringify(o) + '\n');
const ws = new WebSocket(url);
ws.on('error', (e) => out({ error: String(e) }));
ws.on('close', (code, reason) => { out({ close: code, reason: reason.toString() }); process.exit(0); });
ws.on('open', () => {
  out({ open: true });
  setTimeout(() => ws.send('after idle'), parseInt(idleMs, 10));
});
ws.on('message', (data) => { out({ echo: data.toString() === 'after idle' }); ws.close(1000, 'done'); });
"""


@dataclass
class Times:
    """Every duration of the run, in seconds (scaled)."""

    interval: float
    timeout: float
    read: float
    control_read: float
    idle: float
    pre_stop: float

    @classmethod
    def scaled(cls, k: float) -> "Times":
        return cls(20 * k, 10 * k, 60 * k, 20 * k, 310 * k, 25 * k)


@dataclass
class Row:
    scenario: str
    client: str
    backend: str
    expect: str
    got: str
    seconds: float
    code: int | str | None
    ok: bool


def ms(seconds: float) -> str:
    return f"{max(1, round(seconds * 1000))}ms"


# -- one session per client library ----------------------------------------------------
# Each returns (cut_after or None, echo_ok, close_code): cut_after is set when the
# tunnel ended during the idle period, measured from the open.

async def py_session(url: str, idle: float) -> tuple[float | None, bool, Any]:
    ws = await asyncio.wait_for(connect(url, ping_interval=None, open_timeout=10), 15)
    opened = time.monotonic()
    got: asyncio.Queue[Any] = asyncio.Queue()

    async def reader() -> None:
        try:
            async for message in ws:
                got.put_nowait(message)
        except ConnectionClosed:
            pass
    task = asyncio.create_task(reader())
    done, _ = await asyncio.wait([task], timeout=idle)
    if done:
        return time.monotonic() - opened, False, ws.close_code
    await ws.send("after idle")
    echo = await asyncio.wait_for(got.get(), 10) == "after idle"
    await asyncio.wait_for(ws.close(1000, "done"), 15)
    await asyncio.wait_for(task, 15)
    return None, echo, ws.close_code


async def aiohttp_session(url: str, idle: float) -> tuple[float | None, bool, Any]:
    async with aiohttp.ClientSession() as http:
        ws = await asyncio.wait_for(http.ws_connect(url, heartbeat=None, autoping=True), 15)
        opened = time.monotonic()
        got: asyncio.Queue[Any] = asyncio.Queue()

        async def reader() -> None:
            async for msg in ws:
                got.put_nowait(msg)
        task = asyncio.create_task(reader())
        done, _ = await asyncio.wait([task], timeout=idle)
        if done:
            return time.monotonic() - opened, False, ws.close_code
        await ws.send_str("after idle")
        msg = await asyncio.wait_for(got.get(), 10)
        echo = msg.type == aiohttp.WSMsgType.TEXT and msg.data == "after idle"
        await asyncio.wait_for(ws.close(code=1000, message=b"done"), 15)
        await asyncio.wait_for(task, 15)
        return None, echo, ws.close_code


async def node_session(url: str, idle: float, workdir: pathlib.Path) -> tuple[float | None, bool, Any]:
    script = workdir / "node_idle_echo.js"
    script.write_text(NODE_IDLE_ECHO)
    proc = await asyncio.create_subprocess_exec(
        NODE, str(script), str(NODE_DIR / "node_modules" / "ws"), url, str(round(idle * 1000)),
        stdout=asyncio.subprocess.PIPE)
    assert proc.stdout is not None
    try:
        first = json.loads(await asyncio.wait_for(proc.stdout.readline(), 15))
        if not first.get("open"):
            return 0.0, False, first
        opened = time.monotonic()
        events: list[dict[str, Any]] = []
        while "close" not in (events[-1] if events else {}):
            line = await asyncio.wait_for(proc.stdout.readline(), idle + 30)
            if not line:
                break
            events.append(json.loads(line))
        ended = time.monotonic() - opened
        echo = any(e.get("echo") for e in events)
        code = next((e["close"] for e in events if "close" in e), None)
        return (None if echo else ended), echo, code
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()


SESSIONS: dict[str, Callable[..., Awaitable[tuple[float | None, bool, Any]]]] = {
    "websockets": py_session, "aiohttp": aiohttp_session, "node-ws": node_session}


async def run_session(lib: str, url: str, idle: float,
                      workdir: pathlib.Path) -> tuple[float | None, bool, Any]:
    fn = SESSIONS[lib]
    if lib == "node-ws":
        return await fn(url, idle, workdir)
    return await fn(url, idle)


# -- the three scenarios ------------------------------------------------------------------

async def survive(port: int, lib: str, backend: str, t: Times,
                  workdir: pathlib.Path) -> Row:
    url = f"ws://127.0.0.1:{port}/{'py' if backend == 'websockets' else 'node'}/{lib}"
    started = time.monotonic()
    try:
        cut, echo, code = await run_session(lib, url, t.idle, workdir)
    except Exception as exc:  # the row says what went wrong; the run goes on
        return Row("survive", lib, backend, "idle, echo, 1000", f"error {exc!r}",
                   time.monotonic() - started, None, False)
    took = time.monotonic() - started
    if cut is not None:
        return Row("survive", lib, backend, "idle, echo, 1000", "cut while idle",
                   cut, code, False)
    ok = echo and code == 1000
    return Row("survive", lib, backend, f"idle {t.idle:g}s, echo, 1000",
               f"idle {t.idle:g}s, echo {'ok' if echo else 'WRONG'}", took, code, ok)


async def control(port: int, lib: str, t: Times, workdir: pathlib.Path) -> Row:
    url = f"ws://127.0.0.1:{port}/control/{lib}"
    expect = f"cut at {t.control_read:.1f}s"
    try:
        # idle long enough that only the read timeout can end it (bounded)
        cut, _, code = await run_session(lib, url, t.control_read * 3, workdir)
    except Exception as exc:
        return Row("control", lib, "websockets", expect, f"error {exc!r}", 0.0, None, False)
    if cut is None:
        return Row("control", lib, "websockets", expect, "NOT cut", t.control_read * 3,
                   None, False)
    ok = t.control_read - 0.2 <= cut <= t.control_read + TICKER_SLACK + 0.5
    return Row("control", lib, "websockets", expect, "cut", cut, code, ok)


class RecordingEcho:
    """An in-process `websockets` echo backend that notes how each session closed."""

    def __init__(self) -> None:
        self.port = free_port()
        self.closes: list[tuple[int | None, float]] = []

    async def handler(self, ws: ServerConnection) -> None:
        try:
            async for message in ws:
                await ws.send(message)
        except ConnectionClosed:
            pass
        self.closes.append((ws.close_code, time.monotonic()))

    def serve(self) -> Any:
        return serve(self.handler, "127.0.0.1", self.port, ping_interval=None)


async def dead_peer(port: int, recorder: RecordingEcho, t: Times) -> Row:
    budget = t.interval + t.timeout
    expect = f"1001 <= {budget:.1f}s+{TICKER_SLACK:.1f}"
    proc = await asyncio.create_subprocess_exec(
        NODE, str(NODE_DIR / "ws_client.js"), f"ws://127.0.0.1:{port}/dead/", "idle",
        stdout=asyncio.subprocess.PIPE)
    assert proc.stdout is not None
    try:
        line = await asyncio.wait_for(proc.stdout.readline(), 15)
        if not json.loads(line).get("open"):
            return Row("dead peer", "node-ws", "recorder", expect, f"no open: {line!r}",
                       0.0, None, False)
        await asyncio.sleep(t.pre_stop)          # the proxy pings once; node answers
        if recorder.closes:
            return Row("dead peer", "node-ws", "recorder", expect, "closed before SIGSTOP",
                       0.0, recorder.closes[0][0], False)
        os.kill(proc.pid, signal.SIGSTOP)
        stopped = time.monotonic()
        deadline = stopped + budget + 30
        while not recorder.closes and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        if not recorder.closes:
            return Row("dead peer", "node-ws", "recorder", expect, "never closed",
                       time.monotonic() - stopped, None, False)
        code, at = recorder.closes[0]
        took = at - stopped
        ok = code == 1001 and took <= budget + TICKER_SLACK
        return Row("dead peer", "node-ws", "recorder", expect, "backend got Close",
                   took, code, ok)
    finally:
        try:
            os.kill(proc.pid, signal.SIGCONT)
        except ProcessLookupError:
            pass
        if proc.returncode is None:
            proc.kill()
        await proc.wait()


# -- the run -------------------------------------------------------------------------------

async def run_all(t: Times, workdir: pathlib.Path, procs: ProcessGroup) -> tuple[list[Row], ConfServer]:
    py = start_websockets_echo(procs)
    node = start_node_ws_echo(procs)
    recorder = RecordingEcho()
    srv = WsgateServer(CONF, workdir / "wsgate", procs=procs, params={
        "port": free_port(), "py": py.port, "node": node.port, "recorder": recorder.port,
        "read": ms(t.read), "interval": ms(t.interval), "timeout": ms(t.timeout),
        "control_read": ms(t.control_read)}).start()
    async with recorder.serve():
        jobs = [survive(srv.port, lib, backend, t, workdir)
                for backend in ("websockets", "node-ws") for lib in SESSIONS]
        jobs += [control(srv.port, lib, t, workdir) for lib in SESSIONS]
        jobs.append(dead_peer(srv.port, recorder, t))
        rows = list(await asyncio.gather(*jobs))
    return rows, srv


def log_checks(srv: ConfServer, rows: list[Row]) -> list[Row]:
    """What the error log must (and must not) say."""
    log = srv.error_log()
    dead = re.search(r"\[info\] .*client did not answer WebSocket ping while proxying "
                     r"upgraded connection, client: 127\.0\.0\.1.*request: \"GET /dead/", log)
    cut = re.findall(r"upstream timed out .*request: \"GET /control/", log)
    wrong = re.findall(r"timed out .*request: \"GET /(?:py|node)/", log)
    return [
        Row("log", "-", "-", "dead: ping not answered", "found" if dead else "MISSING",
            0.0, "-", bool(dead)),
        Row("log", "-", "-", "control: 3 x upstream timed out", f"{len(cut)} lines",
            0.0, "-", len(cut) == len(SESSIONS)),
        Row("log", "-", "-", "survive: no timeout lines", f"{len(wrong)} lines",
            0.0, "-", not wrong),
        Row("log", "-", "-", "no [alert]/[crit]/[emerg]", f"{len(srv.alerts())} lines",
            0.0, "-", not srv.alerts()),
    ]


def table(rows: list[Row]) -> str:
    head = ("scenario", "client", "backend", "expect", "got", "seconds", "code", "ok")
    cells = [head] + [(r.scenario, r.client, r.backend, r.expect, r.got, f"{r.seconds:.2f}",
                       str(r.code), "PASS" if r.ok else "FAIL") for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(head))]
    lines = ["  ".join(c[i].ljust(widths[i]) for i in range(len(head))) for c in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=float, default=1.0,
                        help="multiply every duration (default 1: the issue's numbers)")
    parser.add_argument("--workdir", help="keep configs and logs here (default: a temp dir)")
    args = parser.parse_args(argv)
    if not node_available():
        print("node or tests/node/node_modules/ws missing: run scripts/setup.sh test")
        return 1
    t = Times.scaled(args.scale)
    workdir = pathlib.Path(args.workdir or tempfile.mkdtemp(prefix="ping-soak-")).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    procs = ProcessGroup(workdir)
    began = time.monotonic()
    try:
        rows, srv = asyncio.run(run_all(t, workdir, procs))
        rows += log_checks(srv, rows)
    finally:
        procs.stop_all()
    print(f"ping soak: interval {t.interval:g}s, timeout {t.timeout:g}s, "
          f"proxy_read_timeout {t.read:g}s (control {t.control_read:g}s), idle {t.idle:g}s; "
          f"wall {time.monotonic() - began:.1f}s; logs in {workdir}")
    print(table(rows))
    return 0 if all(r.ok for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
