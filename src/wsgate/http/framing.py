"""Message-body framing: incremental, bounded readers and a chunked writer.

Every reader has `feed(data) -> (events, leftover)`: `events` are `Data` pieces as
they arrive (never accumulated) and finally one `EndOfMessage`; `leftover` is what
follows the body (the next pipelined message), only non-empty once the body ended.
`feed(b"")` means EOF. Only chunked trailers are buffered, bounded by a limit.

ChunkedReader is nginx 1.22's ngx_http_parse_chunked as a table of states: hex
size, optional extension (skipped, as nginx does), CRLF or bare LF, data, CRLF or
LF, and after the last chunk trailer lines until an empty line.
"""

from __future__ import annotations

import enum

from wsgate.errors import RemoteProtocolError
from wsgate.http.events import Data, EndOfMessage, Event, Headers
from wsgate.limits import MAX_CHUNK_EXT, MAX_OFF_T, MAX_TRAILER_SIZE

Result = tuple[list[Event], bytes]

_CR, _LF = 0x0D, 0x0A
_EXT_START = frozenset(b"; \t")
_HEXVAL = {c: int(chr(c), 16) for c in b"0123456789abcdefABCDEF"}


def _errors(role: str) -> tuple[str, int, str]:
    """(invalid-body message, status, premature-close message) per peer role."""
    if role == "upstream":
        return ("upstream sent invalid chunked response", 502,
                "upstream prematurely closed connection")
    return "client sent invalid chunked body", 400, "client prematurely closed connection"


class ContentLengthReader:
    """A body of exactly `length` bytes."""

    __slots__ = ("remaining", "done", "_premature", "_status")

    def __init__(self, length: int, role: str = "client"):
        self.remaining = length
        self.done = False
        _, self._status, self._premature = _errors(role)

    def feed(self, data: bytes) -> Result:
        if self.done:
            return [], data
        if not data and self.remaining:
            raise RemoteProtocolError(self._premature, self._status)
        take = data[:self.remaining]
        self.remaining -= len(take)
        events: list[Event] = [Data(take)] if take else []
        if self.remaining == 0:
            self.done = True
            events.append(EndOfMessage())
        return events, data[len(take):]


class CloseDelimitedReader:
    """A body that ends when the peer closes (HTTP/1.0-style responses)."""

    __slots__ = ("done",)

    def __init__(self) -> None:
        self.done = False

    def feed(self, data: bytes) -> Result:
        if self.done:
            return [], data
        if not data:
            self.done = True
            return [EndOfMessage()], b""
        return [Data(data)], b""


class _S(enum.Enum):
    START = 1            # first hex digit of a chunk size
    SIZE = 2
    EXT = 3
    SIZE_ALMOST = 4      # CR seen after size/ext, LF must follow
    DATA = 5
    AFTER_DATA = 6
    AFTER_DATA_ALMOST = 7
    LAST_EXT = 8
    LAST_ALMOST = 9
    TRAILER = 10         # start of a trailer line (or the final empty line)
    TRAILER_LINE = 11
    TRAILER_LINE_ALMOST = 12
    END_ALMOST = 13
    DONE = 14


