"""Request-head parsing with nginx 1.22's exact strictness.

Theory of operation: `RequestHeadParser.feed(data)` appends to a buffer and handles
every *complete* line (LF-terminated, an optional CR before it) in order, the way
nginx's ngx_http_parse_request_line / ngx_http_parse_header_line and the header
handlers do: so the first offending line decides the error, as in nginx. When the
empty line arrives it returns a `Request` whose `raw_head_len` is the exact number
of bytes consumed; `trailing_data` holds the rest (a body, pipelined requests, or
WebSocket frames after an Upgrade request), untouched.

Buffer limits follow nginx's allocation: the head is read into a
`client_header_buffer_size` buffer; a line that crosses its end moves into one of
`large_client_header_buffers` (num x size). A line that cannot fit in one large
buffer, or a head needing more buffers, fails: 414 for the request line, 494 (sent
as "400 Request Header Or Cookie Too Large") for a header line.

Errors are `RemoteProtocolError(message, status_hint)`, message in nginx's error-log
wording without the " while reading ..." context.

(httptools is not used as the tokenizer: nginx accepts bare-LF lines, "\\r\\r\\n"
value endings and name-only header lines that llhttp rejects, and rejects things
llhttp accepts; mirroring nginx byte-for-byte needs its own state machine.)
"""

from __future__ import annotations

import re

from wsgate.errors import RemoteProtocolError
from wsgate.http.events import NEED_DATA, Headers, NeedData, Request
from wsgate.http.uri import INVALID_REQUEST, normalize_path, split_args, split_target, \
    validate_host
from wsgate.limits import DEFAULT_HEADER_LIMITS, MAX_OFF_T, HeaderLimits

# Headers nginx 1.22 refuses to see twice (ngx_http_process_unique_header_line).
UNIQUE_HEADERS = frozenset((
    b"content-length", b"content-range", b"transfer-encoding", b"expect",
    b"if-modified-since", b"if-unmodified-since", b"if-match", b"if-none-match",
    b"if-range"))

_METHOD = re.compile(rb"[A-Z_\-]+")
_LINE = re.compile(
    rb"([A-Z_\-]+) +([\x21-\x7e\x80-\xff]+)(?: +(?:HTTP/([0-9]+)\.([0-9]+) *)?)?\r?\Z")
_NAME_OK = re.compile(rb"[A-Za-z0-9\-]+\Z")
_NAME_OK_UNDERSCORE = re.compile(rb"[A-Za-z0-9\-_]+\Z")
_CTL_IN_NAME = re.compile(rb"[\x00-\x20\x7f]")
_DIGITS = re.compile(rb"[0-9]+\Z")
_FAST_BLOCK = re.compile(rb"(?:[A-Za-z0-9\-]+: *[^\x00\r\n]*\r\n)*\r\n")
_FAST_LINE = re.compile(rb"([A-Za-z0-9\-]+): *([^\x00\r\n]*)\r\n")
# The common whole head: "METHOD target HTTP/1.x", plain CRLF fields, nothing
# before it. Within the first header buffer this decides exactly what the
# line-by-line path would (which handles everything else).
_FAST_HEAD = re.compile(
    rb"([A-Z_\-]+) ([\x21-\x7e\x80-\xff]+) HTTP/1\.([0-9]{1,3})\r\n"
    rb"((?:[A-Za-z0-9\-]+: *[^\x00\r\n]*\r\n)*)\r\n")
_HANDLED = UNIQUE_HEADERS | {b"host", b"connection", b"upgrade"}
_MAX_ERROR_QUOTE = 2048 - 300
# The common, valid header line: token name, ":", spaces, a value without NUL/CR.
_FAST_HEADER = re.compile(rb"([A-Za-z0-9\-]+): *([^\x00\r]*)\r?\Z")


class BadRequest(RemoteProtocolError):
    """A request-head error; `http09` says the client spoke HTTP/0.9 (nginx then
    sends the error page body without a status line or headers)."""

    def __init__(self, message: str, status_hint: int = 400, http09: bool = False):
        super().__init__(message, status_hint)
        self.http09 = http09


