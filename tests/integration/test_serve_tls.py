"""`wsgate serve` with TLS (quick mode): --tls-cert/--tls-key terminate wss:// and
https://, --to https:// / wss:// proxy to TLS backends, and the refusals (mixed
schemes, unreadable files, a key that does not match). Certificates are made at
test time with trustme; serve runs as a real process on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import pathlib
import signal
import socket
import ssl
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest
import trustme
from websockets.asyncio.client import connect

from helpers.fixtures import procs, recording_backend, websockets_backend  # noqa: F401
from helpers.nginx import WSGATE_BIN
from helpers.ports import free_port, wait_port
from integration.test_serve import _print_config, _wait_exit

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """ca.crt; site.* for "localhost" (the proxy), back.* (a wss backend),
    rogue.* from another CA."""
    d = tmp_path_factory.mktemp("servetls")
    ca, other = trustme.CA(), trustme.CA()
    ca.cert_pem.write_to_path(str(d / "ca.crt"))
    for name, issuer in (("site", ca), ("back", ca), ("rogue", other)):
        leaf = issuer.issue_cert("localhost", common_name=f"{name}-cn")
        leaf.cert_chain_pems[0].write_to_path(str(d / f"{name}.crt"))
        leaf.private_key_pem.write_to_path(str(d / f"{name}.key"))
    return {"dir": d, "ca": ca}


def client_ctx(pki: dict[str, Any]) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    pki["ca"].configure_trust(ctx)
    return ctx


@contextlib.contextmanager
def serving(tmp_path: pathlib.Path, *args: str) -> Iterator[tuple[int, subprocess.Popen[str]]]:
    """`wsgate serve --listen 127.0.0.1:PORT ARGS`, stopped with QUIT; asserts a clean
    exit and no traceback or [alert] in its output."""
    port = free_port()
    proc = subprocess.Popen([WSGATE_BIN, "serve", "--listen", f"127.0.0.1:{port}", *args,
                             "--prefix", str(tmp_path / "prefix")],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        wait_port("127.0.0.1", port, 15)
        yield port, proc
        proc.send_signal(signal.SIGQUIT)
        assert _wait_exit(proc, 15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    out = proc.stdout.read() if proc.stdout else ""
    assert "Traceback" not in out and "[alert]" not in out, out


def https_get(port: int, pki: dict[str, Any], path: str) -> bytes:
    """A raw HTTP/1.0 GET over TLS (server name "localhost"); the whole response."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with client_ctx(pki).wrap_socket(raw, server_hostname="localhost") as tls:
            tls.sendall(f"GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n".encode())
            data = b""
            while chunk := tls.recv(65536):
                data += chunk
    return data


