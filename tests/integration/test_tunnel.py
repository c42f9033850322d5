"""The byte tunnel over real loopback sockets, on both uvloop and asyncio's loop.

A tiny harness stands in for the HTTP layer: it accepts a client, connects to an
upstream and hands both transports to `open_tunnel`. In "heads" mode it first
relays one `\\r\\n\\r\\n`-terminated head each way (the upgrade request and the 101)
and passes whatever was read past each head as pending bytes, as the HTTP layer
will. Running this file as a script starts that harness in a child process (used
to measure the proxy's memory on its own).
"""

from __future__ import annotations

import asyncio
import os
import random
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable

import pytest

from wsgate.proxy import loop as loops
from wsgate.proxy.timers import ticker_for
from wsgate.proxy.tunnel import Tunnel, TunnelStats, TunnelTimeouts, open_tunnel

KINDS = loops.available()
SEP = b"\r\n\r\n"
NO_TIMEOUTS = TunnelTimeouts(read=None, client_send=None, upstream_send=None)


# -- harness -------------------------------------------------------------------

class _Collect(asyncio.Protocol):
    """Holds a connection's bytes until the tunnel takes it over."""

    def __init__(self) -> None:
        self.buf = bytearray()
        self.changed = asyncio.Event()
        self.closed = False
        self.eof = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buf += data
        self.changed.set()

    def eof_received(self) -> bool:
        self.closed = self.eof = True
        self.changed.set()
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.changed.set()

    async def head(self) -> tuple[bytes, bytes]:
        while SEP not in self.buf:
            assert not self.closed, "closed before the head ended"
            self.changed.clear()
            await self.changed.wait()
        head, _, rest = bytes(self.buf).partition(SEP)
        return head + SEP, rest


class TunnelProxy:
    """Accept -> connect upstream -> (heads) -> open_tunnel; records every tunnel."""

    def __init__(self, upstream: tuple[str, int], *, heads: bool = False,
                 **tunnel_options: object):
        self.upstream = upstream
        self.heads = heads
        self.options = tunnel_options
        self.tunnels: list[Tunnel] = []
        self.stats: list[TunnelStats] = []
        self.ended = asyncio.Event()

    async def start(self) -> int:
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(self._accept, "127.0.0.1", 0)
        return self.server.sockets[0].getsockname()[1]

    def _accept(self) -> _Collect:
        proto = _Collect()
        asyncio.get_running_loop().call_soon(
            lambda: asyncio.ensure_future(self._connect(proto)))
        return proto

    async def _connect(self, client: _Collect) -> None:
        loop = asyncio.get_running_loop()
        up_t, up = await loop.create_connection(_Collect, *self.upstream)
        client_rest = upstream_rest = b""
        if self.heads:
            head, _ = await client.head()
            up_t.write(head)
            up_head, upstream_rest = await up.head()
            client.transport.write(up_head)  # type: ignore[attr-defined]
            client_rest = bytes(client.buf)[len(head):]
        else:
            client_rest, upstream_rest = bytes(client.buf), bytes(up.buf)
        tunnel = open_tunnel(client.transport, up_t,  # type: ignore[arg-type]
                             client_pending=client_rest,
                             upstream_pending=upstream_rest,
                             client_eof=client.eof, upstream_eof=up.eof,
                             on_end=self._ended, **self.options)  # type: ignore[arg-type]
        self.tunnels.append(tunnel)

    def _ended(self, stats: TunnelStats) -> None:
        self.stats.append(stats)
        self.ended.set()

    async def wait_stats(self, count: int = 1, timeout: float = 10) -> list[TunnelStats]:
        deadline = time.monotonic() + timeout
        while len(self.stats) < count and time.monotonic() < deadline:
            self.ended.clear()
            try:
                await asyncio.wait_for(self.ended.wait(), 0.2)
            except asyncio.TimeoutError:
                pass
        return self.stats

    def close(self) -> None:
        self.server.close()


Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def serve(handler: Handler) -> tuple[asyncio.AbstractServer, tuple[str, int]]:
    server = await asyncio.start_server(handler, "127.0.0.1", 0, limit=2**20)
    return server, server.sockets[0].getsockname()[:2]


