"""Where a buffered request body lives: memory or a temporary file (nginx's
ngx_http_read_client_request_body and its `$request_body`/`$request_body_file`).

nginx keeps a body in memory when it fits `client_body_buffer_size` (or, beyond
what was read with the head, 1.25 times it), and only then is `$request_body`
set; a larger body (or any body with `client_body_in_file_only on|clean`) goes
to a file under `client_body_temp_path`, named by a 10-digit sequence number,
and `$request_body_file` names it. The file is removed when the
request ends unless `client_body_in_file_only on` asks to keep it.
"""

from __future__ import annotations

import itertools
import os
from typing import Any

from wsgate.proxy.context import Exchange

__all__ = ["store_body", "remove_body_file"]

_sequence = itertools.count(1)


def store_body(ex: Exchange, body: bytes) -> None:
    """Record `body` in the request's variables, writing it to a temp file when
    nginx would (see the module docstring)."""
    loc = ex.location
    in_file = getattr(loc, "client_body_in_file_only", "off") or "off"
    limit = getattr(loc, "client_body_buffer_size", 16384) or 0
    # nginx keeps what came with the head (preread) in the header buffer and sizes
    # one body buffer at 1.25 x client_body_buffer_size for the rest
    rest = len(body) - int(ex.extra.get("preread", 0))
    if in_file == "off" and (len(body) <= limit or rest <= limit + (limit >> 2)):
        ex.vars.request_body = body.decode("latin-1")
        return
    try:
        path = _write_temp(_temp_dir(ex), body)
    except OSError:
        # nginx answers 500 when it cannot create the file; keep serving from memory
        # but say nothing about a file that does not exist
        return
    ex.vars.request_body_file = path
    if in_file != "on":
        ex.extra["body_temp_file"] = path


def remove_body_file(ex: Exchange) -> None:
    """At the end of the request: the temp file goes unless it is to be kept."""
    path = ex.extra.pop("body_temp_file", None)
    if path:
        try:
            os.unlink(path)
        except OSError:
            pass


def _temp_dir(ex: Exchange) -> str:
    spec: Any = getattr(ex.location, "client_body_temp_path", None) or ("client_body_temp",)
    path = str(spec[0])
    if not os.path.isabs(path):
        path = os.path.join(str(ex.extra.get("prefix") or "."), path)
    return path


def _write_temp(directory: str, body: bytes) -> str:
    os.makedirs(directory, mode=0o700, exist_ok=True)
    for _ in range(100):           # bounded: a name taken by an earlier run is skipped
        path = os.path.join(directory, "%010d" % next(_sequence))
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            continue
        with os.fdopen(fd, "wb") as f:
            f.write(body)
        return path
    raise OSError("no free temporary file name")
