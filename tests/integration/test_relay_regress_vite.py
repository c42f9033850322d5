"""The response shapes a Vite dev server sends, relayed over one keep-alive client
connection with real sockets: a Content-Length body that arrives whole with its head
(relay's whole-body fast path), a large body read in many pieces, a body that comes
after its head, a chunked body, a 304, and a response followed by bytes past its body.

Written while looking for the cause of an intermittent e2e failure (test_vite_hmr:
the page stayed at "loading"): a stalled module response would have had that effect.
Each response must arrive whole within a few seconds, the next request on the same
client connection must be served, and bytes past a body must never be taken for the
next response, with and without upstream keep-alive (the config Vite users copy has
none: `Connection: close` upstream; `keepalive` pools the connections).
"""

from __future__ import annotations

import pytest

from helpers.client import RawClient
from helpers.fixtures import procs, recording_backend, wsgate_server  # noqa: F401
from helpers.ports import free_port

pytestmark = pytest.mark.timeout(90)

VITE_CONF = """
events {}
http {
    map $http_upgrade $connection_upgrade {
        default upgrade;
        ''      close;
    }
    server {
        listen 127.0.0.1:{{port}};
        location / {
            proxy_pass http://127.0.0.1:{{backend}};
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            proxy_set_header Host $host;
        }
    }
}
"""

POOLED_CONF = """
events {}
http {
    upstream vite {
        server 127.0.0.1:{{backend}};
        keepalive 4;
    }
    server {
        listen 127.0.0.1:{{port}};
        location / {
            proxy_pass http://vite;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
"""

SMALL = "export const message = 'hello from vite';\n" * 8
BIG = "/* @vite/client */ const x = 1;\n" * 6000          # ~190 KB, many reads
JS = [["Content-Type", "text/javascript"], ["Cache-Control", "no-cache"]]


def _raw(body: str, extra: str = "") -> str:
    """Head and body in one write (the whole-body fast path), then `extra` bytes."""
    return (f"HTTP/1.1 200 OK\r\nContent-Type: text/javascript\r\n"
            f"Content-Length: {len(body)}\r\n\r\n{body}{extra}")


SPEC = {"routes": [
    {"path": "/whole", "response": {"raw": _raw(SMALL), "keep_open": True}},
    {"path": "/big", "response": {"headers": JS, "body": BIG}},
    {"path": "/late", "response": {"headers": JS, "body": SMALL, "body_delay": 0.2}},
    {"path": "/chunked", "response": {"headers": JS, "body": SMALL, "framing": "chunked"}},
    # a 304 is its head alone (without "body" the recording server would write its
    # JSON record after the head, and those stray bytes race the next request for
    # the pooled connection: neither nginx nor wsgate can tell them from an answer)
    {"path": "/etag", "response": {"status": 304, "framing": "none", "body": "",
                                   "headers": [["ETag", 'W/"2a-abc"'],
                                               ["Content-Length", "0"]]}},
    {"path": "/extra", "response": {"raw": _raw(SMALL, "JUNK-PAST-THE-BODY"),
                                    "keep_open": True}},
]}

EXPECTED = {"/whole": ("200", SMALL), "/big": ("200", BIG), "/late": ("200", SMALL),
            "/chunked": ("200", SMALL), "/etag": ("304", ""), "/extra": ("200", SMALL)}

ORDER = ["/whole", "/big", "/extra", "/whole", "/late", "/etag", "/extra", "/chunked",
         "/big", "/whole", "/etag", "/extra", "/late", "/whole"]


def _walk(port: int, rounds: int = 3) -> list[str]:
    """Every path of ORDER, `rounds` times, on one keep-alive connection; returns
    what went wrong (empty: nothing)."""
    wrong = []
    with RawClient.connect("127.0.0.1", port, timeout=5.0) as c:
        for n in range(rounds):
            for path in ORDER:
                c.send(f"GET {path}?r={n} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
                status, headers, body = c.read_response(timeout=5.0)
                code, want = EXPECTED[path]
                if status.split(" ")[1] != code or body != want.encode():
                    wrong.append(f"{path} round {n}: {status} {len(body)} B {body[:60]!r}")
                if headers.get("connection") == "close":
                    wrong.append(f"{path} round {n}: the client connection was closed")
                    return wrong
    return wrong


@pytest.mark.parametrize("conf", [VITE_CONF, POOLED_CONF], ids=["vite-config", "keepalive"])
def test_vite_response_shapes_relay_whole(conf: str, wsgate_server,  # noqa: F811
                                          recording_backend) -> None:  # noqa: F811
    backend = recording_backend(spec=SPEC)
    srv = wsgate_server(conf, port=free_port(), backend=backend.port)
    assert _walk(srv.port) == []
    assert srv.alerts() == [], srv.error_log()
    records = backend.records()
    assert len(records) == 3 * len(ORDER)          # each request went up once
    # bytes past a body make the upstream connection unusable: no later request
    # is sent on a connection that answered /extra (nginx 1.22 does the same)
    spoiled = {r["conn"]: r["seq"] for r in records if r["target"].startswith("/extra")}
    reused = [r["target"] for r in records if r["seq"] > spoiled.get(r["conn"], r["seq"])]
    assert reused == [], reused
    if conf is POOLED_CONF:   # the pool is in use, so the check above means something
        assert len({r["conn"] for r in records}) < len(records)
