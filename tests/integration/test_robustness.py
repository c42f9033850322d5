"""Robustness of the running engine under load and against slow or half-dead peers:

- tunnel integrity: 50 concurrent WebSocket sessions (websockets and node `ws`
  echo backends), 200 messages each, some fragmented, every echo checked byte for byte
  and in order; 64 MiB each way through one byte tunnel with a checksum;
- half-close in each direction, through wsgate and through nginx (wsgate propagates a
  half-close by design; what nginx 1.22 does is measured and asserted as a fact);
- memory stays bounded (VmRSS) when a client stops reading a 200 MB download or a
  tunnel, and the stalled transfer resumes when the client reads again;
- 200 slow-loris connections do not block a normal request and are cut by
  client_header_timeout.

Odd upstreams (blasting, half-closing) are small threads in this process; everything
listens on 127.0.0.1 and every loop is bounded in count and time.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import random
import selectors
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from helpers.client import RawClient
from helpers.fixtures import (nginx_server, node_backend, procs,  # noqa: F401
                              recording_backend, websockets_backend, wsgate_server)
from helpers.nginx import ConfServer
from helpers.ports import free_port

pytestmark = pytest.mark.timeout(90)

WS_CONF = """
events { worker_connections 1024; }
http {
    client_header_timeout 2s;
    server {
        listen 127.0.0.1:{{port}};
        location / {
            proxy_pass http://127.0.0.1:{{backend}};
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection "upgrade";
            proxy_read_timeout 30s;
        }
        location = /r { return 200 "r\\n"; }
    }
}
"""

UPGRADE = (b"GET /t HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
MiB = 1024 * 1024


# --- a fast asyncio WebSocket client (masking via big ints, not per byte) -----------

def _mask(data: bytes, key: bytes) -> bytes:
    n = len(data)
    if not n:
        return b""
    keystream = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "little") ^ int.from_bytes(keystream, "little")).to_bytes(
        n, "little")


def _frame(opcode: int, payload: bytes, fin: bool = True) -> bytes:
    head = bytes([(0x80 if fin else 0) | opcode])
    n = len(payload)
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 65536:
        head += bytes([0x80 | 126]) + struct.pack("!H", n)
    else:
        head += bytes([0x80 | 127]) + struct.pack("!Q", n)
    key = os.urandom(4)
    return head + key + _mask(payload, key)


def _fragments(opcode: int, payload: bytes, rng: random.Random) -> bytes:
    """The message as 1..4 frames (first carries the opcode, the rest continuation)."""
    count = rng.choice([1, 1, 1, 2, 3, 4]) if len(payload) >= 4 else 1
    cuts = sorted(rng.sample(range(1, len(payload)), count - 1)) if count > 1 else []
    bounds = [0, *cuts, len(payload)]
    frames = [_frame(opcode if i == 0 else 0, payload[a:b], fin=(i == count - 1))
              for i, (a, b) in enumerate(zip(bounds, bounds[1:]))]
    return b"".join(frames)


async def _read_message(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    opcode, parts = None, []
    while True:
        b0, b1 = await reader.readexactly(2)
        n = b1 & 0x7F
        if n == 126:
            n = struct.unpack("!H", await reader.readexactly(2))[0]
        elif n == 127:
            n = struct.unpack("!Q", await reader.readexactly(8))[0]
        key = await reader.readexactly(4) if b1 & 0x80 else b""
        payload = await reader.readexactly(n)
        payload = _mask(payload, key) if key else payload
        op = b0 & 0x0F
        if op >= 0x8:
            raise AssertionError(f"unexpected control frame {op} {payload[:50]!r}")
        opcode = op if opcode is None else opcode
        parts.append(payload)
        if b0 & 0x80:
            return opcode, b"".join(parts)


async def _session(port: int, seed: int, messages: int) -> int:
    """One WebSocket session: `messages` random messages, each echo checked in order."""
    rng = random.Random(seed)
    reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=MiB)
    key = base64.b64encode(rng.randbytes(16)).decode()
    writer.write(UPGRADE.replace(b"dGhlIHNhbXBsZSBub25jZQ==", key.encode()))
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    assert head.startswith(b"HTTP/1.1 101"), head
    checked = 0
    for i in range(messages):
        size = int(2 ** rng.uniform(0, 16))             # log-uniform 1 B .. 64 KiB
        text = rng.random() < 0.2
        payload = (rng.choice(b"abcdefghij").to_bytes(1, "big") * size) if text \
            else rng.randbytes(size)
        writer.write(_fragments(1 if text else 2, payload, rng))
        opcode, echo = await asyncio.wait_for(_read_message(reader), 20)
        assert (opcode, len(echo)) == (1 if text else 2, size), f"session {seed} message {i}"
        assert echo == payload, f"session {seed} message {i}: bytes differ"
        checked += size
    writer.write(_frame(0x8, struct.pack("!H", 1000)))
    writer.close()
    return checked


async def _many_sessions(port: int, sessions: int, messages: int) -> list[int]:
    return await asyncio.gather(*(_session(port, seed, messages) for seed in range(sessions)))


@pytest.mark.parametrize("kind", ["websockets", "node"])
def test_50_concurrent_sessions_echo_in_order(kind: str, wsgate_server, websockets_backend,
                                              node_backend) -> None:
    backend = websockets_backend() if kind == "websockets" else node_backend()
    srv = wsgate_server(WS_CONF, port=free_port(), backend=backend.port)
    totals = asyncio.run(asyncio.wait_for(_many_sessions(srv.port, 50, 200), 75))
    assert len(totals) == 50 and all(t > 0 for t in totals)
    assert sum(totals) > 30 * MiB          # ~59 MB expected from the size distribution
    _assert_healthy(srv)


def test_64_mib_each_way_through_one_tunnel(wsgate_server, recording_backend) -> None:
    backend = recording_backend()                    # upgrade -> echo every byte
    srv = wsgate_server(WS_CONF, port=free_port(), backend=backend.port)
    sent, got = asyncio.run(asyncio.wait_for(_bulk(srv.port, 64 * MiB), 60))
    assert got == sent
    _assert_healthy(srv)


async def _bulk(port: int, total: int) -> tuple[str, str]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=MiB)
    writer.write(UPGRADE)
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101"), head
    rng = random.Random(7)

    async def send() -> str:
        digest = hashlib.sha256()
        for _ in range(total // MiB):
            chunk = rng.randbytes(MiB)
            digest.update(chunk)
            writer.write(chunk)
            await writer.drain()
        return digest.hexdigest()

    async def receive() -> str:
        digest, left = hashlib.sha256(), total
        while left:
            chunk = await reader.read(min(left, MiB))
            assert chunk, f"tunnel closed with {left} bytes missing"
            digest.update(chunk)
            left -= len(chunk)
        return digest.hexdigest()

    sent, got = await asyncio.gather(send(), receive())
    writer.close()
    return sent, got


# --- odd upstreams in threads ---------------------------------------------------------

class ThreadUpstream:
    """A one-connection-at-a-time upstream: reads a request head, then runs `act`."""

    def __init__(self, act: Callable[[socket.socket, "ThreadUpstream"], None]) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.act = act
        self.sent = 0
        self.received = bytearray()
        self.done = threading.Event()
        self.stopped = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stopped:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(10)
                try:
                    head = b""
                    while b"\r\n\r\n" not in head:
                        chunk = conn.recv(4096)
                        if not chunk:
                            break
                        head += chunk
                    self.act(conn, self)
                except OSError:
                    pass
                finally:
                    self.done.set()

    def stop(self) -> None:
        self.stopped = True
        self.thread.join(5)
        self.sock.close()


@pytest.fixture
def thread_upstream() -> Iterator[Callable[..., ThreadUpstream]]:
    made: list[ThreadUpstream] = []

    def make(act: Callable[[socket.socket, ThreadUpstream], None]) -> ThreadUpstream:
        made.append(ThreadUpstream(act))
        return made[-1]
    yield make
    for up in made:
        up.stop()


def _blast(head: bytes, total: int, deadline: float = 30.0) -> Callable[..., None]:
    """Send `head`, then up to `total` bytes as fast as the socket takes them."""
    def act(conn: socket.socket, up: ThreadUpstream) -> None:
        conn.sendall(head)
        chunk = b"\x5a" * (256 * 1024)
        end = time.monotonic() + deadline
        while up.sent < total and time.monotonic() < end and not up.stopped:
            try:
                n = conn.send(chunk[:min(len(chunk), total - up.sent)])
            except socket.timeout:
                continue
            up.sent += n
    return act


# --- half-close -----------------------------------------------------------------------

HALF_CONF = WS_CONF.replace("proxy_read_timeout 30s;", "proxy_read_timeout 5s;")


@pytest.mark.parametrize("kind", ["nginx", "wsgate"])
def test_client_half_close(kind: str, nginx_server, wsgate_server, recording_backend) -> None:
    """Client sends, then FIN; the echo backend echoes and half-closes in turn.
    wsgate relays the FIN upstream and the echo still comes back; nginx 1.22 closes
    both directions at the client's FIN, so the echo is lost."""
    backend = recording_backend()
    make = nginx_server if kind == "nginx" else wsgate_server
    srv = make(HALF_CONF, port=free_port(), backend=backend.port)
    with RawClient.connect("127.0.0.1", srv.port, timeout=8) as c:
        c.send(UPGRADE)
        assert c.read_head()[0].startswith("HTTP/1.1 101")
        # corked: the words and the FIN leave in one segment, so the proxy never
        # reads the words alone (nginx, scheduled between a send and a shutdown,
        # would relay them and the echo before it saw the FIN)
        c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 1)
        c.send(b"last words")
        c.shutdown_write()
        got = c.read_until_eof(timeout=8)
    assert got == (b"last words" if kind == "wsgate" else b""), kind


