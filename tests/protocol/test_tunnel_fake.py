"""The tunnel against fake transports and a fake clock: ordering, back-pressure,
EOF mapping and timeouts, with time as an input (no sleeping)."""

from __future__ import annotations

from typing import Any

import pytest

from wsgate.proxy.timers import Ticker
from wsgate.proxy.tunnel import Tunnel, TunnelStats, TunnelTimeouts, open_tunnel


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
    def __init__(self, name: str, high: int = 65536) -> None:
        self.name = name
        self.log: list[Any] = []
        self.protocol: Any = None
        self.buffered = 0  # what get_write_buffer_size() reports; tests set it
        self.high = high
        self.reading = True
        self.state = "open"

    def write(self, data: bytes) -> None:
        self.log.append(data)

    def set_protocol(self, protocol: Any) -> None:
        self.protocol = protocol

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def set_write_buffer_limits(self, high: int, low: int) -> None:
        self.high = high

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self.high // 4, self.high

    def get_write_buffer_size(self) -> int:
        return self.buffered

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        self.log.append("EOF")

    def close(self) -> None:
        self.state = "closed"
        self.log.append("CLOSE")

    def abort(self) -> None:
        self.state = "aborted"
        self.log.append("ABORT")

    def lose(self, exc: Exception | None = None) -> None:
        self.protocol.connection_lost(exc)


def make(**options: Any) -> tuple[Tunnel, FakeTransport, FakeTransport, FakeLoop,
                                  list[TunnelStats]]:
    loop = FakeLoop()
    client, upstream = FakeTransport("client"), FakeTransport("upstream")
    ended: list[TunnelStats] = []
    pending = {k: options.pop(k) for k in ("client_pending", "upstream_pending")
               if k in options}
    if "pre" in options:
        options.pop("pre")(client, upstream)
    tunnel = open_tunnel(client, upstream, on_end=ended.append,  # type: ignore[arg-type]
                         ticker=Ticker(loop), **pending, **options)  # type: ignore[arg-type]
    return tunnel, client, upstream, loop, ended


def test_pending_bytes_are_written_before_relayed_ones() -> None:
    _, client, upstream, _, _ = make(client_pending=b"pipelined",
                                     upstream_pending=b"after-101")
    client.protocol.data_received(b"next")
    upstream.protocol.data_received(b"more")
    assert upstream.log == [b"pipelined", b"next"]
    assert client.log == [b"after-101", b"more"]


def test_peer_watermarks_pause_and_resume_the_source() -> None:
    _, client, upstream, _, _ = make()
    upstream.protocol.pause_writing()  # upstream's buffer is full
    assert client.reading is False and upstream.reading is True
    upstream.protocol.resume_writing()
    assert client.reading is True


def test_a_transport_already_over_its_mark_pauses_its_source_at_start() -> None:
    def over(client: FakeTransport, upstream: FakeTransport) -> None:
        client.buffered = client.high + 1

    _, client, upstream, _, _ = make(pre=over)
    assert upstream.reading is False and client.reading is True


@pytest.mark.parametrize("half_close, expected", [
    (True, ["EOF"]), (False, ["CLOSE"])])
def test_client_eof_is_relayed_per_half_close_mode(half_close: bool,
                                                     expected: list[str]) -> None:
    _, client, upstream, _, _ = make(half_close=half_close)
    assert client.protocol.eof_received() is True
    assert upstream.log == expected


def test_second_eof_closes_both_and_stats_follow_the_last_loss() -> None:
    _, client, upstream, loop, ended = make(client_pending=b"abc")
    client.protocol.data_received(b"12345")
    upstream.protocol.data_received(b"xy")
    upstream.protocol.eof_received()
    client.protocol.eof_received()
    assert client.state == upstream.state == "closed"
    loop.now += 2.5
    client.lose()
    assert ended == []
    upstream.lose()
    [stats] = ended
    assert (stats.bytes_up, stats.bytes_down) == (8, 2)
    assert (stats.closed_by, stats.how, stats.duration) == ("upstream", "eof", 2.5)


def test_reset_aborts_the_other_side() -> None:
    _, client, upstream, _, ended = make()
    upstream.lose(ConnectionResetError(104, "Connection reset by peer"))
    assert client.state == "aborted"
    client.lose()
    assert (ended[0].closed_by, ended[0].how) == ("upstream", "reset")
    assert "ConnectionResetError" in (ended[0].error or "")


def test_read_timeout_counts_traffic_in_either_direction() -> None:
    tunnel, client, upstream, loop, _ = make(timeouts=TunnelTimeouts(read=10))
    for _ in range(5):  # client-only traffic every 4 s keeps it open (as nginx)
        loop.now += 4
        client.protocol.data_received(b"p")
        tunnel.tick(loop.now)
    assert client.state == "open"
    loop.now += 9.9
    tunnel.tick(loop.now)
    assert client.state == "open"
    loop.now += 0.2
    tunnel.tick(loop.now)
    assert client.state == upstream.state == "aborted"


def test_read_timeout_is_suspended_while_a_write_is_buffered() -> None:
    tunnel, client, upstream, loop, _ = make(
        timeouts=TunnelTimeouts(read=10, client_send=None))
    client.buffered = 1000  # stuck forever, but send_timeout is off
    for _ in range(10):
        loop.now += 5
        tunnel.tick(loop.now)
    assert client.state == "open"


def test_send_timeout_needs_no_progress_not_just_a_full_buffer() -> None:
    tunnel, client, upstream, loop, ended = make(
        timeouts=TunnelTimeouts(read=None, client_send=10))
    upstream.protocol.data_received(b"x" * 5000)
    client.buffered = 5000
    tunnel.tick(loop.now)
    for _ in range(4):  # draining slowly: progress each tick
        loop.now += 5
        client.buffered -= 1000
        tunnel.tick(loop.now)
    assert client.state == "open"
    loop.now += 5
    tunnel.tick(loop.now)
    loop.now += 5
    tunnel.tick(loop.now)
    assert client.state == "aborted"
    client.lose()
    upstream.lose()
    assert (ended[0].closed_by, ended[0].how) == ("proxy", "send_timeout")
