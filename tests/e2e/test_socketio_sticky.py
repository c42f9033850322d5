"""Socket.IO behind wsgate with two backend processes and no adapter between them.

Socket.IO starts every session with HTTP long-polling and upgrades to a WebSocket
later; each poll must reach the process that created the session. With `ip_hash` (the
Socket.IO docs' nginx example) every request of a client lands on one process, so in
headless chromium the page connects, upgrades to "websocket" and round-trips events.
With round robin over the same two processes, the session's second request reaches the
other process, which answers 400 "Session ID unknown" (seen both by a raw client and
by the browser). Hashing on the session id (`hash $arg_sid`) is no better, because the
handshake has no sid yet; hashing on an id the client sends on every request is.
"""

from __future__ import annotations

import asyncio
import json
import pathlib
import shutil

import pytest

from helpers.cdp import Chromium, DevTools, wait_text
from helpers.client import RawClient
from helpers.fixtures import procs, wsgate_server  # noqa: F401
from helpers.ports import free_port, free_ports
from helpers.procs import ProcessGroup

pytestmark = [pytest.mark.timeout(60), pytest.mark.browser, pytest.mark.node]

APP = pathlib.Path(__file__).resolve().parents[1] / "node" / "socketio-app"

CONF = """events {}
http {
    upstream socketio {
        {{balancer}}
        server 127.0.0.1:{{a}};
        server 127.0.0.1:{{b}};
    }
    server {
        listen 127.0.0.1:{{port}};
        location / {
            proxy_pass http://socketio;
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection "upgrade";
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        }
    }
}
"""


def start_backends(procs: ProcessGroup) -> tuple[int, int]:  # noqa: F811
    if not (APP / "node_modules" / "socket.io").is_dir():
        pytest.fail(f"socket.io missing: run `npm ci` in {APP} (scripts/setup.sh)")
    node = shutil.which("node") or "node"
    a, b = free_ports(2)
    for port, name in ((a, "A"), (b, "B")):
        procs.start([node, str(APP / "server.js"), str(port), name], name=f"socketio-{name}",
                    cwd=APP, ready_port=("127.0.0.1", port))
    return a, b


async def drive(devtools_url: str, page_url: str) -> str:
    """Connect, wait for the upgrade, round-trip events; return the serving backend."""
    async with DevTools.connect(devtools_url) as cdp:
        tab = await cdp.open_tab(page_url)
        await cdp.until(tab, "window.socket.connected", "the socket connected")
        await cdp.until(tab, "window.socket.io.engine.transport.name === 'websocket'",
                        "the upgrade to websocket")
        events = await cdp.js(tab, "window.events")
        assert events[0] == "open polling" and "upgrade websocket" in events, events
        hello = await cdp.until(tab, "window.events.find(e => e.startsWith('hello '))",
                                "the server's hello")
        backend = hello.split()[1]
        for i in range(5):
            payload = {"n": i, "text": f"round trip {i} through wsgate"}
            reply = await cdp.js(tab, f"window.roundTrip({json.dumps(payload)})")
            assert reply == {"backend": backend, "payload": payload}
        assert await cdp.js(tab, "window.socket.io.engine.transport.name") == "websocket"
        assert not [e for e in await cdp.js(tab, "window.events")
                    if e.startswith(("connect_error", "disconnect"))]
        return str(backend)


def test_socketio_upgrades_with_ip_hash(tmp_path: pathlib.Path, procs: ProcessGroup,  # noqa: F811
                                        wsgate_server) -> None:  # noqa: F811
    a, b = start_backends(procs)
    srv = wsgate_server(CONF, balancer="ip_hash;", a=a, b=b, port=free_port())
    with Chromium(tmp_path / "browser") as browser:
        backend = asyncio.run(asyncio.wait_for(
            drive(browser.devtools_url, srv.url("/", scheme="http")), 50))
    chosen = next(p for p in procs.procs if p.name == f"socketio-{backend}")
    output = chosen.output()
    assert "connect " in output and "upgrade " in output and " websocket" in output, output
    # The tunnel's log line is written when it ends, i.e. after the browser is gone.
    wait_text(srv.access_log, r'"GET /socket\.io/\?EIO=4&transport=websocket&sid=\S+ '
                              r'HTTP/1\.1" 101 ', "the WebSocket through wsgate")
    log = srv.access_log()
    assert '"GET /socket.io/socket.io.js HTTP/1.1" 200 ' in log, log
    assert "transport=polling" in log, log
    assert srv.alerts() == []


