"""nginx 1.22's status lines and built-in HTML error pages, byte for byte, with the
server token saying wsgate; plus the whole error response nginx would send.

Verified against real nginx 1.22.1 (`return NNN;`), see tests/unit/http/test_pages.py.
"""

from __future__ import annotations

from email.utils import formatdate

from wsgate.version import __version__

# ngx_http_status_lines: the reason phrases nginx writes for known statuses.
STATUS_LINES: dict[int, str] = {
    101: "Switching Protocols",
    200: "OK", 201: "Created", 202: "Accepted", 204: "No Content",
    206: "Partial Content",
    301: "Moved Permanently", 302: "Moved Temporarily", 303: "See Other",
    304: "Not Modified", 307: "Temporary Redirect", 308: "Permanent Redirect",
    400: "Bad Request", 401: "Unauthorized", 402: "Payment Required",
    403: "Forbidden", 404: "Not Found", 405: "Not Allowed", 406: "Not Acceptable",
    408: "Request Time-out", 409: "Conflict", 410: "Gone", 411: "Length Required",
    412: "Precondition Failed", 413: "Request Entity Too Large",
    414: "Request-URI Too Large", 415: "Unsupported Media Type",
    416: "Requested Range Not Satisfiable", 421: "Misdirected Request",
    429: "Too Many Requests",
    500: "Internal Server Error", 501: "Not Implemented", 502: "Bad Gateway",
    503: "Service Temporarily Unavailable", 504: "Gateway Time-out",
    505: "HTTP Version Not Supported", 507: "Insufficient Storage",
}

# Page titles that differ from the status line (nginx's page text is older).
PAGE_TITLES: dict[int, str] = {302: "Found", 401: "Authorization Required"}

# nginx's internal 49x codes: sent as "400 Bad Request" with their own explanation.
INTERNAL_400: dict[int, str] = {
    494: "Request Header Or Cookie Too Large",
    495: "The SSL certificate error",
    496: "No required SSL certificate was sent",
    497: "The plain HTTP request was sent to HTTPS port",
}

# Error statuses after which nginx never keeps the connection alive
# (ngx_http_special_response_handler), plus 408 which closes without a page.
CLOSE_AFTER = frozenset((400, 408, 413, 414, 495, 496, 497, 500, 501))

PAGE_STATUSES = frozenset((301, 302, 303, 307, 308, 400, 401, 402, 403, 404, 405,
                           406, 408, 409, 410, 411, 412, 413, 414, 415, 416, 421,
                           429, 494, 495, 496, 497, 500, 501, 502, 503, 504, 505, 507))

CRLF = "\r\n"


def wire_status(status: int) -> int:
    """The status code nginx puts on the wire (49x are sent as 400)."""
    return 400 if status in INTERNAL_400 else status


def status_line(status: int, version: bytes = b"HTTP/1.1") -> bytes:
    """`HTTP/1.1 404 Not Found\\r\\n`; unknown codes get nginx's "NNN " form."""
    code = wire_status(status)
    reason = STATUS_LINES.get(code, "")
    return b"%s %03d %s\r\n" % (version, code, reason.encode())


def server_token(server_tokens: bool = True) -> str:
    """What goes in Server: and in the page tail ("wsgate/0.1.0" or "wsgate")."""
    return f"wsgate/{__version__}" if server_tokens else "wsgate"


def error_page(status: int, server_tokens: bool = True) -> bytes:
    """The HTML body nginx sends for `status` (b"" for statuses without one)."""
    if status not in PAGE_STATUSES:
        return b""
    if status in INTERNAL_400:
        text = INTERNAL_400[status]
        head = (f"<html>{CRLF}<head><title>400 {text}</title></head>{CRLF}<body>{CRLF}"
                f"<center><h1>400 Bad Request</h1></center>{CRLF}"
                f"<center>{text}</center>{CRLF}")
    else:
        title = f"{status} {PAGE_TITLES.get(status) or STATUS_LINES[status]}"
        head = (f"<html>{CRLF}<head><title>{title}</title></head>{CRLF}<body>{CRLF}"
                f"<center><h1>{title}</h1></center>{CRLF}")
    tail = f"<hr><center>{server_token(server_tokens)}</center>{CRLF}</body>{CRLF}</html>{CRLF}"
    return (head + tail).encode()


def http_date(now: float | None = None) -> bytes:
    """An IMF-fixdate like nginx's Date header."""
    return formatdate(now, usegmt=True).encode()


def keeps_alive(status: int, keep_alive: bool) -> bool:
    """nginx's decision for an error response: some statuses always close."""
    return keep_alive and status not in CLOSE_AFTER


def error_response(status: int, *, keep_alive: bool = False, server_tokens: bool = True,
                   head: bool = False, location: bytes | None = None,
                   date: bytes | None = None, http09: bool = False) -> bytes:
    """The complete error response nginx sends (status line, Server, Date,
    Content-Type, Content-Length, Connection, [Location], body).

    `keep_alive` is the request's keep-alive state; `head` omits the body;
    `http09` sends the body alone, as nginx does for HTTP/0.9 clients.
    """
    body = error_page(status, server_tokens)
    if http09:
        return body
    lines = [status_line(status),
             b"Server: " + server_token(server_tokens).encode() + b"\r\n",
             b"Date: " + (date or http_date()) + b"\r\n"]
    if body:
        lines.append(b"Content-Type: text/html\r\n")
        lines.append(b"Content-Length: %d\r\n" % len(body))
    alive = keeps_alive(status, keep_alive)
    lines.append(b"Connection: keep-alive\r\n" if alive else b"Connection: close\r\n")
    if location is not None:
        lines.append(b"Location: " + location + b"\r\n")
    lines.append(b"\r\n")
    if not head:
        lines.append(body)
    return b"".join(lines)
