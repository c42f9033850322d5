"""TLS through the whole proxy (wsgate in nginx mode, real sockets on loopback):
wss:// -> wsgate -> ws://, wss:// -> wsgate -> wss://, SNI, plain HTTP on the TLS
port, client certificates, the $ssl_* variables, upstream TLS failures (502 and
nginx's error-log line), and a reload that renews the certificate without cutting
an established wss tunnel."""

from __future__ import annotations

import asyncio
import pathlib
import signal
import socket
import ssl
import time
from typing import Any

import pytest
import trustme
from websockets.asyncio.client import connect

from helpers.fixtures import procs, websockets_backend, wsgate_server  # noqa: F401
from helpers.ports import free_port

WS = """
    proxy_http_version 1.1;
    proxy_set_header Upgrade $http_upgrade;
    proxy_set_header Connection "upgrade";
"""


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    d = tmp_path_factory.mktemp("tlspki")
    ca, other = trustme.CA(), trustme.CA()
    ca.cert_pem.write_to_path(str(d / "ca.crt"))
    out: dict[str, Any] = {"dir": d, "ca": ca}
    for name, ident, issuer in (("a", "a.example", ca), ("b", "b.example", ca),
                                ("local", "localhost", ca), ("bad", "localhost", other),
                                ("client", "client@example", ca)):
        leaf = issuer.issue_cert(ident, common_name=f"{name}-cn")
        leaf.cert_chain_pems[0].write_to_path(str(d / f"{name}.crt"))
        leaf.private_key_pem.write_to_path(str(d / f"{name}.key"))
    return out


def client_ctx(pki: dict[str, Any], cert: str | None = None) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    pki["ca"].configure_trust(ctx)
    if cert:
        d = pki["dir"]
        ctx.load_cert_chain(str(d / f"{cert}.crt"), str(d / f"{cert}.key"))
    return ctx


def https_get(port: int, pki: dict[str, Any], name: str = "a.example", path: str = "/",
              cert: str | None = None) -> tuple[bytes, str]:
    """A raw HTTP/1.0 request over TLS; (response bytes, peer certificate CN)."""
    ctx = client_ctx(pki, cert)
    ctx.check_hostname = False
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname=name) as tls:
            tls.sendall(f"GET {path} HTTP/1.0\r\nHost: {name}\r\n\r\n".encode())
            data = b""
            while chunk := tls.recv(65536):
                data += chunk
            cn = dict(r[0] for r in tls.getpeercert()["subject"])["commonName"]
    return data, cn