def run(kind: str, main: Callable[[], Awaitable[None]], timeout: float = 60) -> None:
    with asyncio.Runner(loop_factory=lambda: loops.new_event_loop(kind)) as runner:  # type: ignore[arg-type]
        runner.run(asyncio.wait_for(main(), timeout))


async def write_split(writer: asyncio.StreamWriter, data: bytes, rng: random.Random) -> None:
    pos = 0
    while pos < len(data):
        step = rng.choice((1, 2, 7, 100, 1500, 4096, 65536, 200_000))
        writer.write(data[pos:pos + step])
        pos += step
        await writer.drain()
        if rng.random() < 0.05:
            await asyncio.sleep(0)


# -- integrity -----------------------------------------------------------------

async def exchange(port: int, up_payload: bytes, client_payload: bytes, seed: int,
                   received: dict[str, bytes], heads: bool = False) -> None:
    rng = random.Random(seed)
    reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=2**20)
    if heads:
        writer.write(b"GET / HTTP/1.1\r\n" + SEP[2:])
        assert await reader.readuntil(SEP) == b"HTTP/1.1 101 Switching\r\n\r\n"
    sender = asyncio.ensure_future(_send_then_eof(writer, client_payload, rng))
    received["client"] = await reader.read(-1)
    await sender
    writer.close()


async def _send_then_eof(writer: asyncio.StreamWriter, data: bytes,
                         rng: random.Random) -> None:
    await write_split(writer, data, rng)
    writer.write_eof()


