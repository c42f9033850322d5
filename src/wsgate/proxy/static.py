"""nginx's static handler for a location without another content handler.

Files under `root` (or `alias`, with regex captures in a regex location); `index`
for a directory URI (an internal redirect to the index file, as
ngx_http_index_module does); a 301 for a directory asked without its slash; 404/403
as nginx answers them; GET and HEAD only (405 otherwise). The head carries
Last-Modified and ETag; If-Modified-Since / If-None-Match give 304 and If-Match /
If-Unmodified-Since 412 (ngx_http_not_modified_filter); one byte range gives 206
and an unsatisfiable one 416 (ngx_http_range_filter; several ranges get the whole
file). Types come from the location's `types` or nginx's three built-in ones.

The body is never read whole: `serve_static` returns the head and a `FileBody`
that `send_file` streams in chunks, waiting on the client's write buffer.
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass
from email.utils import formatdate, parsedate_to_datetime
from typing import Any, Literal

from wsgate.proxy.context import Exchange, server_tokens
from wsgate.proxy.handlers import DEFAULT_TYPES, LocalResponse, absolute_location, \
    content_type, error_response, header_filter, keepalive_header, local_head

__all__ = ["serve_static", "send_file", "FileBody", "DEFAULT_TYPES", "CHUNK"]

CHUNK = 256 * 1024            # bytes read per step (sendfile_max_chunk-like)
_RANGE = re.compile(r"^bytes=\s*(\d*)\s*-\s*(\d*)\s*$")


@dataclass(frozen=True, slots=True)
class FileBody:
    """A file region to stream after the head."""

    path: str
    offset: int
    length: int


def _render(text: str, ex: Exchange) -> str:
    """$1..$9 and named captures in root/alias (regex locations)."""
    if "$" not in text:
        return text
    m = ex.vars.captures

    def sub(mm: re.Match[str]) -> str:
        name = mm.group(1) or mm.group(2)
        if name.isdigit():
            return (m.group(int(name)) or "") if m is not None and int(name) <= m.re.groups \
                else ""
        return ex.vars.named_captures.get(name, "")
    return re.sub(r"\$(?:\{(\w+)\}|(\d|\w+))", sub, text)


def map_uri(ex: Exchange, uri: str) -> str:
    """nginx's ngx_http_map_uri_to_path."""
    loc = ex.location
    if loc.alias is not None:
        alias = _render(loc.alias, ex)
        if loc.kind in ("regex", "regex_caseless"):
            # try_files under a regex alias appends the URI (r->add_uri_to_alias)
            return alias + uri if ex.extra.get("add_uri_to_alias") else alias
        return alias + uri[len(loc.pattern):]
    root = _render(loc.root or "html", ex)
    if not os.path.isabs(root):
        root = os.path.join(ex.extra.get("prefix", "/"), root)
    return root.rstrip("/") + uri




def serve_static(ex: Exchange, log_error: Any) -> LocalResponse | str:
    """The response for a static request, or the URI of an index internal redirect."""
    if ex.request.method not in (b"GET", b"HEAD"):
        return error_response(ex, 405)
    uri = ex.uri
    if uri.endswith("/"):
        return _index(ex, uri, log_error)
    path = map_uri(ex, uri)
    try:
        st = os.stat(path)
    except OSError as exc:
        return _not_found(ex, path, exc, log_error, "open()")
    if stat.S_ISDIR(st.st_mode):
        target = uri + "/" + (f"?{ex.vars.args}" if ex.vars.args else "")
        return error_response(ex, 301, location=absolute_location(ex, target),
                              relative=True)
    if not os.access(path, os.R_OK):
        return _not_found(ex, path, PermissionError(13, "denied"), log_error, "open()")
    return _file(ex, path, st)


def _index(ex: Exchange, uri: str, log_error: Any) -> LocalResponse | str:
    names = _index_names(ex.location.index)
    base = map_uri(ex, uri)
    for name in names:
        path = name if name.startswith("/") else base + name
        if name.startswith("/"):
            return name                   # an absolute index: redirect to it
        try:
            st = os.stat(path)
        except OSError:
            continue
        if not stat.S_ISDIR(st.st_mode):
            return uri + name
    try:
        is_dir = stat.S_ISDIR(os.stat(base).st_mode)
    except OSError as exc:
        if ex.location.log_not_found:
            log_error("error", f'"{base}{names[0]}" is not found', ex, None,
                      err=exc.errno or 2)
        return error_response(ex, 404)
    if is_dir:
        log_error("error", f'directory index of "{base}" is forbidden', ex, None)
        return error_response(ex, 403)
    return error_response(ex, 404)


def _index_names(value: Any) -> tuple[str, ...]:
    """`index` lines (each a tuple of names) flattened; nginx's default index.html."""
    names: list[str] = []
    for item in value or ():
        names.extend((item,) if isinstance(item, str) else item)
    return tuple(names) or ("index.html",)


def _not_found(ex: Exchange, path: str, exc: OSError, log_error: Any,
               call: str) -> LocalResponse:
    code = exc.errno or 2
    status = 403 if code == 13 else 404
    if status == 403 or ex.location.log_not_found:
        log_error("error", f'{call} "{path}" failed', ex, None, err=code)
    return error_response(ex, status)


def _header(ex: Exchange, name: str) -> str | None:
    for n, v in ex.vars.headers:
        if n.lower() == name:
            return v
    return None