def _show(line: bytes, upto: int) -> str:
    """nginx's rendering of a bad line: the good prefix, then the bad byte as \\xNN."""
    good = line[:upto].decode("latin-1")
    return f'"{good}\\x{line[upto]:02x}..."' if upto < len(line) else f'"{good}"'


def parse_content_length(value: bytes) -> int | None:
    """nginx's ngx_atoof: digits only, no sign, within off_t; else None."""
    if not _DIGITS.match(value):
        return None
    n = int(value)
    return n if n <= MAX_OFF_T else None


class _BufferModel:
    """nginx's header-buffer allocation, replayed over line positions."""

    __slots__ = ("start", "size", "busy", "limits")

    def __init__(self, limits: HeaderLimits):
        self.limits = limits
        self.start = 0
        self.size = limits.buffer_size
        self.busy = 0

    def fits(self, buf: bytes, line_start: int, line_end: int, complete: bool,
             first: bool) -> None:
        """Account for a line spanning [line_start, line_end); raise if nginx would."""
        while line_end > self.start + self.size or (
                not complete and line_end >= self.start + self.size):
            pos = self.start + self.size
            if pos - line_start >= self.limits.large_size or \
                    self.busy >= self.limits.large_num:
                raise self._too_large(first, bytes(buf[line_start:pos]))
            self.busy += 1
            self.start, self.size = line_start, self.limits.large_size

    @staticmethod
    def _too_large(first: bool, partial: bytes) -> BadRequest:
        if first:
            return BadRequest("client sent too long URI", 414)
        # nginx quotes at most NGX_MAX_ERROR_STR - 300 bytes of the line
        shown = _text(partial[:_MAX_ERROR_QUOTE])
        return BadRequest(f'client sent too long header line: "{shown}..."', 494)


