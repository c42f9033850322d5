"""Robustness, differentially: malformed requests, smuggling attempts, body limits and
timeouts, and misbehaving upstreams, each sent byte for byte to real nginx 1.22 and to
wsgate running the same config. Per case we compare what matters for safety:

- the responses the client got, in order (status line + body, server token
  normalised; HTTP/0.9 replies and tunnel bytes as raw bytes), and whether the
  connection was closed at the end;
- what the backend received (request line, header lines, body) -- or that nothing
  reached it. Every case ends with a pipelined follow-up `GET /next` (unless the case
  is deliberately incomplete), so a different request boundary shows up as a
  different record list: the key anti-smuggling invariant;
- that wsgate logged no [alert]/[crit]/traceback and still serves a fresh request.

A few cases are wsgate's own contract where it is stricter than nginx 1.22 on purpose
(`WSGATE_ONLY`): a response with a duplicate/invalid Content-Length or an unknown
Transfer-Encoding is a 502 (the issue requires it); nginx's answer is recorded in the
assertion message, not compared. And an HTTP/0.9-style upstream reply (no valid status
line) is relayed byte for byte as nginx relays it, but then wsgate closes the client
connection: the reply's end can only be told by closing, and nginx 1.22 instead goes on
to serve the next pipelined request on the same connection, so the client cannot tell
where one reply ends and the next begins (response splitting).

One nginx, one wsgate, each with its own recording backend, serve the whole module;
each case uses fresh connections, and both servers are exercised concurrently.
"""

from __future__ import annotations

import base64
import json
import re
import socket
import ssl
import struct
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import pytest

from helpers import backends
from helpers.backends import Backend
from helpers.nginx import ConfServer, NginxServer, WsgateServer
from helpers.ports import free_port
from helpers.procs import ProcessGroup

pytestmark = pytest.mark.timeout(120)

CONF = """
events { worker_connections 1024; }
http {
    client_header_timeout 1s;
    client_body_timeout 1s;
    keepalive_timeout 2s;
    lingering_timeout 500ms;
    large_client_header_buffers 4 1k;
    server {
        listen 127.0.0.1:{{port}};
        location / { proxy_pass http://127.0.0.1:{{backend}}; }
        location /limit/ { proxy_pass http://127.0.0.1:{{backend}}; client_max_body_size 10; }
        location /u/ { proxy_pass http://127.0.0.1:{{backend}};
                       proxy_read_timeout 1s; proxy_buffer_size 1k; }
        location /uws/ { proxy_pass http://127.0.0.1:{{backend}}; proxy_read_timeout 1s;
                         proxy_http_version 1.1;
                         proxy_set_header Upgrade $http_upgrade;
                         proxy_set_header Connection "upgrade"; }
        location /dead/ { proxy_pass http://127.0.0.1:{{dead}}; }
        location /stall/ { proxy_pass http://127.0.0.1:{{stall}}; proxy_connect_timeout 1s; }
        location /rst/ { proxy_pass http://127.0.0.1:{{rst}}; proxy_read_timeout 1s; }
        location = /r { return 200 "r\\n"; }
    }
}
"""

