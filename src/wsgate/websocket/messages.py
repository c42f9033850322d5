"""Whole-message reading for endpoints that need payloads (`wsgate probe`, tests), built
on FrameParser.  The proxy's relay does not use this: it never buffers data payloads.

`MessageReader.feed(chunk)` returns `Message(opcode, payload)` for every completed data
message (fragments joined, unmasked) and passes `ControlFrame` events through, in
stream order.  Memory is bounded by `max_message_size` (plus interleaved control frames
and one chunk): the reader keeps stream bytes only from the first payload byte of the
message in progress.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union

from wsgate.errors import WebSocketError
from wsgate.websocket.frames import (
    ControlFrame, FrameParser, FrameStarted, MessageDone, Opcode, apply_mask,
)

__all__ = ["Message", "MessageReader", "ReaderEvent"]


@dataclass(frozen=True, slots=True)
class Message:
    """A complete TEXT or BINARY message."""

    opcode: Opcode
    payload: bytes

    def text(self) -> str:
        """The payload as text; invalid UTF-8 is a 1007 (RFC 6455 8.1)."""
        try:
            return self.payload.decode("utf-8")
        except UnicodeDecodeError:
            raise WebSocketError("text message is not valid UTF-8", 1007) from None


ReaderEvent = Union[Message, ControlFrame]


class MessageReader:
    """Reassembles messages from one direction's stream (see FrameParser for the
    meaning of `client_side` and the limits)."""

    __slots__ = ("parser", "_buf", "_buf_start", "_fragments")

    def __init__(self, *, client_side: bool, max_message_size: int | None = 1 << 20,
                 strict_length: bool = False) -> None:
        self.parser = FrameParser(client_side=client_side, max_message_size=max_message_size,
                                  strict_length=strict_length)
        self._buf = bytearray()
        self._buf_start = 0                  # stream offset of _buf[0]
        self._fragments: list[tuple[int, int, bytes | None]] = []   # (payload offset, length, mask)

    def feed(self, data: bytes) -> list[ReaderEvent]:
        """Consume a chunk; return completed messages and control frames in order."""
        self._buf += data
        out: list[ReaderEvent] = []
        for event in self.parser.feed(data):
            if isinstance(event, FrameStarted):
                h = event.header
                self._fragments.append((event.start_offset + h.header_len, h.length, h.mask))
            elif isinstance(event, MessageDone):
                out.append(Message(event.opcode, self._assemble()))
            else:
                out.append(event)
        self._trim()
        return out

    def _assemble(self) -> bytes:
        parts = []
        for at, length, mask in self._fragments:
            i = at - self._buf_start
            body = bytes(self._buf[i:i + length])
            parts.append(apply_mask(body, mask) if mask is not None else body)
        self._fragments.clear()
        return b"".join(parts)

    def _trim(self) -> None:
        keep = self._fragments[0][0] if self._fragments else self.parser.offset
        drop = keep - self._buf_start
        if drop > 0:
            del self._buf[:drop]
            self._buf_start = keep
