"""Request-target rules: nginx 1.22's request-line target syntax, absolute-form
targets, Host validation, and the `$uri` normalisation (decode, merge slashes,
resolve dot segments).

Everything here is verified against real nginx 1.22.1 (see tests/unit/http).
"""

from __future__ import annotations

import re

from wsgate.errors import RemoteProtocolError

INVALID_REQUEST = "client sent invalid request"

# Absolute-form: scheme "://" host [":" port] then "/", "?" or the end.
# nginx 1.22: scheme is letters, digits, "+", "-", "." after a first letter; host is
# letters, digits, "." and "-" (or a bracketed IPv6 literal); port is digits.
_ABSOLUTE = re.compile(
    rb"([A-Za-z][A-Za-z0-9+.\-]*)://"
    rb"(\[[0-9A-Fa-f:.]*\]|[A-Za-z0-9.\-]*)(?::([0-9]*))?([/?].*)?\Z", re.S)
# A plain name[:port] that nginx's validation leaves as is (lowercased).
_SIMPLE_HOST = re.compile(rb"([A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*)(?::[0-9]*)?\Z")
_HEX = frozenset(b"0123456789abcdefABCDEF")


def split_target(target: bytes) -> tuple[bytes | None, bytes]:
    """Split a target into (authority host or None, origin-form rest).

    The rest is what nginx calls the unparsed URI (`$request_uri`): for an
    absolute-form target it starts at the path or "?" and is "/" when empty.
    """
    if target[:1] == b"/":
        return None, target
    m = _ABSOLUTE.match(target)
    if m is None:
        raise RemoteProtocolError(INVALID_REQUEST, 400)
    host, rest = m.group(2), m.group(4) or b"/"
    if not host:
        raise RemoteProtocolError("client sent invalid host in request line", 400)
    return host, rest


def validate_host(host: bytes) -> bytes | None:
    """nginx's ngx_http_validate_host: the lowercased host without port and
    trailing dot, or None when invalid."""
    simple = _SIMPLE_HOST.match(host)
    if simple is not None:
        return simple.group(1).lower()
    dot_pos = len(host)
    host_len = len(host)
    literal = False
    in_rest = False
    for i, ch in enumerate(host):
        if ch == 0x2E:  # "."
            if dot_pos == i - 1:
                return None
            dot_pos = i
        elif ch == 0x3A:  # ":"
            if not in_rest and not literal:
                host_len, in_rest = i, True
        elif ch == 0x5B:  # "["
            if i == 0:
                literal = True
        elif ch == 0x5D:  # "]"
            if literal and not in_rest:
                host_len, in_rest, literal = i + 1, True, False
        elif ch == 0x2F or ch <= 0x20 or ch == 0x7F:
            return None
    if dot_pos == host_len - 1:
        host_len -= 1
    if host_len <= 0:
        return None
    return host[:host_len].lower()


def split_args(rest: bytes) -> tuple[bytes, bytes]:
    """(raw path, args) of an origin-form target; "#" ends both, as in nginx."""
    hash_at = rest.find(b"#")
    if hash_at >= 0:
        rest = rest[:hash_at]
    path, _, args = rest.partition(b"?")
    return path or b"/", args


def _decode(path: bytes) -> bytes:
    parts = path.split(b"%")
    out = [parts[0]]
    for part in parts[1:]:
        if len(part) < 2 or part[0] not in _HEX or part[1] not in _HEX:
            raise RemoteProtocolError(INVALID_REQUEST, 400)
        ch = int(part[:2], 16)
        if ch == 0:
            raise RemoteProtocolError(INVALID_REQUEST, 400)
        out.append(bytes((ch,)))
        out.append(part[2:])
    return b"".join(out)


def _resolve_dots(path: bytes) -> bytes:
    segments = path.split(b"/")
    out: list[bytes] = []
    trailing = False
    for seg in segments[1:]:
        trailing = seg in (b".", b"..")
        if seg == b".":
            continue
        if seg == b"..":
            if not out:
                raise RemoteProtocolError(INVALID_REQUEST, 400)
            out.pop()
            continue
        out.append(seg)
    if trailing:
        out.append(b"")
    return b"/" + b"/".join(out)


def normalize_path(path: bytes, merge_slashes: bool = True) -> bytes:
    """nginx's `$uri` from the raw path: %-decode (decoded "/" and "." count as
    separators and dots), merge slashes, resolve "." and ".."; ".." above the root
    is an invalid request."""
    if b"%" in path:
        path = _decode(path)
    if merge_slashes and b"//" in path:
        path = re.sub(rb"//+", b"/", path)
    if b"/." in path:
        path = _resolve_dots(path)
    return path
