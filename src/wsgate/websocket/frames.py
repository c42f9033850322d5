"""RFC 6455 framing: an incremental frame-header parser that never touches data payloads,
plus frame building and masking.

Theory of operation
-------------------
A frame-aware relay forwards every chunk it reads unchanged; it only needs to know where
frames begin and end.  `FrameParser.feed(chunk)` therefore returns events that carry
ABSOLUTE STREAM OFFSETS (byte positions in this direction's stream, counted from the
first byte ever fed), and it only *counts through* data payloads: it never copies,
buffers or unmasks them.  Control frames (<= 125 bytes) are buffered and unmasked,
because the proxy must read them (Close codes, the Pongs to its own Pings).

The parser is in one of three states, kept as plain attributes for speed:

    HEADER    `_remaining == 0` and `_ctl is None`; `_head` holds the first bytes of
              a header split across chunks (b"" when none)
    PAYLOAD   `_remaining > 0`: inside a data frame's payload; a chunk with no frame
              boundary costs one subtraction
    CONTROL   `_ctl is not None`: collecting a control frame's payload

Events, in stream order:

    FrameStarted(header, start_offset)           a DATA frame's header is complete
    MessageDone(opcode, size, end_offset)        last byte of a FIN data frame seen
    ControlFrame(header, payload, start, end)    a whole control frame (unmasked payload)

A control frame produces only `ControlFrame` (when complete).  `hold_from` tells a relay
where an incomplete header or control frame begins, so it can hold those few bytes back
(at most 14 + 125) if it may want to cut the frame out, e.g. a Pong answering its own
Ping.  A data frame of a fragmented message ends at `start + header_len + length`.

Decisions (the proxy is not the endpoint, so it rejects only what would desynchronise
framing or what RFC 6455 says an intermediary can judge):

- RSV bits pass through: extensions such as permessage-deflate set RSV1, and the proxy
  does not take part in extension negotiation.
- Non-minimal payload-length encodings (e.g. 5 sent as 126 + 0x0005) are accepted by
  default: the length is still unambiguous, and the common endpoints (Python's
  `websockets`, node's `ws`) accept them, so rejecting them would break apps that work
  without the proxy.  `strict_length=True` rejects them with 1002 (RFC 6455 5.2 "the
  minimal number of bytes MUST be used"), e.g. for `wsgate probe`.
- Everything else RFC 6455 5.2-5.5 forbids is a `FrameError` (a `WebSocketError`):
  masking in the wrong direction, reserved opcodes, large or fragmented control frames,
  continuation misuse, a 64-bit length with its most significant bit set (1002); a frame
  or message over the configured limit (1009).  After an error the parser is dead:
  every later `feed` raises the same error.
"""

from __future__ import annotations

import enum
import secrets
from dataclasses import dataclass
from typing import NoReturn, Union

from wsgate.errors import WebSocketError

__all__ = [
    "Opcode", "FrameHeader", "FrameStarted", "MessageDone", "ControlFrame", "Event",
    "FrameError", "FrameParser", "build_frame", "encode_header", "apply_mask",
    "MAX_CONTROL_PAYLOAD", "MAX_HEADER_LEN",
]

MAX_CONTROL_PAYLOAD = 125   # RFC 6455 5.5: "All control frames MUST have a payload length of 125 bytes or less"
MAX_HEADER_LEN = 14         # 2 + 8 (64-bit length) + 4 (mask key)


class Opcode(enum.IntEnum):
    """RFC 6455 5.2 opcodes; 3-7 and 0xB-0xF are reserved."""

    CONT = 0
    TEXT = 1
    BINARY = 2
    CLOSE = 8
    PING = 9
    PONG = 10


# Index by the 4-bit opcode: the Opcode, or None when reserved (a tuple index is far
# cheaper than Opcode(n) in the per-frame loop).
_OPCODES: tuple[Opcode | None, ...] = tuple(
    Opcode(n) if n in Opcode._value2member_map_ else None for n in range(16))


