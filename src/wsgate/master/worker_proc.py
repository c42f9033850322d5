"""A worker process: serves inherited listening sockets on its own uvloop.

Started by the master with `fork()` (no exec: the config model and the bound sockets
are already in memory). It obeys nginx's worker signals and the master's channel:

  QUIT        graceful: stop accepting, finish requests, keep tunnels until they end
              or worker_shutdown_timeout expires, exit
  TERM, INT   fast exit
  USR1        reopen the error log and access logs
  channel     {"op": "reload"} + the listening sockets: load the config again (the
              master has already validated it) and swap the generation in place --
              established connections keep theirs, no process is replaced
  channel EOF the master is gone: drain as on QUIT (nginx would leave an orphan
              serving forever; a worker without a master cannot be reloaded or
              supervised, so it finishes its work and leaves)
"""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import socket
from typing import Any

from wsgate.master import channel, common
from wsgate.observe.errorlog import ErrorLog
from wsgate.proxy import loop as loop_mod
from wsgate.proxy.server import Worker, spec_for

__all__ = ["WorkerProcess", "HANDLED"]

HANDLED = (signal.SIGQUIT, signal.SIGTERM, signal.SIGINT, signal.SIGUSR1, signal.SIGHUP,
           signal.SIGCHLD)


class WorkerProcess(common.ServingLoop):
    """One worker's life, from the fork to `os._exit` (see the module docstring)."""

    def __init__(self, cfg: Any, worker: Worker, chan: socket.socket, conf_file: str,
                 prefix: str | None, globals_: str | None) -> None:
        self.cfg = cfg
        self.worker = worker
        self.chan = chan
        self.conf_file = conf_file
        self.prefix = prefix
        self.globals_ = globals_
        self.stop: asyncio.Future[str] | None = None

    def run(self) -> int:
        """Serve until told to stop; returns the exit status."""
        common.apply_rlimit(self.cfg, self.worker.log)
        if not common.drop_privileges(self.cfg, self.worker.log):
            return 2        # nginx's fatal code: the master does not respawn it
        loop = loop_mod.install()
        try:
            loop.run_until_complete(self._main())
        finally:
            loop.close()
        return 0

    async def _main(self) -> None:
        loop = asyncio.get_running_loop()
        self.stop = loop.create_future()
        for signum, handler in ((signal.SIGQUIT, lambda: self._stop("quit")),
                                (signal.SIGTERM, lambda: self._stop("fast")),
                                (signal.SIGINT, lambda: self._stop("fast")),
                                (signal.SIGUSR1, self._reopen),
                                (signal.SIGHUP, lambda: None)):
            loop.add_signal_handler(signum, handler)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, HANDLED)
        # The configuration, modules and the runtime built from them live as long
        # as the worker: out of the collector's sight (gc.freeze), full collections
        # no longer walk them again (py-spy: 1.3-2.2% of a busy worker's samples
        # were in the collector, 0.3% after). The collection runs before serving
        # (it would hold up connections this worker had started to accept); the
        # freeze, a cheap list splice, after start(): frozen before it, the
        # runtime's objects would be the whole of what the collector counts as
        # long-lived, and full collections would come far more often.
        gc.collect()
        await self.worker.start(self.cfg, {})
        gc.freeze()
        self.chan.setblocking(False)
        loop.add_reader(self.chan.fileno(), self._on_channel)
        pruner = loop.create_task(self._prune())
        how = await self.stop
        loop.remove_reader(self.chan.fileno())
        pruner.cancel()
        await self._finish(how)

    async def _finish(self, how: str) -> None:
        log = self.worker.log
        if how == "quit":
            log.write("notice", "gracefully shutting down")
            self._close_listeners()
            await self.worker.graceful(self.cfg.worker_shutdown_timeout)
        else:
            self._close_listeners()
            self.worker.fast()
        log.write("notice", "exiting")
        for rt in self.worker.runtimes():
            rt.close()
        log.write("notice", "exit")

    def _close_listeners(self) -> None:
        """Stop accepting and drop our copies of the listening sockets; the master
        owns them (and unlinks unix socket files), so nothing is unlinked here."""
        self.worker.stop_listening()
        for sock in self.worker.sockets.values():
            sock.close()
        self.worker.sockets.clear()

    def _reopen(self) -> None:
        common.reopen_error_log(self.worker.log)
        self.worker.reopen_logs()

    def _on_channel(self) -> None:
        message, fds = channel.receive(self.chan)
        if message is None:
            self._stop("quit")
            return
        if message.get("op") == "reload":
            asyncio.get_running_loop().create_task(self._reload(message, fds))
        else:
            for fd in fds:
                os.close(fd)

    async def _reload(self, message: dict[str, Any], fds: list[int]) -> None:
        keys = [tuple(k) for k in message.get("keys", ())]
        cfg = common.load_again(self.conf_file, self.prefix, self.globals_, self.worker.log)
        fresh: dict[Any, socket.socket] = {}
        listens = cfg.listens if cfg is not None else []
        for key, fd in zip(keys, fds):
            if cfg is None or key in self.worker.sockets:
                os.close(fd)
                continue
            fresh[key] = socket.socket(fileno=fd)
            self.worker.specs[key] = spec_for(key, listens)
        for fd in fds[len(keys):]:
            os.close(fd)
        if cfg is None or (self.stop is not None and self.stop.done()):
            for sock in fresh.values():
                sock.close()
            return
        # The first configuration was frozen (gc.freeze, see _main): unfrozen now
        # so that it can be collected once its last requests end. Not frozen again
        # (that would need a pause for a full collection, or would freeze the old
        # one's garbage): after a reload the collector walks everything, as before.
        gc.unfreeze()
        await self.worker.reload(cfg, fresh)
        self.cfg = cfg


def run_worker(cfg: Any, worker: Worker, chan: socket.socket, conf_file: str,
               prefix: str | None, globals_: str | None, log: ErrorLog) -> int:
    """The child side of the master's fork; never returns to the master's code."""
    worker.log = log
    return WorkerProcess(cfg, worker, chan, conf_file, prefix, globals_).run()
