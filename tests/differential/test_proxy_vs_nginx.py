"""The same config and the same raw requests through real nginx 1.22 and wsgate:
what the recording backend received (request line, header lines in order, body) and
what the client received (status line, header lines in order except Date/Server,
body with the server token normalised) must be identical.

One backend, one nginx and one wsgate serve the whole table (module scope); each
scenario is one raw request on a fresh connection.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from typing import Any

import pytest

from helpers import backends
from helpers.client import RawClient, ReadTimeout
from helpers.nginx import NginxServer, WsgateServer
from helpers.ports import free_port
from helpers.procs import ProcessGroup

pytestmark = pytest.mark.timeout(120)

SPEC: dict[str, Any] = {
    "default": {"body": "ok\n", "headers": [["Content-Type", "text/plain"]]},
    "routes": [
        {"path": "/b/chunked", "response": {"body": "chunky\n", "framing": "chunked"}},
        {"path": "/b/close", "response": {"body": "closed\n", "framing": "close"}},
        {"path": "/b/empty", "response": {"body": ""}},
        {"path": "/b/204", "response": {"status": 204, "body": "", "framing": "none"}},
        {"path": "/b/304", "response": {"status": 304, "body": "", "framing": "none"}},
        {"path": "/b/404", "response": {"status": 404, "body": "nope\n"}},
        {"path": "/b/500", "response": {"status": 500, "body": "boom\n"}},
        {"path": "/b/hdrs", "response": {"body": "h\n", "headers": [
            ["Content-Type", "text/html"], ["X-Secret", "s"], ["Server", "backend/1"],
            ["X-Pad", "pad"], ["X-Accel-Expires", "10"], ["Set-Cookie", "a=1"],
            ["Set-Cookie", "b=2"], ["Keep-Alive", "timeout=5"], ["X-Other", "o"],
            ["Date", "Mon, 01 Jan 2001 00:00:00 GMT"]]}},
        {"path": "/b/redir", "response": {"status": 302, "body": "", "headers": [
            ["Location", "http://127.0.0.1:{{backend}}/redir/target"]]}},
        {"path": "/b/relredir", "response": {"status": 301, "body": "", "headers": [
            ["Location", "/somewhere/else"]]}},
        {"path": "/b/slow", "response": {"delay": 3, "body": "late\n"}},
        {"path": "/b/nohead", "response": {"no_response": True}},
        {"path": "/b/http09", "response": {"raw": "just bytes\n"}},
        {"path": "/b/reason", "response": {"status": 299, "reason": "Custom Reason",
                                           "body": "r\n"}},
        {"path": "/b/noreason", "response": {"raw":
                                             "HTTP/1.1 200\r\nContent-Length: 2\r\n\r\nx\n"}},
        {"path": "/b/1.0", "response": {"version": "HTTP/1.0", "body": "old\n",
                                        "framing": "close"}},
    ],
}

CONF = """
events {}
http {
    map $http_upgrade $connection_upgrade { default upgrade; '' close; }
    server {
        listen 127.0.0.1:{{port}};
        server_name example.com;
        location / { proxy_pass http://127.0.0.1:{{backend}}; }
        location /b/ { proxy_pass http://127.0.0.1:{{backend}}; }
        location /v11/ { proxy_pass http://127.0.0.1:{{backend}}/b/;
                         proxy_http_version 1.1; }
        location /ws/ { proxy_pass http://127.0.0.1:{{backend}};
                        proxy_http_version 1.1;
                        proxy_set_header Upgrade $http_upgrade;
                        proxy_set_header Connection $connection_upgrade; }
        location /uri/ { proxy_pass http://127.0.0.1:{{backend}}/new/; }
        location /uri2/ { proxy_pass http://127.0.0.1:{{backend}}/; }
        location /set/ { proxy_pass http://127.0.0.1:{{backend}};
                         proxy_set_header X-Real-IP $remote_addr;
                         proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
                         proxy_set_header X-Empty "";
                         proxy_set_header User-Agent "";
                         proxy_set_header Host $host;
                         proxy_set_header X-Uri "$request_method $uri $args"; }
        location /nohdr/ { proxy_pass http://127.0.0.1:{{backend}};
                           proxy_pass_request_headers off; }
        location /nobody/ { proxy_pass http://127.0.0.1:{{backend}};
                            proxy_pass_request_body off; }
        location /method/ { proxy_pass http://127.0.0.1:{{backend}}; proxy_method PUT; }
        location /setbody/ { proxy_pass http://127.0.0.1:{{backend}};
                             proxy_set_body "body of $request_method"; }
        location /hide/ { proxy_pass http://127.0.0.1:{{backend}}/b/;
                          proxy_hide_header X-Secret; proxy_pass_header X-Pad; }
        location /add/ { proxy_pass http://127.0.0.1:{{backend}}/b/;
                         add_header X-Add yes; add_header X-Always al always; }
        location /dead/ { proxy_pass http://127.0.0.1:{{dead}}; }
        location /slow/ { proxy_pass http://127.0.0.1:{{backend}}/b/;
                          proxy_read_timeout 1s; }
        location /icpt/ { proxy_pass http://127.0.0.1:{{backend}}/b/;
                          proxy_intercept_errors on; error_page 404 /ret/t; }
        location /redir/ { proxy_pass http://127.0.0.1:{{backend}}/b/; }
        location /limit/ { proxy_pass http://127.0.0.1:{{backend}}; client_max_body_size 10; }
        location ~ \\.php$ { proxy_pass http://127.0.0.1:{{backend}}; }
        location = /exact { return 200 "exact\\n"; }
        location ^~ /static/ { return 200 "static\\n"; }
        location ~ \\.css$ { return 200 "css\\n"; }
        location /ret/t { return 200 "text\\n"; }
        location /ret/301 { return 301 http://example.org/x; }
        location /ret/302rel { return 302 /relative; }
        location /ret/404 { return 404; }
        location /ret/403 { return 403; }
        location /ret/500 { return 500; }
        location /ret/204 { return 204; }
        location /ret/url { return http://example.net/; }
        location /ret/418 { return 418 "teapot\\n"; }
        location /ep/ { error_page 404 /ret/t; return 404; }
        location /ep2/ { error_page 404 =200 /ret/t; return 404; }
        location /ep3/ { error_page 404 http://example.com/err; return 404; }
        location /ep4/ { error_page 502 @fallback; proxy_pass http://127.0.0.1:{{dead}}; }
        location @fallback { return 200 "fallback\\n"; }
        location /outer/ { location /outer/inner/ { return 200 "inner\\n"; }
                           return 200 "outer\\n"; }
        location /tokens/ { server_tokens off; return 404; }
    }
}
"""


def _req(path: str, method: str = "GET", *, version: str = "1.1",
         headers: tuple[str, ...] = (), body: bytes = b"", host: str | None = "example.com",
         chunked: bool = False) -> bytes:
    lines = [f"{method} {path} HTTP/{version}"]
    if host is not None:
        lines.append(f"Host: {host}")
    lines += list(headers)
    if chunked:
        lines.append("Transfer-Encoding: chunked")
        encoded = (b"%x\r\n%s\r\n" % (len(body), body) if body else b"") + b"0\r\n\r\n"
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + encoded
    if body:
        lines.append(f"Content-Length: {len(body)}")
    if version == "1.1" and not any(h.lower().startswith("connection") for h in headers):
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


WS = ("Upgrade: websocket", "Connection: Upgrade",
      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version: 13")

SCENARIOS: dict[str, bytes] = {
    "get-root": _req("/"),
    "get-args": _req("/a/b?x=1&y=2"),
    "get-encoded": _req("/a%20b/c%2Fd?q=%41"),
    "get-dotdot": _req("/a/../b/./c"),
    "get-double-slash": _req("//a//b"),
    "head": _req("/b/x", "HEAD"),
    "head-chunked": _req("/b/chunked", "HEAD"),
    "post-length": _req("/b/x", "POST", body=b"hello body"),
    "post-empty-length": _req("/b/x", "POST", headers=("Content-Length: 0",)),
    "post-chunked": _req("/b/x", "POST", body=b"chunked body", chunked=True),
    "put-length": _req("/b/x", "PUT", body=b"x" * 5000),
    "delete": _req("/b/x", "DELETE"),
    "options": _req("/b/x", "OPTIONS"),
    "patch": _req("/b/x", "PATCH", body=b"{}"),
    "http10": _req("/b/x", version="1.0", host=None),
    "http10-host": _req("/b/x", version="1.0"),
    "http10-keepalive": _req("/b/x", version="1.0", headers=("Connection: keep-alive",)),
    "http10-chunked-resp": _req("/b/chunked", version="1.0"),
    "http10-close-resp": _req("/b/close", version="1.0"),
    "keepalive-default": _req("/b/x", headers=("Connection: keep-alive",)),
    "hop-by-hop": _req("/b/x", headers=("Keep-Alive: 300", "TE: trailers",
                                         "Proxy-Connection: keep-alive",
                                         "Trailer: X", "Upgrade: h2c")),
    "connection-tokens": _req("/b/x", headers=("Connection: close, X-Foo", "X-Foo: bar")),
    "dup-headers": _req("/b/x", headers=("X-A: 1", "X-A: 2", "x-a: 3")),
    "cookies": _req("/b/x", headers=("Cookie: a=1", "Cookie: b=2")),
    "xff-client": _req("/b/x", headers=("X-Forwarded-For: 10.0.0.1",)),
    "expect-continue": _req("/b/x", "POST", headers=("Expect: 100-continue",),
                            body=b"abc"),
    "underscore-header": _req("/b/x", headers=("X_Under: 1", "X-Ok: 2")),
    "case-headers": _req("/b/x", headers=("x-lower: a", "X-UPPER: B", "MiXeD: c")),
    "empty-header-value": _req("/b/x", headers=("X-Empty:", "X-Space:  ")),
    "long-header": _req("/b/x", headers=("X-Long: " + "v" * 3000,)),
    "host-with-port": _req("/b/x", host="Example.COM:8080"),
    "host-trailing-dot": _req("/b/x", host="example.com."),
    "absolute-uri": _req("http://other.example/b/x?z=1"),
    "resp-chunked": _req("/b/chunked"),
    "resp-close": _req("/b/close"),
    "resp-empty": _req("/b/empty"),
    "resp-204": _req("/b/204"),
    "resp-304": _req("/b/304"),
    "resp-404": _req("/b/404"),
    "resp-500": _req("/b/500"),
    "resp-hdrs": _req("/b/hdrs"),
    "resp-reason": _req("/b/reason"),
    "resp-noreason": _req("/b/noreason"),
    "resp-http10": _req("/b/1.0"),
    "resp-http09": _req("/b/http09"),
    "resp-nohead": _req("/b/nohead"),
    "v11-get": _req("/v11/x"),
    "v11-chunked-resp": _req("/v11/chunked"),
    "v11-post-chunked": _req("/v11/x", "POST", body=b"streamed", chunked=True),
    "v11-upgrade-not-passed": _req("/v11/x", headers=WS),
    "ws-upgrade": _req("/ws/x", headers=WS),
    "ws-plain": _req("/ws/x"),
    "upgrade-default-conf": _req("/b/x", headers=WS),
    "uri-replace": _req("/uri/a/b?c=d"),
    "uri-replace-encoded": _req("/uri/a%20b"),
    "uri-replace-root": _req("/uri2/zz"),
    "set-headers": _req("/set/p?a=b", headers=("User-Agent: ua", "X-Forwarded-For: 1.2.3.4",
                                              "X-Empty: client")),
    "no-request-headers": _req("/nohdr/x", headers=("X-A: 1",)),
    "no-request-body": _req("/nobody/x", "POST", body=b"dropped"),
    "proxy-method": _req("/method/x", "GET"),
    "set-body": _req("/setbody/x", "POST", body=b"orig"),
    "hide-pass": _req("/hide/hdrs"),
    "add-header-200": _req("/add/x"),
    "add-header-404": _req("/add/404"),
    "dead-upstream": _req("/dead/x"),
    "read-timeout": _req("/slow/slow"),
    "intercept-404": _req("/icpt/404"),
    "intercept-500-not-listed": _req("/icpt/500"),
    "redirect-default": _req("/redir/redir"),
    "redirect-relative": _req("/redir/relredir"),
    "body-too-large": _req("/limit/x", "POST", body=b"x" * 20),
    "body-too-large-chunked": _req("/limit/x", "POST", body=b"x" * 20, chunked=True),
    "body-at-limit": _req("/limit/x", "POST", body=b"x" * 10),
    "regex-location": _req("/a/index.php?x=1"),
    "exact": _req("/exact"),
    "exact-not-prefix": _req("/exactly"),
    "noregex-prefix": _req("/static/a.css"),
    "regex-css": _req("/other/a.css"),
    "return-text": _req("/ret/t"),
    "return-text-head": _req("/ret/t", "HEAD"),
    "return-301": _req("/ret/301"),
    "return-302-relative": _req("/ret/302rel"),
    "return-404": _req("/ret/404"),
    "return-403": _req("/ret/403"),
    "return-500": _req("/ret/500"),
    "return-204": _req("/ret/204"),
    "return-url": _req("/ret/url"),
    "return-418": _req("/ret/418"),
    "error-page-internal": _req("/ep/x"),
    "error-page-override": _req("/ep2/x"),
    "error-page-url": _req("/ep3/x"),
    "error-page-named": _req("/ep4/x"),
    "nested-inner": _req("/outer/inner/x"),
    "nested-outer": _req("/outer/x"),
    "server-tokens-off": _req("/tokens/x"),
    "slash-redirect": _req("/uri"),
    "bad-request-line": b"GARBAGE\r\n\r\n",
    "bad-version": b"GET / HTTP/2.0\r\nHost: a\r\n\r\n",
    "no-host-11": b"GET / HTTP/1.1\r\n\r\n",
    "bad-header": b"GET / HTTP/1.1\r\nHost: a\r\nBad Header: x\r\n\r\n",
    "cl-and-te": b"POST /b/x HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n"
                 b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "two-cl": b"POST /b/x HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n"
              b"Content-Length: 3\r\n\r\nabc",
    "unknown-te": b"POST /b/x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n",
    "bad-cl": b"POST /b/x HTTP/1.1\r\nHost: a\r\nContent-Length: x\r\n\r\n",
    "too-long-uri": b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: a\r\n\r\n",
    "two-hosts": b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
    "bad-host": b"GET / HTTP/1.1\r\nHost: a/b\r\n\r\n",
    "trace": b"TRACE / HTTP/1.1\r\nHost: a\r\n\r\n",
}


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    base = tmp_path_factory.mktemp("diff")
    procs = ProcessGroup(base)
    try:
        port = free_port()
        backend = backends.start_recording(procs, spec=_spec(port), port=port)
        params = {"backend": backend.port, "dead": free_port()}
        out = {"backend": backend}
        for cls in (NginxServer, WsgateServer):
            params["port"] = free_port()
            srv = cls(CONF, base / cls.name, params=params, procs=procs)
            out[cls.name] = srv.start()
        yield out
    finally:
        procs.stop_all()


def _spec(port: int) -> dict[str, Any]:
    return json.loads(json.dumps(SPEC).replace("{{backend}}", str(port)))


def _exchange(port: int, raw: bytes) -> tuple[str, list[tuple[str, str]], bytes]:
    with RawClient.connect("127.0.0.1", port, timeout=10) as client:
        client.send(raw)
        try:
            status, headers, pairs = client.read_head(timeout=10)
        except ReadTimeout as exc:
            return "<no response>", [], exc.data
        except EOFError as exc:        # no head at all (an HTTP/0.9-style relay)
            return "<no head>", [], str(exc).encode()
        body = b""
        if raw.startswith(b"HEAD ") or status.split(" ")[1:2] in (["101"], ["204"], ["304"]):
            pass
        elif "chunked" in headers.get("transfer-encoding", "").lower():
            body = client._read_chunked(10)
        elif "content-length" in headers:
            body = client.read_exactly(int(headers["content-length"]), 10)
        else:
            try:
                body = client.read_until_eof(10)
            except ReadTimeout as exc:
                body = exc.data
    kept = [(n, _norm(v)) for n, v in pairs if n.lower() not in ("date", "server")]
    if b"<center>wsgate</center>" in body:
        # server_tokens off: "wsgate" is one byte longer than "nginx"
        body = body.replace(b"<center>wsgate</center>", b"<center>nginx</center>")
        kept = [(n, str(int(v) - 1) if n.lower() == "content-length" else v)
                for n, v in kept]
    return status, kept, _norm_bytes(body)


def _norm(text: str) -> str:
    text = re.sub(r"127\.0\.0\.1:\d+", "127.0.0.1:PORT", text)
    return re.sub(r"example\.com:\d+", "example.com:PORT", text)


def _norm_bytes(body: bytes) -> bytes:
    return re.sub(rb"nginx/1\.22\.1|wsgate/[0-9.]+", b"SERVER", body)


def _records(backend: backends.Backend, before: int) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 0.3
    records = backend.records()[before:]
    while time.monotonic() < deadline and not records:
        time.sleep(0.02)
        records = backend.records()[before:]
    return [{"request_line": r["request_line"], "header_lines": r["header_lines"],
             "body_b64": r.get("body_b64")} for r in records]


# Known differences, each checked to still differ (strict xfail):
KNOWN = {
    # nginx 1.22.1 never sends this request upstream (the client times out); wsgate
    # discards the body and proxies the request without it.
    "no-request-body": "nginx 1.22 stalls on a POST body with proxy_pass_request_body off",
}


@pytest.mark.parametrize("name", [
    pytest.param(n, marks=pytest.mark.xfail(reason=KNOWN[n], strict=True)) if n in KNOWN
    else n for n in SCENARIOS])
def test_same_as_nginx(name: str, servers: dict[str, Any]) -> None:
    raw = SCENARIOS[name]
    backend = servers["backend"]
    seen = {}
    for which in ("nginx", "wsgate"):
        before = len(backend.records())
        response = _exchange(servers[which].port, raw)
        seen[which] = (response, _records(backend, before))
    (n_resp, n_rec), (w_resp, w_rec) = seen["nginx"], seen["wsgate"]
    assert w_rec == n_rec, "backend saw different requests"
    assert w_resp[0] == n_resp[0], "status line"
    assert w_resp[1] == n_resp[1], "response headers"
    assert w_resp[2] == n_resp[2], "response body"


def test_no_alerts(servers: dict[str, Any]) -> None:
    assert servers["wsgate"].alerts() == []
