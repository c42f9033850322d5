"""WebSocket sessions over an upstream group: balancing handshakes, passive health,
least_conn and max_conns counting live tunnels, upgraded connections never pooled.

Backends are real `websockets` echo servers (separate processes); the proxy is
wsgate in nginx mode. Which backend took a session is read from the 101's
`X-Up: $upstream_addr` header (add_header ... always).
"""

from __future__ import annotations

import asyncio
import socket
from collections import Counter
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect

from helpers.fixtures import procs, recording_backend, websockets_backend, wsgate_server  # noqa: F401,E501
from helpers.ports import free_port

pytestmark = pytest.mark.timeout(60)

CONF = """
error_log error.log warn;
events {}
http {
    upstream u {
%(servers)s
    }
    server {
        listen 127.0.0.1:{{port}};
        location / {
            proxy_pass http://u;
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection "upgrade";
            proxy_read_timeout 30s;
            add_header X-Up $upstream_addr always;
        }
    }
}
"""


async def open_sessions(port: int, n: int) -> list[tuple[ClientConnection, str]]:
    out = []
    for _ in range(n):
        ws = await asyncio.wait_for(connect(f"ws://127.0.0.1:{port}/", open_timeout=10), 15)
        assert ws.response is not None
        out.append((ws, ws.response.headers["X-Up"]))
    return out


async def echoes(sessions: list[tuple[ClientConnection, str]], tag: str) -> None:
    for i, (ws, _) in enumerate(sessions):
        message = f"{tag}-{i}"
        await ws.send(message)
        assert await asyncio.wait_for(ws.recv(), 10) == message


def test_dead_backend_avoided_sessions_elsewhere_untouched(wsgate_server,  # type: ignore[no-untyped-def]
                                                           websockets_backend) -> None:
    backs = [websockets_backend() for _ in range(3)]
    servers = "\n".join(f"        server {b.address} max_fails=1 fail_timeout=30s;"
                        for b in backs)
    srv = wsgate_server(CONF % {"servers": servers}, port=free_port())
    victim = backs[1].address

    async def scenario() -> None:
        first = await open_sessions(srv.port, 12)
        assert Counter(up for _, up in first) == {b.address: 4 for b in backs}
        await echoes(first, "before")
        backs[1].stop()
        survivors = [(ws, up) for ws, up in first if up != victim]
        later = await open_sessions(srv.port, 12)
        # the first handshake that met the dead peer moved on before answering
        assert all(victim not in up.split(", ")[-1] for _, up in later)
        assert sum(victim in up for _, up in later) == 1
        await echoes(survivors, "after")
        await echoes(later, "new")
        for ws, _ in first + later:
            await ws.close()
    asyncio.run(scenario())
    log = srv.error_log()
    assert "connect() failed (111: Connection refused) while connecting to upstream" in log
    assert "upstream server temporarily disabled while connecting to upstream" in log
    assert not srv.alerts()


def test_least_conn_counts_live_tunnels(wsgate_server, websockets_backend) -> None:  # type: ignore[no-untyped-def]
    a, b = websockets_backend(), websockets_backend()
    servers = f"        least_conn;\n        server {a.address};\n        server {b.address};"
    srv = wsgate_server(CONF % {"servers": servers}, port=free_port())

    async def scenario() -> None:
        held = await open_sessions(srv.port, 3)   # a, b, then a tie -> round robin
        ups = Counter(up for _, up in held)
        busy = max(ups, key=lambda k: ups[k])
        # while the tunnels live, the less loaded backend gets the next one
        (ws, up), = await open_sessions(srv.port, 1)
        assert up != busy
        await echoes(held + [(ws, up)], "x")
        for w, _ in held + [(ws, up)]:
            await w.close()
    asyncio.run(scenario())


def test_max_conns_counts_tunnels(wsgate_server, websockets_backend) -> None:  # type: ignore[no-untyped-def]
    a = websockets_backend()
    servers = f"        server {a.address} max_conns=2;"
    srv = wsgate_server(CONF % {"servers": servers}, port=free_port())

    async def scenario() -> None:
        held = await open_sessions(srv.port, 2)
        with pytest.raises(Exception) as err:
            await asyncio.wait_for(connect(f"ws://127.0.0.1:{srv.port}/"), 10)
        assert "502" in str(err.value)
        await held[0][0].close()
        await asyncio.sleep(0.2)
        (ws, _), = await open_sessions(srv.port, 1)   # a slot is free again
        await echoes(held[1:] + [(ws, "")], "y")
        await held[1][0].close()
        await ws.close()
    asyncio.run(scenario())
    assert "no live upstreams while connecting to upstream" in srv.error_log()


def test_upgraded_connection_is_not_pooled(wsgate_server, recording_backend) -> None:  # type: ignore[no-untyped-def]
    rec = recording_backend()
    conf = """
events {}
http {
    map $http_upgrade $connection_upgrade { default upgrade; '' ''; }
    upstream u { server %s; keepalive 8; }
    server {
        listen 127.0.0.1:{{port}};
        location / {
            proxy_pass http://u;
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
        }
    }
}
""" % rec.address
    srv = wsgate_server(conf, port=free_port())
    upgrade = (b"GET /ws HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\n"
               b"Connection: Upgrade\r\n\r\n")
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as sock:
        sock.sendall(upgrade)
        assert recv_until(sock, b"\r\n\r\n").startswith(b"HTTP/1.1 101")
        sock.sendall(b"ping-bytes")
        assert recv_until(sock, b"ping-bytes").endswith(b"ping-bytes")
    for _ in range(3):
        plain_get(srv.port)
    records = rec.records()
    assert [(r["conn"], r["seq"]) for r in records][0] == (records[0]["conn"], 0)
    plain = records[1:]
    assert records[0]["conn"] not in {r["conn"] for r in plain}
    assert len({r["conn"] for r in plain}) == 1     # the plain requests share one
    assert [r["seq"] for r in plain] == [0, 1, 2]


def recv_until(sock: socket.socket, marker: bytes) -> bytes:
    data = b""
    for _ in range(1000):
        if marker in data:
            break
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def plain_get(port: int) -> Any:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"GET /p HTTP/1.0\r\nHost: t\r\n\r\n")
        data = b""
        for _ in range(1000):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    assert data.startswith(b"HTTP/1.1 200")
    return data