async def see_session_unknown(devtools_url: str, page_url: str) -> str:
    """Load the page behind round robin; return the body of the first 400 the browser
    got for a request of an Engine.IO session (one carrying its `sid`)."""
    async with DevTools.connect(devtools_url) as cdp:
        tab = await cdp.open_tab(page_url)

        def refused() -> dict[str, object] | None:
            return next((e["params"] for e in cdp.of(tab, "Network.responseReceived")
                         if e["params"]["response"]["status"] == 400
                         and "/socket.io/" in e["params"]["response"]["url"]
                         and "sid=" in e["params"]["response"]["url"]), None)
        response = await cdp.wait_for(refused, "a 400 for a polling request")
        await cdp.wait_for(lambda: [e for e in cdp.of(tab, "Network.loadingFinished")
                                    if e["params"]["requestId"] == response["requestId"]],
                           "the 400's body")
        body = await cdp.call("Network.getResponseBody", tab, requestId=response["requestId"])
        return str(body["body"])


def test_browser_without_stickiness_gets_session_id_unknown(
        tmp_path: pathlib.Path, procs: ProcessGroup, wsgate_server) -> None:  # noqa: F811
    a, b = start_backends(procs)
    srv = wsgate_server(CONF, balancer="", a=a, b=b, port=free_port())
    with Chromium(tmp_path / "browser") as browser:
        body = asyncio.run(asyncio.wait_for(
            see_session_unknown(browser.devtools_url, srv.url("/", scheme="http")), 50))
    assert json.loads(body) == {"code": 1, "message": "Session ID unknown"}


def request(port: int, method: str, target: str, body: bytes = b"") -> tuple[int, str]:
    """One request on a fresh connection: (status, body)."""
    with RawClient.connect("127.0.0.1", port) as client:
        client.send(f"{method} {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                    f"Content-Type: text/plain;charset=UTF-8\r\n"
                    f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
                    + body)
        status, _, answer = client.read_response()
    return int(status.split()[1]), answer.decode(errors="replace")


def handshake_then_connect(port: int, query: str = "") -> tuple[int, str]:
    """Engine.IO's polling handshake, then the session's next request: the POST that
    carries Socket.IO's CONNECT packet ("40"), as the browser client sends it. `query`
    is added to both, as the client's `query` option does."""
    base = f"/socket.io/?EIO=4&transport=polling{query}"
    status, body = request(port, "GET", base)
    assert status == 200 and body.startswith("0{"), body
    sid = json.loads(body[1:])["sid"]
    return request(port, "POST", f"{base}&sid={sid}", b"40")


def test_round_robin_breaks_polling_sessions(procs: ProcessGroup,  # noqa: F811
                                             wsgate_server) -> None:  # noqa: F811
    a, b = start_backends(procs)
    srv = wsgate_server(CONF, balancer="", a=a, b=b, port=free_port())
    status, body = handshake_then_connect(srv.port)
    assert status == 400, body
    assert json.loads(body) == {"code": 1, "message": "Session ID unknown"}

    # The same two processes behind ip_hash: the session's requests find their session.
    sticky = wsgate_server(CONF, balancer="ip_hash;", a=a, b=b, port=free_port())
    for _ in range(3):
        status, body = handshake_then_connect(sticky.port)
        assert (status, body) == (200, "ok")


def test_hash_on_sid_breaks_polling_sessions(procs: ProcessGroup,  # noqa: F811
                                             wsgate_server) -> None:  # noqa: F811
    """`hash $arg_sid consistent;` is not stickiness: the handshake carries no sid (it
    hashes ""), and the sid the chosen backend then issues hashes anywhere. So some
    sessions' next request reaches the other process. With 16 sessions over 2 backends,
    all landing right by chance has probability 2**-16."""
    a, b = start_backends(procs)
    srv = wsgate_server(CONF, balancer="hash $arg_sid consistent;", a=a, b=b, port=free_port())
    outcomes = [handshake_then_connect(srv.port) for _ in range(16)]
    assert (400, '{"code":1,"message":"Session ID unknown"}') in outcomes, outcomes


def test_hash_on_a_client_id_keeps_sessions(procs: ProcessGroup,  # noqa: F811
                                            wsgate_server) -> None:  # noqa: F811
    """Stickiness without ip_hash (clients behind one NAT still spread): the client
    sends a stable id on every request, the handshake included
    (`io({query: {client: id}})`), and the upstream hashes on it."""
    a, b = start_backends(procs)
    srv = wsgate_server(CONF, balancer="hash $arg_client consistent;", a=a, b=b,
                        port=free_port())
    for client in range(16):
        assert handshake_then_connect(srv.port, f"&client=c{client}") == (200, "ok")
    # Both processes got sessions (16 ids all hashing to one: chance 2**-15).
    for proc in (p for p in procs.procs if p.name.startswith("socketio-")):
        wait_text(proc.output, r"connect \S+ polling", f"a session on {proc.name}", 10)
