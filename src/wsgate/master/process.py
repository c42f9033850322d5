"""`run(cfg, ...)`: from a loaded config to a serving wsgate, nginx's way.

Order as nginx's `main()`: bind the listeners (retrying EADDRINUSE 5 times, 500 ms
apart), daemonise unless `daemon off`, write the pid file once the sockets are bound,
then either

- `master_process on` (the default): the master (supervisor.py) forks
  `worker_processes` workers and supervises them, or
- `master_process off`: this process serves alone (`_Single`), handling the same
  signals itself: QUIT graceful, TERM/INT fast, HUP reload in place, USR1 reopen.

The pid file is removed at exit. Returns the exit status; never calls sys.exit and
never prints.
"""

from __future__ import annotations

import asyncio
import signal
from typing import Any

from wsgate.master import common
from wsgate.master.supervisor import Master
from wsgate.observe.errorlog import ErrorLog
from wsgate.proxy import loop as loop_mod
from wsgate.proxy.listen import ListenError
from wsgate.proxy.server import Worker

__all__ = ["run"]


def run(cfg: Any, *, prefix: str | None = None, conf_file: str | None = None,
        log: ErrorLog | None = None, globals_: str | None = None) -> int:
    """Serve `cfg` until stopped; returns the exit status."""
    startup = log or ErrorLog(None)
    common.user_notice(cfg, startup)
    binder = Worker(common.error_log_for(cfg, startup))
    sockets = common.bind_with_retry(lambda: binder.bind(cfg), startup)
    if sockets is None:
        return 1
    if cfg.daemon and not common.daemonize():
        return 0
    if not common.write_pid(cfg.pid, startup):
        for sock in sockets.values():
            sock.close()
        return 1
    conf = conf_file or cfg.conf_file
    try:
        if cfg.master_process:
            binder.sockets.update(sockets)
            return Master(cfg, binder, binder.log, conf, prefix, globals_).run()
        return _Single(cfg, prefix, conf, globals_, binder).serve(sockets)
    finally:
        common.remove_pid(cfg.pid)


class _Single(common.ServingLoop):
    """`master_process off`: one process serves and takes the signals itself."""

    def __init__(self, cfg: Any, prefix: str | None, conf_file: str, globals_: str | None,
                 worker: Worker) -> None:
        self.cfg = cfg
        self.prefix = prefix
        self.conf_file = conf_file
        self.globals_ = globals_
        self.worker = worker
        self.stop: asyncio.Future[str] | None = None

    def serve(self, sockets: dict[Any, Any]) -> int:
        loop = loop_mod.new_event_loop()
        try:
            loop.run_until_complete(self.main(sockets))
        finally:
            loop.close()
        return 0

    async def main(self, sockets: dict[Any, Any]) -> None:
        common.apply_rlimit(self.cfg, self.worker.log)
        loop = asyncio.get_running_loop()
        self.stop = loop.create_future()
        await self.worker.start(self.cfg, sockets)
        handlers = {signal.SIGQUIT: lambda: self._stop("quit"),
                    signal.SIGTERM: lambda: self._stop("fast"),
                    signal.SIGINT: lambda: self._stop("fast"),
                    signal.SIGHUP: lambda: loop.create_task(self._reload()),
                    signal.SIGUSR1: self._reopen}
        for signum, handler in handlers.items():
            loop.add_signal_handler(signum, handler)
        pruner = loop.create_task(self._prune())
        how = await self.stop
        pruner.cancel()
        log = self.worker.log
        if how == "quit":
            log.write("notice", "gracefully shutting down")
            await self.worker.graceful(self.cfg.worker_shutdown_timeout)
        else:
            self.worker.fast()
        for signum in handlers:
            loop.remove_signal_handler(signum)
        log.write("notice", "exit")

    def _reopen(self) -> None:
        self.worker.log.write("notice", "signal 10 (SIGUSR1) received, reopening logs")
        common.reopen_error_log(self.worker.log)
        self.worker.reopen_logs()

    async def _reload(self) -> None:
        log = self.worker.log
        log.write("notice", "signal 1 (SIGHUP) received, reconfiguring")
        cfg = common.load_again(self.conf_file, self.prefix, self.globals_, log)
        if cfg is None:
            return
        try:
            sockets = self.worker.bind(cfg)
        except ListenError as exc:
            log.write("emerg", str(exc))
            return
        await self.worker.reload(cfg, sockets)
        self.cfg = cfg
