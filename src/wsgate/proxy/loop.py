"""Event-loop choice: the one place that decides between uvloop and asyncio's loop.

uvloop is used when importable (it is a dependency on Linux); asyncio's default loop
is the fallback and is what tests parametrize against to keep both paths honest.
"""

from __future__ import annotations

import asyncio
from types import ModuleType
from typing import Literal

_uvloop: ModuleType | None
try:
    import uvloop as _uvloop
except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
    _uvloop = None

LoopKind = Literal["uvloop", "asyncio"]


def available() -> tuple[LoopKind, ...]:
    """The loop implementations this interpreter can run, preferred first."""
    return ("uvloop", "asyncio") if _uvloop is not None else ("asyncio",)


def new_event_loop(kind: LoopKind | None = None) -> asyncio.AbstractEventLoop:
    """A fresh loop of `kind` (default: uvloop when importable, else asyncio's)."""
    kind = kind or available()[0]
    if kind == "uvloop":
        if _uvloop is None:
            raise RuntimeError("uvloop is not installed")
        loop: asyncio.AbstractEventLoop = _uvloop.new_event_loop()
        return loop
    return asyncio.SelectorEventLoop()


def install(kind: LoopKind | None = None) -> asyncio.AbstractEventLoop:
    """Create a loop of `kind` and make it the current thread's event loop."""
    loop = new_event_loop(kind)
    asyncio.set_event_loop(loop)
    return loop


def kind_of(loop: asyncio.AbstractEventLoop) -> LoopKind:
    """Which implementation `loop` is (for logs and `-V`-style reports)."""
    return "uvloop" if type(loop).__module__.startswith("uvloop") else "asyncio"