def plain_get(port: int, path: str = "/") -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(f"GET {path} HTTP/1.0\r\nHost: a.example\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    return data


async def ws_echo(url: str, ctx: ssl.SSLContext | None, messages: int = 3,
                  name: str = "a.example") -> list[str]:
    kw: dict[str, Any] = {"ssl": ctx, "server_hostname": name} if ctx else {}
    async with connect(url, open_timeout=10, **kw) as ws:
        out = []
        for i in range(messages):
            await ws.send(f"m{i}")
            out.append(await asyncio.wait_for(ws.recv(), 10))
    return out


def tls_conf(pki: dict[str, Any], port: int, body: str, extra_server: str = "",
             main: str = "") -> str:
    d = pki["dir"]
    return f"""
{main}
events {{}}
http {{
    server {{
        listen 127.0.0.1:{port} ssl;
        server_name a.example;
        ssl_certificate {d}/a.crt;
        ssl_certificate_key {d}/a.key;
        {body}
    }}
    server {{
        listen 127.0.0.1:{port} ssl;
        server_name b.example;
        ssl_certificate {d}/b.crt;
        ssl_certificate_key {d}/b.key;
        location / {{ return 200 "server b\\n"; }}
    }}
    {extra_server}
}}
"""


def test_wss_to_ws_backend(wsgate_server, websockets_backend, pki):
    backend = websockets_backend()
    port = free_port()
    srv = wsgate_server(tls_conf(pki, port, f"location / {{ proxy_pass "
                                             f"http://127.0.0.1:{backend.port}; {WS} }}"))
    got = asyncio.run(ws_echo(f"wss://127.0.0.1:{port}/", client_ctx(pki)))
    assert got == ["m0", "m1", "m2"]
    assert srv.alerts() == []


def test_wss_to_wss_backend(wsgate_server, websockets_backend, pki):
    d = pki["dir"]
    backend = websockets_backend(certfile=str(d / "local.crt"), keyfile=str(d / "local.key"))
    port = free_port()
    loc = (f"location / {{ proxy_pass https://localhost:{backend.port}; {WS}"
           f" proxy_ssl_verify on; proxy_ssl_trusted_certificate {d}/ca.crt;"
           f" proxy_ssl_server_name on; }}")
    srv = wsgate_server(tls_conf(pki, port, loc))
    got = asyncio.run(ws_echo(f"wss://127.0.0.1:{port}/", client_ctx(pki)))
    assert got == ["m0", "m1", "m2"]
    assert srv.alerts() == []


def test_sni_picks_the_server_certificate(wsgate_server, pki):
    port = free_port()
    wsgate_server(tls_conf(pki, port, 'location / { return 200 "server a\\n"; }'))
    body, cn = https_get(port, pki, "b.example")
    assert cn == "b-cn" and body.endswith(b"server b\n")
    body, cn = https_get(port, pki, "a.example")
    assert cn == "a-cn" and body.endswith(b"server a\n")
    body, cn = https_get(port, pki, "unknown.example")
    assert cn == "a-cn"


def test_plain_http_on_the_tls_port(wsgate_server, pki):
    port = free_port()
    wsgate_server(tls_conf(pki, port, 'location / { return 200 "ok\\n"; }'))
    data = plain_get(port)
    assert data.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert b"<center>The plain HTTP request was sent to HTTPS port</center>" in data
    assert https_get(port, pki)[0].endswith(b"ok\n")      # the listener still serves


def test_tls_variables(wsgate_server, pki):
    port = free_port()
    wsgate_server(tls_conf(pki, port, 'location / { return 200 "$scheme $https '
                                      '$ssl_protocol $ssl_server_name $ssl_session_reused '
                                      '$ssl_client_verify\\n"; }'))
    body, _ = https_get(port, pki, "a.example")
    assert body.endswith(b"\r\n\r\nhttps on TLSv1.3 a.example . NONE\n")


def test_client_certificates(wsgate_server, pki, tmp_path):
    port = free_port()
    d = pki["dir"]
    info_log = tmp_path / "info.log"
    wsgate_server(tls_conf(pki, port, f"ssl_verify_client on; "
                                      f"ssl_client_certificate {d}/ca.crt;"
                                      ' location / { return 200 "$ssl_client_verify '
                                      '$ssl_client_s_dn\\n"; }',
                           main=f"error_log {info_log} info;"))
    body, _ = https_get(port, pki, cert="client")
    assert body.endswith(b"SUCCESS CN=client-cn,OU=" + body.split(b",OU=")[1])
    body, _ = https_get(port, pki)
    assert body.startswith(b"HTTP/1.1 400 Bad Request")
    assert b"No required SSL certificate was sent" in body
    assert "[info]" in info_log.read_text()
    assert "client sent no required SSL certificate while reading client request headers" \
        in info_log.read_text()


@pytest.mark.parametrize("cert,message", [
    ("bad", "upstream SSL certificate verify error: "),
    ("b", 'upstream SSL certificate does not match "localhost"'),
])
def test_upstream_tls_failures_are_502(wsgate_server, websockets_backend, pki, cert,
                                       message):
    d = pki["dir"]
    backend = websockets_backend(certfile=str(d / f"{cert}.crt"),
                                 keyfile=str(d / f"{cert}.key"))
    port = free_port()
    srv = wsgate_server(f"""
events {{}}
http {{
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass https://localhost:{backend.port};
            proxy_ssl_verify on;
            proxy_ssl_trusted_certificate {d}/ca.crt;
        }}
    }}
}}
""")
    data = plain_get(port)
    assert data.startswith(b"HTTP/1.1 502 Bad Gateway\r\n")
    log = srv.error_log()
    assert message in log and "while SSL handshaking to upstream" in log


def test_reload_renews_the_certificate_and_keeps_tunnels(wsgate_server, websockets_backend,
                                                         pki, tmp_path):
    backend = websockets_backend()
    d = pki["dir"]
    live = tmp_path / "live"
    live.mkdir()
    for ext in ("crt", "key"):
        (live / f"site.{ext}").write_bytes((d / f"a.{ext}").read_bytes())
    port = free_port()
    conf = f"""
events {{}}
http {{
    server {{
        listen 127.0.0.1:{port} ssl;
        ssl_certificate {live}/site.crt;
        ssl_certificate_key {live}/site.key;
        location / {{ proxy_pass http://127.0.0.1:{backend.port}; {WS} }}
    }}
}}
"""
    srv = wsgate_server(conf, master=True)

    async def scenario() -> None:
        ctx = client_ctx(pki)
        ctx.check_hostname = False
        async with connect(f"wss://127.0.0.1:{port}/", ssl=ctx, open_timeout=10) as old:
            await old.send("before")
            assert await asyncio.wait_for(old.recv(), 10) == "before"
            for ext in ("crt", "key"):
                (live / f"site.{ext}").write_bytes((d / f"b.{ext}").read_bytes())
            srv.send_signal(signal.SIGHUP)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                if https_get(port, pki, "b.example", "/x")[1] == "b-cn":
                    break
                await asyncio.sleep(0.1)
            else:
                pytest.fail("the renewed certificate was not served after reload")
            await old.send("after")
            assert await asyncio.wait_for(old.recv(), 10) == "after"
    asyncio.run(scenario())


def test_garbage_and_stalled_handshakes_close_only_their_connection(wsgate_server, pki,
                                                                   tmp_path):
    port = free_port()
    info_log = tmp_path / "info.log"
    srv = wsgate_server(tls_conf(pki, port, 'client_header_timeout 1s; '
                                            'location / { return 200 "ok\\n"; }',
                                 main=f"error_log {info_log} info;"))
    stalled = socket.create_connection(("127.0.0.1", port), timeout=10)
    stalled.sendall(b"\x16\x03\x01\x02\x00\x01")           # half a ClientHello
    with socket.create_connection(("127.0.0.1", port), timeout=10) as garbage:
        garbage.sendall(b"\x16\x03\x01\x00\x05" + b"\xff" * 64)
        assert len(garbage.recv(1024)) < 100              # an alert at most, then EOF
    assert https_get(port, pki)[0].endswith(b"ok\n")      # others are served meanwhile
    started = time.monotonic()
    assert stalled.recv(1024) == b""                      # closed by client_header_timeout
    assert time.monotonic() - started < 5
    stalled.close()
    deadline = time.monotonic() + 5          # the line is written just after the close
    while "client timed out" not in info_log.read_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    log = info_log.read_text()
    assert "SSL_do_handshake() failed" in log and "while SSL handshaking" in log
    assert "client timed out (110: Connection timed out) while SSL handshaking" in log
    assert srv.alerts() == [] and "Traceback" not in srv.output()


def test_tls_upstream_connections_join_the_keepalive_pool(wsgate_server, pki):
    """Two requests through `upstream { keepalive }` to an https backend use one TLS
    connection (the backend counts its accepted connections and handshakes)."""
    import http.server
    import threading

    d = pki["dir"]
    seen: list[int] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            body = f"conn {id(self.connection)}\n".encode()
            seen.append(id(self.connection))
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(d / "local.crt"), str(d / "local.key"))
    httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.1},
                              daemon=True)
    thread.start()
    try:
        port = free_port()
        wsgate_server(f"""
events {{}}
http {{
    upstream tlsback {{ server 127.0.0.1:{httpd.server_address[1]}; keepalive 4; }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass https://tlsback;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
}}
""")
        first, second = plain_get(port), plain_get(port)
        assert first.startswith(b"HTTP/1.1 200") and second.startswith(b"HTTP/1.1 200")
        assert len(seen) == 2 and seen[0] == seen[1]
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)
