"""The live view of `wsgate demo`: one line per session opened/closed (from the backend's
room events), one per request wsgate logged (tailing its access log), and a periodic
counts line.  Output goes through a `write(line)` callable; nothing here prints.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from typing import Any

from wsgate.demo.conf import ACCESS_FIELDS
from wsgate.demo.room import RoomEvent, SessionClosed, SessionOpened

__all__ = ["format_event", "format_access", "format_counts", "tail_access_log", "print_counts"]

Write = Callable[[str], None]
MAX_LINE = 4096


def _clock() -> str:
    return time.strftime("%H:%M:%S")


def format_event(event: RoomEvent) -> str:
    """`open`/`close` line for a session event."""
    if isinstance(event, SessionOpened):
        return f"{_clock()}  open   {event.id:<5} from {event.addr:<15} ({event.clients} online)"
    return _format_closed(event)


def _format_closed(e: SessionClosed) -> str:
    code = "no close code" if e.close_code is None else f"close {e.close_code}"
    by = f" by {e.closed_by}" if e.closed_by else ""
    return (f"{_clock()}  close  {e.id:<5} from {e.addr:<15} {e.duration:6.1f}s  "
            f"msgs in {e.messages_in} / out {e.messages_out}  {code}{by}  ({e.clients} online)")


def format_access(line: str) -> str | None:
    """A line of wsgate's access log (tab-separated ACCESS_FIELDS) as a view line."""
    parts = line.rstrip("\n").split("\t")
    if len(parts) != len(ACCESS_FIELDS):
        return None
    f = dict(zip(ACCESS_FIELDS, parts))
    return (f"{_clock()}  wsgate {f['remote_addr']} \"{f['request']}\" {f['status']} "
            f"{f['bytes_sent']}B {f['request_time']}s")


def format_counts(stats: dict[str, Any]) -> str:
    return (f"{_clock()}  counts: {stats['clients']} online, {stats['sessions_total']} sessions, "
            f"{stats['messages_in']} messages in, {stats['messages_out']} out, "
            f"{stats['http_requests']} http requests")


async def tail_access_log(path: str, write: Write, interval: float = 0.5) -> None:
    """Print new access-log lines as wsgate appends them (runs until cancelled)."""
    offset = 0
    partial = b""
    while True:
        await asyncio.sleep(interval)
        try:
            with open(path, "rb") as f:
                if os.fstat(f.fileno()).st_size < offset:
                    offset = 0                    # truncated or rotated
                f.seek(offset)
                data = f.read(1 << 20)
                offset += len(data)
        except OSError:
            continue
        lines = (partial + data).split(b"\n")
        partial = lines.pop()[-MAX_LINE:]
        for raw in lines:
            text = format_access(raw.decode("utf-8", "replace"))
            if text is not None:
                write(text)


async def print_counts(stats: Callable[[], dict[str, Any]], write: Write,
                       interval: float) -> None:
    """Print the counts line every `interval` seconds when something changed."""
    def comparable() -> dict[str, Any]:
        return {k: v for k, v in stats().items() if k != "uptime_s"}

    last = comparable()                   # nothing to report before anything happened
    while True:
        await asyncio.sleep(interval)
        now = comparable()
        if now != last:
            write(format_counts(stats()))
            last = now
