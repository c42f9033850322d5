"""`wsgate probe` against real servers: Python `websockets` and node `ws` directly,
behind real nginx with the published configs (../shared/configs), and scripted
misbehaving servers. Assertions are on stable phrases of the explanations."""

from __future__ import annotations

import pytest

from helpers.fixtures import (nginx_server, node_backend, procs, recording_backend,  # noqa: F401
                              shared_config, websockets_backend)
from helpers.backends import start_websockets_echo
from helpers.nginx import substitute_ports
from helpers.ports import free_port
from helpers.probe import UPGRADE_CONF, probe, probe_json

pytestmark = pytest.mark.timeout(90)


def nginx_for(nginx_server, shared_config, name: str, **ports: int):  # noqa: F811
    """Run a shared config with its ports (80/8080 listen, 3000/3001 backends) moved."""
    mapping = {int(k[1:]): v for k, v in ports.items()}
    return nginx_server(substitute_ports(shared_config(name), mapping))


# --- directly against real backends ------------------------------------------------------

def test_websockets_direct_echo_json(websockets_backend) -> None:  # noqa: F811
    ws = websockets_backend()
    rc, steps = probe_json(ws.url("/chat"), "--count", "5", "--message", "héllo")
    assert rc == 0
    names = [s["step"] for s in steps]
    assert names[:5] == ["dns", "tcp", "request", "response", "accept"]
    result = steps[-1]
    assert result["ok"] is True and result["echoed"] == 5
    rtt = result["rtt_ms"]
    assert rtt["min"] <= rtt["median"] <= rtt["p99"] <= rtt["max"]


@pytest.mark.node
def test_node_direct_echo_and_verbose_heads(node_backend) -> None:  # noqa: F811
    node = node_backend()
    rc, out = probe(node.url("/"), "--count", "3", "-v")
    assert rc == 0, out
    assert "> Upgrade: websocket" in out and "< HTTP/1.1 101 Switching Protocols" in out
    assert "Sec-WebSocket-Accept ok" in out and "3/3 echoes ok" in out


def test_direct_idle_survives(websockets_backend) -> None:  # noqa: F811
    ws = websockets_backend(ping_interval=0.3)     # server pings: probe must pong
    rc, out = probe(ws.url("/"), "--idle", "1.2")
    assert rc == 0, out
    assert "stayed open for 1.2 s idle" in out
    pings = int(out.split("(")[-1].split(" pings")[0])
    assert pings >= 1


@pytest.mark.node
def test_interactive_stdin_dash(node_backend) -> None:  # noqa: F811
    node = node_backend()
    rc, out = probe(node.url("/"), "-", stdin="first line\nsecond line\n")
    assert rc == 0, out
    assert "< first line" in out and "< second line" in out
    assert "WebSocket Close, code 1000" in out


def test_http_url_means_ws_and_200_is_not_websocket(websockets_backend) -> None:  # noqa: F811
    ws = websockets_backend()
    rc, out = probe(f"http://127.0.0.1:{ws.port}/http")
    assert rc == 1
    assert "not a WebSocket endpoint" in out and "hello from websockets /http" in out


def test_connection_refused() -> None:
    rc, out = probe(f"ws://127.0.0.1:{free_port()}/")
    assert rc == 1
    assert "connection refused: nothing is listening on 127.0.0.1:" in out
    assert "Fix: start the server" in out


def test_usage_errors() -> None:
    assert probe("ftp://x/")[0] == 2
    assert probe("ws://127.0.0.1:1/", "-H", "no colon")[0] == 2


# --- behind real nginx with the published configs ---------------------------------------

@pytest.mark.nginx
@pytest.mark.node
def test_minimal_broken_node_426_explained(nginx_server, shared_config, node_backend) -> None:  # noqa: F811
    node = node_backend()
    srv = nginx_for(nginx_server, shared_config, "article-minimal-broken.conf",
                    p80=free_port(), p3000=node.port)
    rc, out = probe(srv.url("/"))
    assert rc == 1
    assert "426 Upgrade Required came from the backend, through a proxy" in out
    assert "did not pass the Upgrade and Connection headers" in out
    assert "proxy_set_header Upgrade $http_upgrade;" in out
    assert "proxy_http_version 1.1;" in out


@pytest.mark.nginx
def test_minimal_broken_websockets_505_explained(nginx_server, shared_config,  # noqa: F811
                                                 websockets_backend) -> None:  # noqa: F811
    ws = websockets_backend()
    srv = nginx_for(nginx_server, shared_config, "article-minimal-broken.conf",
                    p80=free_port(), p3000=ws.port)
    rc, steps = probe_json(srv.url("/"))
    assert rc == 1
    result = steps[-1]
    assert result["problem"] == "proxy-http-1.0" and result["status"] == 505
    assert "spoke HTTP/1.0 to the backend" in result["explanation"]
    assert "unsupported HTTP version: HTTP/1.0" in result["explanation"]
    assert "proxy_http_version 1.1;" in result["fix"]


