"""Capturing a request's output instead of sending it: what SSI needs for the main
response (to filter it) and for `include virtual` subrequests (to splice their
bodies in).

`CaptureStream` stands in for the client `Stream` while a content handler runs:
writes are collected, reads (the client's request body) go to the real stream.
`split_response` turns the captured bytes back into (status, head lines, body)
with the same parsers the proxy uses for upstream responses.
"""

from __future__ import annotations

from typing import Any

from wsgate.errors import RemoteProtocolError
from wsgate.http import framing
from wsgate.http.events import NEED_DATA, Data, Response
from wsgate.http.response import ResponseHeadParser, response_body_kind

__all__ = ["CaptureStream", "Captured", "split_response"]

_HEAD_LIMIT = 1 << 20     # our own heads: generous, they never come from outside


class CaptureStream:
    """Collects writes; everything else is the real client stream's."""

    def __init__(self, real: Any) -> None:
        self._real = real
        self.chunks: list[bytes] = []
        self.closed = False
        self.transport = None          # no tunnel can start on a captured request

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)

    def write(self, data: bytes) -> None:
        if data and not self.closed:
            self.chunks.append(bytes(data))

    async def drain(self, timeout: float | None = None) -> None:
        return None

    def close(self) -> None:
        self.closed = True             # the response was cut short

    def abort(self) -> None:
        self.closed = True

    def data(self) -> bytes:
        return b"".join(self.chunks)


class Captured:
    """A captured response: status, head (list of raw field lines), body."""

    def __init__(self, response: Response, body: bytes, complete: bool) -> None:
        self.response = response
        self.body = body
        self.complete = complete

    @property
    def status(self) -> int:
        return self.response.status

    def field(self, lname: bytes) -> bytes | None:
        return next((v for n, v in self.response.headers if n.lower() == lname), None)


def split_response(raw: bytes, method: bytes) -> Captured | None:
    """Parse what a handler wrote (None when it wrote no complete head)."""
    parser = ResponseHeadParser(_HEAD_LIMIT)
    try:
        resp = parser.feed(raw)
    except RemoteProtocolError:
        return None
    if resp is NEED_DATA:
        return None
    assert isinstance(resp, Response)
    rest = parser.trailing_data
    kind = response_body_kind(resp, method)
    if kind == "none":
        return Captured(resp, b"", True)
    if kind == "close":
        return Captured(resp, rest, True)
    reader: Any = framing.ChunkedReader() if kind == "chunked" else \
        framing.ContentLengthReader(resp.content_length or 0)
    try:
        events, _ = reader.feed(rest)
    except RemoteProtocolError:
        return Captured(resp, b"", False)
    body = b"".join(e.data for e in events if isinstance(e, Data))
    return Captured(resp, body, reader.done)
