"""Fixtures for TLS unit tests: a PKI made at test time (trustme), configs loaded
from text with the certificates beside them, and an in-memory handshake between two
SSLObjects over ssl.MemoryBIO (no sockets)."""

from __future__ import annotations

import datetime
import pathlib
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
import trustme

from wsgate.config.load import load_config_text


@dataclass
class Pki:
    """Files in `conf/`: ca.crt, <name>.crt/.key for each issued certificate."""

    dir: pathlib.Path
    ca: trustme.CA
    other_ca: trustme.CA

    def issue(self, name: str, *identities: str, ca: trustme.CA | None = None,
              **kw: Any) -> str:
        cert = (ca or self.ca).issue_cert(*(identities or (name,)), **kw)
        cert.private_key_pem.write_to_path(str(self.dir / f"{name}.key"))
        chain = b"".join(p.bytes() for p in cert.cert_chain_pems)
        (self.dir / f"{name}.crt").write_bytes(chain)
        return name


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    root = tmp_path_factory.mktemp("pki")
    conf = root / "conf"
    conf.mkdir()
    ca = trustme.CA(organization_name="Wsgate Test CA")
    other = trustme.CA(organization_name="Other CA")
    ca.cert_pem.write_to_path(str(conf / "ca.crt"))
    other.cert_pem.write_to_path(str(conf / "other-ca.crt"))
    p = Pki(conf, ca, other)
    p.issue("a", "a.example")
    p.issue("b", "b.example", "*.wild.example")
    p.issue("rsa", "a.example", key_type=trustme.KeyType.RSA)
    p.issue("ip", "127.0.0.1")
    p.issue("untrusted", "a.example", ca=other)
    p.issue("expired", "a.example",
            not_before=datetime.datetime(2019, 1, 1), not_after=datetime.datetime(2020, 1, 1))
    p.issue("client", "client@example", common_name="Client, One",
            organization_name="Acme+Co")
    p.issue("badclient", "client@example", common_name="Bad", ca=other)
    return p


@pytest.fixture
def load(pki: Pki) -> Callable[[str], Any]:
    """Config text (the `http { ... }` body) -> loaded Config with files in pki.dir."""
    def make(http_body: str) -> Any:
        text = "events {}\nhttp {\n" + http_body + "\n}\n"
        return load_config_text(text, prefix=str(pki.dir.parent), name="conf/nginx.conf")
    return make


def pump(client: ssl.SSLObject, server: ssl.SSLObject,
         c_bios: tuple[ssl.MemoryBIO, ssl.MemoryBIO],
         s_bios: tuple[ssl.MemoryBIO, ssl.MemoryBIO]) -> None:
    """Run both handshakes to completion (or raise the first SSLError), bounded."""
    done = {"c": False, "s": False}
    for _ in range(50):
        for key, obj in (("c", client), ("s", server)):
            if not done[key]:
                try:
                    obj.do_handshake()
                    done[key] = True
                except ssl.SSLWantReadError:
                    pass
            _move(c_bios[1], s_bios[0])
            _move(s_bios[1], c_bios[0])
        if all(done.values()):
            return
    raise AssertionError("handshake did not finish in 50 rounds")


def _move(src: ssl.MemoryBIO, dst: ssl.MemoryBIO) -> None:
    data = src.read()
    if data:
        dst.write(data)


@dataclass
class Pair:
    client: ssl.SSLObject
    server: ssl.SSLObject
    c_bios: tuple[ssl.MemoryBIO, ssl.MemoryBIO]
    s_bios: tuple[ssl.MemoryBIO, ssl.MemoryBIO]

    def exchange(self) -> bytes:
        """Server writes, client reads (TLS 1.3 tickets travel with the data)."""
        self.server.write(b"ping")
        _move(self.s_bios[1], self.c_bios[0])
        data = self.client.read(100)
        _move(self.c_bios[1], self.s_bios[0])
        return data


def handshake(server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext,
              server_hostname: str | None = None,
              session: ssl.SSLSession | None = None) -> Pair:
    c_bios = (ssl.MemoryBIO(), ssl.MemoryBIO())
    s_bios = (ssl.MemoryBIO(), ssl.MemoryBIO())
    client = client_ctx.wrap_bio(*c_bios, server_hostname=server_hostname, session=session)
    server = server_ctx.wrap_bio(*s_bios, server_side=True)
    pump(client, server, c_bios, s_bios)
    return Pair(client, server, c_bios, s_bios)


@pytest.fixture
def shake() -> Callable[..., Pair]:
    return handshake


@pytest.fixture
def client_ctx(pki: Pki) -> Callable[..., ssl.SSLContext]:
    """A client context trusting the test CA (optionally with a client cert)."""
    def make(cert: str | None = None, verify: bool = True) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        if verify:
            ctx.load_verify_locations(str(pki.dir / "ca.crt"))
        else:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        if cert:
            ctx.load_cert_chain(str(pki.dir / f"{cert}.crt"), str(pki.dir / f"{cert}.key"))
        return ctx
    return make
