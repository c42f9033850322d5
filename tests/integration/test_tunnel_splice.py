"""The byte tunnel's spliced bulk directions (proxy/splice.py) over real sockets.

A direction that has carried splice.SPLICE_AFTER bytes is moved socket -> pipe ->
socket by os.splice; these tests push more than that and check what the transports
guaranteed before: exact bytes in order, half-close, resets, the proxy's graceful
close, send_timeout, byte counts, and that every descriptor the splice made is
closed again (and that a small tunnel never makes one). Both loops (uvloop and
asyncio's) run every test, through the harness of test_tunnel.py.
"""

from __future__ import annotations

import asyncio
import os
import random
import socket
import ssl
import time

import pytest
import trustme

from integration.test_tunnel import (KINDS, NO_TIMEOUTS, TunnelProxy, both_ways_upstream,
                                     exchange, run, serve)
from wsgate.proxy import splice
from wsgate.proxy.tunnel import TunnelTimeouts, _SplicedLeg, _SteadyLeg

pytestmark = pytest.mark.skipif(not splice.available(), reason="no os.splice here")

BULK = 3 * splice.SPLICE_AFTER + 12345


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.parametrize("kind", KINDS)
def test_bulk_both_ways_is_spliced_exact_and_counted(kind: str) -> None:
    async def main() -> None:
        rng = random.Random(5)
        down = {1: rng.randbytes(BULK)}
        up_got: dict[int, bytes] = {}
        server, addr = await serve(both_ways_upstream(down, up_got))
        proxy = TunnelProxy(addr, timeouts=NO_TIMEOUTS)
        port = await proxy.start()
        fds = _fds()
        client_payload = b"%08d" % 1 + rng.randbytes(BULK + 777)
        received: dict[str, bytes] = {}
        await exchange(port, down[1], client_payload, 3, received)
        [stats] = await proxy.wait_stats()
        [tunnel] = proxy.tunnels
        assert received["client"] == down[1]
        assert up_got[1] == client_payload
        assert (stats.bytes_up, stats.bytes_down) == (len(client_payload), len(down[1]))
        assert stats.how == "eof"
        # both directions went through splice, and it left nothing behind
        assert type(tunnel.client) is _SplicedLeg and type(tunnel.upstream) is _SplicedLeg
        assert not splice._active
        await asyncio.sleep(0.1)
        assert _fds() <= fds
        proxy.close()
        server.close()

    run(kind, main)


@pytest.mark.parametrize("kind", KINDS)
def test_small_tunnel_never_splices(kind: str) -> None:
    async def main() -> None:
        rng = random.Random(6)
        down = {1: rng.randbytes(100_000)}
        up_got: dict[int, bytes] = {}
        server, addr = await serve(both_ways_upstream(down, up_got))
        proxy = TunnelProxy(addr, timeouts=NO_TIMEOUTS)
        port = await proxy.start()
        received: dict[str, bytes] = {}
        await exchange(port, down[1], b"%08d" % 1 + b"x" * 1000, 3, received)
        await proxy.wait_stats()
        [tunnel] = proxy.tunnels
        assert received["client"] == down[1]
        assert type(tunnel.client) is not _SplicedLeg
        assert type(tunnel.upstream) is not _SplicedLeg
        proxy.close()
        server.close()

    run(kind, main)


@pytest.mark.parametrize("kind", KINDS)
def test_spliced_direction_half_closes_and_the_other_keeps_flowing(kind: str) -> None:
    """The client sends bulk then EOF (spliced direction); the upstream sees EOF after
    every byte, then answers, and the answer still reaches the client."""
    payload = random.Random(7).randbytes(BULK)

    async def upstream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        got = await reader.read(-1)                 # until the relayed EOF
        writer.write(b"%d" % len(got) + (b"ok" if got == payload else b"bad"))
        writer.close()

    async def main() -> None:
        server, addr = await serve(upstream)
        proxy = TunnelProxy(addr, timeouts=NO_TIMEOUTS)
        port = await proxy.start()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(payload)
        await writer.drain()
        writer.write_eof()
        assert await reader.read(-1) == b"%dok" % len(payload)
        [stats] = await proxy.wait_stats()
        assert type(proxy.tunnels[0].client) is _SplicedLeg
        assert (stats.bytes_up, stats.how, stats.closed_by) == (len(payload), "eof", "client")
        writer.close()
        proxy.close()
        server.close()

    run(kind, main)