def plain_get(port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    return data


async def wss_echo(port: int, pki: dict[str, Any], messages: int = 3) -> list[Any]:
    async with connect(f"wss://localhost:{port}/chat", ssl=client_ctx(pki),
                       host="127.0.0.1", port=port, open_timeout=10,
                       ping_interval=None) as ws:
        out = []
        for i in range(messages):
            await ws.send(f"m{i}")
            out.append(await asyncio.wait_for(ws.recv(), 10))
        await ws.send(b"\x00\x01binary")
        out.append(await asyncio.wait_for(ws.recv(), 10))
    return out


def tls_args(pki: dict[str, Any], name: str = "site") -> list[str]:
    d = pki["dir"]
    return ["--tls-cert", str(d / f"{name}.crt"), "--tls-key", str(d / f"{name}.key")]


def test_wss_client_to_a_plain_ws_backend(websockets_backend, pki, tmp_path):
    backend = websockets_backend()
    with serving(tmp_path, *tls_args(pki), "--to", f"127.0.0.1:{backend.port}") as (port, _):
        got = asyncio.run(wss_echo(port, pki))
        assert got == ["m0", "m1", "m2", b"\x00\x01binary"]
        reply = https_get(port, pki, "/http")            # plain HTTP over TLS works too
        assert reply.startswith(b"HTTP/1.1 200 ") and b"hello from websockets" in reply
        refused = plain_get(port)                        # no TLS on the TLS port
        assert refused.startswith(b"HTTP/1.1 400 Bad Request\r\n")
        assert b"The plain HTTP request was sent to HTTPS port" in refused
        assert asyncio.run(wss_echo(port, pki, 1))[0] == "m0"     # still serving


def test_the_backend_sees_https(recording_backend, pki, tmp_path):
    """$scheme is https: the generated X-Forwarded-Proto says so to the backend."""
    rec = recording_backend()
    with serving(tmp_path, *tls_args(pki), "--to", f"127.0.0.1:{rec.port}") as (port, _):
        reply = https_get(port, pki, "/scheme")
    assert reply.startswith(b"HTTP/1.1 200 ")
    (record,) = rec.records()
    headers = {k.lower(): v for k, v in record["headers"]}
    assert record["target"] == "/scheme"
    assert headers["x-forwarded-proto"] == "https"
    assert headers["x-forwarded-for"] == "127.0.0.1"


@pytest.mark.parametrize("scheme", ["wss", "https"])
def test_wss_to_a_wss_backend_verified(websockets_backend, pki, tmp_path, scheme):
    """wss -> wsgate -> wss, the backend's certificate checked against the CA and the
    name given with --tls-upstream-name (the --to is an IP address)."""
    d = pki["dir"]
    backend = websockets_backend(certfile=str(d / "back.crt"), keyfile=str(d / "back.key"))
    with serving(tmp_path, *tls_args(pki), "--to", f"{scheme}://127.0.0.1:{backend.port}",
                 "--tls-verify-upstream", str(d / "ca.crt"),
                 "--tls-upstream-name", "localhost") as (port, _):
        got = asyncio.run(wss_echo(port, pki))
        assert got == ["m0", "m1", "m2", b"\x00\x01binary"]
        assert b"hello from websockets" in https_get(port, pki, "/http")


def test_tls_backends_are_not_verified_by_default(websockets_backend, pki, tmp_path):
    """nginx's default proxy_ssl_verify off: an untrusted backend certificate is used;
    with --tls-verify-upstream the same backend is a 502."""
    d = pki["dir"]
    backend = websockets_backend(certfile=str(d / "rogue.crt"), keyfile=str(d / "rogue.key"))
    to = ["--to", f"wss://localhost:{backend.port}"]
    with serving(tmp_path / "a", *tls_args(pki), *to) as (port, _):
        assert asyncio.run(wss_echo(port, pki, 1))[0] == "m0"
    with serving(tmp_path / "b", *tls_args(pki), *to,
                 "--tls-verify-upstream", str(d / "ca.crt")) as (port, _):
        assert https_get(port, pki, "/http").startswith(b"HTTP/1.1 502 Bad Gateway\r\n")


def test_print_config_shows_the_tls_lines(pki, tmp_path):
    d = pki["dir"]
    res = _print_config("--listen", "127.0.0.1:8443", "--listen", "8444",
                        *tls_args(pki), "--to", "wss://localhost:3000",
                        "--to", "https://localhost", "--tls-verify-upstream",
                        str(d / "ca.crt"))
    assert res.returncode == 0, res.stderr
    text = res.stdout
    for piece in ("listen 127.0.0.1:8443 ssl;", "listen 8444 ssl;",
                  f"ssl_certificate {d}/site.crt;", f"ssl_certificate_key {d}/site.key;",
                  "ssl_protocols TLSv1.2 TLSv1.3;", "server localhost:3000;",
                  "server localhost:443;", "proxy_pass https://wsgate_backend;",
                  "proxy_ssl_server_name on;", "proxy_ssl_name localhost;",
                  "proxy_ssl_verify on;", f"proxy_ssl_trusted_certificate {d}/ca.crt;",
                  "proxy_set_header X-Forwarded-Proto $scheme;"):
        assert piece in text, piece
    conf = tmp_path / "quick.conf"
    conf.write_text(text)
    for binary in (WSGATE_BIN, "/usr/sbin/nginx"):   # real nginx accepts it too
        check = subprocess.run([binary, "-t", "-p", f"{tmp_path}/", "-c", str(conf),
                                "-g", f"pid {tmp_path}/t.pid;", "-e", str(tmp_path / "e.log")],
                               capture_output=True, text=True, timeout=30)
        assert check.returncode == 0, (binary, check.stderr)


def test_print_config_without_verification_says_so(pki):
    res = _print_config("--listen", "8443", "--to", "https://127.0.0.1:3000",
                        "--to", "https://127.0.0.2:3001")
    assert res.returncode == 0, res.stderr
    assert "proxy_ssl_verify off;" in res.stdout and "listen 8443;" in res.stdout
    assert "ssl_certificate" not in res.stdout        # plain listener, TLS backends
    # two hosts, no name given: no SNI rather than the group's name
    assert "proxy_ssl_server_name" not in res.stdout


def test_relative_certificate_paths_are_made_absolute(pki, monkeypatch):
    monkeypatch.chdir(pki["dir"])
    res = _print_config("--listen", "8443", "--tls-cert", "site.crt", "--tls-key",
                        "site.key", "--to", "127.0.0.1:3000")
    assert f"ssl_certificate {pki['dir']}/site.crt;" in res.stdout


def test_help_says_backends_are_not_verified() -> None:
    res = subprocess.run([WSGATE_BIN, "serve", "--help"], capture_output=True, text=True,
                         timeout=30)
    words = " ".join(res.stdout.split())
    assert res.returncode == 0
    assert "NOT verified by default, as in nginx (proxy_ssl_verify off)" in words
    for flag in ("--tls-cert", "--tls-key", "--tls-verify-upstream", "--tls-upstream-name"):
        assert flag in words


@pytest.mark.parametrize("to", [
    ["--to", "127.0.0.1:3000", "--to", "https://127.0.0.1:3001"],
    ["--to", "wss://127.0.0.1:3000", "--to", "ws://127.0.0.1:3001"],
])
def test_mixed_schemes_are_refused(to: list[str]) -> None:
    res = subprocess.run([WSGATE_BIN, "serve", "--listen", "8080", *to],
                         capture_output=True, text=True, timeout=30)
    assert res.returncode == 2
    assert "mix plain and TLS backends: one group speaks one scheme" in res.stderr
    assert "Traceback" not in res.stderr


@pytest.mark.parametrize("args, message", [
    (["--to", "ftp://127.0.0.1:1"], 'invalid --to "ftp://127.0.0.1:1": the scheme'),
    (["--to", "https://127.0.0.1:1/app"], "without a path"),
    (["--to", "127.0.0.1:1", "--tls-verify-upstream", "ca.crt"], "needs TLS backends"),
    (["--to", "https://a.test", "--to", "https://b.test", "--tls-verify-upstream",
      "ca.crt"], "several hosts (a.test, b.test)"),
    (["--to", "127.0.0.1:1", "--tls-key", "k.pem"], "--tls-key needs --tls-cert"),
])
def test_bad_tls_options_are_refused(args: list[str], message: str) -> None:
    res = subprocess.run([WSGATE_BIN, "serve", "--listen", "8080", *args],
                         capture_output=True, text=True, timeout=30)
    assert res.returncode == 2 and message in res.stderr, res.stderr
    assert "Traceback" not in res.stderr


@pytest.mark.parametrize("which", ["cert", "key", "key-is-a-directory", "ca"])
def test_unreadable_certificate_files_are_named(pki, tmp_path, which):
    d = pki["dir"]
    cert, key, ca = str(d / "site.crt"), str(d / "site.key"), str(d / "ca.crt")
    missing = str(tmp_path / "missing.pem")
    flag, path = {"cert": ("--tls-cert", missing), "key": ("--tls-key", missing),
                  "key-is-a-directory": ("--tls-key", str(tmp_path)),
                  "ca": ("--tls-verify-upstream", missing)}[which]
    args = {"--tls-cert": cert, "--tls-key": key, "--tls-verify-upstream": ca, flag: path}
    for print_config in ([], ["--print-config"]):
        res = subprocess.run([WSGATE_BIN, "serve", "--listen", f"127.0.0.1:{free_port()}",
                              "--to", "https://localhost:1", "--prefix", str(tmp_path / "p"),
                              *[v for kv in args.items() for v in kv], *print_config],
                             capture_output=True, text=True, timeout=30)
        reason = "Is a directory" if which == "key-is-a-directory" else \
            "No such file or directory"
        assert res.returncode == 1, res.stderr
        assert f'wsgate serve: cannot read {flag} file "{path}": {reason}' in res.stderr
        assert "Traceback" not in res.stderr and res.stdout == ""


def test_a_key_that_does_not_match_is_an_emerg(pki, tmp_path):
    d = pki["dir"]
    res = subprocess.run([WSGATE_BIN, "serve", "--listen", f"127.0.0.1:{free_port()}",
                          "--tls-cert", str(d / "site.crt"), "--tls-key", str(d / "back.key"),
                          "--to", "127.0.0.1:1", "--prefix", str(tmp_path / "p")],
                         capture_output=True, text=True, timeout=30)
    assert res.returncode == 1
    assert "[emerg]" in res.stderr and "SSL_CTX_use_PrivateKey" in res.stderr, res.stderr
    assert "Traceback" not in res.stderr
