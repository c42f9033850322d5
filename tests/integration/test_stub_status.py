"""stub_status through wsgate and through real nginx: same numbers, same bytes.

The same config and the same sequence of connections run against both servers:
two finished GETs, a WebSocket tunnel held open, an idle keep-alive connection,
half a request head, a connection that sent nothing. Counters that depend on how
many times we had to poll are checked against nginx's arithmetic (each poll is
one more accepted connection and request); everything else must be identical.
"""

from __future__ import annotations

import re
import time

import pytest

from helpers.client import RawClient, RawWebSocket
from helpers.fixtures import nginx_server, procs, websockets_backend, wsgate_server  # noqa: F401
from helpers.ports import free_port

CONF = """
events {}
http {
    map $http_upgrade $connection_upgrade { default upgrade; '' close; }
    server {
        listen 127.0.0.1:{{port}};
        location = /basic_status { stub_status; }
        location / {
            proxy_pass http://127.0.0.1:{{backend}};
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
        }
    }
}
"""

_STATUS = re.compile(rb"Active connections: (\d+) \nserver accepts handled requests\n"
                     rb" (\d+) (\d+) (\d+) \nReading: (\d+) Writing: (\d+) Waiting: (\d+) \n")


def _get(port: int, raw: bytes) -> tuple[str, dict[str, str], bytes]:
    with RawClient.connect("127.0.0.1", port, timeout=5.0) as c:
        c.send(raw)
        data = c.read_until_eof()
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    fields = dict(line.split(": ", 1) for line in lines[1:])
    return lines[0], fields, body


def _status(port: int) -> bytes:
    return _get(port, b"GET /basic_status HTTP/1.0\r\n\r\n")[2]


def _numbers(page: bytes) -> tuple[int, ...]:
    m = _STATUS.fullmatch(page)
    assert m, page
    return tuple(int(x) for x in m.groups())


def _expected(states: tuple[int, int, int], accepted: int, requests: int) -> bytes:
    return (f"Active connections: {sum(states)} \nserver accepts handled requests\n"
            f" {accepted} {accepted} {requests} \n"
            f"Reading: {states[0]} Writing: {states[1]} Waiting: {states[2]} \n").encode()


def _poll(port: int, states: tuple[int, int, int], accepted: int,
          requests: int) -> bytes:
    """Poll until Reading/Writing/Waiting are `states`; each poll is one more
    accepted connection and one more request (bounded: 100 polls)."""
    body = b""
    for polls in range(1, 101):
        body = _status(port)
        if _numbers(body)[4:] == states:
            assert body == _expected(states, accepted + polls, requests + polls)
            return body
        time.sleep(0.05)
    pytest.fail(f"states never reached {states}: last page {body!r}")


def _scenario(port: int) -> list[bytes]:
    """The pages seen; numbers relative to the first page, because the harness's
    readiness probe (a bare connect) already counts as an accepted connection."""
    first = _status(port)
    _, accepted, handled, requests, *states = _numbers(first)
    assert accepted == handled and tuple(states) == (0, 1, 0)
    assert first == _expected((0, 1, 0), accepted, requests)
    pages = [first, _status(port)]
    assert pages[1] == _expected((0, 1, 0), accepted + 1, requests + 1)
    ws = RawWebSocket.connect("127.0.0.1", port, "/ws")
    ws.send_text("hi")
    assert ws.recv_message() == (1, b"hi")
    ka = RawClient.connect("127.0.0.1", port)
    ka.send(b"GET /basic_status HTTP/1.1\r\nHost: x\r\n\r\n")
    _, fields, _ = ka.read_response()
    assert fields["connection"] == "keep-alive"
    rd = RawClient.connect("127.0.0.1", port)
    rd.send(b"GET / HTTP/1.1\r\n")
    silent = RawClient.connect("127.0.0.1", port)
    try:
        # tunnel + keep-alive + half head + silent: 4 connections, 3 requests
        pages.append(_poll(port, (1, 2, 2), accepted + 1 + 4, requests + 1 + 3))
        ws.client.close()
        _, accepted, _, requests, *_ = _numbers(pages[-1])
        pages.append(_poll(port, (1, 1, 2), accepted, requests))
    finally:
        for c in (ka, rd, silent):
            c.close()
    return pages


def test_sequence_matches_nginx(nginx_server, wsgate_server, websockets_backend) -> None:
    backend = websockets_backend()
    for make in (nginx_server, wsgate_server):
        srv = make(CONF, port=free_port(), backend=backend.port)
        pages = _scenario(srv.port)
        assert len(pages) == 4, make
        srv.stop()
        assert srv.alerts() == []


def test_heads_match_nginx(nginx_server, wsgate_server, websockets_backend) -> None:
    backend = websockets_backend()
    requests = [b"GET /basic_status HTTP/1.0\r\n\r\n",
                b"HEAD /basic_status HTTP/1.0\r\n\r\n",
                b"GET /basic_status?x=1 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
                b"POST /basic_status HTTP/1.0\r\nContent-Length: 3\r\n\r\nabc"]
    seen = []
    for make in (nginx_server, wsgate_server):
        srv = make(CONF, port=free_port(), backend=backend.port)
        answers = []
        for raw in requests:
            status_line, fields, body = _get(srv.port, raw)
            fields.pop("Date")
            fields.pop("Server")
            if status_line.endswith("200 OK"):
                assert _STATUS.fullmatch(body) or raw.startswith(b"HEAD"), body
                body = b"<numbers>" if body else b""
            answers.append((status_line, fields, body if b"405" not in body else
                            body.replace(b"nginx/1.22.1", b"<server>")))
        seen.append(answers)
        srv.stop()
    nginx_answers, wsgate_answers = seen
    for ours, theirs in zip(wsgate_answers, nginx_answers):
        assert ours[0] == theirs[0]
        assert ours[1] == theirs[1]
    assert nginx_answers[0][1]["Content-Type"] == "text/plain"
    assert nginx_answers[3][0] == "HTTP/1.1 405 Not Allowed"
