"""FrameParser, build_frame, encode_header and apply_mask against literal byte tables
(RFC 6455 5.7 examples and hand-built frames), with exact events and offsets."""

import pytest

from wsgate.errors import WebSocketError
from wsgate.websocket.frames import (
    ControlFrame, FrameError, FrameHeader, FrameParser, FrameStarted, MessageDone, Opcode,
    apply_mask, build_frame, encode_header,
)

MASK = bytes.fromhex("37fa213d")
T, B, C = Opcode.TEXT, Opcode.BINARY, Opcode.CONT


def hx(s: str) -> bytes:
    return bytes.fromhex(s.replace(" ", ""))


def hdr(opcode, length, header_len, *, fin=True, rsv=0, mask=None):
    return FrameHeader(fin, rsv, opcode, mask is not None, mask, length, header_len)


def feed_all(parser: FrameParser, data: bytes):
    return parser.feed(data)


def feed_bytewise(parser: FrameParser, data: bytes):
    events = []
    for i in range(len(data)):
        events += parser.feed(data[i:i + 1])
    return events


# -- RFC 6455 5.7 examples -------------------------------------------------------------

RFC_CASES = [
    # (name, client_side, bytes, events)
    ("unmasked Hello", False, hx("81 05 48 65 6c 6c 6f"),
     [FrameStarted(hdr(T, 5, 2), 0), MessageDone(T, 5, 7)]),
    ("masked Hello", True, hx("81 85 37 fa 21 3d 7f 9f 4d 51 58"),
     [FrameStarted(hdr(T, 5, 6, mask=MASK), 0), MessageDone(T, 5, 11)]),
    ("fragmented Hel + lo", False, hx("01 03 48 65 6c 80 02 6c 6f"),
     [FrameStarted(hdr(T, 3, 2, fin=False), 0), FrameStarted(hdr(C, 2, 2), 5),
      MessageDone(T, 5, 9)]),
    ("unmasked Ping Hello", False, hx("89 05 48 65 6c 6c 6f"),
     [ControlFrame(hdr(Opcode.PING, 5, 2), b"Hello", 0, 7)]),
    ("masked Pong Hello", True, hx("8a 85 37 fa 21 3d 7f 9f 4d 51 58"),
     [ControlFrame(hdr(Opcode.PONG, 5, 6, mask=MASK), b"Hello", 0, 11)]),
    ("256 bytes binary", False, hx("82 7E 0100") + bytes(256),
     [FrameStarted(hdr(B, 256, 4), 0), MessageDone(B, 256, 260)]),
    ("64KiB binary", False, hx("82 7F 0000000000010000") + bytes(65536),
     [FrameStarted(hdr(B, 65536, 10), 0), MessageDone(B, 65536, 65546)]),
]


@pytest.mark.parametrize("feed", [feed_all, feed_bytewise], ids=["whole", "bytewise"])
@pytest.mark.parametrize("name,client_side,data,events", RFC_CASES, ids=[c[0] for c in RFC_CASES])
def test_rfc_examples(feed, name, client_side, data, events):
    parser = FrameParser(client_side=client_side)
    assert feed(parser, data) == events
    assert parser.offset == len(data)
    assert parser.at_boundary and parser.hold_from is None and not parser.in_message


def test_ping_interleaved_in_fragmented_message():
    data = hx("01 03 48 65 6c") + hx("89 00") + hx("80 02 6c 6f")
    assert FrameParser(client_side=False).feed(data) == [
        FrameStarted(hdr(T, 3, 2, fin=False), 0),
        ControlFrame(hdr(Opcode.PING, 0, 2), b"", 5, 7),
        FrameStarted(hdr(C, 2, 2), 7),
        MessageDone(T, 5, 11),
    ]


def test_offsets_are_absolute_across_feeds():
    parser = FrameParser(client_side=False)
    one = hx("81 05 48 65 6c 6c 6f")
    assert parser.feed(one) == [FrameStarted(hdr(T, 5, 2), 0), MessageDone(T, 5, 7)]
    assert parser.feed(one) == [FrameStarted(hdr(T, 5, 2), 7), MessageDone(T, 5, 14)]


def test_empty_frames_and_empty_feed():
    parser = FrameParser(client_side=False)
    assert parser.feed(b"") == []
    assert parser.feed(hx("82 00 02 00 80 00")) == [
        FrameStarted(hdr(B, 0, 2), 0), MessageDone(B, 0, 2),
        FrameStarted(hdr(B, 0, 2, fin=False), 2), FrameStarted(hdr(C, 0, 2), 4),
        MessageDone(B, 0, 6),
    ]


