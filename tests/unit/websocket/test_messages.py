"""MessageReader: whole messages (fragments joined, unmasked) for the probe."""

import pytest
from hypothesis import given, settings, strategies as st

from wsgate.errors import WebSocketError
from wsgate.websocket.frames import ControlFrame, FrameHeader, Opcode, build_frame
from wsgate.websocket.messages import Message, MessageReader


def hx(s: str) -> bytes:
    return bytes.fromhex(s.replace(" ", ""))


def test_rfc_examples():
    reader = MessageReader(client_side=False)
    assert reader.feed(hx("81 05 48 65 6c 6c 6f")) == [Message(Opcode.TEXT, b"Hello")]
    assert reader.feed(hx("01 03 48 65 6c 89 00 80 02 6c 6f")) == [
        ControlFrame(FrameHeader(True, 0, Opcode.PING, False, None, 0, 2), b"", 12, 14),
        Message(Opcode.TEXT, b"Hello"),
    ]
    masked = MessageReader(client_side=True)
    assert masked.feed(hx("81 85 37 fa 21 3d 7f 9f 4d 51 58"))[0].text() == "Hello"


def test_bytewise_and_buffer_is_released():
    stream = (build_frame(Opcode.BINARY, b"a" * 300, mask=True, fin=False)
              + build_frame(Opcode.PING, b"x", mask=True)
              + build_frame(Opcode.CONT, b"b" * 70000, mask=True))
    reader = MessageReader(client_side=True)
    out = []
    for i in range(0, len(stream), 997):
        out += reader.feed(stream[i:i + 997])
    assert [type(e).__name__ for e in out] == ["ControlFrame", "Message"]
    assert out[1] == Message(Opcode.BINARY, b"a" * 300 + b"b" * 70000)
    assert len(reader._buf) == 0


def test_limit_and_invalid_text():
    with pytest.raises(WebSocketError) as info:
        MessageReader(client_side=False, max_message_size=4).feed(hx("82 05") + bytes(5))
    assert info.value.close_code == 1009
    (msg,) = MessageReader(client_side=False).feed(hx("81 01 ff"))
    with pytest.raises(WebSocketError) as info:
        msg.text()
    assert info.value.close_code == 1007


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([Opcode.TEXT, Opcode.BINARY]),
                          st.lists(st.binary(max_size=300), min_size=1, max_size=4)),
                max_size=5),
       st.booleans(), st.integers(1, 64))
def test_messages_survive_any_chunking(messages, masked, step):
    stream = b""
    for opcode, parts in messages:
        for i, part in enumerate(parts):
            stream += build_frame(opcode if i == 0 else Opcode.CONT, part, mask=masked,
                                  fin=i == len(parts) - 1)
    reader = MessageReader(client_side=masked)
    out = []
    for i in range(0, len(stream), step):
        out += reader.feed(stream[i:i + step])
    assert out == [Message(op, b"".join(parts)) for op, parts in messages]
