"""Upstream response-head parsing as nginx 1.22's proxy module does it.

Default (`strict=False`) is what nginx 1.22.1 verifiably does: an invalid status
line means an HTTP/0.9 response (everything is body, status 200); invalid or
duplicate Content-Length and unknown Transfer-Encoding are ignored ("chunked"
anywhere in it means chunked, and wins over Content-Length); 1xx heads, even
100 Continue, are final responses. `strict=True` adds what later nginx versions
and RFC 9112 require: those framing problems become errors (502), and interim
1xx responses other than 101 are skipped.

Bad header lines (control characters or spaces in a name, leading whitespace, NUL
or a bare CR in a value) are errors with nginx's wording `upstream sent invalid
header: "..."`; a head larger than proxy_buffer_size is `upstream sent too big
header`. Errors are RemoteProtocolError with status_hint 502.
"""

from __future__ import annotations

import re

from wsgate.errors import RemoteProtocolError
from wsgate.http.events import NEED_DATA, NeedData, Response
from wsgate.limits import MAX_OFF_T, PROXY_BUFFER_SIZE

_STATUS = re.compile(rb"HTTP/[1-9][0-9]*\.[0-9]+ +([0-9]{3})(?:[ .]([^\r]*))?\r*\Z")
# Every prefix of a line that may still become a valid status line.
_STATUS_PREFIX = re.compile(
    rb"(?:H(?:T(?:T(?:P(?:/(?:[1-9][0-9]*(?:\.(?:[0-9]+(?: +(?:[0-9]{1,3}"
    rb"(?:[ .][^\r\n]*)?\r*)?)?)?)?)?)?)?)?)?)?\Z")
_CTL_IN_NAME = re.compile(rb"[\x00-\x20\x7f]")
# The common head in one match: a plain status line and token-named CRLF fields
# without NUL. Whatever this accepts, the line-by-line path accepts the same way
# (same fields, values stripped of spaces); anything else is left to that path.
_FAST_HEAD = re.compile(
    rb"HTTP/([1-9][0-9]*)\.([0-9]+) +([0-9]{3})(?:[ .]([^\r\n]*))?\r\n"
    rb"((?:[A-Za-z0-9_\-]+:[^\x00\r\n]*\r\n)*)\r\n")
_FAST_FIELD = re.compile(rb"([A-Za-z0-9_\-]+):([^\x00\r\n]*)\r\n")
_DIGITS = re.compile(rb"[0-9]+\Z")
# The lengths of the names _framing looks at (content-length, transfer-encoding,
# connection): a head without a field of such a length has nothing for it.
_FRAMING_LENGTHS = frozenset((14, 17, 10))


class UpstreamHeadError(RemoteProtocolError):
    """The upstream sent an unusable head; the proxy answers 502."""

    def __init__(self, message: str):
        super().__init__(message, 502)


def _invalid(line: bytes, at: int) -> UpstreamHeadError:
    good = line[:at].decode("latin-1")
    return UpstreamHeadError(f'upstream sent invalid header: "{good}\\x{line[at]:02x}..."')


