"""Runs the matrix: for each target and workload, a fresh echo backend and a fresh
proxy, then `repeat` measurements (the idle workload restarts both before every
measurement, so that memory freed by an earlier run cannot hide the cost of the next).
A run with TLS workloads first makes the bench's certificate; a target that cannot
terminate TLS is recorded as not applicable to them, not as an error.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from bench import procs, targets, tlsfiles
from bench.tlsfiles import TlsFiles
from bench.workloads import WORKLOADS, Context, Sample, Sizes


@dataclass
class Results:
    targets: list[str]
    workloads: list[str]
    sizes: Sizes
    repeat: int
    samples: list[Sample] = field(default_factory=list)
    start_errors: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    # (target, workload) -> why the workload does not apply (TLS on a target without it)
    not_applicable: dict[tuple[str, str], str] = field(default_factory=dict)


def _backend(tools: dict[str, Path]) -> tuple[subprocess.Popen[bytes], int]:
    for _ in range(3):  # a free port can be taken between probe and bind: retry
        port = procs.free_port()
        proc = procs.spawn([str(tools["wsecho"]), str(port)], stderr=subprocess.DEVNULL)
        assert proc.stdout is not None
        line = proc.stdout.readline().decode().strip()
        if line == f"LISTENING {port}":
            return proc, port
        procs.stop(proc)
    raise RuntimeError("the echo backend could not listen on 127.0.0.1")


def _measure(target: targets.Target, workload: str, tools: dict[str, Path], sizes: Sizes,
             count: int, root: Path, log: Callable[[str], None],
             tls: TlsFiles | None = None) -> list[Sample]:
    """Start backend + target, take `count` samples, stop both. StartError propagates."""
    backend, bport = _backend(tools)
    running = None
    try:
        prefix = Path(tempfile.mkdtemp(prefix=f"{target.name}-{workload}-", dir=root))
        running = targets.start(target, prefix, bport, tls=tls)
        log(f"  {target.name}: started on 127.0.0.1:{running.port} for {workload}")
        ctx = Context(running, tools, sizes, workload, tls)
        got = []
        for _ in range(count):
            t0 = time.monotonic()
            got.append(WORKLOADS[workload].run(ctx))
            _log_sample(got[-1], time.monotonic() - t0, log)
        return got
    finally:
        if running is not None:
            targets.stop(running)
        procs.stop(backend)


def run(res: Results, tools: dict[str, Path], log: Callable[[str], None]) -> Results:
    root = Path(tempfile.mkdtemp(prefix="wsgate-bench-"))
    try:
        tls = _certificate(res, root, log)
        for name in res.targets:
            _run_target(res, targets.TARGETS[name], tools, root, log, tls)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return res


def _certificate(res: Results, root: Path, log: Callable[[str], None]) -> TlsFiles | str | None:
    """The bench's certificate if a TLS workload runs (or why it could not be made)."""
    if not any(WORKLOADS[w].tls for w in res.workloads):
        return None
    try:
        files = tlsfiles.make(root / "tls")
    except RuntimeError as exc:
        res.notes.append(f"no TLS certificate, so no TLS workload: {exc}")
        return str(exc)
    log(f"bench: TLS certificate (ECDSA P-256, self-signed) in {files.cert}")
    return files


def _run_target(res: Results, target: targets.Target, tools: dict[str, Path], root: Path,
                log: Callable[[str], None], tls: TlsFiles | str | None = None) -> None:
    for workload in res.workloads:
        if workload == "idle" and not target.proxied:
            continue  # no proxy, no proxy memory to measure
        files = None
        if WORKLOADS[workload].tls:
            why = tls if isinstance(tls, str) else target.tls_unavailable()
            if why or not isinstance(tls, TlsFiles):
                res.not_applicable[(target.name, workload)] = why or "no TLS certificate"
                continue
            files = tls
        fresh = workload == "idle"
        rounds = [1] * res.repeat if fresh else [res.repeat]
        for count in rounds:
            try:
                got = _measure(target, workload, tools, res.sizes, count, root, log, files)
            except targets.StartError as exc:
                res.start_errors[target.name] = str(exc)
                log(f"  {target.name}: failed to start: {exc}")
                return
            res.samples.extend(got)


def _log_sample(s: Sample, took: float, log: Callable[[str], None]) -> None:
    shown = ", ".join(f"{k}={v:,.1f}" for k, v in s.metrics.items()) if s.ok else s.error
    log(f"  {s.target:16} {s.workload:8} {'ok ' if s.ok else 'ERR'} {shown}  [{took:.1f}s]")


def default_log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)
