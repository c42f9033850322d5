"""nginx's header rules for proxying: the request head sent upstream
(proxy_set_header merge, hidden defaults, proxy_pass_request_headers) and the
response head sent to the client (proxy_hide_header/proxy_pass_header, the header
filter's fixed order). Verified against real nginx 1.22.1 with a recording backend
(tests/unit/http/test_headers_nginx.py).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence

from wsgate.http.events import Headers, Request, Response
from wsgate.http.pages import http_date, server_token

# RFC 9110 section 7.6.1: fields that apply to one connection only.
HOP_BY_HOP = frozenset((b"connection", b"keep-alive", b"proxy-connection", b"te",
                        b"trailer", b"transfer-encoding", b"upgrade"))

# Values standing for nginx's internal variables in the default set headers.
BODY_LENGTH = "$proxy_internal_body_length"
CHUNKED = "$proxy_internal_chunked"

# ngx_http_proxy_headers: appended after the user's proxy_set_header lines unless
# the user set the same name; empty values hide the client's header and send none.
NGINX_DEFAULT_SET_HEADERS: tuple[tuple[str, str], ...] = (
    ("Host", "$proxy_host"), ("Connection", "close"),
    ("Content-Length", BODY_LENGTH), ("Transfer-Encoding", CHUNKED),
    ("TE", ""), ("Keep-Alive", ""), ("Expect", ""), ("Upgrade", ""))

# proxy_hide_header defaults (ngx_http_proxy_hide_headers).
NGINX_HIDE_HEADERS = frozenset((b"date", b"server", b"x-pad", b"x-accel-expires",
                                b"x-accel-redirect", b"x-accel-limit-rate",
                                b"x-accel-buffering", b"x-accel-charset"))
# Upstream fields nginx consumes itself and never copies (ignore_header_line), or
# writes at fixed places in the head (content type/length).
_NOT_COPIED = frozenset((b"connection", b"keep-alive", b"transfer-encoding",
                         b"content-length", b"content-type"))


def connection_tokens(headers: Iterable[tuple[bytes, bytes]]) -> frozenset[bytes]:
    """Lowercased tokens of every Connection field."""
    tokens: set[bytes] = set()
    for name, value in headers:
        if name.lower() == b"connection":
            tokens.update(t.strip().lower() for t in value.split(b",") if t.strip())
    return frozenset(tokens)


def wants_upgrade(request: Request) -> bool:
    """nginx's condition to tunnel after an upstream 101: the client sent Upgrade."""
    return request.upgrade is not None


def merge_set_headers(set_headers: Sequence[tuple[str, str]],
                      proxy_host: str | None = None) -> list[tuple[str, str]]:
    """nginx's ngx_http_proxy_init_headers: user headers in config order, then
    each default whose name the user did not set (case-insensitively)."""
    merged = list(set_headers)
    names = {name.lower() for name, _ in merged}
    for name, value in NGINX_DEFAULT_SET_HEADERS:
        if name.lower() in names:
            continue
        if value == "$proxy_host":
            value = proxy_host or ""
        merged.append((name, value))
    return merged


def _version(http_version: str | bytes | tuple[int, int]) -> bytes:
    if isinstance(http_version, tuple):
        return b"%d.%d" % http_version
    raw = http_version.encode() if isinstance(http_version, str) else http_version
    return raw.removeprefix(b"HTTP/")


def _render(value: str, body_length: int | None, chunked: bool) -> bytes:
    if value == BODY_LENGTH:
        return b"%d" % body_length if body_length is not None else b""
    if value == CHUNKED:
        return b"chunked" if chunked else b""
    return value.encode("latin-1")


def build_upstream_request(method: bytes, uri: bytes,
                           http_version: str | bytes | tuple[int, int],
                           client_headers: Headers,
                           set_headers: Sequence[tuple[str, str]],
                           pass_request_headers: bool = True,
                           body_length: int | None = None, chunked: bool = False,
                           *, proxy_host: str | None = None) -> bytes:
    """The request head nginx sends upstream (ngx_http_proxy_create_request).

    `set_headers` are the rendered proxy_set_header values; nginx's defaults are
    merged in (idempotently) after them, Host taking `proxy_host`. Set headers with
    an empty value are not sent; client headers whose name is set (even empty) are
    never forwarded; the rest follow in the client's order and case.
    """
    plan = UpstreamHeadPlan(http_version, tuple(name for name, _ in set_headers),
                            pass_request_headers)
    return plan.build(method, uri, client_headers, [v for _, v in set_headers],
                      body_length, chunked, proxy_host)