@dataclass(slots=True)
class FrameHeader:
    """One parsed frame header.  `mask` is the 4-byte key, or None when unmasked;
    `header_len` is 2..14, so the payload spans [start + header_len, + length)."""

    fin: bool
    rsv: int
    opcode: Opcode
    masked: bool
    mask: bytes | None
    length: int
    header_len: int


@dataclass(slots=True)
class FrameStarted:
    """A data frame (TEXT, BINARY or CONT) whose header ends the bytes seen so far or
    earlier; its first header byte is at `start_offset`."""

    header: FrameHeader
    start_offset: int


@dataclass(slots=True)
class MessageDone:
    """The last frame of a message ended at `end_offset` (exclusive).  `opcode` is the
    message's TEXT or BINARY; `size` the sum of its frames' payload lengths."""

    opcode: Opcode
    size: int
    end_offset: int


@dataclass(slots=True)
class ControlFrame:
    """A complete control frame spanning [start_offset, end_offset), payload unmasked."""

    header: FrameHeader
    payload: bytes
    start_offset: int
    end_offset: int


Event = Union[FrameStarted, MessageDone, ControlFrame]


class FrameError(WebSocketError):
    """A framing violation.  `offset` is where the offending frame starts; `events`
    are the valid events of the same `feed` call before it, so a relay can still
    forward the bytes before `offset` and account for them."""

    def __init__(self, message: str, close_code: int, offset: int,
                 events: list[Event] | None = None):
        super().__init__(message, close_code)
        self.offset = offset
        self.events: list[Event] = events if events is not None else []


