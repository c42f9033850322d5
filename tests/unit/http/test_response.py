"""Upstream response heads: nginx 1.22.1's observed behaviour (default) and the
strict mode (RFC 9112 / later nginx)."""

import pytest

from wsgate.errors import RemoteProtocolError
from wsgate.http.events import NEED_DATA, Response
from wsgate.http.response import ResponseHeadParser, response_body_kind


def parse(data: bytes, **kw):
    parser = ResponseHeadParser(**kw)
    return parser.feed(data), parser.trailing_data


def test_simple_with_trailing_frames():
    r, rest = parse(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n\x81\x02hi")
    assert (r.status, r.reason, r.version, r.status_line) == (
        101, b"Switching Protocols", (1, 1), b"101 Switching Protocols")
    assert r.headers == ((b"Upgrade", b"websocket"),) and rest == b"\x81\x02hi"


@pytest.mark.parametrize("data,length,chunked", [
    (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\n", 2, False),
    (b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n", None, False),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", None, False),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", None, True),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 2\r\n\r\n", None, True),
])
def test_nginx_122_framing_leniency(data, length, chunked):
    r, _ = parse(data)
    assert (r.content_length, r.chunked) == (length, chunked)


@pytest.mark.parametrize("data,message", [
    (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\n",
     "upstream sent duplicate header line"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
     'upstream sent invalid "Content-Length" header'),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
     'upstream sent unknown "Transfer-Encoding": "gzip"'),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 2\r\n\r\n",
     'upstream sent "Content-Length" and "Transfer-Encoding" headers at the same time'),
])
def test_strict_framing_errors(data, message):
    with pytest.raises(RemoteProtocolError) as err:
        parse(data, strict=True)
    assert err.value.status_hint == 502 and err.value.message.startswith(message)


@pytest.mark.parametrize("data,shown", [
    (b"HTTP/1.1 200 OK\r\nX A: b\r\n\r\n", '"X\\x20..."'),
    (b"HTTP/1.1 200 OK\r\nX-A: 1\r\n b\r\n\r\n", '"\\x20..."'),
    (b"HTTP/1.1 200 OK\r\nX-A: b\x00c\r\n\r\n", '"X-A: b\\x00..."'),
    (b"HTTP/1.1 200 OK\r\nX-A: b\rc\r\n\r\n", '"X-A: b\\x0d..."'),
])
def test_invalid_header_is_502(data, shown):
    with pytest.raises(RemoteProtocolError) as err:
        parse(data)
    assert err.value.status_hint == 502
    assert err.value.message == f"upstream sent invalid header: {shown}"


def test_odd_names_pass_like_nginx():
    r, _ = parse(b"HTTP/1.1 200 OK\r\nX_B: c\r\nX@C: d\r\nX-\x80: e\r\nX-N\r\n\n")
    assert r.headers == ((b"X_B", b"c"), (b"X@C", b"d"), (b"X-\x80", b"e"), (b"X-N", b""))


@pytest.mark.parametrize("data", [b"garbage here\r\n\r\n", b"HTTP/1.1 2000 OK\r\n\r\n",
                                  b"HTTP/1.1 20 OK\r\n\r\n", b"X"])
def test_invalid_status_line_is_http09(data):
    r, rest = parse(data)
    assert (r.version, r.status, r.raw_head_len) == ((0, 9), 200, 0)
    assert rest == data


def test_status_without_reason():
    r, _ = parse(b"HTTP/1.1 200\r\nX-A: 1\r\n\r\n")
    assert (r.status, r.status_line, r.reason) == (200, b"200", b"")


def test_100_continue_is_final_in_nginx_122_and_skipped_when_strict():
    data = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    r, rest = parse(data)
    assert r.status == 100 and rest.startswith(b"HTTP/1.1 200")
    r, rest = parse(data, strict=True)
    assert (r.status, rest) == (200, b"ok")


def test_too_big_header():
    parser = ResponseHeadParser(max_size=64)
    assert parser.feed(b"HTTP/1.1 200 OK\r\n") is NEED_DATA
    with pytest.raises(RemoteProtocolError) as err:
        parser.feed(b"X-A: " + b"a" * 100)
    assert err.value.message == "upstream sent too big header"


def test_every_split():
    data = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
    expect = parse(data)
    for cut in range(1, len(data)):
        parser = ResponseHeadParser()
        first = parser.feed(data[:cut])
        if first is NEED_DATA:
            assert (parser.feed(data[cut:]), parser.trailing_data) == expect
        else:
            assert first == expect[0]
    assert expect[0].connection_close


@pytest.mark.parametrize("status,method,kwargs,kind", [
    (200, b"HEAD", {"content_length": 5}, "none"),
    (204, b"GET", {}, "none"), (304, b"GET", {}, "none"), (101, b"GET", {}, "none"),
    (200, b"GET", {"chunked": True}, "chunked"),
    (200, b"GET", {"content_length": 0}, "length"), (200, b"GET", {}, "close"),
])
def test_body_kind(status, method, kwargs, kind):
    r = Response(status, b"", (1, 1), (), **kwargs)
    assert response_body_kind(r, method) == kind
