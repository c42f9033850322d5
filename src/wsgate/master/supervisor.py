"""The master process: owns the listening sockets, forks and supervises workers.

Theory of operation. The master is a plain synchronous process (no event loop, so
`fork()` is safe): it blocks nginx's signals and takes them one at a time with
`sigtimedwait`, which also gives the sender's pid for nginx's
`signal 1 (SIGHUP) received from 42, reconfiguring` line.

  start   bind every listener once (reloads never rebind what exists; `reuseport`
          listeners get one socket per worker, nginx's ngx_clone_listening), fork
          `worker_processes` workers that inherit them
  SIGCHLD reap; a worker that died while it should run is logged (`[alert] worker
          process N exited on signal 9`) and replaced in its slot -- other workers
          and their tunnels are untouched. Exit code 2 is nginx's "fatal": no respawn
stats   one shared region of counters (observe/shared.py), made before the first
          fork and kept for the master's life; each worker writes its own slot and
          sums all of them for stub_status and /metrics. A replacement takes over
          its predecessor's slot: the master zeroes the gauges (the dead worker's
          connections are gone) and keeps the cumulative counters, as nginx keeps
          its stats across worker restarts
  HUP     load the config; on error log `[emerg] ... in file:line` and keep going;
          on success bind the new listeners, then send every worker a reload
          message with the sockets over its channel (channel.py). Workers swap the
          generation in place; nothing is restarted, nothing piles up. A higher
          worker count forks more workers; a lower one QUITs the surplus, which
          drain their tunnels and exit
  QUIT    QUIT to the workers, close listeners, wait for them all, exit
  TERM/INT TERM to the workers; after ~1 s KILL the ones left (nginx's escalation)
  USR1    reopen the error log, USR1 to the workers
"""

from __future__ import annotations

import errno
import os
import signal
import socket
import time
from dataclasses import dataclass
from typing import Any

from wsgate.master import channel, common
from wsgate.master.worker_proc import HANDLED, run_worker
from wsgate.observe.errorlog import ErrorLog
from wsgate.observe.metrics import Metrics
from wsgate.observe.shared import Region
from wsgate.proxy import listen as listen_mod
from wsgate.proxy.listen import ListenError
from wsgate.proxy.server import Worker, bind_keys, group_servers

__all__ = ["Master", "stats_slots", "worker_count"]

_KILL_AFTER = 1.0     # TERM, then KILL what is left (nginx: delay > 1000 ms)
_TICK = 0.5
_NAMES = {signal.SIGHUP: ("SIGHUP", ", reconfiguring"),
          signal.SIGQUIT: ("SIGQUIT", ", shutting down"),
          signal.SIGTERM: ("SIGTERM", ", exiting"),
          signal.SIGINT: ("SIGINT", ", exiting"),
          signal.SIGUSR1: ("SIGUSR1", ", reopening logs"),
          signal.SIGCHLD: ("SIGCHLD", "")}


def stats_slots(count: int) -> int:
    """Shared-counter slots: room for reloads that raise worker_processes and for
    draining workers that still count while their successors start. Untouched
    slots cost address space only (the mapping is filled in on first write)."""
    return max(64, 4 * count)


def worker_count(cfg: Any) -> int:
    """`worker_processes N|auto` (auto: the number of online CPUs)."""
    value = cfg.worker_processes
    if value == "auto":
        return max(1, os.cpu_count() or 1)
    return max(1, int(value))


@dataclass
class _Child:
    pid: int
    slot: int | None         # None: draining (count lowered), never respawned
    chan: socket.socket
    stats: int | None = None  # its slot of the shared counters (None: counts alone)