WS_101 = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
SPEC: dict[str, Any] = {
    "default": {"body": "ok\n", "headers": [["Content-Type", "text/plain"]]},
    "routes": [
        {"path": "/u/close", "response": {"no_response": True}},
        {"path": "/u/half-head", "response": {"raw": "HTTP/1.1 200 OK\r\nContent-Le"}},
        {"path": "/u/garbage", "response": {"raw": "garbage line\r\n\r\nbody"}},
        {"path": "/u/badstatus", "response": {
            "raw": "HTTP/1.1 2x0 OK\r\nContent-Length: 2\r\n\r\nok"}},
        {"path": "/u/bigheader", "response": {"body": "big\n",
                                              "headers": [["X-Big", "a" * 2000]]}},
        {"path": "/u/badheader", "response": {
            "raw": "HTTP/1.1 200 OK\r\nBad Header: x\r\nContent-Length: 2\r\n\r\nok"}},
        {"path": "/u/nulheader", "response": {
            "raw": "HTTP/1.1 200 OK\r\nX-A: a\u0000b\r\nContent-Length: 2\r\n\r\nok"}},
        {"path": "/u/dupcl-same", "response": {
            "raw": "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok"}},
        {"path": "/u/dupcl-diff", "response": {
            "raw": "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 4\r\n\r\nokok"}},
        {"path": "/u/badcl", "response": {
            "raw": "HTTP/1.1 200 OK\r\nContent-Length: 2x\r\n\r\nok"}},
        {"path": "/u/unknown-te", "response": {
            "raw": "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nok"}},
        {"path": "/u/bad-chunk", "response": {
            "raw": "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nok\r\n0\r\n\r\n"}},
        {"path": "/u/short", "response": {
            "raw": "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly-ten!!"}},
        {"path": "/u/silent", "response": {"ignore": True}},
        {"path": "/u/slow-ok", "response": {"delay": 0.4, "body": "slow\n"}},
        {"path": "/u/101plain", "response": {"upgrade": True}},
        {"path": "/uws/101tail", "response": {"raw": WS_101 + "HELLO-AFTER-101\u0000\u00ff"}},
        {"path": "/uws/101bad", "response": {
            "raw": "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                   "Bad Header\r\n\r\ntail"}},
        {"path": "/slowresp", "response": {"delay": 0.5, "body": "slow\n"}},
    ],
}

FOLLOW = b"GET /next HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
WS_HEADERS = (b"Upgrade: websocket\r\nConnection: Upgrade\r\n"
              b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n")


@dataclass(frozen=True)
class Case:
    """One scenario: bytes to send (several parts are sent `gap` s apart)."""

    send: bytes | tuple[bytes, ...]
    follow: bool = True          # pipeline FOLLOW after the case's bytes
    gap: float = 0.3
    wait: float = 3.5            # deadline for the server to finish talking
    wsgate_status: str | None = None   # wsgate's own contract (not nginx's)
    close_after_reply: bool = False    # wsgate's contract: relay as nginx, then close

    def parts(self) -> tuple[bytes, ...]:
        parts = self.send if isinstance(self.send, tuple) else (self.send,)
        return parts[:-1] + (parts[-1] + (FOLLOW if self.follow else b""),)


def _get(target: str, *headers: str, version: str = "1.1", host: str | None = "x") -> bytes:
    lines = [f"GET {target} HTTP/{version}"] + ([f"Host: {host}"] if host is not None else [])
    return ("\r\n".join(lines + list(headers)) + "\r\n\r\n").encode("latin-1")


def _post(target: str, body: bytes, *headers: str) -> bytes:
    lines = [f"POST {target} HTTP/1.1", "Host: x", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def _client_hello() -> bytes:
    """The first flight of a real TLS handshake (what a https:// client sends)."""
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ctx.wrap_bio(incoming, outgoing, server_hostname="x")
    try:
        tls.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return outgoing.read()


SMUGGLED = b"GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"
BIG = "v" * 1100

MALFORMED: dict[str, Case] = {
    "http09": Case(b"GET /\r\n", follow=False),
    "http09-path": Case(b"GET /u/x\r\n", follow=False),
    "reqline-double-space": Case(b"GET  / HTTP/1.1\r\nHost: x\r\n\r\n"),
    "reqline-trailing-space": Case(b"GET / HTTP/1.1 \r\nHost: x\r\n\r\n"),
    "reqline-tabs": Case(b"GET\t/\tHTTP/1.1\r\nHost: x\r\n\r\n"),
    "reqline-lowercase-method": Case(b"get / HTTP/1.1\r\nHost: x\r\n\r\n"),
    "reqline-method-digits": Case(b"G3T / HTTP/1.1\r\nHost: x\r\n\r\n"),
    "reqline-no-target": Case(b"GET HTTP/1.1\r\nHost: x\r\n\r\n"),
    "reqline-lf-only": Case(b"GET /lf HTTP/1.1\nHost: x\n\n"),
    "reqline-leading-crlf": Case(b"\r\n\r\nGET /lead HTTP/1.1\r\nHost: x\r\n\r\n"),
    "version-2.0": Case(b"GET / HTTP/2.0\r\nHost: x\r\n\r\n"),
    "version-1.10": Case(b"GET /v110 HTTP/1.10\r\nHost: x\r\n\r\n"),
    "version-9.9": Case(b"GET / HTTP/9.9\r\nHost: x\r\n\r\n"),
    "version-1": Case(b"GET / HTTP/1\r\nHost: x\r\n\r\n"),
    "version-lowercase": Case(b"GET / http/1.1\r\nHost: x\r\n\r\n"),
    "version-leading-zero": Case(b"GET / HTTP/01.1\r\nHost: x\r\n\r\n"),
    "header-no-colon": Case(_get("/h", "NoColonHere")),
    "header-space-before-colon": Case(_get("/h", "X-Foo : bar")),
    "header-empty-name": Case(_get("/h", ": novalue")),
    "header-obs-fold": Case(_get("/h", "X-Fold: a", "  continued")),
    "header-bare-cr": Case(_get("/h", "X-Cr: a\rb")),
    "header-nul-value": Case(_get("/h", "X-Nul: a\x00b")),
    "header-nul-name": Case(_get("/h", "X-N\x00l: a")),
    "header-high-bytes": Case(_get("/h", "X-Hi: caf\xe9\xff")),
    "header-ctl-value": Case(_get("/h", "X-Ctl: a\x01b\x7f")),
    "uri-nul": Case(b"GET /a\x00b HTTP/1.1\r\nHost: x\r\n\r\n"),
    "uri-pct00": Case(_get("/a%00b")),
    "uri-space": Case(b"GET /a b HTTP/1.1\r\nHost: x\r\n\r\n"),
    "uri-huge-414": Case(_get("/" + "a" * 1500)),
    "header-huge": Case(_get("/h", "X-Big: " + BIG)),
    "headers-too-many-large": Case(_get("/h", *(f"X-L{i}: " + "v" * 900 for i in range(6)))),
    "host-space": Case(_get("/h", host="a b")),
    "host-dotdot": Case(_get("/h", host="..")),
    "host-empty": Case(_get("/h", host="")),
    "host-backslash": Case(_get("/h", host="a\\b")),
    "host-bracket": Case(_get("/h", host="[::1")),
    "host-missing-11": Case(_get("/h", host=None)),
    "abs-https": Case(_get("https://other.example:99/abs?q=1")),
    "abs-no-path": Case(_get("http://other.example")),
    "abs-upper-scheme": Case(_get("HTTP://Other.Example/abs")),
    "abs-ftp": Case(_get("ftp://other.example/abs")),
    "abs-userinfo": Case(_get("http://user@other.example/abs")),
    "authority-connect": Case(b"CONNECT other.example:443 HTTP/1.1\r\nHost: x\r\n\r\n"),
    "asterisk-options": Case(b"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n"),
    "dotdot-above-root": Case(_get("/../etc/passwd")),
    "dotdot-deep-above-root": Case(_get("/a/../../etc")),
    "dotdot-encoded": Case(_get("/%2e%2e/etc")),
    "dotdot-inside": Case(_get("/a/b/../c")),
    "binary-garbage": Case(bytes(range(256)) * 2 + b"\r\n\r\n", follow=False),
    "binary-crlf-garbage": Case(b"\xff\xfe\x00\x01\r\n\r\n", follow=False),
    "tls-client-hello": Case(_client_hello(), follow=False),
}

SMUGGLING: dict[str, Case] = {
    "cl-te-both": Case(_post("/s", b"5\r\nhello\r\n0\r\n\r\n", "Content-Length: 3",
                             "Transfer-Encoding: chunked")),
    "te-cl-both-smuggle": Case(_post("/s", b"0\r\n\r\n" + SMUGGLED, "Transfer-Encoding: chunked",
                                     f"Content-Length: {5 + len(SMUGGLED)}")),
    "two-cl-different": Case(_post("/s", b"abcd", "Content-Length: 3", "Content-Length: 4")),
    "cl-list": Case(_post("/s", b"abc", "Content-Length: 3, 3")),
    "cl-plus": Case(_post("/s", b"abc", "Content-Length: +3")),
    "cl-negative": Case(_post("/s", b"abc", "Content-Length: -3")),
    "cl-hex": Case(_post("/s", b"abc", "Content-Length: 0x3")),
    "cl-overflow": Case(_post("/s", b"abc", "Content-Length: 99999999999999999999")),
    "cl-space-inside": Case(_post("/s", b"abc", "Content-Length: 1 2")),
    "te-chunked-identity": Case(_post("/s", b"3\r\nabc\r\n0\r\n\r\n",
                                      "Transfer-Encoding: chunked, identity")),
    "te-identity": Case(_post("/s", b"abc", "Transfer-Encoding: identity",
                              "Content-Length: 3")),
    "te-xchunked": Case(_post("/s", b"3\r\nabc\r\n0\r\n\r\n", "Transfer-Encoding: xchunked")),
    "te-leading-space": Case(_post("/s", b"3\r\nabc\r\n0\r\n\r\n",
                                   "Transfer-Encoding:    chunked")),
    "te-trailing-tab": Case(_post("/s", b"3\r\nabc\r\n0\r\n\r\n",
                                  "Transfer-Encoding: chunked\t")),
    "te-vtab": Case(_post("/s", b"3\r\nabc\r\n0\r\n\r\n", "Transfer-Encoding: \x0bchunked")),
    "te-uppercase": Case(_post("/s", b"3\r\nabc\r\n0\r\n\r\n", "Transfer-Encoding: CHUNKED")),
    "te-twice": Case(_post("/s", b"3\r\nabc\r\n0\r\n\r\n", "Transfer-Encoding: chunked",
                           "Transfer-Encoding: chunked")),
    "te-space-before-colon": Case(_post("/s", b"3\r\nabc\r\n0\r\n\r\n", "Content-Length: 3",
                                        "Transfer-Encoding : chunked")),
    "te-http10": Case(b"POST /s HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"
                      b"3\r\nabc\r\n0\r\n\r\n"),
    "chunk-size-overflow": Case(_post("/s", b"ffffffffffffffffff\r\nabc\r\n0\r\n\r\n",
                                      "Transfer-Encoding: chunked")),
    "chunk-size-16-digits": Case(_post("/s", b"0000000000000003\r\nabc\r\n0\r\n\r\n",
                                       "Transfer-Encoding: chunked")),
    "chunk-size-plus": Case(_post("/s", b"+3\r\nabc\r\n0\r\n\r\n", "Transfer-Encoding: chunked")),
    "chunk-ext-ok": Case(_post("/s", b"3;a=b;c\r\nabc\r\n0\r\n\r\n", "Transfer-Encoding: chunked")),
    "chunk-ext-ctl": Case(_post("/s", b"3;a=\x01\x7f\r\nabc\r\n0\r\n\r\n",
                                "Transfer-Encoding: chunked")),
    "chunk-ext-bare-lf-inside": Case(_post("/s", b"3;a\nX\r\nabc\r\n0\r\n\r\n",
                                           "Transfer-Encoding: chunked")),
    "chunk-space-before-ext": Case(_post("/s", b"3 ;a\r\nabc\r\n0\r\n\r\n",
                                         "Transfer-Encoding: chunked")),
    "chunk-data-too-long": Case(_post("/s", b"3\r\nabcd\r\n0\r\n\r\n",
                                      "Transfer-Encoding: chunked")),
    "chunk-lf-only": Case(_post("/s", b"3\nabc\n0\n\n", "Transfer-Encoding: chunked")),
    "chunk-missing-final-crlf": Case(_post("/s", b"3\r\nabc\r\n0\r\n",
                                           "Transfer-Encoding: chunked"), follow=False),
    "chunk-missing-final-crlf-then-request": Case(_post("/s", b"3\r\nabc\r\n0\r\n",
                                                        "Transfer-Encoding: chunked")),
    "chunk-trailers": Case(_post("/s", b"3\r\nabc\r\n0\r\nX-T: 1\r\n\r\n",
                                 "Transfer-Encoding: chunked")),
    "chunk-no-data-crlf": Case(_post("/s", b"3\r\nabc0\r\n\r\n", "Transfer-Encoding: chunked")),
    "hidden-request-in-cl-body": Case(_post("/s", SMUGGLED, f"Content-Length: {len(SMUGGLED)}")),
    "hidden-request-in-chunked-body": Case(_post(
        "/s", b"%x\r\n%s\r\n0\r\n\r\n" % (len(SMUGGLED), SMUGGLED), "Transfer-Encoding: chunked")),
    "get-with-cl-body": Case(_get("/g", "Content-Length: 5") + b"hello"),
    "cl-shorter-than-body": Case(_post("/s", b"abc" + SMUGGLED, "Content-Length: 3")),
}

BODIES: dict[str, Case] = {
    "limit-cl-no-body-sent": Case(_post("/limit/x", b"", "Content-Length: 100000"),
                                  follow=False),
    "limit-chunked-over": Case(_post("/limit/x", b"b\r\n" + b"x" * 11 + b"\r\n0\r\n\r\n",
                                     "Transfer-Encoding: chunked")),
    "limit-chunked-split-over": Case(_post("/limit/x", b"6\r\nxxxxxx\r\n6\r\nxxxxxx\r\n0\r\n\r\n",
                                           "Transfer-Encoding: chunked")),
    "body-timeout-cl": Case(_post("/b", b"abc", "Content-Length: 10"), follow=False),
    "body-timeout-chunked": Case(_post("/b", b"3\r\nabc\r\n", "Transfer-Encoding: chunked"),
                                 follow=False),
    "expect-continue-body-after": Case((_post("/e", b"", "Expect: 100-continue",
                                              "Content-Length: 5"), b"hello")),
    "expect-continue-no-body": Case(_get("/e", "Expect: 100-continue")),
    "expect-continue-over-limit": Case(_post("/limit/x", b"", "Expect: 100-continue",
                                             "Content-Length: 100"), follow=False),
    "expect-unknown": Case(_post("/e", b"hello", "Expect: something-else", "Content-Length: 5")),
    "expect-continue-http10": Case(b"POST /e HTTP/1.0\r\nExpect: 100-continue\r\n"
                                   b"Content-Length: 5\r\n\r\nhello"),
    "slow-body-slow-backend": Case(tuple([_post("/slowresp", b"", "Content-Length: 12")]
                                         + [b"abc"] * 4), gap=0.2),
}

UPSTREAM: dict[str, Case] = {
    "up-refused": Case(_get("/dead/x")),
    "up-close-before-response": Case(_get("/u/close")),
    "up-close-mid-headers": Case(_get("/u/half-head")),
    "up-reset-mid-headers": Case(_get("/rst/x")),
    "up-garbage-status-line": Case(_get("/u/garbage"), close_after_reply=True),
    "up-bad-status-code": Case(_get("/u/badstatus"), close_after_reply=True),
    "up-header-too-big": Case(_get("/u/bigheader")),
    "up-invalid-header": Case(_get("/u/badheader")),
    "up-nul-in-header": Case(_get("/u/nulheader")),
    "up-duplicate-cl-same": Case(_get("/u/dupcl-same"), wsgate_status="HTTP/1.1 502 Bad Gateway"),
    "up-duplicate-cl-different": Case(_get("/u/dupcl-diff"),
                                      wsgate_status="HTTP/1.1 502 Bad Gateway"),
    "up-invalid-cl": Case(_get("/u/badcl"), wsgate_status="HTTP/1.1 502 Bad Gateway"),
    "up-unknown-te": Case(_get("/u/unknown-te"), wsgate_status="HTTP/1.1 502 Bad Gateway"),
    "up-bad-chunk": Case(_get("/u/bad-chunk")),
    "up-short-body": Case(_get("/u/short")),
    "up-silent-504": Case(_get("/u/silent")),
    "up-connect-timeout": Case(_get("/stall/x")),
    "up-slow-but-in-time": Case(_get("/u/slow-ok")),
    "up-101-without-client-upgrade": Case(_get("/u/101plain")),
    "up-101-then-bytes": Case(_get("/uws/101tail", *WS_HEADERS.decode().split("\r\n")[:-1])),
    "up-101-bad-header": Case(_get("/uws/101bad", *WS_HEADERS.decode().split("\r\n")[:-1])),
}

CASES: dict[str, Case] = {**MALFORMED, **SMUGGLING, **BODIES, **UPSTREAM}


# --- odd upstreams run inside the test process --------------------------------------

class _Stall:
    """A listening socket with backlog 0 whose queue is full: connects hang (SYNs are
    dropped), which is how proxy_connect_timeout is reached on loopback."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(0)
        self.port = self.sock.getsockname()[1]
        self.fillers: list[socket.socket] = []
        for _ in range(3):
            s = socket.socket()
            s.setblocking(False)
            s.connect_ex(("127.0.0.1", self.port))
            self.fillers.append(s)
        time.sleep(0.1)

    def close(self) -> None:
        for s in [*self.fillers, self.sock]:
            s.close()


class _ResetMidHead:
    """Reads a request head, sends half a response head, then aborts with RST."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.stopped = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stopped:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(2)
                data = b""
                try:
                    while b"\r\n\r\n" not in data:
                        chunk = conn.recv(4096)
                        if not chunk:
                            break
                        data += chunk
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/pl")
                    time.sleep(0.05)
                except OSError:
                    pass
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))

    def close(self) -> None:
        self.stopped = True
        self.thread.join(2)
        self.sock.close()


# --- the servers ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    base = tmp_path_factory.mktemp("robust")
    procs = ProcessGroup(base)
    stall, rst = _Stall(), _ResetMidHead()
    try:
        out: dict[str, Any] = {}
        common = {"dead": free_port(), "stall": stall.port, "rst": rst.port}
        for cls in (NginxServer, WsgateServer):
            backend = backends.start_recording(procs, spec=SPEC)
            params = {**common, "backend": backend.port, "port": free_port()}
            out[cls.name] = (cls(CONF, base / cls.name, params=params, procs=procs).start(),
                             backend)
        yield out
    finally:
        procs.stop_all()
        stall.close()
        rst.close()


# --- one exchange ---------------------------------------------------------------------

@dataclass
class Outcome:
    responses: list[tuple[str, bytes]] = field(default_factory=list)
    end: str = "open"                 # "eof", "reset" or "open" (still open at deadline)
    records: list[dict[str, Any]] = field(default_factory=list)

    def closed(self) -> bool:
        return self.end != "open"

    def summary(self) -> dict[str, Any]:
        return {"responses": self.responses, "end": self.end,
                "backend": [(r["request_line"], r["header_lines"], r["body"])
                            for r in self.records]}


def _talk(port: int, case: Case) -> tuple[bytes, str]:
    """Send the case's parts; collect everything until EOF/RST or the deadline."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    data, end = bytearray(), "open"
    deadline = time.monotonic() + case.wait
    try:
        for i, part in enumerate(case.parts()):
            if i:
                end = _collect(sock, data, time.monotonic() + case.gap)
                if end != "open":
                    break
            try:
                sock.sendall(part)
            except OSError:
                end = "reset"
                break
        if end == "open":
            end = _collect(sock, data, deadline)
    finally:
        sock.close()
    return bytes(data), end


def _collect(sock: socket.socket, data: bytearray, deadline: float) -> str:
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return "open"
        sock.settimeout(left)
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            return "open"
        except ConnectionResetError:
            return "reset"
        if not chunk:
            return "eof"
        data += chunk


def _norm(body: bytes) -> bytes:
    body = re.sub(rb"nginx/1\.22\.1|wsgate/[0-9A-Za-z.+-]+", b"SERVER", body)
    return re.sub(rb"127\.0\.0\.1:\d+", b"127.0.0.1:PORT", body)


def split_responses(data: bytes) -> list[tuple[str, bytes]]:
    """The client-side view: (status line, body) per response; after a 101 the rest is
    tunnel bytes; anything not starting with a status line is an HTTP/0.9 reply."""
    out: list[tuple[str, bytes]] = []
    while data:
        if not data.startswith(b"HTTP/"):
            return out + [("<raw>", _norm(data))]
        end = data.find(b"\r\n\r\n")
        if end < 0:
            return out + [("<partial head>", _norm(data))]
        head, data = data[:end].decode("latin-1").split("\r\n"), data[end + 4:]
        status, headers = head[0], {}
        for line in head[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        code = status.split(" ")[1] if " " in status else ""
        if code == "101":
            return out + [(status, b""), ("<tunnel>", _norm(data))]
        body, data = _body(code, headers, data)
        out.append((status, _norm(body)))
    return out


def _body(code: str, headers: dict[str, str], data: bytes) -> tuple[bytes, bytes]:
    if code.startswith("1") or code in ("204", "304"):
        return b"", data
    if "chunked" in headers.get("transfer-encoding", "").lower():
        return _dechunk(data)
    if "content-length" in headers and headers["content-length"].isdigit():
        n = int(headers["content-length"])
        return (data[:n] if len(data) >= n else data + b"<truncated>"), data[n:]
    return data, b""


def _dechunk(data: bytes) -> tuple[bytes, bytes]:
    body = bytearray()
    while True:
        line_end = data.find(b"\r\n")
        if line_end < 0:
            return bytes(body) + b"<truncated>", b""
        try:
            size = int(data[:line_end].split(b";")[0], 16)
        except ValueError:
            return bytes(body) + b"<bad chunk>" + data, b""
        data = data[line_end + 2:]
        if size == 0:
            end = data.find(b"\r\n\r\n") if not data.startswith(b"\r\n") else -2
            return bytes(body), data[end + 4:] if end >= 0 else b""
        if len(data) < size + 2:
            return bytes(body) + data + b"<truncated>", b""
        body += data[:size]
        data = data[size + 2:]


def run_case(server: ConfServer, backend: Backend, case: Case) -> Outcome:
    before = len(backend.records())
    data, end = _talk(server.port, case)
    time.sleep(0.15)                 # the backend writes its record before answering
    records = [{"request_line": r["request_line"],
                "header_lines": [_norm(h.encode("latin-1")).decode("latin-1")
                                 for h in r["header_lines"]],
                "body": base64.b64decode(r["body_b64"])}
               for r in backend.records()[before:]]
    return Outcome(split_responses(data), end, records)


def _fresh_request_works(port: int) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"GET /r HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = bytearray()
        _collect(sock, data, time.monotonic() + 5)
    return data.startswith(b"HTTP/1.1 200 OK") and data.endswith(b"\r\n\r\nr\n")


def _wsgate_health(server: ConfServer) -> list[str]:
    bad = server.alerts()
    log = server.error_log() + server.output()
    if "Traceback" in log:
        bad.append("traceback in wsgate's error log/output:\n" + log[log.find("Traceback"):][:2000])
    return bad


@pytest.mark.parametrize("name", list(CASES))
def test_robustness_same_as_nginx(name: str, servers: dict[str, Any]) -> None:
    case = CASES[name]
    with ThreadPoolExecutor(2) as pool:
        futures = {which: pool.submit(run_case, *servers[which], case)
                   for which in ("nginx", "wsgate")}
        nginx, wsgate = futures["nginx"].result(), futures["wsgate"].result()
    detail = (f"\nnginx:  {json.dumps(nginx.summary(), default=repr)}"
              f"\nwsgate: {json.dumps(wsgate.summary(), default=repr)}")
    server = servers["wsgate"][0]
    assert _wsgate_health(server) == [], detail
    assert _fresh_request_works(server.port), "wsgate no longer serves" + detail
    if case.wsgate_status is not None:
        first = wsgate.responses[0][0] if wsgate.responses else "<none>"
        assert first == case.wsgate_status, "wsgate's contract (nginx differs)" + detail
        return
    if case.close_after_reply:
        # nginx's stream is the head-less reply immediately followed by the next
        # response, so the capture sees one raw blob: wsgate's reply must be exactly
        # its beginning, and what nginx sends after it must be that next response.
        # (When the reply's bytes happen to look like a status line, the capture
        # splits nginx's stream in two instead: then the first items must be equal.)
        assert nginx.responses and wsgate.responses, detail
        if len(nginx.responses) > 1:
            assert wsgate.responses[0] == nginx.responses[0], \
                "the relayed reply differs from nginx's" + detail
        else:
            (n_kind, n_raw), (w_kind, w_raw) = nginx.responses[0], wsgate.responses[0]
            assert n_kind == w_kind == "<raw>" and w_raw and n_raw.startswith(w_raw), \
                "the relayed reply differs from nginx's" + detail
            assert n_raw[len(w_raw):].startswith(b"HTTP/1.1 "), detail
        assert len(wsgate.responses) == 1 and wsgate.closed(), \
            "wsgate's contract: close after an HTTP/0.9-style reply" + detail
        assert wsgate.records == nginx.records[:1], \
            "the pipelined request must not reach the backend after it" + detail
        return
    assert wsgate.records == nginx.records, "backend saw different requests" + detail
    assert [s for s, _ in wsgate.responses] == [s for s, _ in nginx.responses], \
        "status lines differ" + detail
    assert wsgate.responses == nginx.responses, "response bodies differ" + detail
    assert wsgate.closed() == nginx.closed(), "connection closing differs" + detail
