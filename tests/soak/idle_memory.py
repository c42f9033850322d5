"""What an idle WebSocket tunnel costs wsgate in memory, and where that memory is.

    .venv/bin/python tests/soak/idle_memory.py [--conns 2000] [--top 25]
                                               [--parts process,tracemalloc] [--nginx]
                                               [--master]

Two measurements, each for the plain byte tunnel (the map idiom only) and for the
frame-aware tunnel (the same plus `websocket_ping_interval 30s`, so no ping is due
while we measure):

1. process: a real wsgate (`master_process off`, one process) in front of the C echo
   backend (bench/build/wsecho; the Python `websockets` echo if it is not built).
   Pss and RSS from /proc/PID/smaps_rollup after a warm-up (20 tunnels opened and
   closed, so lazy imports and first-use caches are paid) and again 2 s after CONNS
   idle tunnels are open; the difference over CONNS is the cost per tunnel. With
   `--nginx`, nginx 1.22 runs the plain config the same way, as the reference.
   With `--master`, both run with `master_process on` and the figures sum the master
   and its worker, as the bench does: the difference then also holds the pages the
   worker un-shares from the forked master (copy-on-write, largely the cyclic GC
   walking inherited objects), which the single process does not show.
2. tracemalloc: the same configs served in this process through the library API
   (`wsgate.Server(...).start_in_thread()`, uvloop) with tracemalloc on; the clients
   run in a subprocess so none of their allocations are counted. A snapshot after
   the warm-up and one with CONNS tunnels open are compared by line; the top sites
   are printed in bytes per tunnel (size difference / CONNS) and blocks per tunnel.

Every tunnel is proved alive after the measurement: one masked frame each way.
The clients are raw sockets (a 101 handshake and nothing else), so the tunnels are
as idle as a tunnel can be. Every wait here is bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import pathlib
import struct
import subprocess
import sys
import tempfile
import time
import tracemalloc
from dataclasses import dataclass

HERE = pathlib.Path(__file__).resolve()
TESTS = HERE.parents[1]
ROOT = HERE.parents[2]
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))

from helpers.nginx import ConfServer, NginxServer, WsgateServer  # noqa: E402
from helpers.ports import free_port  # noqa: E402
from helpers.procs import ProcessGroup  # noqa: E402

WSECHO = ROOT / "bench" / "build" / "wsecho"
WARMUP = 20
BATCH = 200
SETTLE = 2.0

CONF = """
worker_processes 1;
worker_rlimit_nofile 20000;
error_log {{prefix}}/error.log warn;
events { worker_connections 20000; }
http {
    access_log off;
    map $http_upgrade $connection_upgrade { default upgrade; '' close; }
    server {
        listen 127.0.0.1:{{port}};
        location / {
            proxy_pass http://127.0.0.1:{{backend}};
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            proxy_read_timeout 3600s;
            {{extra}}
        }
    }
}
"""
MODES = {"plain": "", "frame": "websocket_ping_interval 30s;"}

HANDSHAKE = (b"GET /idle HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
             b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
             b"Sec-WebSocket-Version: 13\r\n\r\n")


# -- clients: raw sockets, one handshake each --------------------------------------------

Conn = tuple[asyncio.StreamReader, asyncio.StreamWriter]


async def open_one(port: int) -> Conn:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(HANDSHAKE)
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
    if not head.startswith(b"HTTP/1.1 101"):
        raise RuntimeError(f"handshake refused: {head[:80]!r}")
    return reader, writer


async def open_many(port: int, n: int) -> list[Conn]:
    conns: list[Conn] = []
    for start in range(0, n, BATCH):
        conns += await asyncio.gather(*(open_one(port) for _ in range(min(BATCH, n - start))))
    return conns


def masked_text(payload: bytes) -> bytes:
    key = os.urandom(4)
    body = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return struct.pack("!BB", 0x81, 0x80 | len(payload)) + key + body


async def echo_all(conns: list[Conn]) -> int:
    """One message through every tunnel; returns how many came back intact."""
    async def one(i: int, conn: Conn) -> bool:
        payload = f"alive {i}".encode()
        conn[1].write(masked_text(payload))
        got = await asyncio.wait_for(conn[0].readexactly(2 + len(payload)), 30)
        return got == bytes([0x81, len(payload)]) + payload
    ok = 0
    for start in range(0, len(conns), BATCH):
        ok += sum(await asyncio.gather(*(one(start + i, c)
                                         for i, c in enumerate(conns[start:start + BATCH]))))
    return ok


async def close_all(conns: list[Conn]) -> None:
    for _, writer in conns:
        writer.close()
    await asyncio.sleep(0.5)


async def warm_up(port: int) -> None:
    conns = await open_many(port, WARMUP)
    if await echo_all(conns) != WARMUP:
        raise RuntimeError("warm-up echo failed")
    await close_all(conns)


def client_process(port: int, n: int) -> None:
    """`--client PORT N`: warm up, open N tunnels, print `ready`, wait for a line on
    stdin, echo through all, print `echoed K`, close them all."""
    async def main() -> None:
        await warm_up(port)
        print("warm", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        conns = await open_many(port, n)
        print("ready", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        print(f"echoed {await echo_all(conns)}", flush=True)
        await close_all(conns)
    asyncio.run(main())


# -- part 1: a real wsgate process --------------------------------------------------------

@dataclass
class Mem:
    pss_kb: int
    rss_kb: int


def memory(pid: int) -> Mem:
    """Pss and RSS of `pid` and its child processes (a master and its workers)."""
    total = Mem(0, 0)
    for one in [pid, *children(pid)]:
        fields = {}
        for line in pathlib.Path(f"/proc/{one}/smaps_rollup").read_text().splitlines():
            parts = line.split()
            if len(parts) >= 2 and parts[0].endswith(":") and parts[1].isdigit():
                fields[parts[0][:-1]] = int(parts[1])
        total = Mem(total.pss_kb + fields["Pss"], total.rss_kb + fields["Rss"])
    return total


def children(pid: int) -> list[int]:
    path = pathlib.Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def start_backend(procs: ProcessGroup) -> int:
    port = free_port()
    if WSECHO.exists():
        procs.start([str(WSECHO), str(port)], name="wsecho", ready_port=("127.0.0.1", port))
    else:
        procs.start([sys.executable, str(TESTS / "helpers" / "ws_echo_server.py"), str(port)],
                    name="websockets-echo", ready_port=("127.0.0.1", port))
    return port


async def measure_process(server_cls: type[ConfServer], mode: str, n: int, workdir: pathlib.Path,
                          procs: ProcessGroup, master: bool = False) -> str:
    backend = start_backend(procs)
    prefix = workdir / f"{server_cls.name}-{mode}{'-master' if master else ''}"
    srv = server_cls(CONF, prefix, procs=procs, master=master, params={
        "port": free_port(), "backend": backend, "extra": MODES[mode], "prefix": prefix.resolve()})
    srv.start()
    assert srv.proc is not None
    pid = srv.proc.pid
    try:
        await warm_up(srv.port)
        gc.collect()
        await asyncio.sleep(SETTLE)
        before = memory(pid)
        conns = await open_many(srv.port, n)
        await asyncio.sleep(SETTLE)
        after = memory(pid)
        alive = await echo_all(conns)
        await close_all(conns)
    finally:
        srv.stop()
    pss = (after.pss_kb - before.pss_kb) * 1024 / n
    rss = (after.rss_kb - before.rss_kb) * 1024 / n
    label = mode + ("+m" if master else "")
    return (f"{server_cls.name:7} {label:8} {n:6} {before.pss_kb:9} {after.pss_kb:9} "
            f"{pss / 1024:8.2f} {rss / 1024:8.2f}  {alive}/{n}")


# -- part 2: tracemalloc in this process ----------------------------------------------------

def measure_tracemalloc(mode: str, n: int, top: int, workdir: pathlib.Path,
                        procs: ProcessGroup) -> str:
    from wsgate import Server, load_config
    backend = start_backend(procs)
    port = free_port()
    prefix = (workdir / f"inproc-{mode}").resolve()
    prefix.mkdir(parents=True, exist_ok=True)
    text = CONF
    for key, value in {"port": port, "backend": backend, "extra": MODES[mode],
                       "prefix": prefix}.items():
        text = text.replace("{{" + key + "}}", str(value))
    running = Server(load_config(text, prefix=str(prefix))).start_in_thread()
    client = subprocess.Popen([sys.executable, str(HERE), "--client", str(port), str(n)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert client.stdin is not None and client.stdout is not None
    try:
        expect_line(client, "warm")
        tracemalloc.start(1)
        gc.collect()
        time.sleep(SETTLE)
        first = tracemalloc.take_snapshot()
        client.stdin.write("go\n")
        client.stdin.flush()
        expect_line(client, "ready")
        time.sleep(SETTLE)
        gc.collect()
        second = tracemalloc.take_snapshot()
        traced = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        client.stdin.write("echo\n")
        client.stdin.flush()
        echoed = expect_line(client, "echoed")
        client.wait(60)
    finally:
        if client.poll() is None:
            client.kill()
        running.stop(graceful=False)
    return report_sites(mode, n, top, first, second, traced, echoed)


def expect_line(proc: subprocess.Popen[str], word: str) -> str:
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()   # the client's own awaits are bounded
    if not line.startswith(word):
        raise RuntimeError(f"client said {line!r}, expected {word!r}")
    return line


def report_sites(mode: str, n: int, top: int, first: tracemalloc.Snapshot,
                 second: tracemalloc.Snapshot, traced: int, echoed: str) -> str:
    filters = [tracemalloc.Filter(False, tracemalloc.__file__)]
    first, second = first.filter_traces(filters), second.filter_traces(filters)
    by_line = sorted(second.compare_to(first, "lineno"), key=lambda s: -s.size_diff)
    total = sum(s.size_diff for s in by_line)
    out = [f"\n== tracemalloc, {mode} tunnel: {n} idle tunnels, {echoed}/{n}; traced "
           f"growth {total / n:.0f} B per tunnel (Python-allocator memory only) ==",
           f"{'B/tunnel':>9} {'blocks/tunnel':>13}  site"]
    for stat in by_line[:top]:
        frame = stat.traceback[0]
        where = f"{short(frame.filename)}:{frame.lineno}"
        text = line_text(frame.filename, frame.lineno)
        if "run_until_complete" in text or "run_forever" in text:
            # no Python frame between the loop and the allocation: uvloop's C code
            text = "(uvloop C internals: transports, handles, callbacks)"
        out.append(f"{stat.size_diff / n:9.1f} {stat.count_diff / n:13.2f}  {where}  {text}")
    by_file = sorted(second.compare_to(first, "filename"), key=lambda s: -s.size_diff)
    out.append("-- by file --")
    for stat in by_file[:10]:
        out.append(f"{stat.size_diff / n:9.1f} {stat.count_diff / n:13.2f}  "
                   f"{short(stat.traceback[0].filename)}")
    return "\n".join(out)


def short(filename: str) -> str:
    for marker in ("/src/", "/site-packages/", "/lib/python3"):
        if marker in filename:
            return filename.split(marker, 1)[1]
    return filename


def line_text(filename: str, lineno: int) -> str:
    import linecache
    return linecache.getline(filename, lineno).strip()[:70]


# -- the run -------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--conns", type=int, default=2000)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--parts", default="process,tracemalloc")
    parser.add_argument("--modes", default="plain,frame")
    parser.add_argument("--nginx", action="store_true", help="also measure nginx (plain)")
    parser.add_argument("--master", action="store_true",
                        help="master_process on: sum the master and its worker")
    parser.add_argument("--workdir")
    parser.add_argument("--client", nargs=2, type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.client:
        client_process(*args.client)
        return 0
    workdir = pathlib.Path(args.workdir or tempfile.mkdtemp(prefix="idle-mem-")).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    procs = ProcessGroup(workdir)
    parts, modes = args.parts.split(","), args.modes.split(",")
    backend = "bench/build/wsecho" if WSECHO.exists() else "Python websockets echo"
    print(f"idle memory: {args.conns} tunnels, backend {backend}, logs in {workdir}")
    try:
        if "process" in parts:
            print(f"{'server':7} {'mode':8} {'conns':>6} {'Pss0 KB':>9} {'Pss1 KB':>9} "
                  f"{'KB/conn':>8} {'RSS/conn':>8}  alive")
            runs: list[tuple[type[ConfServer], str]] = [(WsgateServer, m) for m in modes]
            runs += [(NginxServer, "plain")] if args.nginx else []
            for cls, mode in runs:
                print(asyncio.run(measure_process(cls, mode, args.conns, workdir, procs,
                                                  master=args.master)), flush=True)
        if "tracemalloc" in parts:
            for mode in modes:
                print(measure_tracemalloc(mode, args.conns, args.top, workdir, procs),
                      flush=True)
    finally:
        procs.stop_all()
    return 0


if __name__ == "__main__":
    sys.exit(main())
