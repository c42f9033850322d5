"""The frame-aware tunnel against fake transports and a fake clock: exact bytes out
for bytes in, at any split, with injected Pings and Closes at frame boundaries,
swallowed Pongs, limits, violations and the polite close."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wsgate.proxy.timers import Ticker
from wsgate.proxy.tunnel import TunnelStats, TunnelTimeouts, open_tunnel
from wsgate.proxy.wstunnel import WsOptions, WsTunnel, WsTunnelStats
from wsgate.websocket.control import close_frame, parse_close
from wsgate.websocket.frames import (ControlFrame, FrameParser, MessageDone, Opcode,
                                     build_frame, encode_header)

NO_TIMEOUTS = TunnelTimeouts(read=None, client_send=None, upstream_send=None)


class FakeLoop:
    def __init__(self) -> None:
        self.now = 100.0

    def time(self) -> float:
        return self.now

    def call_later(self, delay: float, callback: Any) -> Any:
        return _Handle()


class _Handle:
    def cancel(self) -> None:
        pass


class FakeTransport:
    def __init__(self, name: str) -> None:
        self.name = name
        self.out = bytearray()
        self.writes: list[bytes] = []
        self.protocol: Any = None
        self.state = "open"
        self.eof_sent = False
        self.buffered = 0  # what get_write_buffer_size() reports; tests set it

    def write(self, data: bytes) -> None:
        assert self.state == "open" and not self.eof_sent, f"write to {self.state} {self.name}"
        self.out += data
        self.writes.append(bytes(data))

    def set_protocol(self, protocol: Any) -> None:
        self.protocol = protocol

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def set_write_buffer_limits(self, high: int, low: int) -> None:
        pass

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return 16384, 65536

    def get_write_buffer_size(self) -> int:
        return self.buffered

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        self.eof_sent = True

    def close(self) -> None:
        if self.state == "open":
            self.state = "closed"

    def abort(self) -> None:
        self.state = "aborted"

    def lose(self, exc: Exception | None = None) -> None:
        self.protocol.connection_lost(exc)


def make(options: WsOptions, **kw: Any) -> tuple[WsTunnel, FakeTransport, FakeTransport,
                                                  FakeLoop, list[TunnelStats]]:
    loop = FakeLoop()
    client, upstream = FakeTransport("client"), FakeTransport("upstream")
    ended: list[TunnelStats] = []
    tunnel = open_tunnel(client, upstream, on_end=ended.append,  # type: ignore[arg-type]
                         ticker=Ticker(loop), timeouts=kw.pop("timeouts", NO_TIMEOUTS),  # type: ignore[arg-type]
                         ws=options, **kw)
    assert isinstance(tunnel, WsTunnel)
    return tunnel, client, upstream, loop, ended


def client_msg(payload: bytes, opcode: int = Opcode.BINARY, fin: bool = True,
               rsv: int = 0) -> bytes:
    return build_frame(opcode, payload, mask=True, fin=fin, rsv=rsv)


def server_msg(payload: bytes, opcode: int = Opcode.BINARY, fin: bool = True,
               rsv: int = 0) -> bytes:
    return build_frame(opcode, payload, mask=False, fin=fin, rsv=rsv)


def feed_split(transport: FakeTransport, data: bytes, cuts: list[int]) -> None:
    pos = 0
    for cut in sorted(set(c % (len(data) + 1) for c in cuts)) + [len(data)]:
        if cut > pos:
            transport.protocol.data_received(data[pos:cut])
            pos = cut


def valid_stream(draw: Any, client_side: bool) -> bytes:
    parts = []
    for _ in range(draw(st.integers(0, 6))):
        kind = draw(st.sampled_from(["msg", "frag", "ping", "pong"]))
        payload = draw(st.binary(max_size=300))
        build = client_msg if client_side else server_msg
        if kind == "msg":
            parts.append(build(payload, rsv=draw(st.sampled_from([0, 4]))))
        elif kind == "frag":
            parts.append(build(payload[:10], Opcode.TEXT, fin=False, rsv=4))
            parts.append(build_frame(Opcode.PING, b"in-between", mask=client_side))
            parts.append(build(payload[10:], Opcode.CONT, fin=True))
        else:
            op = Opcode.PING if kind == "ping" else Opcode.PONG
            parts.append(build_frame(op, b"app" + payload[:122], mask=client_side))
    return b"".join(parts)


# -- relay integrity -------------------------------------------------------------

@settings(max_examples=150, deadline=None)
@given(st.data())
def test_any_split_of_a_valid_stream_arrives_identical(data: Any) -> None:
    up_stream = valid_stream(data.draw, client_side=True)
    down_stream = valid_stream(data.draw, client_side=False)
    cuts_up = data.draw(st.lists(st.integers(0, 5000), max_size=20))
    cuts_down = data.draw(st.lists(st.integers(0, 5000), max_size=20))
    _, client, upstream, _, _ = make(WsOptions(ping_interval=1.0))
    feed_split(client, up_stream, cuts_up)
    feed_split(upstream, down_stream, cuts_down)
    assert bytes(upstream.out) == up_stream
    assert bytes(client.out) == down_stream


def proxy_pings(data: bytes, client_side: bool) -> tuple[bytes, list[ControlFrame]]:
    """`data` without the proxy's own Pings (payload b"wsg" + 5 bytes), and those Pings.
    The stream must end at a frame boundary."""
    parser = FrameParser(client_side=client_side)
    pings = [e for e in parser.feed(data) if isinstance(e, ControlFrame)
             and e.header.opcode == Opcode.PING and e.payload.startswith(b"wsg")]
    assert parser.at_boundary
    for ping in reversed(pings):
        data = data[:ping.start_offset] + data[ping.end_offset:]
    return data, pings


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_pings_injected_mid_stream_land_on_boundaries_and_pongs_vanish(data: Any) -> None:
    """Toward the client: the upstream's stream with the proxy's Pings inserted only
    between frames; from the client: its Pong answers removed, all else identical."""
    down_stream = valid_stream(data.draw, client_side=False)
    cuts = sorted(set(data.draw(st.lists(st.integers(0, len(down_stream)), max_size=8))))
    tunnel, client, upstream, loop, _ = make(WsOptions(ping_interval=1.0, ping_timeout=100))
    pos = 0
    for cut in cuts + [len(down_stream)]:
        upstream.protocol.data_received(down_stream[pos:cut])
        pos = cut
        loop.now += 1.1
        tunnel.tick(loop.now)  # the client is silent: a Ping goes toward it when possible
    stripped, pings = proxy_pings(bytes(client.out), client_side=False)
    assert stripped == down_stream
    assert len(pings) == 1  # one outstanding at a time
    # The client answers inside a stream of its own, split byte by byte.
    answer = build_frame(Opcode.PONG, pings[0].payload, mask=True)
    app_pong = build_frame(Opcode.PONG, b"app", mask=True)
    hello, bye = client_msg(b"hello"), client_msg(b"bye")
    own = hello + answer + app_pong + bye
    for i in range(len(own)):
        client.protocol.data_received(own[i:i + 1])
    forwarded, _ = proxy_pings(bytes(upstream.out), client_side=True)
    assert forwarded == hello + app_pong + bye
    assert tunnel.client.expect is None


def test_rsv_bits_and_masks_pass_untouched() -> None:
    _, client, upstream, _, _ = make(WsOptions(max_frame_size=1000))
    frame = build_frame(Opcode.TEXT, b"compressed?", mask=True, rsv=4,
                        mask_key=b"\x01\x02\x03\x04")
    client.protocol.data_received(frame)
    assert bytes(upstream.out) == frame


def test_hot_path_forwards_the_chunk_object_itself() -> None:
    _, client, upstream, _, _ = make(WsOptions())
    chunk = client_msg(b"x" * 64) * 3
    client.protocol.data_received(chunk)
    assert upstream.writes == [chunk]


def test_pending_bytes_are_parsed_and_relayed_first() -> None:
    _, client, upstream, _, _ = make(WsOptions(), client_pending=client_msg(b"early"),
                                     upstream_pending=server_msg(b"after-101")[:3])
    upstream.protocol.data_received(server_msg(b"after-101")[3:])
    assert FrameParser(client_side=True).feed(bytes(upstream.out))[-1] == MessageDone(
        Opcode.BINARY, 5, len(upstream.out))
    assert bytes(client.out) == server_msg(b"after-101")


# -- pings ---------------------------------------------------------------------------

def test_ping_goes_only_toward_a_silent_side_masked_toward_the_upstream() -> None:
    tunnel, client, upstream, loop, _ = make(WsOptions(ping_interval=10, ping_timeout=5))
    loop.now += 6
    client.protocol.data_received(client_msg(b"hi"))
    tunnel.tick(loop.now)  # both sides start counting
    loop.now += 10
    tunnel.tick(loop.now)
    [ping_up] = [e for e in FrameParser(client_side=True).feed(bytes(upstream.out))
                 if isinstance(e, ControlFrame)]
    [ping_down] = [e for e in FrameParser(client_side=False).feed(bytes(client.out))]
    assert isinstance(ping_down, ControlFrame)
    assert ping_up.header.masked and not ping_down.header.masked
    assert ping_up.payload[:3] == ping_down.payload[:3] == b"wsg"
    assert len(ping_up.payload) == 8 and ping_up.payload != ping_down.payload


def test_unanswered_ping_closes_the_other_side_with_1001() -> None:
    tunnel, client, upstream, loop, ended = make(WsOptions(ping_interval=10, ping_timeout=5))
    loop.now += 10
    tunnel.tick(loop.now)
    ping_up = [e for e in FrameParser(client_side=True).feed(bytes(upstream.out))][0]
    assert isinstance(ping_up, ControlFrame)
    upstream.protocol.data_received(build_frame(Opcode.PONG, ping_up.payload, mask=False))
    loop.now += 5
    tunnel.tick(loop.now)
    assert client.state == "aborted"  # the client never answered: dead
    assert upstream.state == "open"
    events = FrameParser(client_side=True).feed(bytes(upstream.out))
    close = events[-1]
    assert isinstance(close, ControlFrame) and close.header.opcode == Opcode.CLOSE
    assert parse_close(close.payload) == (1001, "going away")
    # the upstream's Pong answered our Ping: it never reached the client
    assert not any(isinstance(e, ControlFrame) and e.header.opcode == Opcode.PONG
                   for e in FrameParser(client_side=False).feed(bytes(client.out)))
    upstream.protocol.data_received(build_frame(Opcode.CLOSE, close.payload, mask=False))
    assert upstream.state == "closed"
    client.lose()
    upstream.lose()
    [stats] = ended
    assert isinstance(stats, WsTunnelStats)
    assert (stats.how, stats.closed_by) == ("ping_timeout", "proxy")
    assert (stats.ws_close_code, stats.ws_close_reason, stats.ws_closed_by) == (
        1001, "ping timeout", "proxy")


# -- limits and violations -------------------------------------------------------------

def closes(data: bytes, client_side: bool) -> list[tuple[int | None, str]]:
    return [parse_close(e.payload) for e in FrameParser(client_side=client_side).feed(data)
            if isinstance(e, ControlFrame) and e.header.opcode == Opcode.CLOSE]


@pytest.mark.parametrize("sender", ["client", "upstream"])
def test_message_over_the_limit_gets_1009_and_the_other_side_1001(sender: str) -> None:
    opts = WsOptions(max_message_client=100, max_message_upstream=100)
    tunnel, client, upstream, loop, ended = make(opts)
    src, dst = (client, upstream) if sender == "client" else (upstream, client)
    build = client_msg if sender == "client" else server_msg
    ok = build(b"a" * 50, Opcode.TEXT, fin=False)
    big = build(b"b" * 51, Opcode.CONT)
    src.protocol.data_received(ok + big + build(b"never"))
    assert bytes(dst.out).startswith(ok)
    assert closes(bytes(dst.out)[len(ok):], client_side=dst is upstream) == [(1001, "going away")]
    [(code, _)] = closes(bytes(src.out), client_side=src is upstream)
    assert code == 1009
    assert src.eof_sent  # its reply cannot be parsed: FIN after the Close
    dst.protocol.data_received(build_frame(Opcode.CLOSE, (1001).to_bytes(2, "big"),
                                           mask=dst is client))
    assert dst.state == "closed"
    src.protocol.eof_received()
    assert src.state == "closed"
    src.lose()
    dst.lose()
    assert isinstance(ended[0], WsTunnelStats)
    assert (ended[0].how, ended[0].ws_close_code) == ("too_big", 1009)


@pytest.mark.parametrize("bad, code", [
    (build_frame(Opcode.TEXT, b"unmasked", mask=False), 1002),
    (encode_header(3, 0, mask=b"abcd"), 1002),
    (encode_header(Opcode.PING, 0, fin=False, mask=b"abcd"), 1002),
    (bytes([0x82, 0xFF]) + (1 << 63).to_bytes(8, "big") + b"abcd", 1002),
    (build_frame(Opcode.CLOSE, (999).to_bytes(2, "big"), mask=True), 1002),
    (build_frame(Opcode.CLOSE, b"\x03\xe8\xff\xfe", mask=True), 1007),
    (b"GET / HTTP/1.1\r\n\r\n", 1002),
])
def test_client_violation_closes_it_with_its_code(bad: bytes, code: int) -> None:
    tunnel, client, upstream, loop, ended = make(WsOptions())
    good = client_msg(b"fine")
    client.protocol.data_received(good + bad)
    assert bytes(upstream.out).startswith(good)
    assert closes(bytes(upstream.out)[len(good):], client_side=True) == [(1001, "going away")]
    assert [c for c, _ in closes(bytes(client.out), client_side=False)] == [code]
    client.protocol.data_received(b"anything at all")  # no longer parsed, dropped
    assert closes(bytes(upstream.out)[len(good):], client_side=True) == [(1001, "going away")]
    loop.now += 10
    tunnel.tick(loop.now)  # close_timeout: whatever remains is aborted
    assert client.state == upstream.state == "aborted"


def test_close_toward_a_side_waits_for_its_stream_boundary() -> None:
    tunnel, client, upstream, _, _ = make(WsOptions(max_message_client=10))
    big = server_msg(b"z" * 1000)
    upstream.protocol.data_received(big[:500])  # the client is mid-frame
    client.protocol.data_received(client_msg(b"x" * 11))
    assert bytes(client.out) == big[:500]
    upstream.protocol.data_received(big[500:] + server_msg(b"dropped after close"))
    assert bytes(client.out).startswith(big)
    assert [c for c, _ in closes(bytes(client.out)[len(big):], client_side=False)] == [1009]
    assert len(closes(bytes(client.out), client_side=False)) == 1


# -- polite close and stats --------------------------------------------------------------

def test_polite_close_makes_a_clean_handshake_each_side() -> None:
    tunnel, client, upstream, loop, ended = make(WsOptions())
    for _ in range(3):
        client.protocol.data_received(client_msg(b"12345"))
    upstream.protocol.data_received(server_msg(b"abcdefgh", Opcode.TEXT))
    tunnel.close_politely(1001, "bye now")
    assert closes(bytes(client.out), client_side=False) == [(1001, "bye now")]
    assert closes(bytes(upstream.out), client_side=True) == [(1001, "bye now")]
    client.protocol.data_received(client_msg(b"late") + build_frame(
        Opcode.CLOSE, b"\x03\xe9", mask=True))
    assert client.state == "closed" and upstream.state == "open"
    upstream.protocol.data_received(build_frame(Opcode.CLOSE, b"\x03\xe9", mask=False))
    assert upstream.state == "closed"
    assert len(closes(bytes(client.out), client_side=False)) == 1  # replies swallowed
    assert len(closes(bytes(upstream.out), client_side=True)) == 1
    loop.now += 3
    client.lose()
    upstream.lose()
    [stats] = ended
    assert isinstance(stats, WsTunnelStats)
    assert stats.session_vars() == {
        "ws_messages_in": 3, "ws_messages_out": 1, "ws_bytes_in": 15, "ws_bytes_out": 8,
        "ws_close_code": 1001, "ws_close_reason": "bye now", "ws_closed_by": "proxy",
        "ws_duration": 3.0}


def test_peer_close_handshake_is_relayed_and_recorded() -> None:
    tunnel, client, upstream, loop, ended = make(WsOptions())
    client_close = close_frame(1000, "done", mask=True)
    server_close = close_frame(1000, "done", mask=False)
    client.protocol.data_received(client_close)
    upstream.protocol.data_received(server_close)
    assert bytes(upstream.out) == client_close and bytes(client.out) == server_close
    upstream.protocol.eof_received()
    client.protocol.eof_received()
    client.lose()
    upstream.lose()
    stats = ended[0]
    assert isinstance(stats, WsTunnelStats)
    assert (stats.ws_close_code, stats.ws_close_reason, stats.ws_closed_by) == (
        1000, "done", "client")


def test_tunnel_without_close_reports_1006() -> None:
    _, client, upstream, _, ended = make(WsOptions())
    client.lose(ConnectionResetError("reset"))
    upstream.lose()
    stats = ended[0]
    assert isinstance(stats, WsTunnelStats)
    assert (stats.ws_close_code, stats.ws_close_reason, stats.ws_closed_by) == (
        1006, "reset", "client")


def test_from_location_selects_the_frame_aware_tunnel_only_when_needed() -> None:
    class Loc:
        websocket = False
        websocket_ping_interval = 0.0
        websocket_ping_timeout = 30.0
        websocket_max_message_size = (0, "both")
        websocket_max_frame_size = 0
        websocket_close_timeout = 5.0

    assert WsOptions.from_location(Loc()) is None
    loc = Loc()
    loc.websocket_max_message_size = (1024, "client")  # type: ignore[assignment]
    opts = WsOptions.from_location(loc)
    assert opts is not None
    assert (opts.max_message_client, opts.max_message_upstream) == (1024, None)
    loc2 = Loc()
    loc2.websocket_ping_interval = 20.0  # type: ignore[assignment]
    assert WsOptions.from_location(loc2) == WsOptions(ping_interval=20.0)
    assert WsOptions.from_location(Loc(), session_vars=True) == WsOptions()


def test_a_bad_header_split_across_reads_was_never_half_forwarded() -> None:
    _, client, upstream, _, _ = make(WsOptions())
    good = client_msg(b"ok")
    bad = build_frame(Opcode.BINARY, b"unmasked", mask=False)
    client.protocol.data_received(good + bad[:1])
    assert bytes(upstream.out) == good  # the first header byte waits for the second
    client.protocol.data_received(bad[1:])
    assert closes(bytes(upstream.out)[len(good):], client_side=True) == [(1001, "going away")]


def test_send_timeout_still_fires_while_pings_are_injected() -> None:
    """Injected Pings add to the stuck buffer; they are not progress."""
    tunnel, client, upstream, loop, ended = make(
        WsOptions(ping_interval=1, ping_timeout=None),
        timeouts=TunnelTimeouts(read=None, client_send=5, upstream_send=None))
    upstream.protocol.data_received(server_msg(b"x" * 5000))
    client.buffered = 5000
    start = loop.now
    for _ in range(30):
        loop.now += 0.5
        client.buffered = len(client.out)  # nothing ever leaves the buffer
        upstream.protocol.data_received(build_frame(Opcode.PONG, b"app", mask=False))
        tunnel.tick(loop.now)
        if client.state == "aborted":
            break
    assert client.state == "aborted" and 5 <= loop.now - start <= 6.5
    client.lose()
    upstream.lose()
    assert ended[0].how == "send_timeout"


def test_byte_tunnel_has_the_same_close_api() -> None:
    loop = FakeLoop()
    client, upstream = FakeTransport("client"), FakeTransport("upstream")
    tunnel = open_tunnel(client, upstream, ticker=Ticker(loop))  # type: ignore[arg-type]
    assert not isinstance(tunnel, WsTunnel)
    tunnel.close_politely()
    assert client.state == upstream.state == "closed" and client.out == bytearray()