@pytest.mark.nginx
@pytest.mark.parametrize("backend", ["websockets", "node"])
def test_minimal_fixed_works(nginx_server, shared_config, procs, backend) -> None:  # noqa: F811
    from helpers.backends import start_node_ws_echo
    be = start_websockets_echo(procs) if backend == "websockets" else start_node_ws_echo(procs)
    srv = nginx_for(nginx_server, shared_config, "article-minimal-fixed.conf",
                    p80=free_port(), p3000=be.port)
    rc, out = probe(srv.url("/anything"), "--count", "4")
    assert rc == 0, out
    assert "4/4 echoes ok" in out


@pytest.mark.nginx
def test_map_complete_works(nginx_server, shared_config, websockets_backend) -> None:  # noqa: F811
    ws = websockets_backend()
    srv = nginx_for(nginx_server, shared_config, "article-map-complete.conf",
                    p8080=free_port(), p3000=ws.port)
    rc, out = probe(srv.url("/websocket"), "--count", "3")
    assert rc == 0, out


@pytest.mark.nginx
@pytest.mark.parametrize("conf", ["docs-chat-location.conf", "docs-chat-map.conf"])
def test_docs_chat_upstream_works(nginx_server, shared_config, procs, conf) -> None:  # noqa: F811
    a, b = start_websockets_echo(procs), start_websockets_echo(procs)
    srv = nginx_for(nginx_server, shared_config, conf, p8080=free_port(),
                    p3000=a.port, p3001=b.port)
    for _ in range(2):           # round robin: one handshake to each backend
        rc, out = probe(srv.url("/chat/"), "--count", "2")
        assert rc == 0, out


@pytest.mark.nginx
def test_backend_down_502(nginx_server, shared_config) -> None:  # noqa: F811
    srv = nginx_for(nginx_server, shared_config, "article-minimal-fixed.conf",
                    p80=free_port(), p3000=free_port())
    rc, out = probe(srv.url("/"))
    assert rc == 1
    assert "502 Bad Gateway from the proxy (`Server: nginx" in out
    assert "the backend is down" in out
    assert "connect() failed" in srv.error_log()




@pytest.mark.nginx
def test_slow_backend_504(nginx_server, recording_backend) -> None:  # noqa: F811
    rec = recording_backend(spec={"default": {"ignore": True}})
    srv = nginx_server(UPGRADE_CONF, port=free_port(), backend=rec.port, read_timeout="1s")
    rc, out = probe(srv.url("/"))
    assert rc == 1
    assert "504 Gateway Timeout from the proxy" in out
    assert "did not answer the handshake in time" in out


@pytest.mark.nginx
def test_idle_cut_by_proxy_read_timeout(nginx_server, websockets_backend) -> None:  # noqa: F811
    ws = websockets_backend()
    srv = nginx_server(UPGRADE_CONF, port=free_port(), backend=ws.port, read_timeout="2s")
    rc, steps = probe_json(srv.url("/"), "--idle", "15")
    assert rc == 1
    cut = next(s for s in steps if s["step"] == "cut")
    assert cut["how"] in ("eof", "reset")
    assert 1.5 <= cut["after_s"] <= 6.0
    result = steps[-1]
    assert result["problem"] == "idle-cut"
    assert "without a WebSocket Close frame" in result["explanation"]
    assert "proxy_read_timeout" in result["fix"]


# --- scripted misbehaving servers ---------------------------------------------------------

def test_wrong_accept_key(recording_backend) -> None:  # noqa: F811
    rec = recording_backend(spec={"default": {"upgrade": True,
                                              "accept": "dGhpcyBpcyB3cm9uZw=="}})
    rc, out = probe(rec.url("/"))
    assert rc == 1
    assert "101 Switching Protocols with a wrong Sec-WebSocket-Accept" in out
    assert "not computed from our key" in out


def test_redirect_to_tls(recording_backend) -> None:  # noqa: F811
    rec = recording_backend(spec={"default": {
        "status": 301, "headers": [["Location", "https://example.test/new/path"]], "body": ""}})
    rc, out = probe(rec.url("/old"))
    assert rc == 1
    assert "301 Moved Permanently redirect to TLS (use wss://)" in out
    assert "do not follow redirects" in out
    assert "wsgate probe wss://example.test/new/path" in out