class FrameParser:
    """Incremental parser for one direction of a WebSocket connection.

    `client_side=True` parses frames sent BY the client (they must be masked);
    False parses frames sent by the server (they must not be).  Limits of None mean
    unlimited; a frame or message over its limit raises `FrameError` with 1009 as soon
    as its header is seen, before any of its payload arrives.
    """

    # Slotted: a frame-aware tunnel keeps two parsers for its whole life, idle or not.
    __slots__ = ("client_side", "max_frame_size", "max_message_size", "strict_length",
                 "_offset", "_head", "_remaining", "_frame_fin", "_frame_start", "_ctl",
                 "_ctl_header", "_msg_opcode", "_msg_size", "_error", "_fast_limit")

    def __init__(self, *, client_side: bool, max_frame_size: int | None = None,
                 max_message_size: int | None = None, strict_length: bool = False) -> None:
        self.client_side = client_side
        self.max_frame_size = max_frame_size
        self.max_message_size = max_message_size
        self.strict_length = strict_length
        self._offset = 0                     # stream offset of the next byte fed
        self._head = b""                     # partial header carried across chunks
        self._remaining = 0                  # payload bytes left in the current data frame
        self._frame_fin = False              # does the current data frame end a message?
        self._frame_start = 0                # stream offset of the current frame
        self._ctl: bytearray | None = None   # partial control payload (CONTROL state)
        self._ctl_header: FrameHeader | None = None
        self._msg_opcode: Opcode | None = None   # first opcode of the message in progress
        self._msg_size = 0
        self._error: FrameError | None = None
        # The fast path handles only unfragmented starts, where frame size == message
        # size, so one bound covers both limits (and the 2**63 length rule).
        limits = [x for x in (max_frame_size, max_message_size) if x is not None]
        self._fast_limit = min(limits + [(1 << 63) - 1])

    # -- state a relay may inspect ------------------------------------------------------

    @property
    def offset(self) -> int:
        """Total bytes fed so far (the stream offset of the next byte)."""
        return self._offset

    @property
    def at_boundary(self) -> bool:
        """True when the bytes fed so far end exactly between two frames: the only
        place a relay may inject a frame of its own (inside a fragmented message is
        fine for control frames, RFC 6455 5.4)."""
        return not self._remaining and self._ctl is None and not self._head

    @property
    def in_message(self) -> bool:
        """True while a data message is unfinished (at a boundary: a fragmented
        message is open, and only a control frame may be injected there)."""
        return self._msg_opcode is not None

    @property
    def hold_from(self) -> int | None:
        """Offset where an incomplete header or control frame begins, else None."""
        if self._head or self._ctl is not None:
            return self._frame_start
        return None

    # -- parsing ------------------------------------------------------------------------

    def feed(self, data: bytes | bytearray | memoryview) -> list[Event]:
        """Consume the next chunk of the stream; return the events it completes."""
        if self._error is not None:
            raise self._error
        n = len(data)
        remaining = self._remaining
        if remaining > n:                  # the common case: deep inside a payload
            self._remaining = remaining - n
            self._offset += n
            return []
        events: list[Event] = []
        try:
            self._parse(data, n, events)
        except FrameError as err:
            err.events = events
            self._error = err
            raise
        self._offset += n
        return events

    def _parse(self, data: bytes | bytearray | memoryview, n: int, events: list[Event]) -> None:
        base = self._offset
        pos = 0
        if self._remaining:
            pos = self._remaining
            self._remaining = 0
            self._end_data_frame(base + pos, events)
        elif self._ctl is not None:
            pos = self._continue_control(data, n, base, events)
        elif self._head:
            pos = self._continue_header(data, n, base, events)
        while pos < n:
            pos = self._fast_frame_at(data, pos, n, base, events)

    def _fast_frame_at(self, data: bytes | bytearray | memoryview, pos: int, n: int, base: int,
                       events: list[Event]) -> int:
        """`_frame_at` inlined for the common frame: a whole TEXT/BINARY header in the
        chunk, correct masking, no fragmented message in progress, within the limits.
        Anything else (and every error) goes the general way.  This keeps a chunk of
        many small frames a tight loop (~2x faster than the general path)."""
        if n - pos < 2 or self._msg_opcode is not None:
            return self._frame_at(data, pos, n, base, events)
        b0 = data[pos]
        b1 = data[pos + 1]
        opcode = b0 & 0x0F
        if not 0 < opcode < 3 or (b1 >> 7) != self.client_side:
            return self._frame_at(data, pos, n, base, events)
        length = b1 & 0x7F
        hpos = pos + 2
        if length >= 126:
            ext = 2 if length == 126 else 8
            if self.strict_length or n - hpos < ext:
                return self._frame_at(data, pos, n, base, events)
            length = int.from_bytes(data[hpos:hpos + ext], "big")
            hpos += ext
        if length > self._fast_limit:      # also catches a 64-bit length with the MSB set
            return self._frame_at(data, pos, n, base, events)
        if b1 & 0x80:
            if n - hpos < 4:
                return self._frame_at(data, pos, n, base, events)
            mask: bytes | None = bytes(data[hpos:hpos + 4])
            hpos += 4
        else:
            mask = None
        fin = b0 >= 0x80
        op = Opcode.TEXT if opcode == 1 else Opcode.BINARY
        header = FrameHeader(fin, (b0 >> 4) & 7, op, mask is not None, mask, length, hpos - pos)
        events.append(FrameStarted(header, base + pos))
        end = hpos + length
        if fin and end <= n:
            events.append(MessageDone(op, length, base + end))
            return end
        self._msg_opcode = op
        self._msg_size = length
        if end <= n:
            return end
        self._remaining = end - n
        self._frame_fin = fin
        self._frame_start = base + pos
        return n

    def _frame_at(self, data: bytes | bytearray | memoryview, pos: int, n: int, base: int,
                  events: list[Event]) -> int:
        """Parse the frame starting at data[pos]; return the position after what it
        consumed (the chunk's end when the frame continues past it)."""
        header = self._header(data, pos, n, base + pos)
        if header is None:                 # header split across chunks: keep its bytes
            self._head = bytes(data[pos:n])
            self._frame_start = base + pos
            return n
        return self._after_header(header, data, pos + header.header_len, n, base, base + pos, events)

    def _continue_header(self, data: bytes | bytearray | memoryview, n: int, base: int,
                         events: list[Event]) -> int:
        head = self._head
        have = len(head)
        buf = head + bytes(data[:MAX_HEADER_LEN - have])
        header = self._header(buf, 0, len(buf), self._frame_start)
        if header is None:
            self._head = buf
            return n
        self._head = b""
        pos = header.header_len - have
        return self._after_header(header, data, pos, n, base, self._frame_start, events)

    def _after_header(self, header: FrameHeader, data: bytes | bytearray | memoryview,
                      pos: int, n: int, base: int, start: int, events: list[Event]) -> int:
        """Account for a complete header whose payload begins at data[pos]."""
        length = header.length
        if header.opcode >= 8:
            return self._start_control(header, data, pos, n, base, start, events)
        self._start_data_frame(header, start, events)
        end = pos + length
        if end <= n:
            if header.fin:
                self._end_message(base + end, events)
            return end
        self._remaining = end - n
        self._frame_fin = header.fin
        self._frame_start = start
        return n

    def _header(self, buf: bytes | bytearray | memoryview, pos: int, n: int,
                start: int) -> FrameHeader | None:
        """Decode the header at buf[pos:n], or None when it is not all there yet.
        Checks what the first two bytes decide as soon as they arrive."""
        avail = n - pos
        if avail < 2:
            return None
        b0 = buf[pos]
        b1 = buf[pos + 1]
        masked = bool(b1 & 0x80)
        length = b1 & 0x7F
        opcode = self._check_first_bytes(b0, masked, start)
        ext = 0 if length < 126 else (2 if length == 126 else 8)
        header_len = 2 + ext + (4 if masked else 0)
        if avail < header_len:
            return None
        if ext:
            length = int.from_bytes(buf[pos + 2:pos + 2 + ext], "big")
            self._check_extended_length(length, ext, start)
        if length > MAX_CONTROL_PAYLOAD and opcode >= 8:
            # Judged on the decoded length: a non-minimal encoding of <= 125 is lenient-OK.
            self._fail(f"control frame ({opcode.name}) longer than 125 bytes", 1002, start)
        mask = bytes(buf[pos + header_len - 4:pos + header_len]) if masked else None
        return FrameHeader(bool(b0 & 0x80), (b0 >> 4) & 7, opcode, masked, mask, length, header_len)

    def _check_first_bytes(self, b0: int, masked: bool, start: int) -> Opcode:
        """The opcode, once the first two bytes pass RFC 6455 5.1, 5.2 and 5.5."""
        opcode = _OPCODES[b0 & 0x0F]
        if opcode is None:
            self._fail(f"reserved opcode 0x{b0 & 0x0F:x}", 1002, start)
        if masked != self.client_side:
            # RFC 6455 5.1: clients MUST mask, servers MUST NOT.
            self._fail("unmasked frame from the client" if self.client_side
                       else "masked frame from the server", 1002, start)
        if opcode >= 8 and not b0 & 0x80:
            self._fail(f"fragmented control frame ({opcode.name})", 1002, start)
        return opcode

    def _check_extended_length(self, length: int, ext: int, start: int) -> None:
        if ext == 8 and length >> 63:
            self._fail("64-bit payload length with the most significant bit set", 1002, start)
        if self.strict_length and length < (126 if ext == 2 else 65536):
            self._fail(f"payload length {length} not minimally encoded", 1002, start)

    def _start_data_frame(self, header: FrameHeader, start: int, events: list[Event]) -> None:
        length = header.length
        if self.max_frame_size is not None and length > self.max_frame_size:
            self._fail(f"frame of {length} bytes exceeds the limit of {self.max_frame_size}", 1009, start)
        if header.opcode == Opcode.CONT:
            if self._msg_opcode is None:
                self._fail("continuation frame without a message to continue", 1002, start)
            self._msg_size += length
        else:
            if self._msg_opcode is not None:
                self._fail(f"new {header.opcode.name} frame inside a fragmented message", 1002, start)
            self._msg_opcode = header.opcode
            self._msg_size = length
        if self.max_message_size is not None and self._msg_size > self.max_message_size:
            self._fail(f"message of {self._msg_size}+ bytes exceeds the limit of "
                       f"{self.max_message_size}", 1009, start)
        events.append(FrameStarted(header, start))

    def _end_data_frame(self, end: int, events: list[Event]) -> None:
        if self._frame_fin:
            self._end_message(end, events)

    def _end_message(self, end: int, events: list[Event]) -> None:
        assert self._msg_opcode is not None
        events.append(MessageDone(self._msg_opcode, self._msg_size, end))
        self._msg_opcode = None
        self._msg_size = 0

    def _start_control(self, header: FrameHeader, data: bytes | bytearray | memoryview,
                       pos: int, n: int, base: int, start: int, events: list[Event]) -> int:
        end = pos + header.length
        if end <= n:
            payload = bytes(data[pos:end])
            self._emit_control(header, payload, start, base + end, events)
            return end
        self._ctl = bytearray(data[pos:n])
        self._ctl_header = header
        self._frame_start = start
        return n

    def _continue_control(self, data: bytes | bytearray | memoryview, n: int, base: int,
                          events: list[Event]) -> int:
        ctl, header = self._ctl, self._ctl_header
        assert ctl is not None and header is not None
        take = min(header.length - len(ctl), n)
        ctl += data[:take]
        if len(ctl) == header.length:
            self._ctl = self._ctl_header = None
            self._emit_control(header, bytes(ctl), self._frame_start, base + take, events)
        return take

    @staticmethod
    def _emit_control(header: FrameHeader, payload: bytes, start: int, end: int,
                      events: list[Event]) -> None:
        if header.mask is not None:
            payload = apply_mask(payload, header.mask)
        events.append(ControlFrame(header, payload, start, end))

    def _fail(self, message: str, close_code: int, offset: int) -> NoReturn:
        raise FrameError(message, close_code, offset)


