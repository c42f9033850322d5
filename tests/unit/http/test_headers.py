"""Header rules for the proxied request and response: literal tables of what real
nginx 1.22.1 sent (recorded with a raw backend; the live comparison is in
test_headers_nginx.py)."""

from wsgate.http.events import Response
from wsgate.http.headers import (HOP_BY_HOP, build_client_response_head,
                                 build_upstream_request, connection_tokens,
                                 filter_upstream_response_headers, merge_set_headers,
                                 wants_upgrade)
from wsgate.http.parse import RequestHeadParser
from wsgate.http.response import ResponseHeadParser

UP = "127.0.0.1:18402"
DATE = b"Sun, 22 Nov 2026 04:34:03 GMT"


def req(data: bytes):
    return RequestHeadParser().feed(data)


def test_defaults_strip_hop_by_hop_but_not_all():
    r = req(b"GET /p/x?a=1 HTTP/1.1\r\nHost: h.example\r\nUser-Agent: t\r\n"
            b"Connection: keep-alive, Upgrade\r\nUpgrade: websocket\r\nKeep-Alive: 5\r\n"
            b"TE: trailers\r\nExpect: 100-continue\r\nProxy-Connection: x\r\nTrailer: y\r\n"
            b"X-A: 1\r\nX-a: 2\r\nhOST-x: 3\r\n\r\n")
    wire = build_upstream_request(r.method, r.request_uri, "1.0", r.headers, [],
                                  proxy_host=UP)
    # recorded from nginx 1.22.1 (location /p/ { proxy_pass http://127.0.0.1:18402; })
    assert wire == (b"GET /p/x?a=1 HTTP/1.0\r\nHost: 127.0.0.1:18402\r\nConnection: close\r\n"
                    b"User-Agent: t\r\nProxy-Connection: x\r\nTrailer: y\r\nX-A: 1\r\n"
                    b"X-a: 2\r\nhOST-x: 3\r\n\r\n")


def test_websocket_boilerplate_order():
    r = req(b"GET /ws/x HTTP/1.1\r\nHost: h.example\r\nConnection: Upgrade\r\n"
            b"Upgrade: websocket\r\nX-B: 1\r\n\r\n")
    sets = [("Upgrade", r.upgrade.decode()), ("Connection", "upgrade"),
            ("X-Real-IP", "127.0.0.1")]
    wire = build_upstream_request(r.method, r.request_uri, (1, 1), r.headers, sets,
                                  proxy_host=UP)
    assert wire == (b"GET /ws/x HTTP/1.1\r\nUpgrade: websocket\r\nConnection: upgrade\r\n"
                    b"X-Real-IP: 127.0.0.1\r\nHost: 127.0.0.1:18402\r\nX-B: 1\r\n\r\n")


def test_empty_set_value_is_not_sent_but_hides_the_client_header():
    r = req(b"GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\n\r\n")
    wire = build_upstream_request(r.method, b"/", "1.1", r.headers, [("Upgrade", "")],
                                  proxy_host=UP)
    assert b"Upgrade" not in wire


def test_pass_request_headers_off_and_body_length():
    r = req(b"POST /nh/ HTTP/1.1\r\nHost: h\r\nX-B: 1\r\nContent-Length: 5\r\n\r\n")
    wire = build_upstream_request(r.method, r.request_uri, "1.0", r.headers, [("Host", "h")],
                                  pass_request_headers=False, body_length=5, proxy_host=UP)
    assert wire == (b"POST /nh/ HTTP/1.0\r\nHost: h\r\nConnection: close\r\n"
                    b"Content-Length: 5\r\n\r\n")


def test_client_chunked_body_sent_with_length_or_chunked():
    r = req(b"POST /p/ HTTP/1.1\r\nHost: h\r\nX-B: 1\r\nTransfer-Encoding: chunked\r\n\r\n")
    wire = build_upstream_request(r.method, r.request_uri, "1.0", r.headers, [],
                                  body_length=5, proxy_host=UP)
    assert wire == (b"POST /p/ HTTP/1.0\r\nHost: 127.0.0.1:18402\r\nConnection: close\r\n"
                    b"Content-Length: 5\r\nX-B: 1\r\n\r\n")
    wire = build_upstream_request(r.method, r.request_uri, "1.1", r.headers, [],
                                  chunked=True, proxy_host=UP)
    assert b"Connection: close\r\nTransfer-Encoding: chunked\r\nX-B: 1\r\n" in wire


