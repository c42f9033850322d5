"""Every size, length and count limit wsgate enforces, named after the nginx directive
that sets it, with nginx 1.22's default and the status sent when a peer exceeds it.

The sans-IO parsers take these values as parameters (the config supplies them per
server); the constants here are the defaults used when nothing is configured.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Limit:
    """One named limit: its nginx directive, its default and its failure status."""

    name: str
    directive: str | None
    default: int | None
    status: int | None
    note: str = ""


# client_header_buffer_size 1k: the first buffer a request head is read into.
CLIENT_HEADER_BUFFER_SIZE = 1024
# large_client_header_buffers 4 8k: extra buffers a long head spills into; one line
# (request line or header line) must fit in one of them.
LARGE_CLIENT_HEADER_BUFFERS_NUM = 4
LARGE_CLIENT_HEADER_BUFFERS_SIZE = 8192
# proxy_buffer_size 4k|8k (one memory page): the upstream response head must fit.
PROXY_BUFFER_SIZE = 4096
# client_max_body_size 1m (0 disables the check).
CLIENT_MAX_BODY_SIZE = 1024 * 1024
# nginx 1.22 has no chunk-extension limit: it skips extension bytes as they stream.
# wsgate does the same (None); a number makes ChunkedReader reject longer ones.
MAX_CHUNK_EXT: int | None = None
# Trailers are skipped by nginx; wsgate reports them, so it must bound them: one
# large header buffer, like a header line.
MAX_TRAILER_SIZE = LARGE_CLIENT_HEADER_BUFFERS_SIZE
# nginx 1.22 has no max_headers directive (added in 1.27): the buffers bound the count.
MAX_HEADERS: int | None = None
# Largest Content-Length / chunk size nginx accepts (NGX_MAX_OFF_T_VALUE).
MAX_OFF_T = 2**63 - 1

LIMITS: tuple[Limit, ...] = (
    Limit("client_header_buffer_size", "client_header_buffer_size",
          CLIENT_HEADER_BUFFER_SIZE, None,
          "first head buffer; overflow moves the current line to a large buffer"),
    Limit("request_line_max", "large_client_header_buffers",
          LARGE_CLIENT_HEADER_BUFFERS_SIZE, 414,
          "request line longer than one large buffer: 414 Request-URI Too Large"),
    Limit("header_line_max", "large_client_header_buffers",
          LARGE_CLIENT_HEADER_BUFFERS_SIZE, 494,
          "header line longer than one large buffer: 494, sent as 400 "
          "Request Header Or Cookie Too Large"),
    Limit("header_buffers_num", "large_client_header_buffers",
          LARGE_CLIENT_HEADER_BUFFERS_NUM, 494,
          "all large buffers used: 494 (400 Request Header Or Cookie Too Large)"),
    Limit("upstream_head_max", "proxy_buffer_size", PROXY_BUFFER_SIZE, 502,
          "upstream sent too big header"),
    Limit("client_max_body_size", "client_max_body_size", CLIENT_MAX_BODY_SIZE, 413,
          "request body larger than this: 413 Request Entity Too Large"),
    Limit("content_length_max", None, MAX_OFF_T, 400,
          "Content-Length overflowing off_t: invalid Content-Length"),
    Limit("chunk_size_max", None, MAX_OFF_T, 400,
          "chunk size overflowing off_t: invalid chunked body"),
    Limit("chunk_ext_max", None, MAX_CHUNK_EXT, 400,
          "None as nginx: extensions are skipped while streaming"),
    Limit("trailer_max", None, MAX_TRAILER_SIZE, 400,
          "wsgate reports trailers, so it bounds them (nginx skips them)"),
    Limit("max_headers", None, MAX_HEADERS, 400,
          "nginx 1.22 has no header-count limit (buffers bound it); set it to "
          "reject more header lines with 400, as later nginx's max_headers does"),
)


@dataclass(frozen=True, slots=True)
class HeaderLimits:
    """The request-head buffer geometry of one server (nginx's per-server values)."""

    buffer_size: int = CLIENT_HEADER_BUFFER_SIZE
    large_num: int = LARGE_CLIENT_HEADER_BUFFERS_NUM
    large_size: int = LARGE_CLIENT_HEADER_BUFFERS_SIZE
    max_headers: int | None = MAX_HEADERS


DEFAULT_HEADER_LIMITS = HeaderLimits()
