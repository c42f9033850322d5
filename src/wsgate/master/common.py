"""Process chores shared by the master and the single-process mode.

Binding with nginx's retry policy, daemonising, the pid file, opening and reopening
the error log, loading the config again for a reload, and the per-worker process
settings nginx applies in `ngx_worker_process_init` (`worker_rlimit_nofile`, `user`).
Nothing here prints or exits; failures are logged on the ErrorLog given.
"""

from __future__ import annotations

import asyncio
import errno
import os
import socket
import time
from typing import Any, Callable

from wsgate.proxy.resolve import resolve
from wsgate.errors import ConfigError
from wsgate.observe.errorlog import ErrorLog
from wsgate.proxy.listen import ListenError

__all__ = ["BIND_TRIES", "bind_with_retry", "daemonize", "write_pid", "remove_pid",
           "error_log_for", "reopen_error_log", "load_again", "resolve",
           "apply_rlimit", "drop_privileges", "user_notice"]

BIND_TRIES = 5          # ngx_open_listening_sockets: 5 tries, 500 ms apart
_BIND_PAUSE = 0.5


def bind_with_retry(bind: Callable[[], dict[Any, socket.socket]],
                    log: ErrorLog) -> dict[Any, socket.socket] | None:
    """Call `bind` until it works; on EADDRINUSE retry as nginx does; None on failure."""
    for attempt in range(BIND_TRIES):
        try:
            return bind()
        except ListenError as exc:
            log.write("emerg", str(exc))
            if exc.errno != errno.EADDRINUSE:
                return None
            if attempt == BIND_TRIES - 1:
                log.write("emerg", "still could not bind()")
                return None
            time.sleep(_BIND_PAUSE)
    return None


def daemonize() -> bool:
    """Fork into the background as nginx does; True in the process that goes on."""
    if os.fork() > 0:
        return False
    os.setsid()
    if os.fork() > 0:
        os._exit(0)
    fd = os.open(os.devnull, os.O_RDWR)
    for target in (0, 1):
        os.dup2(fd, target)
    os.close(fd)
    return True


def write_pid(path: str, log: ErrorLog) -> bool:
    """Write our pid to `path` (nginx writes it once the sockets are bound)."""
    try:
        with open(path, "w") as fh:
            fh.write(f"{os.getpid()}\n")
        return True
    except OSError as exc:
        log.write("emerg", f'open() "{path}" failed', err=exc.errno)
        return False


def remove_pid(path: str, log: ErrorLog | None = None) -> None:
    """Remove the pid file at exit, but only if it still names this process
    (a second instance must not delete the file of the one that runs)."""
    try:
        with open(path) as fh:
            if fh.read().strip() != str(os.getpid()):
                return
        os.unlink(path)
    except OSError as exc:
        if log is not None and exc.errno != errno.ENOENT:
            log.write("alert", f'unlink() "{path}" failed', err=exc.errno)


def error_log_for(cfg: Any, fallback: ErrorLog) -> ErrorLog:
    """The first error_log of the config (nginx writes to each; one is enough here)."""
    for entry in cfg.error_logs or ():
        path = entry[0]
        level = entry[1] if len(entry) > 1 else "error"
        if path == "stderr":
            return ErrorLog(None, level, echo_stderr=False)
        if not path.startswith("/"):
            path = os.path.join(cfg.prefix, path)       # nginx: relative to the prefix
        log = ErrorLog.open(path, level, echo_stderr=fallback.echo_stderr)
        if log.open_error is None:
            return log
    return fallback


def reopen_error_log(log: ErrorLog) -> None:
    """USR1: reopen the error log file in place (every holder of `log` follows)."""
    if log.path is None:
        return
    try:
        fresh = open(log.path, "a", encoding="utf-8", errors="surrogateescape")
    except OSError as exc:
        log.write("alert", f'open() "{log.path}" failed', err=exc.errno)
        return
    old, log.stream = log.stream, fresh
    if old is not None:
        old.close()


def load_again(conf_file: str, prefix: str | None, globals_: str | None,
               log: ErrorLog, text: str | None = None) -> Any:
    """Load the config for a reload; log errors as nginx does; None on failure."""
    from wsgate.config.load import load_config, load_config_text

    def warn(finding: ConfigError) -> None:
        log.write(finding.level or "warn", str(finding))
    try:
        if text is not None:
            cfg = load_config_text(text, name=conf_file, prefix=prefix, globals_=globals_,
                                   resolve=resolve, warn=warn)
        else:
            cfg = load_config(conf_file, prefix=prefix, globals_=globals_, resolve=resolve,
                              warn=warn)
        from wsgate.tls import check_config
        check_config(cfg, warn=warn)   # a bad certificate keeps the old generation
        return cfg
    except ConfigError as exc:
        log.write(exc.level or "emerg", str(exc))
        return None


def apply_rlimit(cfg: Any, log: ErrorLog) -> None:
    """worker_rlimit_nofile: setrlimit(RLIMIT_NOFILE) in the worker, as nginx does."""
    limit = cfg.worker_rlimit_nofile
    if limit is None:
        return
    import resource
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))
    except (OSError, ValueError) as exc:
        err = getattr(exc, "errno", None) or errno.EPERM
        log.write("alert", f"setrlimit(RLIMIT_NOFILE, {limit}) failed", err=err)


def user_notice(cfg: Any, log: ErrorLog) -> None:
    """nginx ignores `user` unless the master runs as root, and says so."""
    if cfg.user and os.geteuid() != 0:
        log.write("warn", 'the "user" directive makes sense only if the master process '
                          "runs with super-user privileges, ignored")


def drop_privileges(cfg: Any, log: ErrorLog) -> bool:
    """In a worker started by root: setgid/initgroups/setuid to `user` (nginx's
    default group is the user's name when `user NAME` gives none). False on failure."""
    if os.geteuid() != 0 or not cfg.user:
        return True
    import grp
    import pwd
    name = cfg.user[0]
    group = cfg.user[1] if len(cfg.user) > 1 else name
    try:
        pw = pwd.getpwnam(name)
        gid = grp.getgrnam(group).gr_gid
    except KeyError as exc:
        log.write("emerg", f"getpwnam/getgrnam(\"{exc.args[0]}\") failed")
        return False
    try:
        os.setgid(gid)
        os.initgroups(name, gid)
        os.setuid(pw.pw_uid)
    except OSError as exc:
        log.write("emerg", f"setuid({pw.pw_uid}) failed", err=exc.errno)
        return False
    return True


class ServingLoop:
    """What the single-process runner and a worker process share: the stop future
    that signals resolve, and the once-a-second housekeeping. Subclasses set
    `self.worker` (a proxy.server.Worker) and `self.stop` (a future or None)."""

    worker: Any
    stop: "asyncio.Future[str] | None"

    def _stop(self, how: str) -> None:
        if self.stop is None:
            return
        if not self.stop.done():
            self.stop.set_result(how)
        elif how == "fast":
            self.worker.fast()          # TERM during a graceful drain: drop it all now

    async def _prune(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            self.worker.prune()
            for rt in self.worker.runtimes():
                rt.access.tick()
