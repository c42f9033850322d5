"""wsgate: a reverse proxy in which WebSockets just work.

The public library API lives here and only here (see `__all__`); `wsgate.api`
documents it. Importing `wsgate` stays cheap: the engine loads on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from wsgate.errors import ConfigError, WsgateError
from wsgate.version import __version__

if TYPE_CHECKING:
    from wsgate.api import Server, ServerThread, load_config

__all__ = ["Server", "ServerThread", "load_config", "ConfigError", "WsgateError",
           "__version__"]

_LAZY = {"Server", "ServerThread", "load_config"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from wsgate import api
        return getattr(api, name)
    raise AttributeError(f"module 'wsgate' has no attribute {name!r}")