def test_forbidden_suggests_origin(recording_backend) -> None:  # noqa: F811
    rec = recording_backend(spec={"default": {"status": 403, "body": "origin not allowed"}})
    rc, out = probe(rec.url("/"))
    assert rc == 1 and "Origin check" in out and "--origin" in out


def test_400_quotes_body_first_line(recording_backend) -> None:  # noqa: F811
    rec = recording_backend(spec={"default": {
        "status": 400, "body": "Missing or invalid Sec-WebSocket-Key\nmore"}})
    rc, out = probe(rec.url("/"))
    assert rc == 1
    assert "refused the handshake" in out
    assert '"Missing or invalid Sec-WebSocket-Key"' in out


def test_headers_origin_subprotocol_are_sent(recording_backend) -> None:  # noqa: F811
    rec = recording_backend(spec={"default": {"upgrade": True,
                                              "headers": [["Sec-WebSocket-Protocol", "chat"]]}})
    rc, out = probe(rec.url("/p?q=1"), "-H", "X-Token: abc", "--origin", "https://app.test",
                    "--subprotocol", "chat", "--subprotocol", "superchat")
    assert rc == 0, out
    lines = rec.records()[0]["header_lines"]
    assert rec.records()[0]["request_line"] == "GET /p?q=1 HTTP/1.1"
    assert "X-Token: abc" in lines and "Origin: https://app.test" in lines
    assert "Sec-WebSocket-Protocol: chat, superchat" in lines


# --- TLS ------------------------------------------------------------------------------

@pytest.fixture
def tls_backend(procs, tmp_path):  # noqa: F811
    import trustme
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    ca_path, cert_path = tmp_path / "ca.pem", tmp_path / "server.pem"
    ca.cert_pem.write_to_path(str(ca_path))
    cert.private_key_and_cert_chain_pem.write_to_path(str(cert_path))
    return start_websockets_echo(procs, certfile=str(cert_path)), ca_path


def test_tls_with_ca_ok(tls_backend) -> None:
    backend, ca = tls_backend
    rc, out = probe(backend.url("/", scheme="wss"), "--ca", str(ca), "--count", "2")
    assert rc == 0, out
    assert "* TLS TLSv1.3" in out and "certificate subject:" in out


def test_tls_without_ca_verify_failed(tls_backend) -> None:
    backend, _ = tls_backend
    rc, out = probe(backend.url("/", scheme="wss"))
    assert rc == 1
    assert "TLS certificate verify failed" in out
    assert "--ca FILE" in out and "--insecure" in out
    rc, out = probe(f"https://127.0.0.1:{backend.port}/", "--insecure", "--count", "1")
    assert rc == 0, out


def test_wss_to_plain_port(websockets_backend) -> None:  # noqa: F811
    ws = websockets_backend()
    rc, out = probe(ws.url("/", scheme="wss"))
    assert rc == 1
    assert "does not speak TLS" in out and "use ws://" in out


def test_unoffered_subprotocol_is_refused(recording_backend) -> None:  # noqa: F811
    """The probe offered no subprotocol; a 101 that picks one fails RFC 6455 4.1 step 6."""
    rec = recording_backend(spec={"default": {"upgrade": True,
                                              "headers": [["Sec-WebSocket-Protocol", "chat"]]}})
    rc, steps = probe_json(rec.url("/"))
    assert rc == 1
    result = steps[-1]
    assert result["problem"] == "bad-101"
    assert result["problems"] == ['server chose subprotocol "chat", which the client did not '
                                  "offer (offered: none)"]


def test_unoffered_extension_is_refused(recording_backend) -> None:  # noqa: F811
    """The probe offers no extension unless -H adds one; accepting one it did not offer
    fails RFC 6455 4.1 step 5."""
    rec = recording_backend(spec={"default": {"upgrade": True, "headers": [
        ["Sec-WebSocket-Extensions", "permessage-deflate; server_no_context_takeover"]]}})
    rc, steps = probe_json(rec.url("/"))
    assert rc == 1
    result = steps[-1]
    assert result["problem"] == "bad-101"
    assert result["problems"] == ['server accepted extension "permessage-deflate", which the '
                                  "client did not offer"]


def test_extension_offered_with_header_is_accepted(recording_backend) -> None:  # noqa: F811
    rec = recording_backend(spec={"default": {"upgrade": True, "headers": [
        ["Sec-WebSocket-Extensions", "permessage-deflate"]]}})
    rc, out = probe(rec.url("/"), "-H",
                    "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits")
    assert rc == 0, out
    assert "Sec-WebSocket-Accept ok" in out
