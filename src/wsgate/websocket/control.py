"""Control frames: Close payloads (codes and reasons, RFC 6455 5.5.1 and 7.4) and the
Close/Ping/Pong frames the proxy originates.

Masking direction: RFC 6455 5.1 -- a frame sent toward the server (upstream) is masked,
a frame sent toward the client (downstream) is not.  The builders take `mask=` so the
caller states the direction explicitly; `mask_toward(to_server)` spells the rule.
"""

from __future__ import annotations

from wsgate.errors import WebSocketError
from wsgate.websocket.frames import MAX_CONTROL_PAYLOAD, Opcode, build_frame

__all__ = [
    "CLOSE_CODES", "is_valid_close_code", "close_payload", "parse_close",
    "close_frame", "ping_frame", "pong_frame", "mask_toward", "MAX_CLOSE_REASON",
]

MAX_CLOSE_REASON = MAX_CONTROL_PAYLOAD - 2   # 123 bytes of UTF-8 after the 2-byte code

# Codes an endpoint may put on the wire (RFC 6455 7.4.1 plus the IANA registry's
# 1012-1014).  1004 is reserved; 1005, 1006 and 1015 MUST NOT be sent: they only name
# situations ("no code", "abnormal closure", "TLS failure") in APIs and logs, so they
# appear here in CLOSE_NAMES but not in CLOSE_CODES.
CLOSE_CODES: dict[int, str] = {
    1000: "normal closure",
    1001: "going away",
    1002: "protocol error",
    1003: "unsupported data",
    1007: "invalid frame payload data",
    1008: "policy violation",
    1009: "message too big",
    1010: "mandatory extension",
    1011: "internal error",
    1012: "service restart",
    1013: "try again later",
    1014: "bad gateway",
}

CLOSE_NAMES: dict[int, str] = {
    **CLOSE_CODES,
    1004: "reserved",
    1005: "no status received",
    1006: "abnormal closure",
    1015: "TLS handshake failure",
}


def is_valid_close_code(code: int) -> bool:
    """May `code` appear in a Close frame?  RFC 6455 7.4.2: 0-999 unused, 1000-2999
    for the protocol (only the registered ones), 3000-3999 registered libraries and
    frameworks, 4000-4999 private use."""
    return code in CLOSE_CODES or 3000 <= code <= 4999


def close_payload(code: int | None, reason: str = "") -> bytes:
    """The payload of a Close frame.  `None` sends no code (and then no reason).  A
    reason longer than 123 UTF-8 bytes is cut at a character boundary, because a
    Close frame that exceeds 125 bytes would be a protocol error."""
    if code is None:
        if reason:
            raise ValueError("a close reason needs a close code")
        return b""
    if not is_valid_close_code(code):
        raise ValueError(f"close code {code} may not be sent")
    raw = reason.encode("utf-8")
    if len(raw) > MAX_CLOSE_REASON:
        raw = raw[:MAX_CLOSE_REASON].decode("utf-8", "ignore").encode("utf-8")
    return code.to_bytes(2, "big") + raw


def parse_close(payload: bytes) -> tuple[int | None, str]:
    """(code, reason) of a received Close payload; (None, "") when it is empty.

    Raises WebSocketError 1002 for a 1-byte or over-long payload or an invalid code,
    1007 for a reason that is not UTF-8 (RFC 6455 5.5.1, 7.4, 8.1).
    """
    n = len(payload)
    if n == 0:
        return None, ""
    if n == 1:
        raise WebSocketError("close frame with a 1-byte payload", 1002)
    if n > MAX_CONTROL_PAYLOAD:
        raise WebSocketError(f"close frame with a {n}-byte payload", 1002)
    code = int.from_bytes(payload[:2], "big")
    if not is_valid_close_code(code):
        raise WebSocketError(f"invalid close code {code}", 1002)
    try:
        reason = bytes(payload[2:]).decode("utf-8")
    except UnicodeDecodeError:
        raise WebSocketError("close reason is not valid UTF-8", 1007) from None
    return code, reason


def mask_toward(to_server: bool) -> bool:
    """RFC 6455 5.1: mask iff the frame travels toward the server."""
    return to_server


def close_frame(code: int | None, reason: str = "", *, mask: bool) -> bytes:
    """A complete Close frame."""
    return build_frame(Opcode.CLOSE, close_payload(code, reason), mask=mask)


def ping_frame(payload: bytes = b"", *, mask: bool) -> bytes:
    """A complete Ping frame (payload at most 125 bytes)."""
    return build_frame(Opcode.PING, payload, mask=mask)


def pong_frame(payload: bytes = b"", *, mask: bool) -> bytes:
    """A complete Pong frame; answer a Ping with its payload (RFC 6455 5.5.3)."""
    return build_frame(Opcode.PONG, payload, mask=mask)
