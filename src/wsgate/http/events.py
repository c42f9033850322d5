"""The events the sans-IO HTTP core produces: frozen, slotted value objects.

A parser returns one of these, or the NEED_DATA sentinel when it cannot decide yet.
Header names and values are the raw bytes as received, in order (names keep their
case; nginx compares them case-insensitively).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

Headers = tuple[tuple[bytes, bytes], ...]


class _Sentinel(enum.Enum):
    NEED_DATA = "NEED_DATA"

    def __repr__(self) -> str:
        return self.value


NEED_DATA = _Sentinel.NEED_DATA
NeedData = _Sentinel


@dataclass(frozen=True, slots=True)
class Request:
    """A parsed, validated request head (nginx's view of it).

    `target` is the raw request target; `path` is nginx's `$uri` (decoded,
    normalised), `args` is `$args`, `request_uri` is `$request_uri`; `host` is the
    validated, lowercased host without port (from an absolute target, else Host),
    or None. `version` (0, 9) means an HTTP/0.9 request (no headers).
    """

    method: bytes
    target: bytes
    version: tuple[int, int]
    headers: Headers
    keep_alive: bool
    expect_continue: bool
    upgrade: bytes | None
    content_length: int | None
    chunked: bool
    raw_head_len: int
    path: bytes = b"/"
    args: bytes = b""
    request_uri: bytes = b"/"
    host: bytes | None = None


@dataclass(frozen=True, slots=True)
class Response:
    """A parsed upstream response head.

    `reason` is the raw reason phrase; `status_line` is "200 OK"-style text nginx
    relays verbatim. `version` (0, 9) means the upstream sent no valid status line
    and everything it sends is body (nginx's HTTP/0.9 fallback).
    """

    status: int
    reason: bytes
    version: tuple[int, int]
    headers: Headers
    content_length: int | None = None
    chunked: bool = False
    connection_close: bool = False
    raw_head_len: int = 0
    status_line: bytes = b""


@dataclass(frozen=True, slots=True)
class Data:
    """A piece of message body, as it arrived (never the whole body by design)."""

    data: bytes


@dataclass(frozen=True, slots=True)
class EndOfMessage:
    """The body ended; `trailers` are the chunked trailer fields, if any."""

    trailers: Headers = ()


@dataclass(frozen=True, slots=True)
class ConnectionClosed:
    """The peer closed its side (EOF)."""


Event = Request | Response | Data | EndOfMessage | ConnectionClosed