def both_ways_upstream(payloads: dict[int, bytes], got: dict[int, bytes],
                       heads: bool = False) -> Handler:
    """Upstream: learns its id from the first 8 bytes, sends its payload split, EOF."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if heads:
            await reader.readuntil(SEP)
            writer.write(b"HTTP/1.1 101 Switching\r\n\r\n")
        ident = await reader.readexactly(8)
        key = int(ident)
        sender = asyncio.ensure_future(
            _send_then_eof(writer, payloads[key], random.Random(key)))
        got[key] = ident + await reader.read(-1)
        await sender
        writer.close()

    return handle


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("heads", [False, True])
def test_random_bytes_both_ways_are_exact(kind: str, heads: bool) -> None:
    async def main() -> None:
        rng = random.Random(1)
        down = {1: rng.randbytes(3_000_000)}
        up_got: dict[int, bytes] = {}
        server, addr = await serve(both_ways_upstream(down, up_got, heads))
        proxy = TunnelProxy(addr, heads=heads, timeouts=NO_TIMEOUTS)
        port = await proxy.start()
        client_payload = b"%08d" % 1 + rng.randbytes(2_500_000)
        received: dict[str, bytes] = {}
        await exchange(port, down[1], client_payload, 7, received, heads)
        assert received["client"] == down[1]
        [stats] = await proxy.wait_stats()
        assert up_got[1] == client_payload
        assert stats.bytes_up == len(client_payload)
        assert stats.bytes_down == len(down[1])
        assert stats.how == "eof" and stats.closed_by in ("client", "upstream")
        proxy.close()
        server.close()

    run(kind, main)


@pytest.mark.parametrize("kind", KINDS)
def test_many_concurrent_tunnels_each_exact(kind: str) -> None:
    count = 200

    async def main() -> None:
        rng = random.Random(2)
        down = {i: rng.randbytes(rng.randrange(0, 60_000)) for i in range(count)}
        ups = {i: b"%08d" % i + rng.randbytes(rng.randrange(0, 60_000))
               for i in range(count)}
        up_got: dict[int, bytes] = {}
        server, addr = await serve(both_ways_upstream(down, up_got))
        proxy = TunnelProxy(addr, timeouts=NO_TIMEOUTS)
        port = await proxy.start()
        results = [dict[str, bytes]() for _ in range(count)]
        await asyncio.gather(*(exchange(port, down[i], ups[i], i, results[i])
                               for i in range(count)))
        await proxy.wait_stats(count)
        assert [r["client"] for r in results] == [down[i] for i in range(count)]
        assert up_got == ups
        assert sorted(s.bytes_up for s in proxy.stats) == sorted(map(len, ups.values()))
        assert len(ticker_for(asyncio.get_running_loop())) == 0  # nothing left to watch
        proxy.close()
        server.close()

    run(kind, main)


# -- bytes read past the heads ---------------------------------------------------

@pytest.mark.parametrize("kind", KINDS)
def test_bytes_after_each_head_go_first_in_order(kind: str) -> None:
    async def upstream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(SEP)
        writer.write(b"HTTP/1.1 101 Switching\r\n\r\nUPSTREAM-EARLY|")
        writer.write_eof()
        got.set_result(await reader.read(-1))
        writer.close()

    got: asyncio.Future[bytes]

    async def main() -> None:
        nonlocal got
        got = asyncio.get_running_loop().create_future()
        server, addr = await serve(upstream)
        proxy = TunnelProxy(addr, heads=True, timeouts=NO_TIMEOUTS)
        port = await proxy.start()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET / HTTP/1.1\r\n\r\nCLIENT-PIPELINED|")
        await writer.drain()
        answer = await reader.read(-1)
        assert answer == b"HTTP/1.1 101 Switching\r\n\r\nUPSTREAM-EARLY|"
        writer.write(b"LATER")
        writer.write_eof()
        assert await got == b"CLIENT-PIPELINED|LATER"
        [stats] = await proxy.wait_stats()
        assert stats.bytes_up == len(b"CLIENT-PIPELINED|LATER")
        assert stats.bytes_down == len(b"UPSTREAM-EARLY|")
        assert (stats.closed_by, stats.how) == ("upstream", "eof")
        writer.close()
        proxy.close()
        server.close()

    run(kind, main)


# -- half-close ----------------------------------------------------------------

@pytest.mark.parametrize("kind", KINDS)
def test_client_half_close_keeps_the_downstream_direction(kind: str) -> None:
    async def upstream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = await reader.read(-1)  # until the client's FIN arrives here
        await asyncio.sleep(0.1)
        writer.write(b"reply to " + request)
        writer.close()

    async def main() -> None:
        server, addr = await serve(upstream)
        proxy = TunnelProxy(addr, timeouts=NO_TIMEOUTS)
        port = await proxy.start()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"question")
        writer.write_eof()
        assert await reader.read(-1) == b"reply to question"
        [stats] = await proxy.wait_stats()
        assert (stats.closed_by, stats.how) == ("client", "eof")
        writer.close()
        proxy.close()
        server.close()

    run(kind, main)


@pytest.mark.parametrize("kind", KINDS)
def test_upstream_half_close_keeps_the_upstream_direction(kind: str) -> None:
    got: asyncio.Future[bytes]

    async def upstream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"bye")
        writer.write_eof()
        got.set_result(await reader.read(-1))
        writer.close()

    async def main() -> None:
        nonlocal got
        got = asyncio.get_running_loop().create_future()
        server, addr = await serve(upstream)
        proxy = TunnelProxy(addr, timeouts=NO_TIMEOUTS)
        port = await proxy.start()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        assert await reader.read(-1) == b"bye"  # EOF reached the client
        for part in (b"still ", b"talking"):
            writer.write(part)
            await writer.drain()
            await asyncio.sleep(0.05)
        writer.write_eof()
        assert await got == b"still talking"
        [stats] = await proxy.wait_stats()
        assert (stats.closed_by, stats.how) == ("upstream", "eof")
        assert (stats.bytes_up, stats.bytes_down) == (13, 3)
        writer.close()
        proxy.close()
        server.close()

    run(kind, main)


@pytest.mark.parametrize("kind", KINDS)
def test_without_half_close_eof_closes_both_after_flushing(kind: str) -> None:
    upstream_saw: asyncio.Future[bytes]

    async def upstream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"x" * 300_000)
        upstream_saw.set_result(await reader.read(-1))
        writer.close()

    async def main() -> None:
        nonlocal upstream_saw
        upstream_saw = asyncio.get_running_loop().create_future()
        server, addr = await serve(upstream)
        proxy = TunnelProxy(addr, timeouts=NO_TIMEOUTS, half_close=False)
        port = await proxy.start()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        await reader.readexactly(300_000)
        writer.write(b"last words")
        writer.write_eof()
        assert await upstream_saw == b"last words"  # flushed, then closed
        assert await reader.read(-1) == b""
        [stats] = await proxy.wait_stats()
        assert (stats.closed_by, stats.how) == ("client", "eof")
        writer.close()
        proxy.close()
        server.close()

    run(kind, main)


@pytest.mark.parametrize("kind", KINDS)
def test_proxy_close_ends_both_sides_gracefully(kind: str) -> None:
    async def upstream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"hello")
        await reader.read(-1)
        writer.close()

    async def main() -> None:
        server, addr = await serve(upstream)
        proxy = TunnelProxy(addr, timeouts=NO_TIMEOUTS)
        port = await proxy.start()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        assert await reader.readexactly(5) == b"hello"
        [tunnel] = proxy.tunnels
        tunnel.close()
        assert await reader.read(-1) == b""
        stats = await asyncio.wait_for(tunnel.wait(), 5)
        assert (stats.closed_by, stats.how, stats.bytes_down) == ("proxy", "closed", 5)
        assert tunnel.stats is stats and proxy.stats == [stats]
        writer.close()
        proxy.close()
        server.close()

    run(kind, main)


# -- errors and timeouts -------------------------------------------------------

@pytest.mark.parametrize("kind", KINDS)
def test_upstream_reset_closes_the_client(kind: str) -> None:
    async def upstream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readexactly(5)
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        writer.transport.abort()  # close() with SO_LINGER 0 sends RST

    async def main() -> None:
        server, addr = await serve(upstream)
        proxy = TunnelProxy(addr, timeouts=NO_TIMEOUTS)
        port = await proxy.start()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"hello")
        try:
            assert await reader.read(-1) == b""
        except ConnectionResetError:
            pass  # also acceptable: the proxy's close may reach us as RST
        [stats] = await proxy.wait_stats()
        assert (stats.closed_by, stats.how) == ("upstream", "reset")
        writer.close()
        proxy.close()
        server.close()

    run(kind, main)


@pytest.mark.parametrize("kind", KINDS)
def test_read_timeout_closes_an_idle_tunnel(kind: str) -> None:
    async def upstream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(-1)
        writer.close()

    async def main() -> None:
        server, addr = await serve(upstream)
        proxy = TunnelProxy(addr, timeouts=TunnelTimeouts(read=1.0))
        port = await proxy.start()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        started = time.monotonic()
        assert await reader.read(-1) == b""
        elapsed = time.monotonic() - started
        assert 0.5 <= elapsed <= 5, elapsed
        [stats] = await proxy.wait_stats()
        assert (stats.closed_by, stats.how) == ("proxy", "read_timeout")
        writer.close()
        proxy.close()
        server.close()

    run(kind, main)


@pytest.mark.parametrize("kind", KINDS)
def test_client_traffic_alone_keeps_the_tunnel_alive(kind: str) -> None:
    """nginx re-arms proxy_read_timeout on every event of an upgraded connection."""

    async def upstream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(-1)
        writer.close()

    async def main() -> None:
        server, addr = await serve(upstream)
        proxy = TunnelProxy(addr, timeouts=TunnelTimeouts(read=1.0))
        port = await proxy.start()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for _ in range(10):  # 3 s of client-only traffic, 0.3 s apart
            writer.write(b"ping")
            await writer.drain()
            await asyncio.sleep(0.3)
        assert proxy.stats == []
        started = time.monotonic()
        assert await reader.read(-1) == b""
        assert 0.5 <= time.monotonic() - started <= 5
        [stats] = await proxy.wait_stats()
        assert stats.how == "read_timeout" and stats.bytes_up == 40
        writer.close()
        proxy.close()
        server.close()

    run(kind, main)


@pytest.mark.parametrize("kind", KINDS)
def test_send_timeout_aborts_when_the_client_stops_reading(kind: str) -> None:
    async def upstream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            for _ in range(2000):  # bounded: 2000 x 64 KiB
                writer.write(b"z" * 65536)
                await writer.drain()
        except ConnectionError:
            pass
        writer.close()

    async def main() -> None:
        server, addr = await serve(upstream)
        proxy = TunnelProxy(addr, timeouts=TunnelTimeouts(read=None, client_send=1.0))
        port = await proxy.start()
        sock = socket.create_connection(("127.0.0.1", port))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        started = time.monotonic()
        [stats] = await proxy.wait_stats(timeout=10)
        assert 0.5 <= time.monotonic() - started <= 8
        assert (stats.closed_by, stats.how) == ("proxy", "send_timeout")
        sock.close()
        proxy.close()
        server.close()

    run(kind, main)


# -- memory bound with a reader that does not read ---------------------------------

def _rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


@pytest.mark.parametrize("kind", KINDS)
def test_slow_reader_keeps_proxy_memory_bounded(kind: str) -> None:
    total = 200 * 2**20
    upstream = socket.create_server(("127.0.0.1", 0))
    child = subprocess.Popen(
        [sys.executable, __file__, kind, str(upstream.getsockname()[1])],
        stdout=subprocess.PIPE, text=True)
    opened: list[socket.socket] = [upstream]
    try:
        port = int(child.stdout.readline())  # type: ignore[union-attr]
        client = socket.create_connection(("127.0.0.1", port))
        conn, _ = upstream.accept()
        opened += [client, conn]
        baseline = _rss_kib(child.pid)
        writer = threading.Thread(target=_send_all, args=(conn, total), daemon=True)
        writer.start()
        time.sleep(2.0)  # the client reads nothing: everything must stop in buffers
        stalled_rss = _rss_kib(child.pid)
        got, peak = _read_all(client, total, child.pid)
        writer.join(30)
        assert got == total
        assert stalled_rss - baseline < 40 * 1024, (baseline, stalled_rss)
        assert peak - baseline < 40 * 1024, (baseline, peak)
    finally:
        child.kill()
        child.wait(5)
        child.stdout.close()  # type: ignore[union-attr]
        for sock in opened:
            sock.close()


def _send_all(conn: socket.socket, total: int) -> None:
    chunk = bytes(range(256)) * 1024
    sent = 0
    while sent < total:
        sent += conn.send(chunk[: min(len(chunk), total - sent)])
    conn.shutdown(socket.SHUT_WR)


def _read_all(client: socket.socket, total: int, pid: int) -> tuple[int, int]:
    client.settimeout(20)
    got, peak, reads = 0, 0, 0
    while got < total:
        data = client.recv(1 << 20)
        if not data:
            break
        got += len(data)
        reads += 1
        if reads % 64 == 0:
            peak = max(peak, _rss_kib(pid))
    return got, peak


async def _serve_forever(upstream_port: int, options: list[str]) -> None:
    """Child-process harness: `KIND UPSTREAM_PORT [heads] [nginx] [read=SECONDS]`."""
    read = next((float(o[5:]) for o in options if o.startswith("read=")), None)
    proxy = TunnelProxy(("127.0.0.1", upstream_port), heads="heads" in options,
                        half_close="nginx" not in options,
                        timeouts=TunnelTimeouts(read=read, client_send=None,
                                                upstream_send=None))
    print(await proxy.start(), flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    with asyncio.Runner(loop_factory=lambda: loops.new_event_loop(sys.argv[1])) as r:  # type: ignore[arg-type]
        r.run(_serve_forever(int(sys.argv[2]), sys.argv[3:]))
