"""`wsgate probe` against wsgate itself running the published configs
(../shared/configs, ports moved to free loopback ones): the same explanations a user
gets behind nginx (test_probe.py) must come out when wsgate is the proxy -- 426 from
node's `ws` and 505 from Python's `websockets` behind the unconfigured config, success
behind the fixed ones, 502 when the backend is down, and an idle tunnel cut by
`proxy_read_timeout` reported with its timing."""

from __future__ import annotations

import pytest

from helpers.backends import start_node_ws_echo, start_websockets_echo
from helpers.fixtures import (node_backend, procs, shared_config,  # noqa: F401
                              websockets_backend, wsgate_server)
from helpers.nginx import ConfServer, substitute_ports
from helpers.ports import free_port
from helpers.probe import UPGRADE_CONF, probe, probe_json
from helpers.procs import ProcessGroup

pytestmark = pytest.mark.timeout(90)

# (config, WebSocket path, how many backends it names)
WORKING = [
    ("article-minimal-fixed.conf", "/", 1),
    ("article-map-complete.conf", "/websocket", 1),
    ("docs-chat-location.conf", "/chat/", 2),
    ("docs-chat-map.conf", "/chat/", 2),
]


def run_shared(wsgate_server, text: str, backends: list[int]) -> ConfServer:  # noqa: F811
    """wsgate on a shared config: listen 80/8080 -> a free port, 3000/3001 -> backends."""
    listen = free_port()
    ports = {80: listen, 8080: listen, 3000: backends[0]}
    if len(backends) > 1:
        ports[3001] = backends[1]
    return wsgate_server(substitute_ports(text, ports))


@pytest.mark.node
def test_broken_config_node_426_explained(wsgate_server, shared_config,  # noqa: F811
                                          node_backend) -> None:  # noqa: F811
    node = node_backend()
    srv = run_shared(wsgate_server, shared_config("article-minimal-broken.conf"), [node.port])
    rc, out = probe(srv.url("/"))
    assert rc == 1, out
    assert "426 Upgrade Required came from the backend, through a proxy" in out
    assert "did not pass the Upgrade and Connection headers" in out
    assert "proxy_set_header Upgrade $http_upgrade;" in out
    assert "proxy_http_version 1.1;" in out


def test_broken_config_websockets_505_explained(wsgate_server, shared_config,  # noqa: F811
                                                websockets_backend) -> None:  # noqa: F811
    ws = websockets_backend()
    srv = run_shared(wsgate_server, shared_config("article-minimal-broken.conf"), [ws.port])
    rc, steps = probe_json(srv.url("/"))
    assert rc == 1
    result = steps[-1]
    assert result["problem"] == "proxy-http-1.0" and result["status"] == 505, result
    assert "spoke HTTP/1.0 to the backend" in str(result["explanation"])
    assert "unsupported HTTP version: HTTP/1.0" in str(result["explanation"])
    assert "proxy_http_version 1.1;" in str(result["fix"])


@pytest.mark.parametrize("backend", ["websockets", pytest.param("node", marks=pytest.mark.node)])
@pytest.mark.parametrize("conf,path,count", WORKING)
def test_working_configs_echo(conf: str, path: str, count: int, backend: str,
                              wsgate_server, shared_config, procs: ProcessGroup) -> None:  # noqa: F811
    start = start_websockets_echo if backend == "websockets" else start_node_ws_echo
    ports = [start(procs).port for _ in range(count)]
    srv = run_shared(wsgate_server, shared_config(conf), ports)
    for _ in range(count):          # round robin: each backend gets a handshake
        rc, steps = probe_json(srv.url(path), "--count", "5", "--message", "hi")
        assert rc == 0, steps
        names = [s["step"] for s in steps]
        assert names[:5] == ["dns", "tcp", "request", "response", "accept"], names
        result = steps[-1]
        assert result["ok"] is True and result["echoed"] == 5, result
    assert srv.alerts() == []


def test_backend_down_502_explained(wsgate_server, shared_config) -> None:  # noqa: F811
    srv = run_shared(wsgate_server, shared_config("article-minimal-fixed.conf"), [free_port()])
    rc, out = probe(srv.url("/"))
    assert rc == 1, out
    assert "502 Bad Gateway from the proxy" in out
    assert "the backend is down" in out
    assert "connect() failed" in srv.error_log()




def test_idle_tunnel_cut_after_read_timeout(wsgate_server, websockets_backend) -> None:  # noqa: F811
    ws = websockets_backend()
    srv = wsgate_server(UPGRADE_CONF, port=free_port(), backend=ws.port, read_timeout="1s")
    rc, steps = probe_json(srv.url("/"), "--idle", "3")
    assert rc == 1, steps
    cut = next(s for s in steps if s["step"] == "cut")
    assert cut["how"] in ("eof", "reset"), cut
    assert 0.5 <= float(str(cut["after_s"])) <= 2.9, cut    # ~1 s, generous on a busy box
    result = steps[-1]
    assert result["problem"] == "idle-cut", result
    assert "without a WebSocket Close frame" in str(result["explanation"])
    assert "proxy_read_timeout" in str(result["fix"])