def test_payload_counted_through_without_events():
    parser = FrameParser(client_side=True)
    head = encode_header(B, 100_000, mask=MASK)
    assert parser.feed(head) == [FrameStarted(hdr(B, 100_000, 14, mask=MASK), 0)]
    assert not parser.at_boundary and parser.in_message and parser.hold_from is None
    for _ in range(9):
        assert parser.feed(bytes(10_000)) == []
    assert parser.feed(bytes(9_999)) == []
    assert parser.feed(bytes(1) + head[:3]) == [MessageDone(B, 100_000, 100_014)]
    assert parser.hold_from == 100_014 and not parser.at_boundary


def test_rsv_bits_pass_through():
    # permessage-deflate sets RSV1 on the first frame; the proxy does not judge it.
    data = hx("c1 03 aa bb cc") + hx("f2 00")
    events = FrameParser(client_side=False).feed(data)
    assert [e.header.rsv for e in events if isinstance(e, FrameStarted)] == [4, 7]


def test_memoryview_and_bytearray_input():
    data = hx("81 85 37 fa 21 3d 7f 9f 4d 51 58 89 80") + MASK
    expected = FrameParser(client_side=True).feed(data)
    assert FrameParser(client_side=True).feed(memoryview(data)) == expected
    assert FrameParser(client_side=True).feed(bytearray(data)) == expected
    assert expected[-1] == ControlFrame(hdr(Opcode.PING, 0, 6, mask=MASK), b"", 11, 17)


# -- holding back control frames --------------------------------------------------------


def test_hold_from_covers_a_split_control_frame():
    pong = build_frame(Opcode.PONG, b"proxy-ping-1", mask=True, mask_key=MASK)
    data = build_frame(T, b"hi", mask=True, mask_key=MASK) + pong
    parser = FrameParser(client_side=True)
    first = parser.feed(data[:10])                     # text frame (8 bytes) + 2 of the pong
    assert first == [FrameStarted(hdr(T, 2, 6, mask=MASK), 0), MessageDone(T, 2, 8)]
    assert parser.hold_from == 8
    assert parser.feed(data[10:12]) == [] and parser.hold_from == 8
    last = parser.feed(data[12:])
    assert last == [ControlFrame(hdr(Opcode.PONG, 12, 6, mask=MASK), b"proxy-ping-1", 8, len(data))]
    assert parser.hold_from is None and parser.at_boundary


# -- violations ----------------------------------------------------------------------------

ERROR_CASES = [
    # (name, client_side, bytes, close_code, offset of the bad frame)
    ("unmasked client frame", True, hx("81 05 48 65 6c 6c 6f"), 1002, 0),
    ("masked server frame", False, hx("81 85 37 fa 21 3d 7f 9f 4d 51 58"), 1002, 0),
    ("reserved opcode 3", False, hx("83 00"), 1002, 0),
    ("reserved opcode 0xB", False, hx("8b 00"), 1002, 0),
    ("fragmented ping", False, hx("09 00"), 1002, 0),
    ("control frame of 126", False, hx("88 7e 00 7e") + bytes(126), 1002, 0),
    ("continuation without start", False, hx("80 00"), 1002, 0),
    ("new text inside fragmented", False, hx("01 01 41 81 01 42"), 1002, 3),
    ("64-bit length with MSB set", False, hx("82 7f 8000000000000000"), 1002, 0),
    ("second frame bad", False, hx("81 00 81 80") + MASK, 1002, 2),
]


@pytest.mark.parametrize("feed", [feed_all, feed_bytewise], ids=["whole", "bytewise"])
@pytest.mark.parametrize("name,client_side,data,code,offset", ERROR_CASES,
                         ids=[c[0] for c in ERROR_CASES])
def test_violations(feed, name, client_side, data, code, offset):
    parser = FrameParser(client_side=client_side)
    with pytest.raises(WebSocketError) as info:
        feed(parser, data)
    assert isinstance(info.value, FrameError)
    assert info.value.close_code == code
    assert info.value.offset == offset
    with pytest.raises(FrameError):                    # the parser stays dead
        parser.feed(b"")


def test_error_carries_events_before_it():
    parser = FrameParser(client_side=False)
    with pytest.raises(FrameError) as info:
        parser.feed(hx("81 01 41 83 00"))
    assert info.value.events == [FrameStarted(hdr(T, 1, 2), 0), MessageDone(T, 1, 3)]
    assert info.value.offset == 3 and "reserved opcode 0x3" in info.value.message


def test_violation_detected_from_first_two_bytes():
    # A relay can refuse a bad frame before its extended length or mask arrives.
    with pytest.raises(FrameError, match="unmasked frame from the client"):
        FrameParser(client_side=True).feed(hx("82 7f"))


def test_max_frame_size():
    parser = FrameParser(client_side=False, max_frame_size=10)
    assert len(parser.feed(hx("02 0a") + bytes(10))) == 1
    with pytest.raises(FrameError) as info:
        parser.feed(hx("80 0b"))
    assert info.value.close_code == 1009 and info.value.offset == 12


