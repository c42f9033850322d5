"""The peek-then-TLS listener (wsgate.tls.accept) over loopback sockets, on asyncio
and uvloop: TLS and plain HTTP on one port, garbage and stalled handshakes closing
only their own connection, and a context swap (reload) applying to new connections
while an established TLS connection keeps working."""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Callable
from typing import Any

import pytest
import trustme
import uvloop

from wsgate.tls.accept import start_tls_serving

LOOPS = {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}


class Echo(asyncio.Protocol):
    """Answers each chunk with `<tls|plain>:<chunk>`."""

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.kind = "tls" if transport.get_extra_info("ssl_object") else "plain"

    def data_received(self, data: bytes) -> None:
        self.transport.write(self.kind.encode() + b":" + data)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    d = tmp_path_factory.mktemp("acc")
    ca = trustme.CA()
    out: dict[str, Any] = {"ca": ca}
    for name in ("one", "two"):
        leaf = ca.issue_cert("localhost", common_name=name)
        leaf.private_key_and_cert_chain_pem.write_to_path(str(d / f"{name}.pem"))
        out[name] = str(d / f"{name}.pem")
    return out


def server_ctx(path: str) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(path)
    return ctx


def run(loop_name: str, body: Callable[..., Any], certs: dict[str, Any],
        timeout: float = 5.0) -> list[tuple[str, str]]:
    """Serve on 127.0.0.1, run `body(port, state)` on the same loop, return the log."""
    loop = LOOPS[loop_name]()
    logs: list[tuple[str, str]] = []
    state = {"ctx": server_ctx(certs["one"]), "timeout": timeout}

    async def main() -> None:
        lsock = socket.socket()
        lsock.bind(("127.0.0.1", 0))
        lsock.listen(16)
        server = await start_tls_serving(lsock, Echo, lambda: state["ctx"],
                                         lambda: state["timeout"],
                                         lambda lvl, text: logs.append((lvl, text)))
        try:
            await asyncio.wait_for(body(lsock.getsockname()[1], state), 20)
        finally:
            server.close()
            await server.wait_closed()
    try:
        loop.run_until_complete(main())
    finally:
        loop.close()
    return logs


def client_ctx(certs: dict[str, Any]) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    certs["ca"].configure_trust(ctx)
    return ctx


async def tls_roundtrip(port: int, certs: dict[str, Any]) -> tuple[bytes, str, Any]:
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", port, ssl=client_ctx(certs), server_hostname="localhost")
    writer.write(b"hello")
    data = await asyncio.wait_for(reader.read(100), 5)
    cn = dict(r[0] for r in writer.get_extra_info("peercert")["subject"])["commonName"]
    return data, cn, writer


@pytest.mark.parametrize("loop_name", LOOPS)
def test_tls_and_plain_on_one_port(loop_name, certs):
    async def body(port: int, state: dict[str, Any]) -> None:
        data, cn, writer = await tls_roundtrip(port, certs)
        assert (data, cn) == (b"tls:hello", "one")
        writer.close()
        reader, w2 = await asyncio.open_connection("127.0.0.1", port)
        w2.write(b"GET / HTTP/1.1\r\n\r\n")
        assert await asyncio.wait_for(reader.read(100), 5) == b"plain:GET / HTTP/1.1\r\n\r\n"
        w2.close()
    assert run(loop_name, body, certs) == []


@pytest.mark.parametrize("loop_name", LOOPS)
def test_garbage_after_a_handshake_byte_closes_only_that_connection(loop_name, certs):
    async def body(port: int, state: dict[str, Any]) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"\x16\x03\x01\x00\x05garbagegarbage" * 4)
        rest = await asyncio.wait_for(reader.read(), 5)     # closed (maybe an alert)
        assert len(rest) < 100
        writer.close()
        data, _, w = await tls_roundtrip(port, certs)
        assert data == b"tls:hello"
        w.close()
    logs = run(loop_name, body, certs)
    assert len(logs) == 1 and logs[0][0] == "info"
    assert logs[0][1].startswith("SSL_do_handshake() failed")
    assert logs[0][1].endswith("while SSL handshaking, client: 127.0.0.1")


@pytest.mark.parametrize("loop_name", LOOPS)
@pytest.mark.parametrize("sent", [b"", b"\x16\x03\x01"])
def test_stalled_clients_are_closed_after_the_header_timeout(loop_name, certs, sent):
    async def body(port: int, state: dict[str, Any]) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(sent)
        assert await asyncio.wait_for(reader.read(), 5) == b""     # closed by the server
        writer.close()
    logs = run(loop_name, body, certs, timeout=0.3)
    if sent:
        assert [lvl for lvl, _ in logs] == ["info"]
        assert "timed out" in logs[0][1]
    else:
        assert logs == []          # nginx closes a silent connection without a word


@pytest.mark.parametrize("loop_name", LOOPS)
def test_a_new_context_serves_new_connections_only(loop_name, certs):
    async def body(port: int, state: dict[str, Any]) -> None:
        data, cn, old = await tls_roundtrip(port, certs)
        assert cn == "one"
        state["ctx"] = server_ctx(certs["two"])      # what a reload does
        data, cn, new = await tls_roundtrip(port, certs)
        assert cn == "two"
        reader = old._protocol._stream_reader  # type: ignore[attr-defined]
        old.write(b"still")
        assert await asyncio.wait_for(reader.read(100), 5) == b"tls:still"
        old.close()
        new.close()
    run(loop_name, body, certs)
