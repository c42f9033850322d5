"""Client contexts for `proxy_pass https://`: SNI, verification, client certificates,
protocols and session reuse, handshaken in memory against trustme-made servers."""

from __future__ import annotations

import ssl
import subprocess
from typing import Any

import pytest

from wsgate.tls import TlsRuntime
from wsgate.tls.upstream import host_matches


def upstream(load: Any, settings: str, url: str = "https://a.example:9443") -> Any:
    cfg = load(f"server {{ listen 127.0.0.1:8080; location / {{ proxy_pass {url}; "
               f"{settings} }} }}")
    tls = TlsRuntime(cfg).upstream(cfg.http.servers[0].locations[0])
    assert tls is not None
    return tls


def backend(pki: Any, name: str, client_ca: bool = False) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(pki.dir / f"{name}.crt"), str(pki.dir / f"{name}.key"))
    seen: list[str | None] = []
    ctx.sni_callback = lambda obj, sni, c: seen.append(sni)
    ctx.seen = seen  # type: ignore[attr-defined]
    if client_ca:
        ctx.load_verify_locations(str(pki.dir / "ca.crt"))
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def connect(shake: Any, tls: Any, server: ssl.SSLContext, proxy_host: str = "a.example:9443",
            peer: str = "10.0.0.1:9443") -> tuple[Any, str | None]:
    name = tls.ssl_name(proxy_host)
    pair = shake(server, tls.context_for(peer),
                 server_hostname=tls.server_hostname(name) or None)
    return pair, tls.check_peer(pair.client, name)


def test_nginx_defaults_no_sni_no_verification(load, shake, pki):
    tls = upstream(load, "")
    server = backend(pki, "untrusted")
    pair, problem = connect(shake, tls, server)
    assert problem is None
    assert server.seen == [None]


def test_sni_with_proxy_ssl_server_name(load, shake, pki):
    server = backend(pki, "a")
    pair, _ = connect(shake, upstream(load, "proxy_ssl_server_name on;"), server)
    assert server.seen == ["a.example"]
    pair, _ = connect(shake, upstream(load, "proxy_ssl_server_name on; "
                                            "proxy_ssl_name b.example;"), server)
    assert server.seen[-1] == "b.example"


def test_no_sni_for_an_ip_address(load, shake, pki):
    server = backend(pki, "ip")
    tls = upstream(load, "proxy_ssl_server_name on;", "https://127.0.0.1:9443")
    connect(shake, tls, server, proxy_host="127.0.0.1:9443")
    assert server.seen == [None]


VERIFY = "proxy_ssl_verify on; proxy_ssl_trusted_certificate ca.crt;"


def test_verify_success(load, shake, pki):
    _, problem = connect(shake, upstream(load, VERIFY), backend(pki, "a"))
    assert problem is None


def test_verify_wrong_name(load, shake, pki):
    _, problem = connect(shake, upstream(load, VERIFY), backend(pki, "b"))
    assert problem == 'upstream SSL certificate does not match "a.example"'


def test_verify_untrusted_chain(load, shake, pki):
    _, problem = connect(shake, upstream(load, VERIFY), backend(pki, "untrusted"))
    assert problem == ("upstream SSL certificate verify error: "
                       "(21:unable to verify the first certificate)")


def test_verify_uses_proxy_ssl_name(load, shake, pki):
    tls = upstream(load, VERIFY + " proxy_ssl_name x.wild.example;")
    _, problem = connect(shake, tls, backend(pki, "b"))
    assert problem is None


def test_client_certificate_to_the_backend(load, shake, pki):
    server = backend(pki, "a", client_ca=True)
    tls = upstream(load, "proxy_ssl_certificate client.crt; "
                         "proxy_ssl_certificate_key client.key;")
    pair, _ = connect(shake, tls, server)
    subject = dict(rdn[0] for rdn in pair.server.getpeercert()["subject"])
    assert subject["commonName"] == "Client, One"
    with pytest.raises(ssl.SSLError):
        pair = connect(shake, upstream(load, ""), server)[0]
        pair.exchange()      # TLS 1.3: the server's alert arrives after the handshake


