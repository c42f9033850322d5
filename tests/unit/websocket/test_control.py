"""Close payloads (RFC 6455 5.5.1, 7.4) and the Close/Ping/Pong frame builders."""

import pytest

from wsgate.errors import WebSocketError
from wsgate.websocket.control import (
    CLOSE_CODES, MAX_CLOSE_REASON, close_frame, close_payload, is_valid_close_code,
    mask_toward, parse_close, ping_frame, pong_frame,
)
from wsgate.websocket.frames import ControlFrame, FrameParser, Opcode


@pytest.mark.parametrize("code", [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011,
                                  1012, 1013, 1014, 3000, 3999, 4000, 4999])
def test_valid_close_codes(code):
    assert is_valid_close_code(code)
    assert parse_close(code.to_bytes(2, "big")) == (code, "")


@pytest.mark.parametrize("code", [0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999,
                                  5000, 65535])
def test_invalid_close_codes(code):
    assert not is_valid_close_code(code)
    with pytest.raises(WebSocketError) as info:
        parse_close(code.to_bytes(2, "big"))
    assert info.value.close_code == 1002
    with pytest.raises(ValueError):
        close_payload(code)


def test_close_codes_table_has_names():
    assert CLOSE_CODES[1001] == "going away" and 1005 not in CLOSE_CODES


def test_parse_close_literal_payloads():
    assert parse_close(b"") == (None, "")
    assert parse_close(b"\x03\xe8") == (1000, "")
    assert parse_close(b"\x03\xe9bye") == (1001, "bye")
    assert parse_close(b"\x0f\xa0" + "é✓".encode()) == (4000, "é✓")


def test_parse_close_one_byte_is_protocol_error():
    with pytest.raises(WebSocketError) as info:
        parse_close(b"\x03")
    assert info.value.close_code == 1002


def test_parse_close_too_long_is_protocol_error():
    with pytest.raises(WebSocketError) as info:
        parse_close(b"\x03\xe8" + b"x" * 124)
    assert info.value.close_code == 1002


@pytest.mark.parametrize("reason", [b"\xff", b"\xc3", b"\xed\xa0\x80", b"ok\xc0\xaf"])
def test_parse_close_invalid_utf8_is_1007(reason):
    with pytest.raises(WebSocketError) as info:
        parse_close(b"\x03\xe8" + reason)
    assert info.value.close_code == 1007


def test_close_payload_round_trip_and_no_code():
    assert close_payload(None) == b""
    assert close_payload(1001, "shutting down") == b"\x03\xe9shutting down"
    with pytest.raises(ValueError):
        close_payload(None, "reason without code")


def test_close_payload_truncates_reason_on_a_character_boundary():
    payload = close_payload(1000, "€" * 60)          # 180 bytes of UTF-8
    assert len(payload) <= 125
    code, reason = parse_close(payload)
    assert code == 1000 and reason == "€" * 41 and len(reason.encode()) <= MAX_CLOSE_REASON


def test_control_frame_builders_masking_direction():
    assert close_frame(1000, mask=False) == b"\x88\x02\x03\xe8"
    assert ping_frame(b"p", mask=False) == b"\x89\x01p"
    assert pong_frame(mask=False) == b"\x8a\x00"
    frame = ping_frame(b"abc", mask=mask_toward(to_server=True))
    (event,) = FrameParser(client_side=True).feed(frame)
    assert isinstance(event, ControlFrame)
    assert event.header.opcode is Opcode.PING and event.payload == b"abc"
    assert mask_toward(to_server=False) is False


def test_close_frame_parses_back():
    frame = close_frame(4321, "app says bye", mask=True)
    (event,) = FrameParser(client_side=True).feed(frame)
    assert parse_close(event.payload) == (4321, "app says bye")