class UpstreamHeadPlan:
    """What build_upstream_request decides from the configuration alone (protocol
    version, set-header names, defaults to add, client fields to drop): made once
    per location by the proxy, so a request only renders values and joins lines."""

    __slots__ = ("version", "user", "defaults", "taken", "pass_request_headers")

    def __init__(self, http_version: str | bytes | tuple[int, int],
                 names: tuple[str, ...], pass_request_headers: bool = True) -> None:
        self.version = _version(http_version)
        self.user, defaults, self.taken = _set_header_plan(names)
        # a default with a fixed value is its finished line already (b"" when
        # empty: never sent); the rest depend on the request
        self.defaults = tuple(
            (bname, value, b"" if value in _DYNAMIC else _line(bname, _render(value, None,
                                                                            False)))
            for bname, value in defaults)
        self.pass_request_headers = pass_request_headers

    def build(self, method: bytes, uri: bytes, client_headers: Headers,
              values: Sequence[str], body_length: int | None, chunked: bool,
              proxy_host: str | None) -> bytes:
        """The head, with `values` the rendered set-header values (names' order)."""
        lines = [b"%s %s HTTP/%s\r\n" % (method, uri, self.version)]
        for bname, value in zip(self.user, values):
            if value:
                rendered = _render(value, body_length, chunked) if value in _DYNAMIC \
                    else value.encode("latin-1")
                if rendered:
                    lines.append(bname + b": " + rendered + b"\r\n")
        for bname, value, fixed in self.defaults:
            if fixed:
                lines.append(fixed)
                continue
            if value not in _DYNAMIC:
                continue
            rendered = (proxy_host or "").encode("latin-1") if value == "$proxy_host" \
                else _render(value, body_length, chunked)
            if rendered:
                lines.append(bname + b": " + rendered + b"\r\n")
        if self.pass_request_headers:
            taken = self.taken
            for raw_name, raw_value in client_headers:
                if raw_name.lower() not in taken:
                    lines.append(raw_name + b": " + raw_value + b"\r\n")
        lines.append(b"\r\n")
        return b"".join(lines)


_DYNAMIC = frozenset(("$proxy_host", BODY_LENGTH, CHUNKED))


def _line(bname: bytes, rendered: bytes) -> bytes:
    return bname + b": " + rendered + b"\r\n" if rendered else b""


@functools.lru_cache(maxsize=256)
def _set_header_plan(names: tuple[str, ...]) -> tuple[
        tuple[bytes, ...], tuple[tuple[bytes, str], ...], frozenset[bytes]]:
    """What merge_set_headers decides from the names alone, once per set of names:
    the user's names as bytes, the defaults still to add, every name taken."""
    lowered = {name.lower() for name in names}
    defaults = tuple((name.encode("latin-1"), value)
                     for name, value in NGINX_DEFAULT_SET_HEADERS
                     if name.lower() not in lowered)
    user = tuple(name.encode("latin-1") for name in names)
    taken = frozenset(b.lower() for b in user) | frozenset(b.lower() for b, _ in defaults)
    return user, defaults, taken


def filter_upstream_response_headers(headers: Headers, hide: Iterable[bytes] = (),
                                     pass_: Iterable[bytes] = (),
                                     is_101: bool = False) -> list[tuple[bytes, bytes]]:
    """The upstream fields nginx copies to the client, in upstream order.

    Hidden: nginx's defaults plus `hide` (proxy_hide_header), minus `pass_`
    (proxy_pass_header). Never copied: Connection, Keep-Alive, Transfer-Encoding
    (nginx writes its own), and Content-Type/Content-Length, which
    `build_client_response_head` writes at nginx's fixed places. Upgrade is an
    ordinary field for nginx: it is copied (the 101 tunnel needs it).
    """
    del is_101  # nginx copies the same fields for a 101; Connection is rewritten
    skip = not_copied(tuple(hide), tuple(pass_))
    return [(name, value) for name, value in headers if name.lower() not in skip]


@functools.lru_cache(maxsize=256)
def not_copied(hide: tuple[bytes, ...], pass_: tuple[bytes, ...]) -> frozenset[bytes]:
    """Every lowercased name not copied, once per proxy_hide/pass_header pair."""
    hidden = (NGINX_HIDE_HEADERS | {h.lower() for h in hide}) - {p.lower() for p in pass_}
    return frozenset(hidden | _NOT_COPIED)


def _last(headers: Headers, lname: bytes) -> bytes | None:
    found = None
    for name, value in headers:
        if name.lower() == lname:
            found = value
    return found


def build_client_response_head(response: Response, *, keep_alive: bool,
                               chunked: bool = False, server_tokens: bool = True,
                               date: bytes | None = None,
                               hide: Iterable[bytes] = (), pass_: Iterable[bytes] = (),
                               content_length: int | None = None) -> bytes:
    """The head nginx's header filter writes for a proxied response: status line
    (the upstream's, verbatim), Server, Date, Content-Type, Content-Length,
    Transfer-Encoding, Connection, then the copied upstream fields.

    `content_length` is the body length to announce (None: none); `chunked` says
    the body is re-chunked; `keep_alive` the client connection's fate (ignored for
    101, which always says "upgrade").
    """
    is_101 = response.status == 101
    lines = [b"HTTP/1.1 " + (response.status_line or b"%d" % response.status) + b"\r\n"]
    passed = {p.lower() for p in pass_}
    upstream_server = _last(response.headers, b"server") if b"server" in passed else None
    upstream_date = _last(response.headers, b"date") if b"date" in passed else None
    if upstream_server is None:
        lines.append(b"Server: " + server_token(server_tokens).encode() + b"\r\n")
    if upstream_date is None:
        lines.append(b"Date: " + (date or http_date()) + b"\r\n")
    content_type = _last(response.headers, b"content-type")
    if content_type is not None:
        lines.append(b"Content-Type: " + content_type + b"\r\n")
    if content_length is not None:
        lines.append(b"Content-Length: %d\r\n" % content_length)
    if chunked:
        lines.append(b"Transfer-Encoding: chunked\r\n")
    if is_101:
        lines.append(b"Connection: upgrade\r\n")
    else:
        lines.append(b"Connection: keep-alive\r\n" if keep_alive else b"Connection: close\r\n")
    for name, value in filter_upstream_response_headers(response.headers, hide, pass_, is_101):
        lines.append(name + b": " + value + b"\r\n")
    lines.append(b"\r\n")
    return b"".join(lines)
