"""access_log: one line per request (per tunnel, when it closes) in a log_format.

Formats come from `log_format` (rendered with the variables module's `render_log`
and the format's `escape=`); `combined` is built in. Parameters as nginx:
`if=COND` skips the line when COND is "" or "0"; `buffer=SIZE` collects lines and
writes them when the buffer would overflow, when `flush=TIME` has passed since the
oldest buffered line, and at reopen/close. Files are opened once per config
generation, shared by every location naming the same path, and reopened on USR1.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import IO, Any

from wsgate.config import templates

__all__ = ["AccessLogs", "COMBINED"]

COMBINED = ('$remote_addr - $remote_user [$time_local] "$request" $status '
            '$body_bytes_sent "$http_referer" "$http_user_agent"')


@dataclass(slots=True)
class _Target:
    path: str
    stream: IO[bytes] | None = None
    buffer: list[bytes] = field(default_factory=list)
    buffered: int = 0
    first_at: float = 0.0

    def open(self) -> None:
        try:
            self.stream = open(self.path, "ab", buffering=0)
        except OSError:
            self.stream = None

    def write(self, data: bytes) -> None:
        if self.stream is not None:
            try:
                self.stream.write(data)
            except OSError:
                pass   # nginx ignores a failed log write

    def flush(self) -> None:
        if self.buffer:
            self.write(b"".join(self.buffer))
            self.buffer.clear()
            self.buffered = 0

    def close(self) -> None:
        self.flush()
        if self.stream is not None:
            self.stream.close()
            self.stream = None


def _size(text: str) -> int:
    mult = {"k": 1024, "m": 1024 * 1024}.get(text[-1:].lower(), 1)
    return int(text[:-1] if mult != 1 else text) * mult


def _seconds(text: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    for suffix in ("ms", "s", "m", "h"):
        if text.endswith(suffix) and text[:-len(suffix)].isdigit():
            return int(text[:-len(suffix)]) * units[suffix]
    return float(text)


@dataclass(frozen=True, slots=True)
class _Params:
    condition: Any = None
    buffer: int = 0
    flush: float | None = None


class AccessLogs:
    """The access logs of one config generation."""

    def __init__(self, http: Any) -> None:
        self.http = http
        self.targets: dict[str, _Target] = {}
        self.formats: dict[str, tuple[Any, str]] = {}
        self.params: dict[tuple[str, ...], _Params] = {}
        table = http.variables if http is not None else None
        self.formats["combined"] = (templates.compile(
            COMBINED.replace("$remote_user", "-"), table), "default")
        for name, fmt in (http.log_formats if http is not None else {}).items():
            self.formats[name] = (fmt.template, fmt.escape or "default")

    def _target(self, path: str) -> _Target:
        target = self.targets.get(path)
        if target is None:
            target = self.targets[path] = _Target(path)
            target.open()
        return target

    def open_all(self, locations: list[Any]) -> None:
        """Open every file named by these locations (at startup, like nginx)."""
        for loc in locations:
            for entry in loc.access_log or ():
                if entry.path is not None and "$" not in entry.path:
                    self._target(entry.path)

    def _params(self, raw: tuple[str, ...]) -> _Params:
        found = self.params.get(raw)
        if found is not None:
            return found
        cond, buf, flush = None, 0, None
        for item in raw:
            key, _, value = item.partition("=")
            if key == "if":
                table = self.http.variables if self.http is not None else None
                cond = templates.compile(value, table)
            elif key == "buffer":
                buf = _size(value)
            elif key == "flush":
                flush = _seconds(value)
        found = self.params[raw] = _Params(cond, buf, flush)
        return found

    def log(self, location: Any, ctx: Any) -> None:
        """Write the line(s) for one finished request."""
        for entry in getattr(location, "access_log", ()) or ():
            if entry.path is None:
                continue
            params = self._params(entry.params)
            if params.condition is not None and params.condition.render(ctx) in ("", "0"):
                continue
            template, escape = self.formats.get(entry.format, self.formats["combined"])
            if template is None:
                continue
            line = (template.render_log(ctx, escape) + "\n").encode("utf-8", "surrogateescape")
            self._emit(self._target(entry.path), line, params)

    @staticmethod
    def _emit(target: _Target, line: bytes, params: _Params) -> None:
        if not params.buffer:
            target.write(line)
            return
        now = time.monotonic()
        if target.buffered + len(line) > params.buffer:
            target.flush()
        if not target.buffer:
            target.first_at = now
        target.buffer.append(line)
        target.buffered += len(line)
        if params.flush is not None and now - target.first_at >= params.flush:
            target.flush()

    def tick(self) -> None:
        """Flush buffers (called periodically and before exit)."""
        for target in self.targets.values():
            target.flush()

    def reopen(self) -> None:
        for target in self.targets.values():
            target.close()
            target.open()

    def close(self) -> None:
        for target in self.targets.values():
            target.close()
