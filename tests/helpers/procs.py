"""Subprocesses for tests: own process group, output captured to a file, readiness
wait, and a teardown that always kills the whole group.

    proc = start_process(["node", "ws_echo.js", "4000"], name="node-ws",
                         log_dir=tmp_path, ready_port=("127.0.0.1", 4000))
    ...
    proc.stop()          # SIGTERM to the group, then SIGKILL after `grace`

`ProcessGroup` (the `procs` fixture in `helpers.fixtures`) tracks every process a test
started and stops them all in its finalizer, even when the test failed half-way.
Output goes to a file, not a pipe, so a chatty child can never block on a full pipe;
`proc.output()` reads it back for assertion messages.
"""

from __future__ import annotations

import os
import pathlib
import re
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence

from helpers.ports import wait_port


class ProcessFailed(RuntimeError):
    """A helper process did not become ready; the message carries its output."""


class Process:
    """One running subprocess, leader of its own process group."""

    def __init__(self, popen: subprocess.Popen[bytes], name: str,
                 log_path: pathlib.Path) -> None:
        self.popen = popen
        self.name = name
        self.log_path = log_path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def output(self, limit: int = 20000) -> str:
        """The process's stdout+stderr so far (the tail, at most `limit` chars)."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return text[-limit:]

    def send_signal(self, signum: int) -> None:
        """Send `signum` to the whole process group (ignored if already gone)."""
        try:
            os.killpg(self.popen.pid, signum)
        except (ProcessLookupError, PermissionError):
            pass

    def wait(self, timeout: float) -> int | None:
        """Wait up to `timeout` s for exit; return the exit status or None."""
        try:
            return self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, sig: int = signal.SIGTERM, grace: float = 5.0) -> int | None:
        """Ask the group to stop with `sig`, then SIGKILL it after `grace` seconds.

        Always ends with a SIGKILL to the group, because children of the leader
        (nginx workers, node's helpers) may outlive it.
        """
        status = None
        if self.alive():
            self.send_signal(sig)
            status = self.wait(grace)
        self.send_signal(signal.SIGKILL)
        if status is None:
            status = self.wait(grace)
        return status

    def __repr__(self) -> str:
        return f"<Process {self.name} pid={self.pid} alive={self.alive()}>"


def wait_log(path: pathlib.Path, pattern: str, alive: Callable[[], bool],
             timeout: float = 20.0) -> re.Match[str]:
    """Block until `pattern` appears in the file at `path` (or the writer died)."""
    deadline = time.monotonic() + timeout
    text = ""
    while time.monotonic() < deadline:
        text = path.read_text(errors="replace") if path.exists() else ""
        if found := re.search(pattern, text):
            return found
        if not alive():
            break
        time.sleep(0.05)
    raise AssertionError(f"{pattern!r} never appeared in {path}:\n{text[-4000:]}")


def start_process(argv: Sequence[str], *, name: str, log_dir: os.PathLike[str] | str,
                  ready_port: tuple[str, int] | None = None, ready_timeout: float = 15.0,
                  cwd: os.PathLike[str] | str | None = None,
                  env: Mapping[str, str] | None = None) -> Process:
    """Start `argv` in a new session/process group; wait for `ready_port` to listen.

    On a readiness failure the process group is killed and ProcessFailed is raised
    with the captured output, so the test failure says why.
    """
    log_path = pathlib.Path(log_dir) / f"{name}.{time.monotonic_ns()}.log"
    full_env = dict(os.environ)
    full_env.update(env or {})
    with open(log_path, "wb") as log:
        popen = subprocess.Popen(list(argv), stdin=subprocess.DEVNULL, stdout=log,
                                 stderr=subprocess.STDOUT, cwd=cwd, env=full_env,
                                 start_new_session=True)
    proc = Process(popen, name, log_path)
    if ready_port is not None:
        try:
            wait_port(ready_port[0], ready_port[1], ready_timeout, alive=proc.alive)
        except (TimeoutError, RuntimeError) as exc:
            proc.stop(signal.SIGKILL, grace=2.0)
            raise ProcessFailed(f"{name} ({' '.join(argv)}) not ready: {exc}\n"
                                f"--- output ---\n{proc.output()}") from None
    return proc


class ProcessGroup:
    """Tracks processes started by one test and stops them all at teardown."""

    def __init__(self, log_dir: os.PathLike[str] | str) -> None:
        self.log_dir = pathlib.Path(log_dir)
        self.procs: list[Process] = []

    def start(self, argv: Sequence[str], *, name: str, **kwargs: object) -> Process:
        proc = start_process(argv, name=name, log_dir=self.log_dir, **kwargs)  # type: ignore[arg-type]
        self.procs.append(proc)
        return proc

    def add(self, proc: Process) -> Process:
        self.procs.append(proc)
        return proc

    def stop_all(self) -> None:
        for proc in reversed(self.procs):
            proc.stop(grace=3.0)
        self.procs.clear()
