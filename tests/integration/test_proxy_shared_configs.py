"""Every runnable shared config (../shared/configs) runs under wsgate and proxies real
WebSocket backends (node's `ws`, Python's `websockets`): messages flow where the
config passes the upgrade, and the unconfigured one gives the client exactly what
real nginx gives it (the backend's refusal)."""

from __future__ import annotations

import asyncio

import pytest
import websockets

from helpers.client import RawClient
from helpers.fixtures import (nginx_server, node_backend, procs, shared_config,  # noqa: F401
                              websockets_backend, wsgate_server)
from helpers.nginx import substitute_ports
from helpers.ports import free_port

pytestmark = pytest.mark.timeout(60)

# (config, WebSocket path) of the configs that pass the upgrade on.
WORKING = [
    ("article-minimal-fixed.conf", "/"),
    ("article-map-complete.conf", "/websocket"),
    ("docs-chat-location.conf", "/chat/"),
    ("docs-chat-map.conf", "/chat/"),
]


def _start(kind: str, make: dict[str, object], port: int | None = None) -> object:
    factory = make[kind]
    return factory(port=port) if port else factory()  # type: ignore[operator]


def _run_conf(text: str, server_factory: object, backend_ports: list[int]) -> object:
    listen = free_port()
    ports = {80: listen, 8080: listen, 3000: backend_ports[0]}
    if len(backend_ports) > 1:
        ports[3001] = backend_ports[1]
    return server_factory(substitute_ports(text, ports))  # type: ignore[operator]


async def _echo(url: str, messages: list[str]) -> list[str]:
    out = []
    async with websockets.connect(url, open_timeout=10) as ws:
        for message in messages:
            await ws.send(message)
            out.append(await asyncio.wait_for(ws.recv(), 10))
    return out


@pytest.mark.parametrize("backend_kind", ["node", "websockets"])
@pytest.mark.parametrize("conf,path", WORKING)
def test_websocket_flows_through_wsgate(conf: str, path: str, backend_kind: str,
                                        shared_config, wsgate_server, node_backend,
                                        websockets_backend) -> None:
    make = {"node": node_backend, "websockets": websockets_backend}
    first = _start(backend_kind, make)
    second = _start(backend_kind, make)
    srv = _run_conf(shared_config(conf), wsgate_server, [first.port, second.port])
    messages = ["hello", "x" * 70000, "last"]
    for _ in range(3):      # several handshakes: both upstream servers get some
        assert asyncio.run(_echo(srv.url(path), messages)) == messages
    assert srv.alerts() == []


@pytest.mark.parametrize("backend_kind,status", [("node", 426), ("websockets", 505)])
def test_broken_config_refusal_matches_nginx(backend_kind: str, status: int, shared_config,
                                             wsgate_server, nginx_server, node_backend,
                                             websockets_backend) -> None:
    make = {"node": node_backend, "websockets": websockets_backend}
    backend = _start(backend_kind, make)
    text = shared_config("article-minimal-broken.conf")
    seen = []
    for factory in (nginx_server, wsgate_server):
        srv = _run_conf(text, factory, [backend.port])
        with pytest.raises(websockets.InvalidStatus) as info:
            asyncio.run(_echo(srv.url("/"), ["x"]))
        response = info.value.response
        seen.append((response.status_code, bytes(response.body or b"")))
        srv.stop()
    assert seen[0] == seen[1]
    assert seen[0][0] == status


def test_plain_http_through_map_config(shared_config, wsgate_server,
                                       websockets_backend) -> None:
    backend = websockets_backend()
    srv = _run_conf(shared_config("article-map-complete.conf"), wsgate_server,
                    [backend.port])
    with RawClient.connect("127.0.0.1", srv.port) as client:
        client.send(b"GET /websocket/http HTTP/1.1\r\nHost: x\r\n\r\n")
        status, headers, body = client.read_response()
    # websockets answers a plain GET on a WebSocket path with 426: relayed as is
    assert status.startswith("HTTP/1.1 426"), status
    assert headers.get("connection") == "keep-alive"
    # ... and what it saw is the map's "close" for a request without Upgrade
    assert b"invalid Connection header: close" in body