class Master:
    """The master's state; `run()` is its whole life (see the module docstring)."""

    def __init__(self, cfg: Any, binder: Worker, log: ErrorLog, conf_file: str,
                 prefix: str | None, globals_: str | None) -> None:
        self.cfg = cfg
        self.binder = binder              # holds the master's listening sockets
        self.log = log
        self.conf_file = conf_file
        self.prefix = prefix
        self.globals_ = globals_
        self.clones: dict[tuple[Any, int], socket.socket] = {}
        self.children: dict[int, _Child] = {}
        self.stopping: str | None = None
        self.kill_at: float | None = None
        # Created before the first fork and kept for the master's whole life, so
        # counters survive reloads and worker restarts (nginx's shared stats zone).
        self.stats = Region(stats_slots(worker_count(cfg)), shared=True)

    # -- the loop ---------------------------------------------------------------------

    def run(self) -> int:
        signal.pthread_sigmask(signal.SIG_BLOCK, HANDLED)
        self._clone_reuseport(worker_count(self.cfg))
        for slot in range(worker_count(self.cfg)):
            self._spawn(slot)
        while self.children or self.stopping is None:
            info = signal.sigtimedwait(HANDLED, _TICK)
            if info is not None:
                self._on_signal(info.si_signo, info.si_pid)
            self._reap()
            self._escalate()
        self._close_all()
        self.log.write("notice", "exit")
        return 0

    def _on_signal(self, signo: int, sender: int) -> None:
        name, action = _NAMES.get(signal.Signals(signo), (str(signo), ""))
        if signo == signal.SIGCHLD:
            self.log.write("notice", f"signal {signo} ({name}) received from {sender}")
            return
        self.log.write("notice", f"signal {signo} ({name}) received from {sender}{action}")
        if signo == signal.SIGHUP and self.stopping is None:
            self._reload()
        elif signo == signal.SIGQUIT and self.stopping is None:
            self._stop("quit", signal.SIGQUIT)
        elif signo in (signal.SIGTERM, signal.SIGINT) and self.stopping != "fast":
            self._stop("fast", signal.SIGTERM)
            self.kill_at = time.monotonic() + _KILL_AFTER
        elif signo == signal.SIGUSR1:
            common.reopen_error_log(self.log)
            self._signal_all(signal.SIGUSR1)

    # -- workers ----------------------------------------------------------------------

    def _spawn(self, slot: int, stats: int | None = None) -> None:
        """Fork a worker for `slot`; a replacement passes its predecessor's `stats`
        slot and so keeps counting from where the dead worker stopped."""
        stats = self._stats_slot() if stats is None else stats
        if stats is not None:
            self.stats.reset_gauges(stats)
        ours, theirs = channel.pair()
        pid = os.fork()
        if pid == 0:
            ours.close()
            os._exit(self._child(slot, theirs, stats))
        theirs.close()
        self.children[pid] = _Child(pid, slot, ours, stats)
        self.log.write("notice", f"start worker process {pid}")

    def _stats_slot(self) -> int | None:
        """The lowest shared-counter slot no live worker writes."""
        used = {c.stats for c in self.children.values()}
        free = next((i for i in range(self.stats.slots) if i not in used), None)
        if free is None:
            self.log.write("warn", f"all {self.stats.slots} shared statistics slots "
                                   "are in use, a new worker counts alone")
        return free

    def _child(self, slot: int, chan: socket.socket, stats: int | None = None) -> int:
        """In the forked worker: keep only this slot's sockets, then serve."""
        status = 1
        try:
            if stats is not None:
                counters = self.stats.slot(stats)
                counters.claim()
                self.binder.metrics = Metrics(slot=counters)
            for child in self.children.values():
                child.chan.close()
            for (key, clone_slot), sock in self.clones.items():
                if clone_slot == slot:
                    self.binder.sockets[key] = sock
                elif clone_slot != 0:
                    sock.close()
            status = run_worker(self.cfg, self.binder, chan, self.conf_file, self.prefix,
                                self.globals_, self.log)
        except BaseException as exc:     # the master's code must never run on here
            self.log.write("alert", f"worker process failed: {type(exc).__name__}: {exc}")
        return status

    def _reap(self) -> None:
        while self.children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            child = self.children.pop(pid, None)
            if child is None:
                continue
            child.chan.close()
            if child.stats is not None:
                # Its connections and tunnels died with it; its totals stay.
                self.stats.reset_gauges(child.stats)
            self._report_exit(pid, status)
            if self._should_respawn(child, status):
                self._spawn(child.slot, child.stats)  # type: ignore[arg-type]

    def _report_exit(self, pid: int, status: int) -> None:
        if os.WIFSIGNALED(status):
            core = " (core dumped)" if os.WCOREDUMP(status) else ""
            self.log.write("alert", f"worker process {pid} exited on signal "
                                    f"{os.WTERMSIG(status)}{core}")
        else:
            code = os.WEXITSTATUS(status)
            self.log.write("notice", f"worker process {pid} exited with code {code}")
            if code == 2:
                self.log.write("alert", f"worker process {pid} exited with fatal code 2 "
                                        "and cannot be respawned")

    def _should_respawn(self, child: _Child, status: int) -> bool:
        fatal = os.WIFEXITED(status) and os.WEXITSTATUS(status) == 2
        return self.stopping is None and child.slot is not None and not fatal

    def _signal_all(self, signo: int) -> None:
        for pid in list(self.children):
            try:
                os.kill(pid, signo)
            except ProcessLookupError:
                pass

    # -- stopping ---------------------------------------------------------------------

    def _stop(self, how: str, signo: int) -> None:
        self.stopping = how
        self._signal_all(signo)
        self._close_listeners()

    def _escalate(self) -> None:
        if self.kill_at is not None and time.monotonic() >= self.kill_at and self.children:
            self._signal_all(signal.SIGKILL)
            self.kill_at = None

    def _close_listeners(self) -> None:
        for sock in self.clones.values():
            sock.close()
        self.clones.clear()
        for sock in self.binder.sockets.values():
            sock.close()
        self.binder.sockets.clear()

    def _close_all(self) -> None:
        self._close_listeners()
        for spec in self.binder.specs.values():
            listen_mod.unlink_unix(spec)

    # -- reload -----------------------------------------------------------------------

    def _reload(self) -> None:
        cfg = common.load_again(self.conf_file, self.prefix, self.globals_, self.log)
        if cfg is None:
            return
        try:
            fresh = self.binder.bind(cfg)
        except ListenError as exc:
            self.log.write("emerg", str(exc))
            return
        self.binder.sockets.update(fresh)
        self._drop_vanished(cfg)
        old_count, self.cfg = worker_count(self.cfg), cfg
        count = worker_count(cfg)
        self._clone_reuseport(count)
        for child in list(self.children.values()):
            if child.slot is not None and child.slot >= count:
                child.slot = None                  # surplus: drain and exit
                self._kill(child.pid, signal.SIGQUIT)
            elif child.slot is not None:
                self._send_reload(child)
        for key, slot in [k for k in self.clones if k[1] >= count]:
            self.clones.pop((key, slot)).close()
        live = {c.slot for c in self.children.values() if c.slot is not None}
        for slot in range(count):
            if slot not in live:
                self._spawn(slot)
        if count != old_count:
            self.log.write("notice", f"worker processes: {old_count} -> {count}")

    def _drop_vanished(self, cfg: Any) -> None:
        """Listeners the new config no longer has: the master's copies close now;
        workers close theirs when they swap generations."""
        wanted = bind_keys(group_servers(cfg.servers))
        for key in [k for k in self.binder.sockets if k not in wanted]:
            self.binder.sockets.pop(key).close()
            self.binder.specs.pop(key, None)
        for key, slot in [k for k in self.clones if k[0] not in wanted]:
            self.clones.pop((key, slot)).close()

    def _send_reload(self, child: _Child) -> None:
        socks = self._sockets_for(child.slot or 0)
        keys = list(socks)
        sent = channel.send(child.chan, {"op": "reload", "keys": [list(k) for k in keys]},
                            [socks[k].fileno() for k in keys])
        if not sent:
            self.log.write("alert", f"could not send reload to worker process {child.pid}")

    def _sockets_for(self, slot: int) -> dict[Any, socket.socket]:
        out = dict(self.binder.sockets)
        for (key, clone_slot), sock in self.clones.items():
            if clone_slot == slot:
                out[key] = sock
        return out

    def _clone_reuseport(self, count: int) -> None:
        """nginx gives each worker its own `reuseport` socket (the kernel balances
        between them); slot 0 uses the master's original."""
        for key, spec in self.binder.specs.items():
            if not spec.reuseport or key not in self.binder.sockets:
                continue
            for slot in range(1, count):
                if (key, slot) not in self.clones:
                    try:
                        self.clones[(key, slot)] = listen_mod.bind_socket(spec)
                    except ListenError as exc:
                        self.log.write("emerg", str(exc))

    @staticmethod
    def _kill(pid: int, signo: int) -> None:
        try:
            os.kill(pid, signo)
        except OSError as exc:
            if exc.errno != errno.ESRCH:
                raise