def test_protocols_and_ciphers(load, shake, pki):
    tls = upstream(load, "proxy_ssl_protocols TLSv1.2; "
                         "proxy_ssl_ciphers ECDHE-ECDSA-AES128-GCM-SHA256;")
    pair, _ = connect(shake, tls, backend(pki, "a"))
    assert pair.client.version() == "TLSv1.2"
    assert pair.client.cipher()[0] == "ECDHE-ECDSA-AES128-GCM-SHA256"


@pytest.mark.parametrize("version", ["TLSv1.2", "TLSv1.3"])
def test_session_reuse_per_peer(load, shake, pki, version):
    tls = upstream(load, f"proxy_ssl_protocols {version};")
    server = backend(pki, "a")
    first, _ = connect(shake, tls, server)
    first.exchange()
    tls.save_session("10.0.0.1:9443", first.client)
    again, _ = connect(shake, tls, server)
    assert again.client.session_reused
    other, _ = connect(shake, tls, server, peer="10.0.0.2:9443")
    assert not other.client.session_reused


def test_session_reuse_off(load, shake, pki):
    tls = upstream(load, "proxy_ssl_session_reuse off;")
    server = backend(pki, "a")
    first, _ = connect(shake, tls, server)
    first.exchange()
    tls.save_session("10.0.0.1:9443", first.client)
    again, _ = connect(shake, tls, server)
    assert not again.client.session_reused


def test_locations_with_the_same_settings_share_a_context(load):
    cfg = load("server { listen 127.0.0.1:8080; proxy_ssl_verify off;"
               " location /a { proxy_pass https://127.0.0.1:1; }"
               " location /b { proxy_pass https://127.0.0.1:2; }"
               " location /c { proxy_pass http://127.0.0.1:3; } }")
    tls = TlsRuntime(cfg)
    a, b, c = cfg.http.servers[0].locations
    assert tls.upstream(a) is tls.upstream(b)
    assert tls.upstream(c) is None


@pytest.mark.parametrize("names,host", [
    (["a.example.com"], "a.example.com"),
    (["A.Example.com"], "a.example.com"),
    (["*.example.com"], "a.example.com"),
    (["*.example.com"], "b.a.example.com"),
    (["*.example.com"], "example.com"),
    (["*.example"], "a.example"),
    (["a.example.com"], "127.0.0.1"),
    (["127.0.0.1"], "127.0.0.1"),
])
def test_host_matching_matches_openssl(pki, names, host):
    """Differential: OpenSSL's X509_check_host (`openssl x509 -checkhost`, flags 0)."""
    pki.issue("names", *names)
    path = str(pki.dir / "names.crt")
    out = subprocess.run(["openssl", "x509", "-noout", "-in", path, "-checkhost", host],
                         capture_output=True, text=True, check=True, timeout=10).stdout
    expected = "does match" in out
    assert host_matches(ssl._ssl._test_decode_cert(path), host) is expected, out


def test_common_name_only_without_dns_names():
    cert = {"subject": ((("commonName", "a.example"),),),
            "subjectAltName": (("IP Address", "127.0.0.1"),)}
    assert host_matches(cert, "a.example")
    cert["subjectAltName"] += (("DNS", "b.example"),)
    assert not host_matches(cert, "a.example")


def test_proxy_ssl_name_with_variables(load, shake, pki):
    from wsgate.config.variables import VarContext
    tls = upstream(load, VERIFY + " proxy_ssl_server_name on; proxy_ssl_name $http_x_name;")
    server = backend(pki, "b")
    variables = VarContext(headers=[("X-Name", "x.wild.example")])
    name = tls.ssl_name("a.example:9443", variables)
    assert name == "x.wild.example"
    pair = shake(server, tls.context_for("p"), server_hostname=tls.server_hostname(name))
    assert server.seen == ["x.wild.example"] and tls.check_peer(pair.client, name) is None


def test_unknown_variable_in_proxy_ssl_name_is_a_load_error(load):
    with pytest.raises(Exception) as info:
        upstream(load, "proxy_ssl_name $no_such_thing;")
    assert 'unknown "no_such_thing" variable' in str(info.value)
