"""The process model: one serving process for now (the master is the worker).

`run(cfg, ...)` binds the listeners (retrying EADDRINUSE 5 times, 500 ms apart, as
nginx's master does), daemonises unless `daemon off`, writes the pid file once the
sockets are bound, serves on uvloop, and handles nginx's signals:
  QUIT   graceful stop: stop accepting, finish in-flight requests, keep tunnels
         until they end (or worker_shutdown_timeout)
  TERM, INT  fast stop
  HUP    reload: load the config again; on error keep the old one and log [emerg];
         new connections use the new generation, established ones keep theirs
  USR1   reopen log files
Returns the process exit status; never calls sys.exit and never prints.
"""

from __future__ import annotations

import asyncio
import errno
import os
import signal
import time
from typing import Any

from wsgate.errors import ConfigError
from wsgate.observe.errorlog import ErrorLog
from wsgate.proxy import loop as loop_mod
from wsgate.proxy.listen import ListenError
from wsgate.proxy.server import Worker

__all__ = ["run"]

_BIND_TRIES = 5


def _error_log(cfg: Any, fallback: ErrorLog) -> ErrorLog:
    """The first error_log of the config (nginx writes to each; one is enough here)."""
    for entry in cfg.error_logs or ():
        path = entry[0]
        level = entry[1] if len(entry) > 1 else "error"
        if path == "stderr":
            return ErrorLog(None, level, echo_stderr=False)
        log = ErrorLog.open(path, level, echo_stderr=fallback.echo_stderr)
        if log.open_error is None:
            return log
    return fallback


def _bind(worker: Worker, cfg: Any, log: ErrorLog) -> dict[Any, Any] | None:
    for attempt in range(_BIND_TRIES):
        try:
            return worker.bind(cfg)
        except ListenError as exc:
            log.write("emerg", str(exc))
            if exc.errno != errno.EADDRINUSE or attempt == _BIND_TRIES - 1:
                if exc.errno == errno.EADDRINUSE:
                    log.write("emerg", "still could not bind()")
                return None
            time.sleep(0.5)
    return None


def _daemonize() -> bool:
    """Fork into the background as nginx does; True in the process that goes on."""
    if os.fork() > 0:
        return False
    os.setsid()
    if os.fork() > 0:
        os._exit(0)
    fd = os.open(os.devnull, os.O_RDWR)
    for target in (0, 1):
        os.dup2(fd, target)
    return True


def _write_pid(path: str, log: ErrorLog) -> bool:
    try:
        with open(path, "w") as fh:
            fh.write(f"{os.getpid()}\n")
        return True
    except OSError as exc:
        log.write("emerg", f'open() "{path}" failed', err=exc.errno)
        return False


def _remove_pid(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def run(cfg: Any, *, prefix: str | None = None, conf_file: str | None = None,
        log: ErrorLog | None = None, globals_: str | None = None) -> int:
    """Serve `cfg` until stopped; returns the exit status."""
    startup = log or ErrorLog(None)
    worker = Worker(_error_log(cfg, startup))
    sockets = _bind(worker, cfg, startup)
    if sockets is None:
        return 1
    if cfg.daemon and not _daemonize():
        return 0
    if not _write_pid(cfg.pid, startup):
        return 1
    state = _State(cfg, prefix, conf_file or cfg.conf_file, globals_, worker)
    loop = loop_mod.new_event_loop()
    try:
        loop.run_until_complete(state.main(sockets))
    finally:
        _remove_pid(cfg.pid)
        loop.close()
    return 0


class _State:
    """The running server: the signals' targets."""

    def __init__(self, cfg: Any, prefix: str | None, conf_file: str, globals_: str | None,
                 worker: Worker) -> None:
        self.cfg = cfg
        self.prefix = prefix
        self.conf_file = conf_file
        self.globals_ = globals_
        self.worker = worker
        self.stop: asyncio.Future[str] | None = None

    async def main(self, sockets: dict[Any, Any]) -> None:
        loop = asyncio.get_running_loop()
        self.stop = loop.create_future()
        await self.worker.start(self.cfg, sockets)
        handlers = {signal.SIGQUIT: lambda: self._stop("quit"),
                    signal.SIGTERM: lambda: self._stop("fast"),
                    signal.SIGINT: lambda: self._stop("fast"),
                    signal.SIGHUP: lambda: loop.create_task(self._reload()),
                    signal.SIGUSR1: self.worker.reopen_logs}
        for signum, handler in handlers.items():
            loop.add_signal_handler(signum, handler)
        pruner = loop.create_task(self._prune())
        how = await self.stop
        pruner.cancel()
        if how == "quit":
            await self.worker.graceful(self.cfg.worker_shutdown_timeout)
        else:
            self.worker.fast()
        for signum in handlers:
            loop.remove_signal_handler(signum)

    def _stop(self, how: str) -> None:
        if self.stop is not None and not self.stop.done():
            self.stop.set_result(how)

    async def _prune(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            self.worker.prune()
            for rt in self.worker.runtimes():
                rt.access.tick()

    async def _reload(self) -> None:
        from wsgate.config.load import load_config
        log = self.worker.log
        log.write("notice", "signal 1 (SIGHUP) received, reconfiguring")

        def warn(finding: ConfigError) -> None:
            log.write(finding.level or "warn", str(finding))
        try:
            cfg = load_config(self.conf_file, prefix=self.prefix, globals_=self.globals_,
                              warn=warn)
        except ConfigError as exc:
            log.write(exc.level or "emerg", str(exc))
            return
        try:
            sockets = self.worker.bind(cfg)
        except ListenError as exc:
            log.write("emerg", str(exc))
            return
        await self.worker.reload(cfg, sockets)
        self.cfg = cfg