class ResponseHeadParser:
    """Feed upstream bytes; get NEED_DATA until a final response head."""

    __slots__ = ("max_size", "strict", "_buf", "trailing_data", "done")

    def __init__(self, max_size: int = PROXY_BUFFER_SIZE, *, strict: bool = False):
        self.max_size = max_size
        self.strict = strict
        self._buf = b""
        self.trailing_data = b""
        self.done = False

    def feed(self, data: bytes) -> Response | NeedData:
        if self.done:
            raise RuntimeError("response head already parsed")
        if not self._buf:               # the whole head in the first read (most)
            fast = _FAST_HEAD.match(data)
            if fast is not None:
                response = self._fast(fast)
                if not self._interim(response):
                    self.done = True
                    self.trailing_data = data[fast.end():]
                    return response
        self._buf += data
        while True:
            result = self._parse(self._buf)
            if result is NEED_DATA:
                if len(self._buf) >= self.max_size:
                    raise UpstreamHeadError("upstream sent too big header")
                return NEED_DATA
            response, end = result
            if self._interim(response):
                self._buf = self._buf[end:]      # interim response: skip it
                continue
            self.done = True
            self.trailing_data = self._buf[end:]
            return response

    def _interim(self, response: Response) -> bool:
        """A 1xx other than 101, which strict mode skips to the final head."""
        return self.strict and 100 <= response.status < 200 and response.status != 101

    def _parse(self, buf: bytes) -> tuple[Response, int] | NeedData:
        fast = _FAST_HEAD.match(buf)
        if fast is not None:
            return self._fast(fast), fast.end()
        lf = buf.find(b"\n")
        first = buf if lf < 0 else buf[:lf]
        if lf < 0 and len(buf) < self.max_size:
            return NEED_DATA if _STATUS_PREFIX.match(first) else self._http09()
        m = _STATUS.match(first)
        if m is None:
            return self._http09()
        headers = self._headers(buf, lf + 1)
        if headers is NEED_DATA:
            return NEED_DATA
        fields, end = headers
        return self._response(first, m, fields, end), end

    def _fast(self, m: re.Match[bytes]) -> Response:
        major, minor, code, reason, block = m.groups()
        fields = []
        length: int | None = None
        chunked = close = odd = False
        # _framing's common case inline: at most one valid Content-Length, no
        # Transfer-Encoding; anything else (odd) goes through _framing itself
        for name, value in _FAST_FIELD.findall(block):
            value = value.strip(b" ")
            fields.append((name, value))
            if len(name) in _FRAMING_LENGTHS:
                lname = name.lower()
                if lname == b"content-length":
                    if length is not None or not value.isdigit():
                        odd = True
                    else:
                        length = int(value)
                        odd = odd or length > MAX_OFF_T
                elif lname == b"transfer-encoding":
                    odd = True
                elif lname == b"connection" and b"close" in value.lower():
                    close = True
        if odd:
            length, chunked, close = self._framing(fields)
        end = m.end(3) if reason is None else m.end(4)
        return Response(int(code), reason or b"", (int(major), int(minor)), tuple(fields),
                        length, chunked, close, m.end(), m.string[m.start(3):end])

    @staticmethod
    def _http09() -> tuple[Response, int]:
        # nginx: "upstream sent no valid HTTP/1.0 header"; the bytes are the body
        return Response(status=200, reason=b"", version=(0, 9), headers=(),
                        connection_close=True, raw_head_len=0, status_line=b"200 OK"), 0

    def _headers(self, buf: bytes, pos: int
                 ) -> tuple[list[tuple[bytes, bytes]], int] | NeedData:
        fields: list[tuple[bytes, bytes]] = []
        while True:
            lf = buf.find(b"\n", pos)
            if lf < 0:
                return NEED_DATA
            line, pos = buf[pos:lf], lf + 1
            if line in (b"", b"\r"):
                return fields, pos
            field = _header_line(line)
            if field is not None:
                fields.append(field)

    def _response(self, first: bytes, m: re.Match[bytes],
                  fields: list[tuple[bytes, bytes]], end: int) -> Response:
        status = int(m.group(1))
        version = tuple(int(x) for x in first[5:first.index(b" ")].split(b"."))
        length, chunked, close = self._framing(fields)
        status_line = first[first.index(m.group(1), 8):].rstrip(b"\r")
        return Response(status=status, reason=m.group(2) or b"",
                        version=(version[0], version[1]), headers=tuple(fields),
                        content_length=length, chunked=chunked, connection_close=close,
                        raw_head_len=end, status_line=status_line)

    def _framing(self, fields: list[tuple[bytes, bytes]]) -> tuple[int | None, bool, bool]:
        length: int | None = None
        lengths = 0
        te: bytes | None = None
        close = False
        for name, value in fields:
            lname = name.lower()
            if lname == b"content-length":
                lengths += 1
                length = self._length(name, value, lengths, length)
            elif lname == b"transfer-encoding":
                te = value
            elif lname == b"connection" and b"close" in value.lower():
                close = True
        chunked = te is not None and b"chunked" in te.lower()
        if self.strict and te is not None:
            self._check_te(te, lengths)
        return (None if chunked else length), chunked, close

    def _length(self, name: bytes, value: bytes, count: int, prev: int | None) -> int | None:
        n = int(value) if _DIGITS.match(value) and int(value) <= MAX_OFF_T else None
        if self.strict and count > 1:
            raise UpstreamHeadError(
                f'upstream sent duplicate header line: "{name.decode("latin-1")}: '
                f'{value.decode("latin-1")}", previous value: "{prev}"')
        if self.strict and n is None:
            raise UpstreamHeadError('upstream sent invalid "Content-Length" header')
        return n

    @staticmethod
    def _check_te(te: bytes, lengths: int) -> None:
        if te.lower() != b"chunked":
            raise UpstreamHeadError(
                f'upstream sent unknown "Transfer-Encoding": "{te.decode("latin-1")}"')
        if lengths:
            raise UpstreamHeadError('upstream sent "Content-Length" and '
                                    '"Transfer-Encoding" headers at the same time')


def _header_line(line: bytes) -> tuple[bytes, bytes] | None:
    """One upstream header line by nginx's rules (underscores and other odd name
    bytes allowed); None for IIS's repeated "HTTP/..." lines."""
    first = line[0]
    if first <= 0x20 or first == 0x7F or first == 0x3A:
        raise _invalid(line, 0)
    name, colon, value = line.partition(b":")
    if not colon:
        if name.startswith(b"HTTP/"):
            return None
        cr = line.find(b"\r")
        name = line if cr < 0 else line[:cr]
        if line[len(name):].strip(b"\r"):
            raise _invalid(line, len(name) + line[len(name):].find(b"\r") + 1)
    bad = _CTL_IN_NAME.search(name)
    if bad is not None:
        if name[:5] == b"HTTP/" and bad.start() > 4:
            return None
        raise _invalid(line, bad.start())
    value = value.rstrip(b"\r").strip(b" ")
    for ch in (b"\x00", b"\r"):
        at = value.find(ch)
        if at >= 0:
            raise _invalid(line, line.index(ch, len(name) + 1))
    return name, value


def response_body_kind(response: Response, request_method: bytes = b"GET") -> str:
    """How the upstream body is delimited: "none", "chunked", "length" or "close"."""
    if request_method == b"HEAD" or response.status in (204, 304) or \
            100 <= response.status < 200:
        return "none"
    if response.chunked:
        return "chunked"
    if response.content_length is not None:
        return "length"
    return "close"
