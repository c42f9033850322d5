"""The library API: embed wsgate in a Python program.

    from wsgate import Server, load_config

    server = Server(load_config("/etc/wsgate/nginx.conf"))
    await server.start()                  # serves on the running event loop
    await server.reload(load_config(text_of_new_config))
    await server.stop(graceful=True, timeout=10)

or, from synchronous code, in a thread with its own loop:

    running = Server.from_options(listen="127.0.0.1:8080", to=["127.0.0.1:3000"]).start_in_thread()
    running.reload(new_config)
    running.stop()

An embedded server is one process (nginx's `master_process off`): directives about
processes (`worker_processes`, `daemon`, `pid`, `user`) are ignored, and it takes no
signals -- the host program owns those. Reload semantics are the engine's: new
connections get the new configuration, established ones (tunnels included) keep
theirs until they end or until `worker_shutdown_timeout`, if set.
"""

from __future__ import annotations

import asyncio
import os
import threading
from typing import Any, Sequence, Union

from wsgate.config.model import Config
from wsgate.errors import WsgateError
from wsgate.observe.errorlog import ErrorLog

__all__ = ["Server", "ServerThread", "load_config", "ConfigSource"]

ConfigSource = Union[Config, str, "os.PathLike[str]"]
_THREAD_START_TIMEOUT = 30.0


def load_config(source: str | os.PathLike[str], *, prefix: str | None = None,
                globals_: str | None = None) -> Config:
    """A config from a file path or from nginx-syntax text.

    `source` is text when it contains a `;`, `{` or newline, else a path. Relative
    paths inside (logs, includes) resolve against `prefix` (default: the file's
    directory, or the current directory for text). Raises ConfigError, whose str()
    is nginx's `message in file:line`."""
    from wsgate.config import load
    from wsgate.master.common import resolve
    text = os.fspath(source)
    if isinstance(source, str) and any(c in text for c in ";{\n"):
        base = os.path.abspath(prefix or os.getcwd())
        return load.load_config_text(text, name=os.path.join(base, "wsgate.conf"),
                                     prefix=base, globals_=globals_, resolve=resolve)
    path = os.path.abspath(text)
    base = os.path.abspath(prefix) if prefix else os.path.dirname(path)
    return load.load_config(path, prefix=base, globals_=globals_, resolve=resolve)


def _as_config(config: ConfigSource) -> Config:
    return config if isinstance(config, Config) else load_config(config)


class Server:
    """One embedded wsgate; see the module docstring."""

    def __init__(self, config: ConfigSource, *, error_log: ErrorLog | None = None) -> None:
        self.config = _as_config(config)
        self._startup_log = error_log or ErrorLog(None, "error", echo_stderr=False)
        self._worker: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @classmethod
    def from_options(cls, *, listen: str | int | Sequence[str | int], to: Sequence[str],
                     balance: str = "round_robin", websocket: bool = True,
                     read_timeout: str = "1h", access_log: str | None = None,
                     error_log: str = "stderr", prefix: str | None = None) -> "Server":
        """Quick mode's options (`wsgate serve`) as a Server."""
        from wsgate.cli.serve import QuickOptions, build_config_text
        listens = [str(listen)] if isinstance(listen, (str, int)) else [str(v) for v in listen]
        opts = QuickOptions(listens, list(to), balance=balance, websocket=websocket,
                            read_timeout=read_timeout, access_log=access_log,
                            error_log=error_log)
        return cls(load_config(build_config_text(opts), prefix=prefix))

    # -- in the current event loop ----------------------------------------------------

    @property
    def running(self) -> bool:
        return self._worker is not None

    @property
    def addresses(self) -> list[Any]:
        """Where it listens: (host, port) tuples, or paths for unix sockets."""
        if self._worker is None:
            return []
        return [sock.getsockname() for sock in self._worker.sockets.values()]

    async def start(self) -> None:
        """Bind the listeners and serve them on the running loop.

        Raises WsgateError (ListenError) with nginx's `bind() to ... failed` message."""
        from wsgate.master.common import apply_rlimit, error_log_for
        from wsgate.proxy.server import Worker
        if self._worker is not None:
            raise WsgateError("server already started")
        worker = Worker(error_log_for(self.config, self._startup_log))
        sockets = worker.bind(self.config)
        apply_rlimit(self.config, worker.log)
        await worker.start(self.config, sockets)
        self._worker = worker
        self._loop = asyncio.get_running_loop()

    async def reload(self, config: ConfigSource) -> None:
        """Serve `config` for new connections; existing ones keep the old one.

        A config that fails to load raises ConfigError and changes nothing."""
        cfg = _as_config(config)
        worker = self._require()
        sockets = worker.bind(cfg)
        await worker.reload(cfg, sockets)
        self.config = cfg

    async def stop(self, graceful: bool = True, timeout: float | None = None) -> None:
        """Stop serving. Graceful: stop accepting, let requests and tunnels finish
        (up to `timeout`, default the config's worker_shutdown_timeout, else no
        limit), then close politely; otherwise drop everything at once."""
        worker = self._require()
        self._worker = None
        if graceful:
            limit = timeout if timeout is not None else self.config.worker_shutdown_timeout
            await worker.graceful(limit)
        else:
            worker.fast()
        for rt in worker.runtimes():
            rt.close()

    def reopen_logs(self) -> None:
        """nginx's USR1: reopen the error log and the access logs."""
        from wsgate.master.common import reopen_error_log
        worker = self._require()
        reopen_error_log(worker.log)
        worker.reopen_logs()

    def _require(self) -> Any:
        if self._worker is None:
            raise WsgateError("server is not running")
        return self._worker

    # -- in a thread ------------------------------------------------------------------

    def start_in_thread(self) -> "ServerThread":
        """Start on a new thread with its own event loop (uvloop when available);
        returns once serving, or raises what `start()` raised."""
        handle = ServerThread(self)
        handle.begin()
        return handle


class ServerThread:
    """A Server running on its own thread; methods are synchronous and thread-safe."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._done: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="wsgate", daemon=True)

    def begin(self) -> None:
        self._thread.start()
        if not self._ready.wait(_THREAD_START_TIMEOUT):
            raise WsgateError("wsgate thread did not start in time")
        if self._error is not None:
            self._thread.join(_THREAD_START_TIMEOUT)
            raise self._error

    def _run(self) -> None:
        from wsgate.proxy import loop as loop_mod
        loop = loop_mod.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._main())
        finally:
            loop.close()

    async def _main(self) -> None:
        self._done = asyncio.Event()
        try:
            await self.server.start()
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        await self._done.wait()

    def _call(self, coro: Any, timeout: float | None) -> Any:
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    @property
    def addresses(self) -> list[Any]:
        return self.server.addresses

    def reload(self, config: ConfigSource, timeout: float | None = 30.0) -> None:
        """Thread-safe `Server.reload`; the config is loaded in the caller's thread."""
        cfg = _as_config(config)
        self._call(self.server.reload(cfg), timeout)

    def stop(self, graceful: bool = True, timeout: float | None = None) -> None:
        """Thread-safe `Server.stop`; returns when the thread has ended."""
        async def finish() -> None:
            try:
                await self.server.stop(graceful, timeout)
            finally:
                assert self._done is not None
                self._done.set()
        if self._thread.is_alive() and self.server.running:
            self._call(finish(), None)
        self._thread.join(_THREAD_START_TIMEOUT)

    def __enter__(self) -> "ServerThread":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop(graceful=False)
