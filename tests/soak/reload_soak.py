"""Reload under load: live WebSocket sessions through wsgate while it reloads.

    python tests/soak/reload_soak.py [--sessions 1000] [--reloads 20] [--interval 0.5]
                                     [--workers 2] [--clients 4]

Starts a `websockets` echo backend and wsgate (master + workers) in a temporary
prefix, opens SESSIONS WebSocket sessions through it, spread over CLIENTS client
subprocesses; each session sends a numbered message about every 200 ms and checks
every echo byte for byte. Meanwhile each client opens new sessions continuously
(handshake, one echo, close). The master gets RELOADS SIGHUPs, INTERVAL seconds
apart (the config alternates between two texts so each reload really swaps).
Reports sessions cut, handshakes refused, bytes lost (echoes missing or wrong), and
the number of wsgate processes before and after. Every loop here is bounded.

`run_soak()` is what tests/soak/test_reload_soak.py calls with small numbers.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass

HERE = pathlib.Path(__file__).resolve()
ROOT = HERE.parents[2]
PYTHON = sys.executable
WSGATE = [PYTHON, "-m", "wsgate"]
ECHO = ROOT / "tests" / "helpers" / "ws_echo_server.py"

CONF = """
daemon off;
worker_processes {workers};
pid {prefix}/nginx.pid;
error_log {prefix}/error.log notice;
events {{ worker_connections 20000; }}
http {{
    access_log off;
    map $http_upgrade $connection_upgrade {{ default upgrade; '' close; }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://127.0.0.1:{backend};
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            proxy_read_timeout 1h;
            add_header X-Generation {generation};
        }}
    }}
}}
"""


@dataclass
class Report:
    sessions: int = 0
    opened: int = 0
    cut: int = 0
    refused: int = 0
    lost: int = 0
    messages: int = 0
    handshakes: int = 0
    reloads: int = 0
    procs_before: int = 0
    procs_after: int = 0
    alerts: int = 0
    quit_seconds: float = 0.0     # -1: the master had not exited 30 s after QUIT


# -- the client side (runs in subprocesses) -------------------------------------------

async def _session(url: str, stop: asyncio.Event, stats: dict[str, int], ident: int,
                   opened: asyncio.Event) -> None:
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed
    try:
        ws = await connect(url, open_timeout=20, ping_interval=None, max_queue=None)
    except Exception as exc:
        stats["refused"] += 1
        sys.stderr.write(f"session {ident} handshake failed: {type(exc).__name__}: {exc}\n")
        opened.set()
        return
    stats["opened"] += 1
    opened.set()
    seq = 0
    try:
        while not stop.is_set() and seq < 100000:
            payload = f"{ident}:{seq}:" + "x" * (seq % 64)
            await ws.send(payload)
            echo = await asyncio.wait_for(ws.recv(), 30)
            stats["messages"] += 1
            if echo != payload:
                stats["lost"] += 1
            seq += 1
            try:
                await asyncio.wait_for(stop.wait(), 0.2)
            except asyncio.TimeoutError:
                pass
        await ws.close()
    except (ConnectionClosed, OSError, asyncio.TimeoutError) as exc:
        stats["cut"] += 1
        sys.stderr.write(f"session {ident} cut: {type(exc).__name__}: {exc}\n")


async def _churn(url: str, stop: asyncio.Event, stats: dict[str, int]) -> None:
    from websockets.asyncio.client import connect
    n = 0
    while not stop.is_set() and n < 100000:
        n += 1
        try:
            async with connect(url, open_timeout=20, ping_interval=None) as ws:
                await ws.send(f"hello {n}")
                if await asyncio.wait_for(ws.recv(), 20) != f"hello {n}":
                    stats["lost"] += 1
            stats["handshakes"] += 1
        except Exception as exc:
            stats["refused"] += 1
            sys.stderr.write(f"churn handshake {n} failed: {type(exc).__name__}: {exc}\n")
        await asyncio.sleep(0.02)


async def client_main(url: str, sessions: int, offset: int) -> None:
    """One client process: open sessions, churn, report JSON on stdout at EOF of stdin."""
    stats = {k: 0 for k in ("opened", "cut", "refused", "lost", "messages", "handshakes")}
    stop = asyncio.Event()
    tasks = []
    for i in range(sessions):
        opened = asyncio.Event()
        tasks.append(asyncio.create_task(_session(url, stop, stats, offset + i, opened)))
        await opened.wait()
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    churn = asyncio.create_task(_churn(url, stop, stats))
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.readline)
    stop.set()
    await asyncio.wait([*tasks, churn], timeout=60)
    sys.stdout.write(json.dumps(stats) + "\n")
    sys.stdout.flush()


# -- the driver -----------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_port(port: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"port {port} not listening")


def process_tree(pid: int) -> list[int]:
    """`pid` and its live children (from /proc), zombies excluded."""
    out = [pid]
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = pathlib.Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if fields[0] != "Z" and int(fields[1]) == pid:
            out.append(int(entry))
    return out


def run_soak(sessions: int = 1000, reloads: int = 20, interval: float = 0.5,
             workers: int = 2, clients: int = 4, workdir: str | None = None) -> Report:
    prefix = pathlib.Path(workdir or tempfile.mkdtemp(prefix="wsgate-soak-"))
    port, backend = _free_port(), _free_port()
    started: list[subprocess.Popen[str]] = []
    report = Report(sessions=sessions, reloads=reloads)

    def conf(generation: int) -> str:
        return CONF.format(workers=workers, prefix=prefix, port=port, backend=backend,
                           generation=generation)
    try:
        echo = subprocess.Popen([PYTHON, str(ECHO), str(backend)], text=True,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        started.append(echo)
        (prefix / "nginx.conf").write_text(conf(0))
        gate = subprocess.Popen([*WSGATE, "-p", f"{prefix}/", "-c", "nginx.conf"], text=True,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                cwd=str(ROOT))
        started.append(gate)
        _wait_port(backend)
        _wait_port(port)
        per = max(1, sessions // clients)
        pool = []
        for c in range(clients):
            count = per if c < clients - 1 else sessions - per * (clients - 1)
            pool.append(subprocess.Popen(
                [PYTHON, str(HERE), "--client", f"ws://127.0.0.1:{port}/", str(count),
                 str(c * per)], text=True, stdin=subprocess.PIPE, stdout=subprocess.PIPE))
        started.extend(pool)
        for proc in pool:
            assert proc.stdout is not None
            if proc.stdout.readline().strip() != "ready":
                raise RuntimeError("a client did not start")
        time.sleep(0.5)
        report.procs_before = len(process_tree(gate.pid))
        for i in range(reloads):
            (prefix / "nginx.conf").write_text(conf(i + 1))
            gate.send_signal(signal.SIGHUP)
            time.sleep(interval)
        time.sleep(1.0)
        report.procs_after = len(process_tree(gate.pid))
        for proc in pool:
            assert proc.stdin is not None and proc.stdout is not None
            proc.stdin.write("\n")
            proc.stdin.flush()
        for proc in pool:
            assert proc.stdout is not None
            stats = json.loads(proc.stdout.readline())
            for key, value in stats.items():
                setattr(report, key, getattr(report, key) + value)
            proc.wait(30)
        log = (prefix / "error.log").read_text(errors="replace")
        report.alerts = sum(1 for line in log.splitlines()
                            if "[alert]" in line or "[emerg]" in line or "[crit]" in line)
        gate.send_signal(signal.SIGQUIT)
        quit_at = time.monotonic()
        try:
            gate.wait(30)
            report.quit_seconds = round(time.monotonic() - quit_at, 2)
        except subprocess.TimeoutExpired:
            report.quit_seconds = -1.0
    finally:
        if len(started) > 1 and started[1].poll() is None:
            for pid in process_tree(started[1].pid)[1:]:    # the workers too
                os.kill(pid, signal.SIGKILL)
        for proc in reversed(started):
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
    return report


def main(argv: list[str]) -> int:
    if argv[:1] == ["--client"]:
        asyncio.run(client_main(argv[1], int(argv[2]), int(argv[3])))
        return 0
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sessions", type=int, default=1000)
    p.add_argument("--reloads", type=int, default=20)
    p.add_argument("--interval", type=float, default=0.5)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--clients", type=int, default=4)
    ns = p.parse_args(argv)
    report = run_soak(ns.sessions, ns.reloads, ns.interval, ns.workers, ns.clients)
    print(json.dumps(asdict(report), indent=2))
    ok = (report.cut == report.refused == report.lost == 0
          and report.opened == report.sessions and report.procs_before == report.procs_after
          and report.quit_seconds >= 0)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
