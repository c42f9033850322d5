"""The workloads: how each one drives a running target and what it measures.

The C load generator prints START and STOP around its measurement window, and the
proxy's CPU time (user + system, all its processes: procs.cpu_seconds) is read at those two moments,
so connection set-up and warm-up are outside the figure. The idle workload prints
READY once its connections are open; the proxy's memory is read before the load
generator starts and again after READY. A run with any error is returned as failed
with the error counts, never with figures to average.

The TLS workloads (wss-echo100, wss-bulk, tls-churn) are the same load over wss://
(wsload --tls) against a target started with the bench's certificate. They also keep
the load generator's own CPU time in the window (client_cpu_us per unit, and
client_busy = its share of one core): there is no `direct` over TLS, so that is how
their tables show whether the client could have pushed more.
"""

from __future__ import annotations

import json
import re
import select
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from bench import procs, tlsfiles
from bench.targets import Running
from bench.tlsfiles import TlsFiles

MIB = 1 << 20


@dataclass(frozen=True)
class Sizes:
    """How big and how long each workload is (the CLI's --quick/--tiny shrink these)."""
    duration: float = 3.0
    warmup: float = 0.5
    bulk_bytes: int = 1 << 30
    idle_conns: int = 9000
    idle_settle: float = 2.0
    http_duration: int = 3
    http_warm: int = 1
    wss_bulk_bytes: int = 256 << 20


@dataclass
class Sample:
    target: str
    workload: str
    ok: bool
    error: str = ""
    metrics: dict[str, float] = field(default_factory=dict)
    info: dict[str, str] = field(default_factory=dict)  # e.g. "tls": what was negotiated


@dataclass(frozen=True)
class Workload:
    name: str
    title: str
    rate_label: str       # throughput column header
    unit: str             # what CPU time is divided by
    latency_label: str    # what p50/p99 time ("" = none)
    run: Callable[["Context"], Sample]
    tls: bool = False     # over wss:// against the target's TLS listener


@dataclass(frozen=True)
class Context:
    running: Running
    tools: dict[str, Path]
    sizes: Sizes
    workload: str = ""
    tls: TlsFiles | None = None

    def fail(self, error: str) -> Sample:
        return Sample(self.running.target.name, self.workload, False, error)


class _Meter:
    """CPU and memory of the proxy's session; zeros for `direct` (no proxy)."""

    def __init__(self, running: Running) -> None:
        self.sid = running.sid

    def cpu(self) -> float:
        return procs.cpu_seconds(self.sid) if self.sid else 0.0

    def mem(self) -> procs.Memory | None:
        return procs.memory(self.sid) if self.sid else None


def _read_line(proc: subprocess.Popen[bytes], deadline: float) -> str | None:
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], 0.5)
        if ready:
            line = proc.stdout.readline()
            return line.decode(errors="replace").strip() if line else None
    return None


def _errors(result: dict[str, object]) -> str:
    kinds = result.get("error_kinds") or {}
    assert isinstance(kinds, dict)
    detail = ", ".join(f"{k} x{v}" for k, v in kinds.items())
    return f"{result['errors']} errors ({detail})"


def _loadgen(ctx: Context, args: list[str], on_line: Callable[[str], None],
             budget: float) -> dict[str, object] | str:
    """Run wsload; call on_line for START/STOP/READY; return its JSON or an error."""
    tls = tlsfiles.loadgen_args(ctx.tls) if ctx.tls else []
    argv = [str(ctx.tools["wsload"]), *args, *tls, "--port", str(ctx.running.port),
            "--deadline", str(int(budget))]
    proc = procs.spawn(argv, stdin=subprocess.PIPE)
    deadline = time.monotonic() + budget + 15
    try:
        while True:
            line = _read_line(proc, deadline)
            if line is None:
                return "load generator ended without a result"
            if line.startswith("{"):
                return json.loads(line)  # type: ignore[no-any-return]
            on_line(line)
            if line.startswith("READY") and proc.stdin is not None:
                proc.stdin.write(b"verify\n")
                proc.stdin.flush()
    finally:
        procs.stop(proc, grace=1.0)


def _windowed(ctx: Context, args: list[str], budget: float) -> tuple[dict[str, object] | str, float]:
    """Run wsload and return (result, proxy CPU seconds between START and STOP)."""
    meter, marks = _Meter(ctx.running), {}

    def on_line(line: str) -> None:
        if line in ("START", "STOP"):
            marks[line] = meter.cpu()

    result = _loadgen(ctx, args, on_line, budget)
    cpu = marks.get("STOP", meter.cpu()) - marks.get("START", 0.0)
    return result, cpu


