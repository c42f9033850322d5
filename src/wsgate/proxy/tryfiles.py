"""`try_files` at run time (ngx_http_try_files_handler, the precontent phase).

Each name is rendered and mapped to a path under root/alias; an argument
ending in "/" asks for a directory (the URI is the name without that "/"), any
other for a file (or a directory when the rendered name ends in "/"). The first that exists
becomes the request's URI (its location stays: the content handler serves it).
When none exists, the last argument decides: `=code` ends the request with that
status, `@name` goes to a named location, and anything else is an internal
redirect (its own `?args`, else none).
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from typing import Any

from wsgate.proxy.context import Exchange
from wsgate.proxy.static import map_uri

__all__ = ["TryResult", "try_files"]


@dataclass(frozen=True, slots=True)
class TryResult:
    """What try_files decided: kind is file | code | named | redirect."""

    kind: str
    uri: str = ""
    args: str | None = None
    code: int = 0


def try_files(ex: Exchange, conf: Any) -> TryResult:
    for template in conf.files:
        # nginx strips a trailing "/" from the argument at load: it asks for a
        # directory and the URI becomes the name without it
        want_dir = str(getattr(template, "source", "")).endswith("/")
        name = template.render(ex.vars)
        if want_dir:
            name = name[:-1]
        uri = _existing(ex, name, want_dir)
        if uri is not None:
            return TryResult("file", uri)
    ex.extra.pop("add_uri_to_alias", None)
    if conf.code is not None:
        return TryResult("code", code=conf.code)
    target = conf.fallback.render(ex.vars)
    if target.startswith("@"):
        return TryResult("named", target)
    path, sep, args = target.partition("?")
    return TryResult("redirect", path, args if sep else None)


def _existing(ex: Exchange, name: str, want_dir: bool) -> str | None:
    """The URI for `name` when its file (or directory, for "dir/") exists; a
    name that itself ends in "/" may be a directory (its index serves it)."""
    uri = name
    loc = ex.location
    regex_alias = loc.alias is not None and loc.kind in ("regex", "regex_caseless")
    if loc.alias is not None and not regex_alias:
        if not name.startswith(loc.pattern):
            uri = loc.pattern + name.lstrip("/")   # nginx appends it to the alias
    if regex_alias:
        ex.extra["add_uri_to_alias"] = True
    path = map_uri(ex, uri)
    try:
        st = os.stat(path)
    except OSError:
        return None
    is_dir = stat.S_ISDIR(st.st_mode)
    if want_dir and not is_dir or is_dir and not (want_dir or name.endswith("/")):
        return None
    return uri