class RequestHeadParser:
    """Feed bytes; get NEED_DATA until a full request head, then a `Request`.

    One parser per request head; `trailing_data` holds the bytes after the head.
    """

    __slots__ = ("_buf", "_pos", "_scanned", "_buffers", "_ignore_invalid", "_name_ok",
                 "_merge_slashes", "_max_headers", "_line", "_headers", "_seen",
                 "_connection", "_upgrade", "_host", "_uri", "trailing_data", "done")

    def __init__(self, limits: HeaderLimits = DEFAULT_HEADER_LIMITS, *,
                 ignore_invalid_headers: bool = True,
                 underscores_in_headers: bool = False,
                 merge_slashes: bool = True):
        self._buf = b""
        self._pos = 0              # start of the next unhandled line
        self._scanned = 0          # bytes known to hold no LF past _pos
        self._buffers = _BufferModel(limits)
        self._ignore_invalid = ignore_invalid_headers
        self._name_ok = _NAME_OK_UNDERSCORE if underscores_in_headers else _NAME_OK
        self._merge_slashes = merge_slashes
        self._max_headers = limits.max_headers
        self._line: tuple[bytes, bytes, tuple[int, int]] | None = None
        self._headers: list[tuple[bytes, bytes]] = []
        self._seen: dict[bytes, tuple[bytes, bytes]] = {}
        self._connection: bool | None = None   # True keep-alive, False close
        self._upgrade: bytes | None = None
        self._host: bytes | None = None
        self._uri: tuple[bytes | None, bytes, bytes, bytes] = (None, b"/", b"", b"/")
        self.trailing_data = b""
        self.done = False

    def feed(self, data: bytes) -> Request | NeedData:
        """Add bytes; return the Request once the head is complete."""
        if self.done:
            raise RuntimeError("request head already parsed")
        # bytes, not bytearray: slicing lines is then a single copy; re-joining
        # per feed costs a memcpy of at most the head limit, less than the read
        buf = self._buf = self._buf + data if self._buf else data
        model = self._buffers
        if self._pos == 0 and len(buf) <= model.size:
            fast = _FAST_HEAD.match(buf)
            if fast is not None:
                return self._fast_head(fast)
        while True:
            lf = buf.find(b"\n", max(self._pos, self._scanned))
            if lf < 0:
                self._scanned = len(buf)    # never rescan a partial line
                self._check_partial()
                return NEED_DATA
            line_start, self._pos = self._pos, lf + 1
            line = buf[line_start:lf]
            if self._line is None:
                request = self._request_line(line, line_start, lf + 1)
                if request is None and len(buf) <= model.size and self._line is not None:
                    request = self._fast_headers(buf)
            else:
                if lf >= model.start + model.size:
                    model.fits(self._buf, line_start, lf + 1, True, False)
                m = _FAST_HEADER.match(line)
                if m is not None:
                    self._add_valid(m.group(1), m.group(2).rstrip(b" "))
                    continue
                request = self._header_line(line, lf + 1)
            if request is not None:
                return request

    def _fast_head(self, m: re.Match[bytes]) -> Request:
        method, target, minor, block = m.groups()
        self._line = (method, target, (1, int(minor)))
        self._uri = self._target(target)
        add = self._add_valid
        for name, value in _FAST_LINE.findall(block):
            add(name, value.rstrip(b" "))
        self._pos = m.end()
        return self._finish(m.end())

    def _fast_headers(self, buf: bytes) -> Request | None:
        """The common case in one regex: a whole head of plain CRLF header lines
        within the first buffer (so no limit can trip). Anything else returns None
        and the line-by-line path decides, with nginx's exact errors."""
        m = _FAST_BLOCK.match(buf, self._pos)
        if m is None:
            return None
        for name, value in _FAST_LINE.findall(buf, self._pos, m.end()):
            self._add_valid(name, value.rstrip(b" "))
        self._pos = m.end()
        return self._finish(m.end())

    def _check_partial(self) -> None:
        if len(self._buf) > self._pos:
            self._buffers.fits(self._buf, self._pos, len(self._buf), False, self._line is None)

    # request line ---------------------------------------------------------------

    def _request_line(self, line: bytes, start: int, end: int) -> Request | None:
        stripped = line.lstrip(b"\r")
        if not stripped:               # nginx skips CR/LF before the request line
            return None
        self._buffers.fits(self._buf, start, end, True, True)
        m = _LINE.match(stripped)
        if m is None:
            raise self._line_error(stripped)
        method, target, major, minor = m.groups()
        if major is None:
            return self._http09(method, target, end)
        self._check_version(major, minor)
        self._line = (method, target, (int(major), int(minor)))
        self._uri = self._target(target)
        return None

    @staticmethod
    def _line_error(line: bytes) -> BadRequest:
        m = _METHOD.match(line)
        if m is None or line[m.end():m.end() + 1] != b" ":
            return BadRequest("client sent invalid method", 400)
        version = re.search(rb" HTTP/([0-9]+)", line)
        if version and (int(version.group(1)) > 1) and version.group(1)[0] != 0x30:
            return BadRequest("client sent invalid version", 505)
        return BadRequest(INVALID_REQUEST, 400)

    @staticmethod
    def _check_version(major: bytes, minor: bytes) -> None:
        if major[0] == 0x30:
            raise BadRequest(INVALID_REQUEST, 400)
        if int(major) > 1:
            raise BadRequest("client sent invalid version", 505)
        if len(minor) > 3:
            raise BadRequest(INVALID_REQUEST, 400)

    def _http09(self, method: bytes, target: bytes, end: int) -> Request:
        if method != b"GET":
            raise BadRequest("client sent invalid method in HTTP/0.9 request", 400,
                             http09=True)
        self._line = (method, target, (0, 9))
        self._uri = self._target(target)
        return self._finish(end)

    # header lines ---------------------------------------------------------------

    def _header_line(self, line: bytes, end: int) -> Request | None:
        if line == b"" or line == b"\r":
            return self._finish(end)
        first = line[0]
        if first <= 0x20 or first == 0x7F or first == 0x3A:
            raise BadRequest(f"client sent invalid header line: {_show(line, 0)}")
        name, colon, value = line.partition(b":")
        if not colon:
            self._name_only(line)
            return None
        bad = _CTL_IN_NAME.search(name)
        if bad is not None:
            raise BadRequest(f"client sent invalid header line: {_show(line, bad.start())}")
        self._add(name, self._value(line, len(name) + 1), line)
        return None

    def _name_only(self, line: bytes) -> None:
        """A line without ":" ends its name at CR (nginx: an empty-valued header)."""
        cr = line.find(b"\r")
        name = line if cr < 0 else line[:cr]
        bad = _CTL_IN_NAME.search(name)
        if bad is not None or line[len(name):].strip(b"\r"):
            at = bad.start() if bad is not None else len(name)
            raise BadRequest(f"client sent invalid header line: {_show(line, at)}")
        self._add(name, b"", line)

    @staticmethod
    def _value(line: bytes, at: int) -> bytes:
        value = line[at:].rstrip(b"\r").strip(b" ")
        if b"\r" in value or b"\x00" in value:
            bad = line.find(b"\r", at)
            nul = line.find(b"\x00", at)
            if bad < 0 or (0 <= nul < bad):
                bad = nul
            raise BadRequest(f"client sent invalid header line: {_show(line, bad)}")
        return value

    def _add(self, name: bytes, value: bytes, line: bytes) -> None:
        if not self._name_ok.match(name) and self._ignore_invalid:
            return          # nginx logs "client sent invalid header line" and skips
        self._add_valid(name, value)

    def _add_valid(self, name: bytes, value: bytes) -> None:
        self._headers.append((name, value))
        if self._max_headers is not None and len(self._headers) > self._max_headers:
            # nginx 1.22 has no such limit; later nginx's max_headers answers 400
            raise BadRequest("client sent too many header lines")
        lname = name.lower()
        if lname not in _HANDLED:
            return
        if lname in UNIQUE_HEADERS or lname == b"host":
            self._unique(lname, name, value)
        elif lname == b"connection":
            low = value.lower()
            if b"close" in low:
                self._connection = False
            elif b"keep-alive" in low:
                self._connection = True
        elif lname == b"upgrade" and self._upgrade is None:
            self._upgrade = value

    def _unique(self, lname: bytes, name: bytes, value: bytes) -> None:
        prev = self._seen.get(lname)
        if prev is not None:
            what = "host header" if lname == b"host" else "header line"
            raise BadRequest(
                f'client sent duplicate {what}: "{_text(name)}: {_text(value)}", '
                f'previous value: "{_text(prev[0])}: {_text(prev[1])}"')
        if lname == b"host":
            self._host = validate_host(value)
            if self._host is None:
                raise BadRequest("client sent invalid host header")
        self._seen[lname] = (name, value)

    # end of head ----------------------------------------------------------------

    def _finish(self, end: int) -> Request:
        assert self._line is not None
        method, target, version = self._line
        host, path, args, request_uri = self._uri
        host_header = self._seen.get(b"host")
        if host is None:
            host = self._host
        if host_header is None and version >= (1, 1):
            raise BadRequest('client sent HTTP/1.1 request without "Host" header')
        length, chunked = self._framing(version)
        if method in (b"CONNECT", b"TRACE"):
            raise BadRequest(f"client sent {method.decode()} method", 405)
        self.done = True
        self.trailing_data = bytes(self._buf[end:])
        return Request(
            method=method, target=target, version=version, headers=tuple(self._headers),
            keep_alive=version >= (1, 0) and self._keep_alive(version), expect_continue=self._expect(version),
            upgrade=self._upgrade, content_length=length, chunked=chunked,
            raw_head_len=end, path=path, args=args, request_uri=request_uri, host=host)

    def _target(self, target: bytes) -> tuple[bytes | None, bytes, bytes, bytes]:
        authority, rest = split_target(target)
        host = None
        if authority is not None:
            host = validate_host(authority)
            if host is None:
                raise BadRequest("client sent invalid host in request line")
        raw_path, args = split_args(rest)
        return host, normalize_path(raw_path, self._merge_slashes), args, rest

    def _framing(self, version: tuple[int, int]) -> tuple[int | None, bool]:
        length = None
        cl = self._seen.get(b"content-length")
        if cl is not None:
            length = parse_content_length(cl[1])
            if length is None:
                raise BadRequest('client sent invalid "Content-Length" header')
        te = self._seen.get(b"transfer-encoding")
        if te is None:
            return length, False
        if version < (1, 1):
            raise BadRequest('client sent HTTP/1.0 request with "Transfer-Encoding" header')
        if te[1].lower() != b"chunked":
            raise BadRequest(f'client sent unknown "Transfer-Encoding": "{_text(te[1])}"', 501)
        if cl is not None:
            raise BadRequest('client sent "Content-Length" and "Transfer-Encoding" '
                             'headers at the same time')
        return None, True

    def _keep_alive(self, version: tuple[int, int]) -> bool:
        if self._connection is None:
            return version > (1, 0)
        return self._connection

    def _expect(self, version: tuple[int, int]) -> bool:
        expect = self._seen.get(b"expect")
        return expect is not None and version >= (1, 1) and \
            expect[1].lower() == b"100-continue"


