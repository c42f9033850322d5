"""nginx's error log: the line format, the level order, and where lines go.

A line is exactly what nginx 1.22 writes (`ngx_log_error_core`):

    2026/11/22 04:17:00 [error] 1234#1234: *5 connect() failed (111: Connection
    refused) while connecting to upstream, client: 127.0.0.1, server: localhost,
    request: "GET / HTTP/1.1", upstream: "http://127.0.0.1:3000/", host: "h"

(one line; wrapped here). The pieces after the message follow nginx's convention:
`while <action>` says what the process was doing (`log->action`), then the request
context (`ngx_http_log_error`). `context()` builds that tail so every caller spells it
the same way.

Where lines go also follows nginx: an `ErrorLog` writes full lines to its target (a
file or stderr), and while wsgate still talks to a terminal (before daemonising, and
always for `-t`/`-s`), a message at `warn` or worse that did not already reach stderr
is echoed there as `wsgate: [level] message` -- which is why `nginx -t -e file`
prints `nginx: [emerg] ...` on the console as well as the full line in the file.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from dataclasses import dataclass
from typing import IO

# nginx's err_levels[], most severe first; a line is written when the log's level is
# at least as verbose as the message's (ngx_log_error: `log->log_level >= level`).
LEVELS: tuple[str, ...] = ("emerg", "alert", "crit", "error", "warn", "notice", "info", "debug")
_RANK = {name: rank for rank, name in enumerate(LEVELS, start=1)}

# NGX_MAX_ERROR_STR: nginx truncates a line (without its newline) to this many bytes.
MAX_LINE = 2048
# The console echo names the program the way nginx's does (`nginx: [emerg] ...`).
PROGRAM = "wsgate"


def level_rank(level: str) -> int:
    """nginx's numeric level (emerg=1 ... debug=8); ValueError for unknown words."""
    try:
        return _RANK[level]
    except KeyError:
        raise ValueError(f'invalid log level "{level}"') from None


def enabled(threshold: str, level: str) -> bool:
    """Does a log set to `threshold` write a message at `level`?"""
    return level_rank(level) <= level_rank(threshold)


def timestamp(now: float | None = None) -> str:
    """nginx's cached error-log time, `2026/11/22 04:17:00`, in local time."""
    return time.strftime("%Y/%m/%d %H:%M:%S", time.localtime(now))


def errno_text(err: int) -> str:
    """The ` (2: No such file or directory)` suffix nginx adds for a system error."""
    return f" ({err}: {os.strerror(err)})"


def context(action: str | None = None, client: str | None = None,
            server: str | None = None, request: str | None = None,
            upstream: str | None = None, host: str | None = None,
            referrer: str | None = None) -> str:
    """The tail nginx appends to a message about a connection or request.

    Order and quoting are nginx's: ` while <action>, client: <addr>, server: <name>,
    request: "<line>", upstream: "<url>", host: "<host>", referrer: "<ref>"`.
    """
    parts: list[str] = []
    if action:
        parts.append(f" while {action}")
    if client is not None:
        parts.append(f", client: {client}")
    if server is not None:
        parts.append(f", server: {server}")
    if request is not None:
        parts.append(f', request: "{request}"')
    if upstream is not None:
        parts.append(f', upstream: "{upstream}"')
    if host is not None:
        parts.append(f', host: "{host}"')
    if referrer is not None:
        parts.append(f', referrer: "{referrer}"')
    return "".join(parts)


def format_line(level: str, message: str, *, pid: int | None = None, tid: int | None = None,
                connection: int | None = None, err: int | None = None,
                tail: str = "", now: float | None = None) -> str:
    """One complete error-log line, newline included, truncated like nginx's."""
    level_rank(level)
    pid = os.getpid() if pid is None else pid
    tid = threading.get_native_id() if tid is None else tid
    conn = f"*{connection} " if connection is not None else ""
    errtext = errno_text(err) if err is not None else ""
    body = f"{timestamp(now)} [{level}] {pid}#{tid}: {conn}{message}{errtext}{tail}"
    return _truncate(body, MAX_LINE) + "\n"


def console_line(level: str, message: str, err: int | None = None) -> str:
    """The console echo: `wsgate: [emerg] message` (nginx's `nginx: [emerg] ...`)."""
    errtext = errno_text(err) if err is not None else ""
    return f"{PROGRAM}: [{level}] {message}{errtext}\n"


def _truncate(text: str, limit: int) -> str:
    raw = text.encode("utf-8", "surrogateescape")
    if len(raw) <= limit:
        return text
    return raw[:limit].decode("utf-8", "ignore")


@dataclass
class ErrorLog:
    """One error-log target: a file path (appended to) or stderr (`path is None`).

    `level` is the threshold (nginx's `error_log file LEVEL`, default `error`; the
    startup log nginx uses before a config exists runs at `notice`, and at `info`
    under `-t`). `echo_stderr` is nginx's `ngx_use_stderr`.
    """

    path: str | None = None
    level: str = "error"
    echo_stderr: bool = True
    stream: IO[str] | None = None
    open_error: OSError | None = None

    @classmethod
    def open(cls, path: str | None, level: str = "error",
             echo_stderr: bool = True) -> "ErrorLog":
        """Open `path` for appending (None or "" means stderr).

        Like nginx's `ngx_log_init`, a file that cannot be opened leaves the log on
        stderr and records why in `open_error`, for the caller to report.
        """
        log = cls(path or None, level, echo_stderr)
        if log.path is not None:
            try:
                log.stream = open(log.path, "a", encoding="utf-8", errors="surrogateescape")
            except OSError as exc:
                log.open_error = exc
                log.path = None
        return log

    @property
    def to_stderr(self) -> bool:
        return self.path is None

    def write(self, level: str, message: str, *, err: int | None = None,
              connection: int | None = None, tail: str = "") -> None:
        """Log `message` at `level` if the threshold lets it through, echoing as nginx does."""
        if enabled(self.level, level):
            line = format_line(level, message, err=err, connection=connection, tail=tail)
            self._emit(line)
            if self.to_stderr:
                return
        if self.echo_stderr and level_rank(level) <= level_rank("warn"):
            _write_stderr(console_line(level, message + tail, err))

    def _emit(self, line: str) -> None:
        target = self.stream if self.stream is not None else sys.stderr
        try:
            target.write(line)
            target.flush()
        except OSError:
            pass  # nginx ignores a failed log write; there is nowhere to report it

    def close(self) -> None:
        if self.stream is not None:
            self.stream.close()
            self.stream = None


def _write_stderr(text: str) -> None:
    try:
        sys.stderr.write(text)
        sys.stderr.flush()
    except OSError:
        pass
