"""open_tls_peer (the engine's upstream TLS connect) against real TLS servers on
loopback: verification outcomes in nginx's words, SNI, and session reuse per peer
across connections, on asyncio and uvloop."""

from __future__ import annotations

import asyncio
import ssl
from typing import Any

import pytest
import trustme
import uvloop

from wsgate.config.load import load_config_text
from wsgate.tls import TlsRuntime
from wsgate.tls.serving import UpstreamHandshakeError, open_tls_peer

LOOPS = {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    d = tmp_path_factory.mktemp("ups")
    ca, other = trustme.CA(), trustme.CA()
    ca.cert_pem.write_to_path(str(d / "ca.crt"))
    out: dict[str, Any] = {"dir": d}
    for name, ident, issuer in (("good", "backend.example", ca),
                                ("other", "other.example", ca),
                                ("untrusted", "backend.example", other)):
        leaf = issuer.issue_cert(ident)
        leaf.private_key_and_cert_chain_pem.write_to_path(str(d / f"{name}.pem"))
    return out


def upstream_tls(pki: dict[str, Any], settings: str) -> Any:
    d = pki["dir"]
    cfg = load_config_text(
        "events {} http { server { listen 127.0.0.1:1; location / { "
        f"proxy_pass https://backend.example:1; {settings} }} }} }}",
        prefix=str(d), name="nginx.conf")
    tls = TlsRuntime(cfg).upstream(cfg.http.servers[0].locations[0])
    assert tls is not None
    return tls


def serve_and_connect(loop_name: str, pki: dict[str, Any], cert: str, tls: Any,
                      connections: int = 1, version: str = "TLSv1.3") -> dict[str, Any]:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(pki["dir"] / f"{cert}.pem"))
    ctx.maximum_version = ssl.TLSVersion[version.replace(".", "_")]
    result: dict[str, Any] = {"sni": [], "reused": [], "error": None}
    ctx.sni_callback = lambda obj, name, c: result["sni"].append(name)

    class Hello(asyncio.Protocol):
        def connection_made(self, transport: Any) -> None:
            transport.write(b"hi")

    async def main() -> None:
        server = await asyncio.get_running_loop().create_server(Hello, "127.0.0.1", 0,
                                                                ssl=ctx)
        port = server.sockets[0].getsockname()[1]
        try:
            for _ in range(connections):
                got = asyncio.get_running_loop().create_future()

                class Reader(asyncio.Protocol):
                    def data_received(self, data: bytes) -> None:
                        if not got.done():
                            got.set_result(data)
                try:
                    transport, _ = await open_tls_peer(Reader, ("127.0.0.1", port), 5, tls,
                                                       f"127.0.0.1:{port}",
                                                       "backend.example:1")
                except UpstreamHandshakeError as exc:
                    result["error"] = exc.message
                    return
                assert await asyncio.wait_for(got, 5) == b"hi"    # tickets arrive too
                result["reused"].append(transport.get_extra_info("ssl_object").session_reused)
                transport.close()
        finally:
            server.close()
    loop = LOOPS[loop_name]()
    try:
        loop.run_until_complete(asyncio.wait_for(main(), 20))
    finally:
        loop.close()
    return result


VERIFY = "proxy_ssl_verify on; proxy_ssl_trusted_certificate ca.crt;"


@pytest.mark.parametrize("loop_name", LOOPS)
def test_verified_connection(loop_name, pki):
    r = serve_and_connect(loop_name, pki, "good", upstream_tls(pki, VERIFY))
    assert r["error"] is None and r["sni"] == [None]


@pytest.mark.parametrize("loop_name", LOOPS)
@pytest.mark.parametrize("cert,message", [
    ("other", 'upstream SSL certificate does not match "backend.example"'),
    ("untrusted", "upstream SSL certificate verify error: "
                  "(21:unable to verify the first certificate)"),
])
def test_verification_failures(loop_name, pki, cert, message):
    r = serve_and_connect(loop_name, pki, cert, upstream_tls(pki, VERIFY))
    assert r["error"] == message


@pytest.mark.parametrize("loop_name", LOOPS)
def test_sni_when_enabled(loop_name, pki):
    r = serve_and_connect(loop_name, pki, "good",
                          upstream_tls(pki, "proxy_ssl_server_name on;"))
    assert r["sni"] == ["backend.example"]


@pytest.mark.parametrize("loop_name", LOOPS)
@pytest.mark.parametrize("version", ["TLSv1.2", "TLSv1.3"])
@pytest.mark.parametrize("reuse", ["on", "off"])
def test_session_reuse_across_connections(loop_name, pki, version, reuse):
    r = serve_and_connect(loop_name, pki, "good",
                          upstream_tls(pki, f"proxy_ssl_session_reuse {reuse};"),
                          connections=3, version=version)
    assert r["reused"] == [False, reuse == "on", reuse == "on"]