def test_max_message_size_counts_fragments_before_payload_arrives():
    parser = FrameParser(client_side=False, max_message_size=10)
    assert parser.feed(hx("82 0a") + bytes(10)) == [FrameStarted(hdr(B, 10, 2), 0),
                                                   MessageDone(B, 10, 12)]
    parser.feed(hx("02 06") + bytes(6))
    with pytest.raises(FrameError) as info:
        parser.feed(hx("80 05"))                        # 6 + 5 > 10, no payload yet
    assert info.value.close_code == 1009 and info.value.offset == 20


def test_max_message_size_on_a_single_large_header():
    with pytest.raises(FrameError) as info:
        FrameParser(client_side=True, max_message_size=1 << 20).feed(
            encode_header(B, (1 << 20) + 1, mask=MASK))
    assert info.value.close_code == 1009


def test_control_frames_do_not_count_toward_message_size():
    parser = FrameParser(client_side=False, max_message_size=4)
    events = parser.feed(hx("01 02 41 42 89 7d") + bytes(125) + hx("80 02 43 44"))
    assert events[-1] == MessageDone(T, 4, 135)


@pytest.mark.parametrize("data", [hx("82 7e 00 7d") + bytes(125),
                                  hx("82 7f 000000000000ffff") + bytes(65535)])
def test_non_minimal_length_lenient_by_default_strict_on_request(data):
    length = len(data) - (4 if data[1] == 0x7e else 10)
    assert FrameParser(client_side=False).feed(data)[-1] == MessageDone(B, length, len(data))
    with pytest.raises(FrameError, match="not minimally encoded") as info:
        FrameParser(client_side=False, strict_length=True).feed(data)
    assert info.value.close_code == 1002


# -- building and masking ----------------------------------------------------------------


def test_build_frame_literal_bytes():
    assert build_frame(T, b"Hello", mask=False) == hx("81 05 48 65 6c 6c 6f")
    assert build_frame(T, b"Hello", mask=True, mask_key=MASK) == hx("81 85 37 fa 21 3d 7f 9f 4d 51 58")
    assert build_frame(T, b"Hel", mask=False, fin=False) == hx("01 03 48 65 6c")
    assert build_frame(C, b"lo", mask=False) == hx("80 02 6c 6f")
    assert build_frame(B, bytes(256), mask=False)[:4] == hx("82 7e 01 00")
    assert build_frame(B, bytes(65536), mask=False)[:10] == hx("82 7f 0000000000010000")
    assert build_frame(B, b"x", mask=False, rsv=4) == hx("c2 01 78")


def test_build_frame_uses_fresh_mask_keys():
    frames = {build_frame(B, b"payload", mask=True) for _ in range(20)}
    assert len(frames) > 1
    for frame in frames:
        assert FrameParser(client_side=True).feed(frame)[-1] == MessageDone(B, 7, len(frame))
        assert apply_mask(frame[6:], frame[2:6]) == b"payload"


@pytest.mark.parametrize("kwargs", [dict(opcode=Opcode.PING, payload=bytes(126)),
                                    dict(opcode=Opcode.CLOSE, payload=b"", fin=False),
                                    dict(opcode=3, payload=b""), dict(opcode=16, payload=b""),
                                    dict(opcode=1, payload=b"", rsv=8)])
def test_build_frame_refuses_invalid_frames(kwargs):
    with pytest.raises(ValueError):
        build_frame(mask=False, **kwargs)


def test_apply_mask_offsets_compose():
    payload = bytes(range(256)) * 3
    whole = apply_mask(payload, MASK)
    pieces = b"".join(apply_mask(payload[i:i + 7], MASK, i) for i in range(0, len(payload), 7))
    assert pieces == whole
    assert apply_mask(whole, MASK) == payload
    assert apply_mask(b"", MASK) == b""
    assert apply_mask(hx("7f 9f 4d 51 58"), MASK) == b"Hello"
    assert apply_mask(b"\x00\x00", MASK, 2) == hx("21 3d")


def test_opcode_values():
    assert [int(o) for o in Opcode] == [0, 1, 2, 8, 9, 10]


def test_control_frame_length_judged_after_decoding():
    # 126 in the 7-bit field announcing a 2-byte length of 2: a non-minimal encoding of a
    # legal control frame, accepted unless strict; its real length is what must be <= 125.
    data = hx("88 7e 00 02 03 e8")
    assert FrameParser(client_side=False).feed(data) == [
        ControlFrame(hdr(Opcode.CLOSE, 2, 4), b"\x03\xe8", 0, 6)]
    with pytest.raises(FrameError, match="not minimally encoded"):
        FrameParser(client_side=False, strict_length=True).feed(data)