def _http_time(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        return parsedate_to_datetime(text).timestamp()
    except (TypeError, ValueError, IndexError):
        return None


def _etag_matches(header: str, etag: str, weak: bool) -> bool:
    if header.strip() == "*":
        return True
    for item in header.split(","):
        item = item.strip()
        if weak and item.startswith("W/"):
            item = item[2:]
        if item == etag:
            return True
    return False


def _precondition(ex: Exchange, mtime: int, etag: str | None) -> int:
    """ngx_http_not_modified_filter: 0, 304 or 412."""
    loc = ex.location
    if_match = _header(ex, "if-match")
    if if_match is not None and (etag is None or not _etag_matches(if_match, etag, False)):
        return 412
    ius = _http_time(_header(ex, "if-unmodified-since"))
    if ius is not None and mtime > ius:
        return 412
    inm = _header(ex, "if-none-match")
    ims_raw = _header(ex, "if-modified-since")
    if inm is not None:
        if etag is not None and _etag_matches(inm, etag, True):
            return 304
        return 0
    ims = _http_time(ims_raw)
    mode = getattr(loc, "if_modified_since", "exact")
    if ims is None or mode == "off":
        return 0
    if (mode == "exact" and int(ims) == mtime) or (mode == "before" and mtime <= ims):
        return 304
    return 0


def _range(ex: Exchange, size: int) -> tuple[int, int] | None | Literal[False]:
    """(offset, length) of one satisfiable range; None: whole file; False: 416."""
    raw = _header(ex, "range")
    if raw is None or "," in raw:
        return None
    if_range = _header(ex, "if-range")
    if if_range is not None:
        return None if if_range.strip() != ex.extra.get("static_etag") \
            and if_range.strip() != ex.extra.get("static_lm") else _parse_range(raw, size)
    return _parse_range(raw, size)


def _parse_range(raw: str, size: int) -> tuple[int, int] | None | Literal[False]:
    m = _RANGE.match(raw)
    if m is None:
        return None
    first, last = m.group(1), m.group(2)
    if not first:
        if not last:
            return None
        n = min(int(last), size)
        return (size - n, n) if n else False
    start = int(first)
    end = int(last) if last else size - 1
    if start >= size or end < start:
        return False
    end = min(end, size - 1)
    return start, end - start + 1


def _file(ex: Exchange, path: str, st: os.stat_result) -> LocalResponse:
    loc = ex.location
    mtime = int(st.st_mtime)
    etag = '"%x-%x"' % (mtime, st.st_size) if loc.etag else None
    lm = formatdate(mtime, usegmt=True)
    ex.extra["static_etag"], ex.extra["static_lm"] = etag, lm
    cond = _precondition(ex, mtime, etag)
    if cond == 412:
        return error_response(ex, 412)
    fields = [(b"ETag", etag.encode())] if etag else []
    if cond == 304:
        return _head(ex, 304, path, None, lm, fields, None, [])
    rng = _range(ex, st.st_size)
    if rng is False:
        fields = [(b"Content-Range", b"bytes */%d" % st.st_size)]
        resp = error_response(ex, 416)
        return _with_fields(resp, fields)
    if rng:
        offset, length = rng
        tail = [(b"Content-Range", b"bytes %d-%d/%d" % (offset, offset + length - 1,
                                                       st.st_size))]
        return _head(ex, 206, path, FileBody(path, offset, length), lm, fields, length,
                     tail)
    return _head(ex, 200, path, FileBody(path, 0, st.st_size), lm, fields, st.st_size,
                 [(b"Accept-Ranges", b"bytes")])


def _with_fields(resp: LocalResponse, fields: list[tuple[bytes, bytes]]) -> LocalResponse:
    head, _, _ = resp.head.rpartition(b"\r\n\r\n")
    extra = b"".join(n + b": " + v + b"\r\n" for n, v in fields)
    resp.head = head + b"\r\n" + extra + b"\r\n"
    return resp


def _head(ex: Exchange, status: int, path: str, body: FileBody | None, lm: str,
          fields: list[tuple[bytes, bytes]], length: int | None,
          tail: list[tuple[bytes, bytes]]) -> LocalResponse:
    """The file's head; `tail` (the range filter's fields) follows add_header."""
    loc = ex.location
    mtime = _http_time(lm)
    fields = header_filter(loc, ex, status, fields, last_modified=mtime) + tail
    last_modified: bytes | None = lm.encode()
    if any(n.lower() == b"last-modified" for n, _ in fields):
        last_modified = None              # add_header Last-Modified replaced it
    head = local_head(status, tokens=server_tokens(loc), keep_alive=ex.keep_alive,
                      keepalive_header=keepalive_header(ex),
                      content_type=content_type(loc, path) if status != 304 else None,
                      content_length=length, last_modified=last_modified, extra=fields,
                      reason=b"206 Partial Content" if status == 206 else None)
    if ex.head_request:
        body = None
    return LocalResponse(status, head, b"", ex.keep_alive, file=body)


async def send_file(stream: Any, body: FileBody, timeout: float | None) -> int:
    """Stream a file region to the client, CHUNK bytes at a time with flow control.

    Returns the bytes written; stops early if the file shrinks or the client goes."""
    sent = 0
    with open(body.path, "rb") as fh:
        fh.seek(body.offset)
        while sent < body.length and not stream.lost:
            data = fh.read(min(CHUNK, body.length - sent))
            if not data:
                break
            stream.write(data)
            sent += len(data)
            await stream.drain(timeout)
    return sent