def _ok(ctx: Context, metrics: dict[str, float], res: dict[str, object] | None = None) -> Sample:
    info = {"tls": str(res["tls"])} if res and res.get("tls") else {}
    return Sample(ctx.running.target.name, ctx.workload, True, "", metrics, info)


def _client(res: dict[str, object], units: float) -> dict[str, float]:
    """The load generator's own CPU (getrusage over the window) per unit and as a
    share of one core: above 0.5 it could not have pushed twice the rate."""
    cpu, el = float(res.get("client_cpu_s") or 0.0), float(res["elapsed_s"])  # type: ignore[arg-type]
    if units <= 0 or el <= 0:
        return {}
    return {"client_cpu_us": cpu * 1e6 / units, "client_busy": cpu / el}


def _per_unit(cpu: float, units: float, running: Running) -> dict[str, float]:
    if running.proc is None or units <= 0:
        return {}
    return {"cpu_us": cpu * 1e6 / units}


def echo(conns: int) -> Callable[[Context], Sample]:
    def run(ctx: Context) -> Sample:
        s = ctx.sizes
        res, cpu = _windowed(ctx, ["echo", "--conns", str(conns), "--size", "64",
                                   "--warmup", str(s.warmup), "--duration", str(s.duration)],
                             budget=s.duration + s.warmup + 40)
        if isinstance(res, str) or res["errors"]:
            return ctx.fail(res if isinstance(res, str) else _errors(res))
        msgs, el = float(res["messages"]), float(res["elapsed_s"])  # type: ignore[arg-type]
        if msgs <= 0 or el <= 0:
            return ctx.fail("no messages echoed")
        return _ok(ctx, {"rate": msgs / el, "p50_us": float(res["p50_us"]),  # type: ignore[arg-type]
                         "p99_us": float(res["p99_us"]), **_per_unit(cpu, msgs, ctx.running),  # type: ignore[arg-type]
                         **_client(res, msgs)}, res)
    return run


def bulk(size: Callable[[Sizes], int]) -> Callable[[Context], Sample]:
    def run(ctx: Context) -> Sample:
        want = size(ctx.sizes)
        res, cpu = _windowed(ctx, ["bulk", "--bytes", str(want), "--frame", "65536"],
                             budget=120)
        if isinstance(res, str) or res["errors"]:
            return ctx.fail(res if isinstance(res, str) else _errors(res))
        nbytes, el = float(res["bytes"]), float(res["elapsed_s"])  # type: ignore[arg-type]
        if nbytes < want or el <= 0:
            return ctx.fail("bulk transfer incomplete")
        # The proxy relays every byte twice (out and echoed back): CPU is per MB relayed.
        mb = 2 * nbytes / MIB
        return _ok(ctx, {"rate": nbytes / MIB / el, **_per_unit(cpu, mb, ctx.running),
                         **_client(res, mb)}, res)
    return run


def churn(ctx: Context) -> Sample:
    s = ctx.sizes
    res, cpu = _windowed(ctx, ["churn", "--conns", "50", "--warmup", str(s.warmup),
                               "--duration", str(s.duration)],
                         budget=s.duration + s.warmup + 40)
    if isinstance(res, str) or res["errors"]:
        return ctx.fail(res if isinstance(res, str) else _errors(res))
    n, el = float(res["messages"]), float(res["elapsed_s"])  # type: ignore[arg-type]
    if n <= 0 or el <= 0:
        return ctx.fail("no handshake completed")
    metrics = {"rate": n / el, "p50_us": float(res["p50_us"]),  # type: ignore[arg-type]
               "p99_us": float(res["p99_us"]), **_per_unit(cpu, n, ctx.running),  # type: ignore[arg-type]
               **_client(res, n)}
    if metrics.get("cpu_us"):
        # Handshakes per second of the proxy's CPU time: the TLS table's headline.
        metrics["hs_per_cpu_s"] = 1e6 / metrics["cpu_us"]
    return _ok(ctx, metrics, res)


