"""TLS session resumption across worker processes (nginx creates its SSL_CTX in the
master before fork, so every worker decrypts every worker's session tickets).

One full handshake saves a session; many more connections offer it, spread over two
`reuseport` workers, and each must be resumed ($ssl_session_reused "r", the client's
`session_reused`). With `ssl_session_tickets off` nothing is resumed across workers
(the session cache is per worker in wsgate; no shared zone)."""

from __future__ import annotations

import signal
import socket
import ssl
import time
from typing import Any

import pytest

from helpers.fixtures import nginx_server, procs, wsgate_server  # noqa: F401
from helpers.ports import free_port
from integration.test_tls_proxy import client_ctx, pki  # noqa: F401

pytestmark = pytest.mark.timeout(90)

CONNECTIONS = 24


def conf(pki: dict[str, Any], port: int, extra: str = "") -> str:
    d = pki["dir"]
    return f"""
worker_processes 2;
events {{}}
http {{
    server {{
        listen 127.0.0.1:{port} ssl reuseport;
        ssl_certificate {d}/a.crt;
        ssl_certificate_key {d}/a.key;
        {extra}
        location / {{ return 200 "$pid $ssl_session_reused $ssl_protocol\\n"; }}
    }}
}}
"""


def fetch(port: int, ctx: ssl.SSLContext, session: ssl.SSLSession | None
          ) -> tuple[str, bool, ssl.SSLSession | None]:
    """(response body, client's session_reused, the session to offer next)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname="a.example", session=session) as tls:
            tls.sendall(b"GET / HTTP/1.0\r\nHost: a.example\r\n\r\n")
            data = b""
            while chunk := tls.recv(65536):
                data += chunk
            return data.split(b"\r\n\r\n", 1)[1].decode(), tls.session_reused, tls.session


def resumptions(port: int, pki: dict[str, Any], version: ssl.TLSVersion
                ) -> list[tuple[str, str, bool]]:
    """(pid, $ssl_session_reused, client's view) of CONNECTIONS resumptions of one
    saved session."""
    ctx = client_ctx(pki)
    ctx.maximum_version = version
    _, _, session = fetch(port, ctx, None)
    assert session is not None
    out = []
    for _ in range(CONNECTIONS):
        body, reused, _ = fetch(port, ctx, session)
        pid, flag, _proto = body.split()
        out.append((pid, flag, reused))
    return out


def per_worker(got: list[tuple[str, str, bool]]) -> str:
    """"pid: resumed/connections" for an assertion message."""
    pids = sorted({pid for pid, _, _ in got})
    return ", ".join(f"{pid}: {sum(1 for p, f, _ in got if p == pid and f == 'r')}/"
                     f"{sum(1 for p, _, _ in got if p == pid)} resumed" for pid in pids)


def wait_workers(srv: Any, port: int, pki: dict[str, Any]) -> None:
    """Both workers accept (reuseport spreads connections by source port)."""
    ctx = client_ctx(pki)
    seen: set[str] = set()
    deadline = time.monotonic() + 15
    while len(seen) < 2 and time.monotonic() < deadline:
        seen.add(fetch(port, ctx, None)[0].split()[0])
    assert len(seen) == 2, "two workers did not both answer"


@pytest.mark.parametrize("kind", ["wsgate", "nginx"])
@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_2],
                         ids=["TLSv1.3", "TLSv1.2"])
def test_a_session_resumes_on_every_worker(kind, version, request, pki):
    port = free_port()
    srv = request.getfixturevalue(f"{kind}_server")(conf(pki, port), master=True)
    wait_workers(srv, port, pki)
    got = resumptions(port, pki, version)
    assert len({pid for pid, _, _ in got}) == 2, "every connection went to one worker"
    assert [(flag, reused) for _, flag, reused in got] == [("r", True)] * CONNECTIONS, \
        per_worker(got)
    assert srv.alerts() == []


@pytest.mark.parametrize("kind", ["wsgate", "nginx"])
def test_no_tickets_no_resumption_across_workers(kind, request, pki):
    """ssl_session_tickets off with no shared cache: a session lives in one worker."""
    port = free_port()
    srv = request.getfixturevalue(f"{kind}_server")(
        conf(pki, port, "ssl_session_tickets off; ssl_session_cache builtin:1000;"),
        master=True)
    wait_workers(srv, port, pki)
    got = resumptions(port, pki, ssl.TLSVersion.TLSv1_2)
    by_pid: dict[str, set[str]] = {}
    for pid, flag, _ in got:
        by_pid.setdefault(pid, set()).add(flag)
    assert len(by_pid) == 2
    assert sorted(by_pid.values(), key=sorted) == [{"."}, {"r"}]   # only its own worker


def test_new_ticket_keys_after_a_reload_are_shared_too(wsgate_server, pki):
    port = free_port()
    srv = wsgate_server(conf(pki, port), master=True)
    wait_workers(srv, port, pki)
    srv.send_signal(signal.SIGHUP)
    time.sleep(1.0)
    wait_workers(srv, port, pki)
    got = resumptions(port, pki, ssl.TLSVersion.TLSv1_3)
    assert len({pid for pid, _, _ in got}) == 2, "every connection went to one worker"
    assert [(flag, reused) for _, flag, reused in got] == [("r", True)] * CONNECTIONS, \
        per_worker(got)
