"""nginx's static handler for a location without another content handler: files
under `root` (or `alias`), `index` for directory URIs, a 301 for a directory asked
without its slash, 404/403 as nginx answers them, GET and HEAD only (405 otherwise).
"""

from __future__ import annotations

import os
import stat
from email.utils import formatdate
from typing import Any

from wsgate.proxy.context import Exchange, server_tokens
from wsgate.proxy.handlers import LocalResponse, absolute_location, add_headers, \
    error_response, local_head

__all__ = ["serve_static", "MIME_TYPES"]

# A small built-in mime.types (nginx's most common entries).
MIME_TYPES = {
    "html": "text/html", "htm": "text/html", "shtml": "text/html", "css": "text/css",
    "xml": "text/xml", "gif": "image/gif", "jpeg": "image/jpeg", "jpg": "image/jpeg",
    "js": "application/javascript", "txt": "text/plain", "png": "image/png",
    "svg": "image/svg+xml", "ico": "image/x-icon", "json": "application/json",
    "pdf": "application/pdf", "wasm": "application/wasm", "woff": "font/woff",
    "woff2": "font/woff2", "mp4": "video/mp4", "webp": "image/webp",
    "zip": "application/zip", "gz": "application/octet-stream",
}
_MAX_STATIC = 64 * 1024 * 1024   # files are read whole; bigger ones are refused


def _path(ex: Exchange, uri: str) -> str:
    loc = ex.location
    if loc.alias is not None and loc.kind in ("prefix", "prefix_nosearch", "exact"):
        return loc.alias + uri[len(loc.pattern):]
    root = loc.root or "html"
    if not os.path.isabs(root):
        root = os.path.join(ex.extra.get("prefix", "/"), root)
    return root.rstrip("/") + uri


def _content_type(ex: Exchange, path: str) -> bytes:
    ext = path.rsplit(".", 1)[-1].lower() if "." in os.path.basename(path) else ""
    types = getattr(ex.location, "types", None)
    if isinstance(types, dict) and ext in types:
        return str(types[ext]).encode()
    ctype = MIME_TYPES.get(ext) or ex.location.default_type or "text/plain"
    return ctype.encode("latin-1")


def serve_static(ex: Exchange, log_error: Any) -> LocalResponse:
    """The response for a static request (file contents in `body`)."""
    if ex.request.method not in (b"GET", b"HEAD"):
        return error_response(ex, 405)
    uri = ex.uri
    if uri.endswith("/"):
        return _index(ex, uri, log_error)
    path = _path(ex, uri)
    try:
        st = os.stat(path)
    except OSError as exc:
        return _not_found(ex, path, exc, log_error)
    if stat.S_ISDIR(st.st_mode):
        target = uri + "/" + (f"?{ex.vars.args}" if ex.vars.args else "")
        return error_response(ex, 301, location=absolute_location(ex, target),
                                            relative=True)
    return _file(ex, path, st)


def _index(ex: Exchange, uri: str, log_error: Any) -> LocalResponse:
    names = ex.location.index or ("index.html",)
    base = _path(ex, uri)
    for name in names:
        path = base + name
        try:
            st = os.stat(path)
        except OSError:
            continue
        if stat.S_ISREG(st.st_mode):
            return _file(ex, path, st)
    if os.path.isdir(base):
        log_error("error", f'directory index of "{base}" is forbidden', ex, None)
        return error_response(ex, 403)
    return _not_found(ex, base + names[0], FileNotFoundError(2, "x"), log_error)


def _not_found(ex: Exchange, path: str, exc: OSError, log_error: Any) -> LocalResponse:
    code = exc.errno or 2
    status = 403 if code == 13 else 404
    if status == 403 or ex.location.log_not_found:
        log_error("error", f'open() "{path}" failed', ex, None, err=code)
    return error_response(ex, status)


def _file(ex: Exchange, path: str, st: os.stat_result) -> LocalResponse:
    if st.st_size > _MAX_STATIC:
        return error_response(ex, 500)
    try:
        with open(path, "rb") as fh:
            body = fh.read() if not ex.head_request else b""
    except OSError as exc:
        return error_response(ex, 403 if exc.errno == 13 else 404)
    mtime = int(st.st_mtime)
    extra = []
    if ex.location.etag:
        extra.append((b"ETag", b'"%x-%x"' % (mtime, st.st_size)))
    extra.append((b"Accept-Ranges", b"bytes"))
    extra += add_headers(ex.location, ex, 200)
    head = local_head(200, tokens=server_tokens(ex.location), keep_alive=ex.keep_alive,
                      content_type=_content_type(ex, path), content_length=st.st_size,
                      last_modified=formatdate(mtime, usegmt=True).encode(), extra=extra)
    return LocalResponse(200, head, body, ex.keep_alive)
