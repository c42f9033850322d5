"""Differential: the rewrite module and the static handler, through real nginx 1.22
and wsgate with the same config and the same raw requests. The status line, the
header lines in order (except Date/Server, ports normalised) and the body must be
identical. One file tree serves both (same mtimes, so ETag/Last-Modified match)."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from typing import Any

import pytest

from helpers.client import RawClient, ReadTimeout
from helpers.nginx import NginxServer, WsgateServer
from helpers.ports import free_port
from helpers.procs import ProcessGroup

pytestmark = pytest.mark.timeout(120)

CONF = r"""
events {}
http {
    server {
        listen 127.0.0.1:{{port}};
        server_name localhost;
        root {{root}};
        rewrite ^/srv/(.*)$ /s/$1 last;
        if ($arg_srv = stop) { return 403; }
        location / {
            set $who "v-$arg_a";
            if ($arg_a = 1) { return 201 "one $who\n"; }
            if ($http_x ~* ^(ab)(c)$) { return 200 "cap $2\n"; }
            if ($arg_f) { break; }
            rewrite ^/q/(.*) /t/$1?x=$1 last;
            rewrite ^/d/(.*) /t/$1? last;
            rewrite ^/r/(.*) /rr/$1 redirect;
            rewrite ^/p/(.*) http://example.com/$1? permanent;
            rewrite ^/loop /loop;
            rewrite ^/b/(.*) /t/$1 break;
            return 200 "end $uri $args\n";
        }
        location /t/ { return 200 "t $uri $args $who\n"; }
        location /s/ { return 200 "s $uri\n"; }
        location /cycle { rewrite ^ /cycle2 last; }
        location /cycle2 { rewrite ^ /cycle last; }
        location /ff { if (-f {{root}}/files/a.txt) { return 200 "file\n"; } return 404; }
        location /nf { if (!-f {{root}}/files/none) { return 200 "nofile\n"; } return 404; }
        location /dd { if (-d {{root}}/files) { return 200 "dir\n"; } return 404; }
        location /files/ {
            add_header X-A a;
            add_header X-B b always;
        }
        location /exp/ { alias {{root}}/files/; expires 1h; }
        location /epoch/ { alias {{root}}/files/; expires epoch; }
        location /noetag/ { alias {{root}}/files/; etag off; }
        location ~ ^/rx/(.+)$ { alias {{root}}/files/$1; }
        location /idx/ { alias {{root}}/files/; index nothere.html b.html; }
        location = /files/b.html { return 200 "exact index target\n"; }
        location /typed/ { alias {{root}}/files/; types { text/x-a txt; } default_type x/y; }
    }
}
"""

FILES = {"files/a.txt": b"hello a\n", "files/b.html": b"<p>b</p>\n",
         "files/c.css": b"body{}\n", "files/sub/index.html": b"sub index\n",
         "files/big.bin": bytes(range(256)) * 4096}

REQUESTS = {
    "return-if-set": "/x?a=1",
    "end": "/x?a=2",
    "if-regex-capture": ("/x", "X: ABC"),
    "if-var-false-zero": "/b/z?f=0",
    "break": "/b/z?f=yes",
    "rewrite-break": "/b/z",
    "rewrite-last-new-args": "/q/1?k=v",
    "rewrite-drop-args": "/d/1?k=v",
    "rewrite-redirect": "/r/1?k=v",
    "rewrite-permanent": "/p/1?k=v",
    "rewrite-no-flag-continues": "/loop?z=1",
    "server-rewrite": "/srv/abc",
    "server-if-return": "/x?srv=stop",
    "cycle": "/cycle",
    "file-test": "/ff",
    "not-file-test": "/nf",
    "dir-test": "/dd",
    "static-file": "/files/a.txt",
    "static-html-type": "/files/b.html",
    "static-default-type": "/files/c.css",
    "static-dir-redirect": "/files/sub?x=1",
    "static-index": "/files/sub/",
    "static-404": "/files/nothing",
    "static-index-403": "/files/",
    "static-expires": "/exp/a.txt",
    "static-expires-epoch": "/epoch/a.txt",
    "static-no-etag": "/noetag/a.txt",
    "static-regex-alias": "/rx/a.txt",
    "static-index-redirect": "/idx/",
    "static-types-block": "/typed/a.txt",
    "static-types-default": "/typed/b.html",
    "static-head": ("/files/a.txt", None, "HEAD"),
    "static-post-405": ("/files/a.txt", None, "POST"),
    "static-range": ("/files/a.txt", "Range: bytes=1-3"),
    "static-range-suffix": ("/files/a.txt", "Range: bytes=-2"),
    "static-range-open": ("/files/a.txt", "Range: bytes=5-"),
    "static-range-416": ("/files/a.txt", "Range: bytes=100-"),
    "static-big": "/files/big.bin",
}


def _raw(spec: Any, etag_lm: tuple[str, str]) -> bytes:
    method, header = "GET", None
    if isinstance(spec, tuple):
        path, header = spec[0], spec[1]
        method = spec[2] if len(spec) > 2 else "GET"
    else:
        path = spec
    lines = [f"{method} {path} HTTP/1.1", "Host: localhost", "Connection: close"]
    if header:
        lines.append(header.replace("{etag}", etag_lm[0]).replace("{lm}", etag_lm[1]))
    if method == "POST":
        lines.append("Content-Length: 0")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    base = tmp_path_factory.mktemp("rwdiff")
    root = base / "root"
    for name, data in FILES.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        os.utime(path, (1_600_000_000, 1_600_000_000))
    procs = ProcessGroup(base)
    try:
        out: dict[str, Any] = {}
        for cls in (NginxServer, WsgateServer):
            params = {"port": free_port(), "root": str(root)}
            out[cls.name] = cls(CONF, base / cls.name, params=params, procs=procs).start()
        yield out
    finally:
        procs.stop_all()


def exchange(port: int, raw: bytes) -> tuple[str, list[tuple[str, str]], bytes]:
    with RawClient.connect("127.0.0.1", port, timeout=10) as client:
        client.send(raw)
        try:
            status, _, pairs = client.read_head(timeout=10)
            body = b"" if raw.startswith(b"HEAD") else client.read_until_eof(10)
        except ReadTimeout as exc:
            return "<no response>", [], exc.data
    kept = [(n, re.sub(r"(127\.0\.0\.1|localhost):\d+", r"\1:PORT", v)) for n, v in pairs
            if n.lower() not in ("date", "server", "expires")]
    body = re.sub(rb"nginx/1\.22\.1|wsgate/[0-9.]+", b"SERVER", body)
    return status, kept, body


# Known differences, each checked to still differ (strict xfail):
KNOWN = {
    # nginx 1.22 runs the headers filter twice on a 416 from the range filter
    # (X-B twice, X-A though 416 is not an add_header status); wsgate once.
    "static-range-416": "nginx repeats add_header on a 416",
}


@pytest.mark.parametrize("name", [
    pytest.param(n, marks=pytest.mark.xfail(reason=KNOWN[n], strict=True)) if n in KNOWN
    else n for n in sorted(REQUESTS)])
def test_same_as_nginx(servers: dict[str, Any], name: str) -> None:
    raw = _raw(REQUESTS[name], ('"5f5e1000-8"', "Sun, 13 Sep 2020 12:26:40 GMT"))
    want = exchange(servers["nginx"].port, raw)
    got = exchange(servers["wsgate"].port, raw)
    assert got == want


@pytest.mark.parametrize("header", [
    'If-None-Match: "5f5e1000-8"',
    "If-Modified-Since: Sun, 13 Sep 2020 12:26:40 GMT",
    'If-Match: "other"',
    "If-Unmodified-Since: Sun, 13 Sep 2020 12:00:00 GMT",
])
def test_conditional_same_as_nginx(servers: dict[str, Any], header: str) -> None:
    raw = _raw(("/files/a.txt", header), ("", ""))
    assert exchange(servers["wsgate"].port, raw) == exchange(servers["nginx"].port, raw)