@pytest.mark.parametrize("kind", KINDS)
def test_upstream_reset_during_spliced_bulk_ends_the_tunnel(kind: str) -> None:
    async def upstream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readexactly(2 * splice.SPLICE_AFTER)
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        writer.transport.abort()  # RST

    async def main() -> None:
        server, addr = await serve(upstream)
        proxy = TunnelProxy(addr, timeouts=NO_TIMEOUTS)
        port = await proxy.start()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        chunk = b"y" * 65536
        try:
            for _ in range(400):  # bounded: 25 MiB at most, the upstream resets at 2 MiB
                writer.write(chunk)
                await writer.drain()
                if proxy.stats:
                    break
        except ConnectionError:
            pass
        [stats] = await proxy.wait_stats()
        assert stats.how == "reset" and stats.closed_by == "upstream"
        try:
            assert await asyncio.wait_for(reader.read(-1), 5) == b""
        except ConnectionError:
            pass
        assert not splice._active
        writer.close()
        proxy.close()
        server.close()

    run(kind, main)


@pytest.mark.parametrize("kind", KINDS)
def test_proxy_close_during_spliced_bulk_delivers_an_ordered_prefix(kind: str) -> None:
    payload = bytes(range(256)) * (BULK // 256)
    done: asyncio.Future[bytes] | None = None

    async def upstream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        assert done is not None
        done.set_result(await reader.read(-1))
        writer.close()

    async def main() -> None:
        nonlocal done
        done = asyncio.get_running_loop().create_future()
        server, addr = await serve(upstream)
        proxy = TunnelProxy(addr, timeouts=NO_TIMEOUTS)
        port = await proxy.start()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(payload)
        while not proxy.tunnels or type(proxy.tunnels[0].client) is not _SplicedLeg:
            await asyncio.sleep(0.01)
        proxy.tunnels[0].close()
        got = await asyncio.wait_for(done, 10)
        assert payload.startswith(got) and len(got) > splice.SPLICE_AFTER
        [stats] = await proxy.wait_stats()
        assert (stats.closed_by, stats.how) == ("proxy", "closed")
        assert await asyncio.wait_for(reader.read(-1), 5) == b""
        assert not splice._active
        writer.close()
        proxy.close()
        server.close()

    run(kind, main)


@pytest.mark.parametrize("kind", KINDS)
def test_send_timeout_fires_when_a_spliced_client_stops_reading(kind: str) -> None:
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
        proxy = TunnelProxy(addr, timeouts=TunnelTimeouts(read=1.0, client_send=1.0))
        port = await proxy.start()
        sock = socket.create_connection(("127.0.0.1", port))
        sock.setblocking(False)
        loop = asyncio.get_running_loop()
        got = 0
        while got < 3 * splice.SPLICE_AFTER:        # read enough for the switch
            got += len(await loop.sock_recv(sock, 1 << 20))
        started = time.monotonic()                  # then stop reading
        [stats] = await proxy.wait_stats(timeout=10)
        assert 0.5 <= time.monotonic() - started <= 8
        assert type(proxy.tunnels[0].upstream) is _SplicedLeg
        assert (stats.closed_by, stats.how) == ("proxy", "send_timeout")
        assert not splice._active
        sock.close()
        proxy.close()
        server.close()

    run(kind, main)


class _TlsTunnelProxy(TunnelProxy):
    """The harness with TLS toward the client: nothing may be spliced there."""

    def __init__(self, upstream: tuple[str, int], context: ssl.SSLContext,
                 **options: object) -> None:
        super().__init__(upstream, **options)
        self.context = context

    async def start(self) -> int:
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(self._accept, "127.0.0.1", 0,
                                               ssl=self.context)
        return self.server.sockets[0].getsockname()[1]


@pytest.mark.parametrize("kind", KINDS)
def test_tls_tunnel_is_never_spliced(kind: str) -> None:
    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(server_ctx)
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    payload = random.Random(8).randbytes(BULK)

    async def upstream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        got = await reader.readexactly(len(payload))
        writer.write(got)                           # echo it back
        await writer.drain()
        writer.close()

    async def main() -> None:
        server, addr = await serve(upstream)
        proxy = _TlsTunnelProxy(addr, server_ctx, timeouts=NO_TIMEOUTS)
        port = await proxy.start()
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=client_ctx, server_hostname="localhost", limit=2**20)
        writer.write(payload)
        assert await asyncio.wait_for(reader.readexactly(len(payload)), 30) == payload
        [tunnel] = proxy.tunnels
        # both directions reached the threshold and were refused for good
        assert type(tunnel.client) is _SteadyLeg and type(tunnel.upstream) is _SteadyLeg
        assert not splice._active
        writer.close()
        await proxy.wait_stats()
        proxy.close()
        server.close()

    run(kind, main)
