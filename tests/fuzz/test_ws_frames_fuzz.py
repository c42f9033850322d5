"""Property tests for FrameParser.

Invariants:
- any stream of valid frames (fragmented messages, interleaved control frames, masked
  or not, RSV bits, any length encoding) yields exactly the events computed from the
  frames that built it, however the stream is split into chunks;
- arbitrary bytes, and valid streams with a byte corrupted, yield events or a
  WebSocketError (FrameError), never another exception, and the same outcome however
  they are split.
"""

from dataclasses import dataclass

from hypothesis import HealthCheck, given, settings, strategies as st

from wsgate.errors import WebSocketError
from wsgate.websocket.frames import (
    ControlFrame, FrameError, FrameHeader, FrameParser, FrameStarted, MessageDone, Opcode,
)

SETTINGS = settings(max_examples=300, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@dataclass
class Spec:
    opcode: int
    fin: bool
    rsv: int
    payload: bytes
    mask: bytes | None
    wide: int          # 0 minimal length encoding, 2 or 8 force that many length bytes


def encode(spec: Spec) -> bytes:
    """Independent encoder (does not use wsgate's): header + payload, masked by a loop."""
    n = len(spec.payload)
    width = spec.wide or (0 if n < 126 else 2 if n < 65536 else 8)
    b0 = (0x80 if spec.fin else 0) | (spec.rsv << 4) | spec.opcode
    mbit = 0x80 if spec.mask else 0
    if width == 0:
        head = bytes([b0, mbit | n])
    else:
        head = bytes([b0, mbit | (126 if width == 2 else 127)]) + n.to_bytes(width, "big")
    if spec.mask is None:
        return head + spec.payload
    if not spec.payload.strip(b"\0"):      # data payloads are zeros: XOR is the key itself
        body = (spec.mask * (n // 4 + 1))[:n]
    else:
        body = bytes(b ^ spec.mask[i % 4] for i, b in enumerate(spec.payload))
    return head + spec.mask + body


def expected_events(specs: list[Spec]) -> list:
    """The events the stream built from `specs` must produce, from first principles."""
    events, offset, msg_op, msg_size = [], 0, None, 0
    for spec in specs:
        raw = encode(spec)
        hlen = len(raw) - len(spec.payload)
        header = FrameHeader(spec.fin, spec.rsv, Opcode(spec.opcode), spec.mask is not None,
                             spec.mask, len(spec.payload), hlen)
        if spec.opcode >= 8:
            events.append(ControlFrame(header, spec.payload, offset, offset + len(raw)))
        else:
            events.append(FrameStarted(header, offset))
            if spec.opcode != 0:
                msg_op, msg_size = Opcode(spec.opcode), 0
            msg_size += len(spec.payload)
            if spec.fin:
                events.append(MessageDone(msg_op, msg_size, offset + len(raw)))
        offset += len(raw)
    return events


sizes = st.one_of(st.integers(0, 20), st.sampled_from([124, 125, 126, 127, 200, 65535, 65536]))


@st.composite
def frame_streams(draw, masked: bool) -> list[Spec]:
    def frame(opcode: int, fin: bool, payload: bytes) -> Spec:
        wide = draw(st.sampled_from([0, 0, 0, 2, 8])) if len(payload) < 65536 else 0
        mask = draw(st.binary(min_size=4, max_size=4)) if masked else None
        return Spec(opcode, fin, draw(st.integers(0, 7)), payload, mask, wide)

    def maybe_control() -> list[Spec]:
        if not draw(st.integers(0, 3)) == 0:
            return []
        op = draw(st.sampled_from([8, 9, 10]))
        return [frame(op, True, draw(st.binary(max_size=125)))]

    specs: list[Spec] = []
    for _ in range(draw(st.integers(0, 6))):
        first = draw(st.sampled_from([1, 2]))
        parts = draw(st.lists(sizes, min_size=1, max_size=4))
        for i, size in enumerate(parts):
            specs += maybe_control()
            specs.append(frame(first if i == 0 else 0, i == len(parts) - 1, bytes(size)))
    specs += maybe_control()
    return specs


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    bounds = [0] + points + [len(data)]
    return [data[a:b] for a, b in zip(bounds, bounds[1:])]


def run(data_chunks: list[bytes], **kwargs):
    """(events, error) from feeding the chunks in order; error as a comparable tuple."""
    parser = FrameParser(**kwargs)
    events: list = []
    for chunk in data_chunks:
        try:
            events += parser.feed(chunk)
        except FrameError as err:
            return events + err.events, (err.close_code, err.offset, err.message)
    return events, None


@SETTINGS
@given(st.booleans().flatmap(lambda m: st.tuples(st.just(m), frame_streams(m))),
       st.lists(st.integers(0, 1 << 20), max_size=12))
def test_valid_streams_yield_expected_events_however_split(case, cuts):
    masked, specs = case
    stream = b"".join(encode(s) for s in specs)
    want = expected_events(specs)
    assert run([stream], client_side=masked) == (want, None)
    assert run(split(stream, cuts), client_side=masked) == (want, None)


@settings(max_examples=60, deadline=None)
@given(st.booleans().flatmap(lambda m: st.tuples(st.just(m), frame_streams(m))))
def test_valid_streams_bytewise(case):
    masked, specs = case
    stream = b"".join(encode(s) for s in specs)
    if len(stream) > 5000:
        stream = stream[:5000]        # bound the work; a truncated stream is still valid input
        want = run([stream], client_side=masked)
    else:
        want = (expected_events(specs), None)
    assert run([stream[i:i + 1] for i in range(len(stream))], client_side=masked) == want


def _assert_same_outcome(data: bytes, cuts: list[int], **kwargs) -> None:
    try:
        whole = run([data], **kwargs)
        pieces = run(split(data, cuts), **kwargs)
    except WebSocketError as err:       # pragma: no cover - would be a bug in run()
        raise AssertionError(f"unwrapped WebSocketError {err!r}")
    assert whole == pieces


@SETTINGS
@given(st.binary(max_size=400), st.lists(st.integers(0, 1 << 16), max_size=10),
       st.booleans(), st.booleans(), st.sampled_from([None, 0, 10, 1000]))
def test_arbitrary_bytes_events_or_websocket_error(data, cuts, client_side, strict, limit):
    _assert_same_outcome(data, cuts, client_side=client_side, strict_length=strict,
                         max_frame_size=limit, max_message_size=limit)


@SETTINGS
@given(st.booleans().flatmap(lambda m: st.tuples(st.just(m), frame_streams(m))),
       st.integers(0, 1 << 20), st.integers(0, 255), st.lists(st.integers(0, 1 << 20), max_size=8))
def test_corrupted_streams_events_or_websocket_error(case, where, byte, cuts):
    masked, specs = case
    stream = bytearray(b"".join(encode(s) for s in specs))
    if stream:
        stream[where % len(stream)] = byte
    _assert_same_outcome(bytes(stream), cuts, client_side=masked)
