"""Processes the bench starts, and what the kernel says they cost.

Every process is started in its own session (so its workers, threads and children
share one process group we can kill at once), with the open-file soft limit raised
to the hard one, and recorded in a registry that `kill_all` empties: at exit, on
SIGINT/SIGTERM and on exceptions. CPU and memory are read from /proc for all the
processes of a session, which is how nginx's workers or Caddy's threads are counted
together with their master.
"""

from __future__ import annotations

import atexit
import os
import resource
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Sequence

CLK_TCK = os.sysconf("SC_CLK_TCK")
_registry: dict[int, subprocess.Popen[bytes]] = {}


class Interrupted(Exception):
    """SIGTERM or SIGINT arrived: unwind, killing what we started on the way."""


def raise_nofile() -> int:
    """Soft open-file limit up to the hard one (the hard one is never touched)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def spawn(argv: Sequence[str], *, cwd: Path | None = None, env: dict[str, str] | None = None,
          stdin: int | IO[bytes] | None = subprocess.DEVNULL,
          stdout: int | IO[bytes] | None = subprocess.PIPE,
          stderr: int | IO[bytes] | None = None) -> subprocess.Popen[bytes]:
    """Start argv in a new session, registered for killing."""
    proc = subprocess.Popen(list(argv), cwd=cwd, env=env, stdin=stdin, stdout=stdout,
                            stderr=stderr, start_new_session=True, preexec_fn=raise_nofile)
    _registry[proc.pid] = proc
    return proc


def stop(proc: subprocess.Popen[bytes], grace: float = 3.0) -> None:
    """SIGTERM the process group, SIGKILL it after `grace` seconds, reap the leader."""
    _registry.pop(proc.pid, None)
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 2.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(timeout=wait)
            # Workers may outlive their leader by a moment: make sure the group is gone.
            if not session_pids(proc.pid):
                break
        except subprocess.TimeoutExpired:
            continue
    try:
        proc.wait(timeout=1.0)
    except subprocess.TimeoutExpired:
        pass
    for stream in (proc.stdout, proc.stderr, proc.stdin):
        if stream is not None:
            stream.close()


def kill_all() -> None:
    for proc in list(_registry.values()):
        stop(proc, grace=1.0)


def _on_signal(signum: int, frame: object) -> None:
    raise Interrupted(signal.Signals(signum).name)


def install_cleanup() -> None:
    """atexit + SIGINT/SIGTERM handlers: nothing the bench started survives it."""
    atexit.register(kill_all)
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)


def _stat_fields(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name may contain spaces or parentheses: split after the last ')'.
    return raw[raw.rfind(")") + 2:].split()


def session_pids(sid: int) -> list[int]:
    """Every live process whose session id is `sid` (the leader started by spawn)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        fields = _stat_fields(int(entry))
        if fields and int(fields[3]) == sid and fields[0] != "Z":
            pids.append(int(entry))
    return pids


def cpu_seconds(sid: int) -> float:
    """CPU time (user + system) of all the session's processes (all their threads),
    in seconds, to the nanosecond: each process's CPU-time clock (Linux's
    MAKE_PROCESS_CPUCLOCK(pid, CPUCLOCK_SCHED), what clock_getcpuclockid(3) returns).
    /proc's utime + stime count 10 ms ticks: a short run of a fast proxy could read
    0. A process whose clock cannot be read falls back to its ticks."""
    total = 0.0
    for pid in session_pids(sid):
        try:
            total += time.clock_gettime(((~pid) << 3) | 2)
        except OSError:
            fields = _stat_fields(pid)
            if fields:
                total += (int(fields[11]) + int(fields[12])) / CLK_TCK
    return total


def _pss_kb(pid: int) -> tuple[int, str]:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]), "Pss"
    except OSError:
        pass
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]), "RSS"
    except OSError:
        pass
    return 0, "RSS"


@dataclass(frozen=True)
class Memory:
    kb: int
    kind: str  # "Pss" or "RSS" (when smaps_rollup is unavailable)


def memory(sid: int) -> Memory:
    """Sum of Pss (RSS as a fallback) over the session's processes."""
    total, kinds = 0, set()
    for pid in session_pids(sid):
        kb, kind = _pss_kb(pid)
        total += kb
        kinds.add(kind)
    return Memory(total, "RSS" if "RSS" in kinds else "Pss")


def wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float) -> bool:
    """True once 127.0.0.1:port accepts a TCP connection; False if proc died or time ran out."""
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        with socket.socket() as s:
            s.settimeout(0.5)
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return True
        time.sleep(0.05)
    return False


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