def _upstream_half_closes(conn: socket.socket, up: ThreadUpstream) -> None:
    conn.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                 b"Connection: Upgrade\r\n\r\nfrom-upstream")
    conn.shutdown(socket.SHUT_WR)
    end = time.monotonic() + 5
    while time.monotonic() < end:
        chunk = conn.recv(4096)
        if not chunk:
            return
        up.received += chunk


@pytest.mark.parametrize("kind", ["nginx", "wsgate"])
def test_upstream_half_close(kind: str, nginx_server, wsgate_server, thread_upstream) -> None:
    """Upstream sends, then FIN, and keeps reading. wsgate propagates the half-close
    (the client sees EOF, and what it sends afterwards still reaches the upstream);
    nginx 1.22 tears the whole tunnel down."""
    up = thread_upstream(_upstream_half_closes)
    make = nginx_server if kind == "nginx" else wsgate_server
    srv = make(HALF_CONF, port=free_port(), backend=up.port)
    with RawClient.connect("127.0.0.1", srv.port, timeout=8) as c:
        c.send(UPGRADE)
        assert c.read_head()[0].startswith("HTTP/1.1 101")
        assert c.read_until_eof(timeout=8) == b"from-upstream"
        time.sleep(0.2)
        try:
            c.send(b"after-fin")
            c.shutdown_write()
        except OSError:
            pass
    assert up.done.wait(8)
    if kind == "wsgate":
        assert bytes(up.received) == b"after-fin"
    else:
        assert bytes(up.received) == b""