def idle(ctx: Context) -> Sample:
    s = ctx.sizes
    meter = _Meter(ctx.running)
    time.sleep(0.5)  # let a fresh proxy finish starting before the "before" figure
    before_mem, before_cpu = meter.mem(), meter.cpu()
    seen: dict[str, object] = {}

    def on_line(line: str) -> None:
        if line.startswith("READY"):
            time.sleep(s.idle_settle)  # connections open: let the proxy settle
            seen["mem"], seen["cpu"] = meter.mem(), meter.cpu()

    res = _loadgen(ctx, ["idle", "--conns", str(s.idle_conns), "--concurrency", "200"],
                   on_line, budget=120)
    if isinstance(res, str) or res["errors"]:
        return ctx.fail(res if isinstance(res, str) else _errors(res))
    held = float(res["held"])  # type: ignore[arg-type]
    metrics = {"held": held}
    after_mem = seen.get("mem")
    if before_mem is not None and isinstance(after_mem, procs.Memory) and held > 0:
        metrics["mem_kb"] = (after_mem.kb - before_mem.kb) / held
        metrics["pss"] = 1.0 if after_mem.kind == "Pss" else 0.0
        metrics.update(_per_unit(float(seen["cpu"]) - before_cpu, held, ctx.running))  # type: ignore[arg-type]
    return _ok(ctx, metrics)


_WRK_LAT = re.compile(r"^\s*99%\s+([\d.]+)(us|ms|s)\s*$", re.M)
_WRK_UNITS = {"us": 1.0, "ms": 1e3, "s": 1e6}


def http(ctx: Context) -> Sample:
    s = ctx.sizes
    meter = _Meter(ctx.running)
    url = f"http://127.0.0.1:{ctx.running.port}/"
    argv = ["wrk", "-t1", "-c50", f"-d{s.http_duration}s", "--latency", url]
    warm = procs.spawn(["wrk", "-t1", "-c50", f"-d{s.http_warm}s", url], stdout=subprocess.DEVNULL)
    try:
        warm.wait(timeout=30)
    finally:
        procs.stop(warm, grace=0.5)
    cpu0 = meter.cpu()
    proc = procs.spawn(argv)
    try:
        out, _ = proc.communicate(timeout=s.http_duration + 30)
    except subprocess.TimeoutExpired:
        return ctx.fail("wrk did not finish")
    finally:
        procs.stop(proc, grace=0.5)
    cpu = meter.cpu() - cpu0
    return _parse_wrk(ctx, out.decode(errors="replace"), cpu)


def _parse_wrk(ctx: Context, text: str, cpu: float) -> Sample:
    rps = re.search(r"Requests/sec:\s+([\d.]+)", text)
    total = re.search(r"(\d+) requests in", text)
    lat = _WRK_LAT.search(text)
    if not (rps and total and lat):
        return ctx.fail("could not read wrk's output: " + text.strip()[-200:])
    problems = []
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    if sock and any(int(x) for x in sock.groups()):
        problems.append(sock.group(0))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    if non2xx:
        problems.append(non2xx.group(0))
    if problems:
        return ctx.fail("; ".join(problems))
    p99 = float(lat.group(1)) * _WRK_UNITS[lat.group(2)]
    return _ok(ctx, {"rate": float(rps.group(1)), "p99_us": p99,
                     **_per_unit(cpu, float(total.group(1)), ctx.running)})


WORKLOADS: dict[str, Workload] = {w.name: w for w in [
    Workload("echo1", "echo, 1 connection (64-byte messages, closed loop)",
             "messages/s", "message", "round trip", echo(1)),
    Workload("echo100", "echo, 100 connections (64-byte messages, closed loop)",
             "messages/s", "message", "round trip", echo(100)),
    Workload("bulk", "bulk, {bulk} in 64 KiB frames through one connection, echoed back",
             "MB/s", "MB relayed", "", bulk(lambda s: s.bulk_bytes)),
    Workload("churn", "handshake churn, 50 loops of connect + upgrade + one echo + close",
             "handshakes/s", "handshake", "whole loop", churn),
    Workload("idle", "idle, {idle} WebSocket connections held open",
             "held", "connection", "", idle),
    Workload("http", "plain HTTP, wrk -t1 -c50, small GETs",
             "requests/s", "request", "request", http),
    Workload("wss-echo100", "wss echo, 100 TLS connections (64-byte messages, closed loop)",
             "messages/s", "message", "round trip", echo(100), tls=True),
    Workload("wss-bulk", "wss bulk, {wss_bulk} in 64 KiB frames through one TLS connection, echoed back",
             "MB/s", "MB relayed", "", bulk(lambda s: s.wss_bulk_bytes), tls=True),
    Workload("tls-churn", "TLS handshake churn, 50 loops of connect + full TLS handshake + upgrade "
             "+ one echo + close", "handshakes/s", "handshake", "whole loop", churn, tls=True),
]}
