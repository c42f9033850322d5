"""Coarse periodic timers: one ticker per event loop scans every registered watcher.

Why not a timer per connection: re-arming a loop timer on every chunk costs a heap
operation per read, and idle timeouts only need ~0.5 s precision. Instead each
watched object keeps cheap counters on its hot path (an int add per chunk), and
this ticker calls `watcher.tick(now)` every `interval` seconds; the watcher
compares counters with what it saw last time and decides whether it has been idle
too long. A timeout therefore fires no earlier than configured and at most about
two intervals late.

The ticker runs only while something is registered, so an idle worker has no
periodic wake-ups.
"""

from __future__ import annotations

import asyncio
import weakref
from typing import Callable, Protocol

DEFAULT_INTERVAL = 0.5


class Watcher(Protocol):
    """Anything the ticker can drive."""

    def tick(self, now: float) -> None: ...


class Ticker:
    """Calls `tick(now)` on every registered watcher once per `interval`."""

    def __init__(self, loop: asyncio.AbstractEventLoop,
                 interval: float = DEFAULT_INTERVAL):
        self.loop = loop
        self.interval = interval
        self._watchers: set[Watcher] = set()
        self._handle: asyncio.TimerHandle | None = None

    def __len__(self) -> int:
        return len(self._watchers)

    def add(self, watcher: Watcher) -> None:
        self._watchers.add(watcher)
        if self._handle is None:
            self._handle = self.loop.call_later(self.interval, self._run)

    def discard(self, watcher: Watcher) -> None:
        self._watchers.discard(watcher)
        if not self._watchers and self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _run(self) -> None:
        now = self.loop.time()
        # A copy: watchers unregister themselves (tunnel closed) while ticking.
        for watcher in list(self._watchers):
            watcher.tick(now)
        self._handle = (self.loop.call_later(self.interval, self._run)
                        if self._watchers else None)


_tickers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Ticker] = (
    weakref.WeakKeyDictionary())


def ticker_for(loop: asyncio.AbstractEventLoop) -> Ticker:
    """The loop's (i.e. the worker's) shared ticker, created on first use."""
    ticker = _tickers.get(loop)
    if ticker is None:
        ticker = _tickers[loop] = Ticker(loop)
    return ticker


class Deadline:
    """One loop timer for a sequence of waits, moved lazily.

    Most waits end long before their deadline (a keep-alive connection's next
    request, an upstream's response head), so creating and cancelling a loop timer
    per wait (~2 µs each in uvloop, two per proxied request) was pure overhead.
    Here `set()` records the deadline and arms the timer only when none is armed
    for an earlier time; `clear()` just forgets the deadline. When the timer fires
    before the current deadline it re-arms for the rest, so `callback` runs no
    earlier and no later than a timer per wait would have run it. `cancel()` must
    be called when the owner ends: an armed timer holds the callback."""

    __slots__ = ("loop", "callback", "deadline", "armed_at", "handle")

    def __init__(self, loop: asyncio.AbstractEventLoop,
                 callback: Callable[[], None]) -> None:
        self.loop = loop
        self.callback = callback
        self.deadline: float | None = None
        self.armed_at = 0.0
        self.handle: asyncio.TimerHandle | None = None

    def set(self, timeout: float) -> None:
        deadline = self.deadline = self.loop.time() + timeout
        handle = self.handle
        if handle is not None:
            if self.armed_at <= deadline:
                return          # it fires first, then re-arms for the rest
            handle.cancel()
        self.armed_at = deadline
        self.handle = self.loop.call_at(deadline, self._fire)

    def clear(self) -> None:
        self.deadline = None

    def cancel(self) -> None:
        self.deadline = None
        if self.handle is not None:
            self.handle.cancel()
            self.handle = None

    def _fire(self) -> None:
        self.handle = None
        deadline = self.deadline
        if deadline is None:
            return
        if self.loop.time() < deadline:
            self.armed_at = deadline
            self.handle = self.loop.call_at(deadline, self._fire)
            return
        self.deadline = None
        self.callback()