# --- memory under slow peers ----------------------------------------------------------

def _rss_kib(pid: int) -> int:
    """VmRSS of `pid` and its direct children (a master's workers), in KiB."""
    pids = [pid]
    try:
        pids += [int(p) for p in open(f"/proc/{pid}/task/{pid}/children").read().split()]
    except OSError:
        pass
    total = 0
    for p in pids:
        for line in open(f"/proc/{p}/status"):
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total


def _wait_stalled(up: ThreadUpstream, limit: float) -> None:
    """Wait until the upstream's byte count stops growing (or `limit` seconds)."""
    end, last = time.monotonic() + limit, -1
    while time.monotonic() < end and up.sent != last:
        last = up.sent
        time.sleep(0.5)


SLOW_CONF = """
events {}
http {
    server {
        listen 127.0.0.1:{{port}};
        location / {
            proxy_pass http://127.0.0.1:{{backend}};
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection "upgrade";
            proxy_read_timeout 30s;
            send_timeout 30s;
        }
        location = /r { return 200 "r\\n"; }
    }
}
"""
DOWNLOAD = 200 * 1000 * 1000


@pytest.mark.parametrize("what", ["download", "tunnel"])
def test_memory_bounded_when_client_stops_reading(what: str, wsgate_server,
                                                  thread_upstream) -> None:
    head = (b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % DOWNLOAD if what == "download"
            else b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                 b"Connection: Upgrade\r\n\r\n")
    up = thread_upstream(_blast(head, DOWNLOAD))
    srv = wsgate_server(SLOW_CONF, port=free_port(), backend=up.port)
    assert srv.proc is not None
    _assert_serves(srv)
    before = _rss_kib(srv.proc.pid)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    sock.connect(("127.0.0.1", srv.port))
    with sock:
        sock.sendall(UPGRADE if what == "tunnel" else b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
        _wait_stalled(up, 15)
        grown = _rss_kib(srv.proc.pid) - before
        stalled_at = up.sent
        assert grown < 64 * 1024, f"wsgate RSS grew {grown} KiB; upstream sent {stalled_at}"
        assert stalled_at < DOWNLOAD, "no backpressure: the upstream sent everything"
        _assert_serves(srv)                # a stalled transfer does not block the worker
        sock.settimeout(10)                # reading again resumes the transfer
        got, end = 0, time.monotonic() + 20
        while got < 32 * MiB and time.monotonic() < end:
            chunk = sock.recv(MiB)
            assert chunk, "transfer ended early"
            got += len(chunk)
        assert got >= 32 * MiB and up.sent > stalled_at
    _assert_healthy(srv)


# --- slow loris -----------------------------------------------------------------------

LORIS_CONF = """
events { worker_connections 1024; }
http {
    client_header_timeout 2s;
    server {
        listen 127.0.0.1:{{port}};
        location = /r { return 200 "r\\n"; }
    }
}
"""
LORIS_HEAD = b"GET /r HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"z" * 40


@pytest.mark.parametrize("kind", ["nginx", "wsgate"])
def test_slow_loris_cut_by_client_header_timeout(kind: str, nginx_server,
                                                 wsgate_server) -> None:
    make = nginx_server if kind == "nginx" else wsgate_server
    srv = make(LORIS_CONF, port=free_port())
    sel = selectors.DefaultSelector()
    start = time.monotonic()
    socks = []
    for _ in range(200):
        s = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ)
        socks.append(s)
    closed: dict[socket.socket, float] = {}
    served_during = None
    for step in range(16):                    # one header byte per second, <= 8 s total
        for i, s in enumerate(socks):
            if s not in closed and step < len(LORIS_HEAD):
                try:
                    s.send(LORIS_HEAD[step:step + 1])
                except OSError:
                    closed.setdefault(s, time.monotonic() - start)
        if step == 1:
            t0 = time.monotonic()
            _assert_serves(srv)
            served_during = time.monotonic() - t0
        _drain_closed(sel, closed, start, 0.5)
        if len(closed) == len(socks):
            break
    for s in socks:
        s.close()
    times = sorted(closed.values())
    assert served_during is not None and served_during < 2.0, kind
    assert len(times) == 200, f"{kind}: only {len(times)} of 200 slow connections were cut"
    assert 1.5 <= times[0] and times[-1] <= 5.0, f"{kind}: cut between {times[0]:.2f}s and " \
                                                 f"{times[-1]:.2f}s, expected ~2s"
    if kind == "wsgate":
        _assert_healthy(srv)


def _drain_closed(sel: selectors.BaseSelector, closed: dict[Any, float],
                  start: float, wait: float) -> None:
    end = time.monotonic() + wait
    while (left := end - time.monotonic()) > 0:
        for key, _ in sel.select(left):
            s = key.fileobj
            try:
                data = s.recv(4096)       # type: ignore[union-attr]
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                data = b""
            if not data:
                closed.setdefault(s, time.monotonic() - start)
                sel.unregister(s)


# --- shared checks --------------------------------------------------------------------

def _assert_serves(srv: ConfServer) -> None:
    with RawClient.connect("127.0.0.1", srv.port, timeout=5) as c:
        c.send(b"GET /r HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        status, _, body = c.read_response(timeout=5)
    assert (status, body) == ("HTTP/1.1 200 OK", b"r\n")


def _assert_healthy(srv: ConfServer) -> None:
    assert srv.alerts() == []
    log = srv.error_log() + srv.output()
    assert "Traceback" not in log, log[log.find("Traceback"):][:3000]
    _assert_serves(srv)