def _text(raw: bytes) -> str:
    return raw.decode("latin-1")


def quick_request(buf: bytes, limits: HeaderLimits) -> Request | None:
    """The most common request head, whole in `buf`, without a parser object:
    "GET /path HTTP/1.1", plain CRLF fields, one valid Host, no body framing.
    None for anything else (and for every error), which RequestHeadParser then
    decides with nginx's exact rules and messages; what this accepts, the parser
    would turn into the same Request. Bytes after the head are the caller's
    (`raw_head_len` says where it ends)."""
    if len(buf) > limits.buffer_size:
        return None
    m = _FAST_HEAD.match(buf)
    if m is None:
        return None
    method, target, minor, block = m.groups()
    if target[:1] != b"/" or method == b"CONNECT" or method == b"TRACE":
        return None
    raw_path, _, args = target.partition(b"?")
    if b"%" in raw_path or b"//" in raw_path or b"/." in raw_path or b"#" in target:
        return None
    fields = _FAST_LINE.findall(block)
    if limits.max_headers is not None and len(fields) > limits.max_headers:
        return None
    host: bytes | None = None
    connection: bool | None = None
    upgrade: bytes | None = None
    headers = []
    for name, value in fields:
        value = value.rstrip(b" ")
        headers.append((name, value))
        lname = name.lower()
        if lname not in _HANDLED:
            continue
        if lname == b"host":
            if host is not None:
                return None
            host = validate_host(value)
            if host is None:
                return None
        elif lname == b"connection":
            low = value.lower()
            if b"close" in low:
                connection = False
            elif b"keep-alive" in low:
                connection = True
        elif lname == b"upgrade":
            if upgrade is None:
                upgrade = value
        else:
            # framing and the duplicate checks of UNIQUE_HEADERS: the parser's
            return None
    if host is None:
        return None
    version = (1, int(minor))
    return Request(method, target, version, tuple(headers),
                   connection if connection is not None else version > (1, 0),
                   False, upgrade, None, False, m.end(), raw_path, args,
                   target, host)


def parse_request_head(data: bytes, limits: HeaderLimits = DEFAULT_HEADER_LIMITS,
                       **options: bool) -> tuple[Request | NeedData, bytes]:
    """One-shot helper: (Request or NEED_DATA, trailing bytes)."""
    parser = RequestHeadParser(limits, **options)
    result = parser.feed(data)
    return result, parser.trailing_data


from wsgate.http.response import ResponseHeadParser  # noqa: E402  (re-export)

__all__ = ["RequestHeadParser", "ResponseHeadParser", "BadRequest", "parse_request_head",
           "parse_content_length", "UNIQUE_HEADERS", "Headers"]