def test_merge_is_idempotent_and_case_insensitive():
    merged = merge_set_headers([("host", "x"), ("CONNECTION", "")], "up")
    assert merged[:2] == [("host", "x"), ("CONNECTION", "")]
    assert [n for n, _ in merged[2:]] == ["Content-Length", "Transfer-Encoding", "TE",
                                         "Keep-Alive", "Expect", "Upgrade"]
    assert merge_set_headers(merged, "other") == merged


def test_connection_tokens_and_upgrade():
    assert connection_tokens([(b"Connection", b"keep-alive, Upgrade"),
                              (b"connection", b" X-Foo ,")]) == {b"keep-alive", b"upgrade",
                                                                 b"x-foo"}
    assert HOP_BY_HOP >= {b"connection", b"upgrade", b"te"}
    assert wants_upgrade(req(b"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n"))
    assert not wants_upgrade(req(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"))


def resp(data: bytes) -> Response:
    result = ResponseHeadParser().feed(data)
    assert isinstance(result, Response)
    return result


def test_response_head_like_nginx():
    r = resp(b"HTTP/1.1 200 Fine Thanks\r\nX-First: 1\r\nServer: back\r\nDate: yesterday\r\n"
             b"X-Pad: p\r\nX-Accel-Buffering: no\r\nConnection: close, X-First\r\n"
             b"Keep-Alive: timeout=5\r\nUpgrade: h2c\r\nProxy-Connection: x\r\nTrailer: t\r\n"
             b"Content-Type: text/x\r\nLast-Modified: Mon, 01 Jan 2024 00:00:00 GMT\r\n"
             b"Location: /elsewhere\r\nETag: \"e\"\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\n"
             b"Content-Length: 2\r\nX-Last: 1\r\n\r\n")
    head = build_client_response_head(r, keep_alive=True, content_length=r.content_length,
                                      date=DATE).replace(b"wsgate/0.1.0", b"nginx/1.22.1")
    assert head == (
        b"HTTP/1.1 200 Fine Thanks\r\nServer: nginx/1.22.1\r\nDate: " + DATE + b"\r\n"
        b"Content-Type: text/x\r\nContent-Length: 2\r\nConnection: keep-alive\r\n"
        b"X-First: 1\r\nUpgrade: h2c\r\nProxy-Connection: x\r\nTrailer: t\r\n"
        b"Last-Modified: Mon, 01 Jan 2024 00:00:00 GMT\r\nLocation: /elsewhere\r\n"
        b"ETag: \"e\"\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\nX-Last: 1\r\n\r\n")


def test_101_head_like_nginx():
    r = resp(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
             b"Sec-WebSocket-Accept: xyz\r\nServer: back\r\nX-Last: 1\r\n\r\n")
    head = build_client_response_head(r, keep_alive=True, date=DATE)
    assert head == (b"HTTP/1.1 101 Switching Protocols\r\nServer: wsgate/0.1.0\r\nDate: " + DATE +
                    b"\r\nConnection: upgrade\r\nUpgrade: websocket\r\n"
                    b"Sec-WebSocket-Accept: xyz\r\nX-Last: 1\r\n\r\n")


def test_rechunked_head_and_last_content_type_wins():
    r = resp(b"HTTP/1.1 200 OK\r\nX-First: 1\r\nContent-Type: a\r\nContent-Type: b\r\n\r\n")
    head = build_client_response_head(r, keep_alive=True, chunked=True, date=DATE)
    assert head.endswith(b"Content-Type: b\r\nTransfer-Encoding: chunked\r\n"
                         b"Connection: keep-alive\r\nX-First: 1\r\n\r\n")


def test_hide_and_pass():
    headers = ((b"Server", b"back"), (b"X-Secret", b"s"), (b"X-Pad", b"p"))
    assert filter_upstream_response_headers(headers, hide={b"x-secret"},
                                            pass_={b"X-Pad"}) == [(b"X-Pad", b"p")]
    r = Response(200, b"OK", (1, 1), headers, status_line=b"200 OK")
    head = build_client_response_head(r, keep_alive=False, pass_={b"server"}, date=DATE)
    assert head.startswith(b"HTTP/1.1 200 OK\r\nDate: ")
    assert b"Server: back\r\n" in head and b"Connection: close" in head