# -- building -------------------------------------------------------------------------


def encode_header(opcode: int, length: int, *, fin: bool = True, rsv: int = 0,
                  mask: bytes | None = None) -> bytes:
    """The header bytes of a frame (minimal length encoding), without any checks on
    what the frame means: tests use it to build invalid frames on purpose."""
    if not 0 <= opcode <= 15 or not 0 <= rsv <= 7 or not 0 <= length < 1 << 63:
        raise ValueError(f"cannot encode opcode={opcode} rsv={rsv} length={length}")
    if mask is not None and len(mask) != 4:
        raise ValueError("mask key must be 4 bytes")
    b0 = (0x80 if fin else 0) | rsv << 4 | opcode
    mbit = 0x80 if mask is not None else 0
    if length < 126:
        head = bytes((b0, mbit | length))
    elif length < 65536:
        head = bytes((b0, mbit | 126)) + length.to_bytes(2, "big")
    else:
        head = bytes((b0, mbit | 127)) + length.to_bytes(8, "big")
    return head + mask if mask is not None else head


def build_frame(opcode: int, payload: bytes, *, mask: bool, fin: bool = True, rsv: int = 0,
                mask_key: bytes | None = None) -> bytes:
    """A complete frame.  `mask=True` masks with a fresh random key (or `mask_key`, for
    reproducible tests).  Control frames must be final and at most 125 bytes."""
    if opcode >= 8 and (not fin or len(payload) > MAX_CONTROL_PAYLOAD):
        raise ValueError("control frames must be final and carry at most 125 bytes")
    if _OPCODES[opcode & 0x0F] is None or opcode > 15:
        raise ValueError(f"reserved opcode {opcode}")
    if not mask:
        return encode_header(opcode, len(payload), fin=fin, rsv=rsv) + payload
    key = mask_key if mask_key is not None else secrets.token_bytes(4)
    return encode_header(opcode, len(payload), fin=fin, rsv=rsv, mask=key) + apply_mask(payload, key)


def apply_mask(data: bytes | bytearray | memoryview, mask: bytes, offset: int = 0) -> bytes:
    """XOR `data` with the 4-byte `mask` (RFC 6455 5.3); `offset` is the position of
    data[0] within the payload, so a payload can be unmasked in pieces.  Masking and
    unmasking are the same operation.  One big-integer XOR, not a per-byte loop."""
    n = len(data)
    if n == 0:
        return b""
    rot = offset & 3
    key = mask[rot:] + mask[:rot]
    keystream = (key * ((n >> 2) + 1))[:n]
    value = int.from_bytes(data, "big") ^ int.from_bytes(keystream, "big")
    return value.to_bytes(n, "big")
