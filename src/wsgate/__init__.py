"""wsgate: a reverse proxy in which WebSockets just work.

The public library API lives here and only here (see `__all__`).
"""

from wsgate.version import __version__

__all__ = ["__version__"]