class ChunkedReader:
    """Strict chunked decoding as nginx does it; reports data without buffering."""

    def __init__(self, max_chunk_ext: int | None = MAX_CHUNK_EXT,
                 max_trailer_size: int = MAX_TRAILER_SIZE, role: str = "client"):
        self.max_chunk_ext = max_chunk_ext
        self.max_trailer_size = max_trailer_size
        self._invalid, self._status, self._premature = _errors(role)
        self.state = _S.START
        self.size = 0
        self._ext_len = 0
        self._trailer = bytearray()
        self.done = False

    def feed(self, data: bytes) -> Result:
        if self.done:
            return [], data
        if not data:
            raise RemoteProtocolError(self._premature, self._status)
        events: list[Event] = []
        i, n = 0, len(data)
        while i < n and not self.done:
            if self.state is _S.DATA:
                take = min(self.size, n - i)
                events.append(Data(data[i:i + take]))
                self.size -= take
                i += take
                if self.size == 0:
                    self.state = _S.AFTER_DATA
                continue
            self._step(data[i])
            i += 1
        if self.done:
            events.append(EndOfMessage(self._trailers()))
        return events, data[i:]

    def _fail(self) -> RemoteProtocolError:
        return RemoteProtocolError(self._invalid, self._status)

    def _step(self, ch: int) -> None:
        state = self.state
        if state is _S.START or state is _S.SIZE:
            self._size_byte(ch)
        elif state is _S.EXT or state is _S.LAST_EXT:
            self._ext_byte(ch)
        elif state is _S.SIZE_ALMOST:
            self.state = self._after_size_lf() if ch == _LF else self._raise()
        elif state is _S.AFTER_DATA:
            self.state = {_CR: _S.AFTER_DATA_ALMOST, _LF: _S.START}.get(ch) or self._raise()
        elif state is _S.AFTER_DATA_ALMOST or state is _S.LAST_ALMOST:
            next_state = _S.START if state is _S.AFTER_DATA_ALMOST else _S.TRAILER
            self.state = next_state if ch == _LF else self._raise()
        else:
            self._trailer_byte(ch)

    def _raise(self) -> _S:
        raise self._fail()

    def _size_byte(self, ch: int) -> None:
        digit = _HEXVAL.get(ch)
        if digit is not None:
            if self.size > MAX_OFF_T // 16:
                raise self._fail()
            self.size = self.size * 16 + digit
            self.state = _S.SIZE
            return
        if self.state is _S.START:
            raise self._fail()
        last = self.size == 0
        if ch == _CR:
            self.state = _S.LAST_ALMOST if last else _S.SIZE_ALMOST
        elif ch == _LF:
            self.state = _S.TRAILER if last else _S.DATA
        elif ch in _EXT_START:
            self._ext_len = 0
            self.state = _S.LAST_EXT if last else _S.EXT
        else:
            raise self._fail()

    def _after_size_lf(self) -> _S:
        return _S.DATA

    def _ext_byte(self, ch: int) -> None:
        last = self.state is _S.LAST_EXT
        if ch == _CR:
            self.state = _S.LAST_ALMOST if last else _S.SIZE_ALMOST
        elif ch == _LF:
            self.state = _S.TRAILER if last else _S.DATA
        else:
            self._ext_len += 1
            if self.max_chunk_ext is not None and self._ext_len > self.max_chunk_ext:
                raise self._fail()

    def _trailer_byte(self, ch: int) -> None:
        state = self.state
        if state is _S.TRAILER:
            if ch == _CR:
                self.state = _S.END_ALMOST
            elif ch == _LF:
                self._finish()
            else:
                self._keep(ch)
                self.state = _S.TRAILER_LINE
        elif state is _S.END_ALMOST:
            self._finish() if ch == _LF else self._raise()
        elif state is _S.TRAILER_LINE:
            if ch == _CR:
                self.state = _S.TRAILER_LINE_ALMOST
            else:
                self._keep(ch)
                if ch == _LF:
                    self.state = _S.TRAILER
        else:  # TRAILER_LINE_ALMOST
            if ch != _LF:
                raise self._fail()
            self._keep(_LF)
            self.state = _S.TRAILER

    def _keep(self, ch: int) -> None:
        self._trailer.append(ch)
        if len(self._trailer) > self.max_trailer_size:
            raise self._fail()

    def _finish(self) -> None:
        self.state = _S.DONE
        self.done = True

    def _trailers(self) -> Headers:
        fields = []
        for line in bytes(self._trailer).split(b"\n"):
            name, colon, value = line.partition(b":")
            if colon and name and name.strip() == name:
                fields.append((name, value.strip(b" \t")))
        return tuple(fields)


class ChunkedWriter:
    """Re-chunks a body for an HTTP/1.1 peer, as nginx's chunked filter does."""

    __slots__ = ("finished",)

    def __init__(self) -> None:
        self.finished = False

    def write(self, data: bytes) -> bytes:
        """One chunk (b"" for empty data: an empty chunk would end the body)."""
        if self.finished:
            raise ValueError("chunked body already ended")
        if not data:
            return b""
        return b"%x\r\n%s\r\n" % (len(data), data)

    def end(self, trailers: Headers = ()) -> bytes:
        """The last chunk and optional trailer fields."""
        self.finished = True
        fields = b"".join(name + b": " + value + b"\r\n" for name, value in trailers)
        return b"0\r\n" + fields + b"\r\n"


def body_reader(content_length: int | None, chunked: bool,
                role: str = "client") -> ContentLengthReader | ChunkedReader | None:
    """The reader for a request's framing (None when there is no body)."""
    if chunked:
        return ChunkedReader(role=role)
    if content_length is not None:
        return ContentLengthReader(content_length, role=role)
    return None
