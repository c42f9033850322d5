"""Cross-checks against the `websockets` library as an independent implementation:
accept keys, masking, frames we build parsed by it, frames it builds parsed by us."""

import os

import pytest
from hypothesis import given, settings, strategies as st
from websockets.frames import Close as WsClose, Frame as WsFrame, Opcode as WsOpcode
from websockets.streams import StreamReader
from websockets.utils import accept_key as ws_accept_key, apply_mask as ws_apply_mask

from wsgate.websocket.control import close_payload, parse_close
from wsgate.websocket.frames import (
    ControlFrame, FrameParser, FrameStarted, MessageDone, Opcode, apply_mask, build_frame,
)
from wsgate.websocket.handshake import accept_key, make_key

DATA_OPS = [Opcode.TEXT, Opcode.BINARY]
CTL_OPS = [Opcode.CLOSE, Opcode.PING, Opcode.PONG]


def ws_parse(data: bytes, *, mask: bool) -> list[WsFrame]:
    """Every frame in `data`, parsed by websockets' sans-IO Frame.parse."""
    reader = StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    frames = []
    while reader.buffer:
        gen = WsFrame.parse(reader.read_exact, mask=mask)
        try:
            next(gen)
        except StopIteration as done:
            frames.append(done.value)
        else:
            raise AssertionError("websockets wanted more data")
    return frames


def test_accept_key_matches_websockets():
    for _ in range(50):
        key = make_key()
        assert accept_key(key) == ws_accept_key(key)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300), st.binary(min_size=4, max_size=4))
def test_apply_mask_matches_websockets(data, mask):
    assert apply_mask(data, mask) == bytes(ws_apply_mask(data, mask))


@pytest.mark.parametrize("mask", [False, True])
@pytest.mark.parametrize("size", [0, 1, 125, 126, 127, 65535, 65536, 70000])
def test_our_frames_parse_in_websockets(mask, size):
    payload = os.urandom(size)
    for opcode in DATA_OPS:
        frame = build_frame(opcode, payload, mask=mask, fin=False)
        (parsed,) = ws_parse(frame, mask=mask)
        assert (int(parsed.opcode), parsed.data, parsed.fin) == (int(opcode), payload, False)


@pytest.mark.parametrize("mask", [False, True])
def test_our_control_frames_parse_in_websockets(mask):
    for opcode in CTL_OPS:
        payload = close_payload(1001, "bye") if opcode == Opcode.CLOSE else b"ping!"
        (parsed,) = ws_parse(build_frame(opcode, payload, mask=mask), mask=mask)
        assert (int(parsed.opcode), parsed.data) == (int(opcode), payload)
    (close,) = ws_parse(build_frame(Opcode.CLOSE, close_payload(4001, "é"), mask=mask), mask=mask)
    parsed_close = WsClose.parse(close.data)
    assert (parsed_close.code, parsed_close.reason) == (4001, "é")


@pytest.mark.parametrize("mask", [False, True])
@pytest.mark.parametrize("size", [0, 5, 125, 126, 65535, 65536, 100_000])
def test_websockets_frames_parse_here(mask, size):
    payload = os.urandom(size)
    stream = b"".join([
        WsFrame(WsOpcode.TEXT, payload, fin=False).serialize(mask=mask),
        WsFrame(WsOpcode.PING, b"hb").serialize(mask=mask),
        WsFrame(WsOpcode.CONT, payload).serialize(mask=mask),
        WsFrame(WsOpcode.CLOSE, WsClose(1000, "done").serialize()).serialize(mask=mask),
    ])
    events = FrameParser(client_side=mask).feed(stream)
    kinds = [type(e).__name__ for e in events]
    assert kinds == ["FrameStarted", "ControlFrame", "FrameStarted", "MessageDone", "ControlFrame"]
    first, ping, second, done, close = events
    assert isinstance(first, FrameStarted) and isinstance(second, FrameStarted)
    # Payload located purely from offsets and header lengths, unmasked here to compare.
    for started in (first, second):
        h = started.header
        at = started.start_offset + h.header_len
        body = stream[at:at + h.length]
        assert (apply_mask(body, h.mask) if h.mask else body) == payload
    assert isinstance(ping, ControlFrame) and ping.payload == b"hb"
    assert done == MessageDone(Opcode.TEXT, 2 * size, second.start_offset + second.header.header_len + size)
    assert isinstance(close, ControlFrame) and parse_close(close.payload) == (1000, "done")
    assert close.end_offset == len(stream)
