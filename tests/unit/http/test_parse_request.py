"""Request-head parsing: nginx-recorded byte tables, exact trailing data, splits.

nginx_request_cases.json was recorded from real nginx 1.22.1 (status, error-log
message, and for accepted requests $uri/$args/$host/$http_upgrade/$http_x_a/
$request_uri echoed by `return 200`).
"""

import json
import pathlib

import pytest

from wsgate.errors import RemoteProtocolError
from wsgate.http.events import NEED_DATA, Request
from wsgate.http.parse import BadRequest, RequestHeadParser, parse_content_length
from wsgate.limits import HeaderLimits

CASES = json.loads((pathlib.Path(__file__).parent / "nginx_request_cases.json").read_text())


def _b(text: str) -> bytes:
    return text.encode("latin-1")


def _parse(data: bytes, **kw) -> Request:
    result = RequestHeadParser(**kw).feed(data)
    assert isinstance(result, Request)
    return result


@pytest.mark.parametrize("case", CASES, ids=lambda c: repr(c["request"])[:60])
def test_matches_nginx(case):
    data = _b(case["request"])
    if case["status"] != 200:
        with pytest.raises(RemoteProtocolError) as err:
            RequestHeadParser().feed(data)
        wire = 400 if err.value.status_hint == 494 else err.value.status_hint
        assert wire == case["status"]
        assert err.value.message == case["message"]
        return
    req = _parse(data)
    if case.get("http09"):     # nginx sent the body only
        assert req.version == (0, 9)
        return
    if "uri" not in case:      # nginx answered 413 after parsing the head
        assert req.content_length is not None
        return
    assert req.path == _b(case["uri"])
    assert req.args == _b(case["args"])
    assert (req.host or b"localhost") == _b(case["host"])
    assert req.request_uri == _b(case["request_uri"])
    assert (req.upgrade or b"") == _b(case["upgrade"])
    x_a = [v for n, v in req.headers if n.lower() == b"x-a"]
    assert (x_a[0] if x_a else b"") == _b(case["x_a"])


SIMPLE = b"GET /x?y=1 HTTP/1.1\r\nHost: a\r\nUser-Agent: t\r\n\r\n"


def test_request_fields():
    req = _parse(SIMPLE)
    assert req == Request(
        method=b"GET", target=b"/x?y=1", version=(1, 1),
        headers=((b"Host", b"a"), (b"User-Agent", b"t")), keep_alive=True,
        expect_continue=False, upgrade=None, content_length=None, chunked=False,
        raw_head_len=len(SIMPLE), path=b"/x", args=b"y=1", request_uri=b"/x?y=1",
        host=b"a")


@pytest.mark.parametrize("data,expect", [
    (b"GET / HTTP/1.0\r\n\r\n", False),
    (b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", True),
    (b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", True),
    (b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", False),
    (b"GET / HTTP/1.1\r\nHost: a\r\nConnection: Keep-Alive, Upgrade\r\n\r\n", True),
    (b"GET / HTTP/1.1\r\nHost: a\r\nConnection: foo-CLOSE\r\n\r\n", False),
])
def test_keep_alive(data, expect):
    assert _parse(data).keep_alive is expect


@pytest.mark.parametrize("data,expect", [
    (b"POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-Continue\r\nContent-Length: 1\r\n\r\n", True),
    (b"POST / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n", False),
    (b"POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue, x\r\n\r\n", False),
])
def test_expect_continue(data, expect):
    assert _parse(data).expect_continue is expect


def test_framing_fields():
    req = _parse(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 007\r\n\r\n")
    assert (req.content_length, req.chunked) == (7, False)
    req = _parse(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: CHUNKED\r\n\r\n")
    assert (req.content_length, req.chunked) == (None, True)


@pytest.mark.parametrize("value,expect", [
    (b"0", 0), (b"12", 12), (b"9223372036854775807", 2**63 - 1),
    (b"9223372036854775808", None), (b"-1", None), (b"+1", None), (b"", None),
    (b"1 2", None), (b"0x10", None), (b"\xd9\xa1", None)])
def test_content_length_values(value, expect):
    assert parse_content_length(value) == expect


def test_trailing_data_after_head_is_returned_untouched():
    frames = b"\x81\x85\x00\x00\x00\x00hello" + bytes(range(256))
    head = (b"GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\n\r\n")
    parser = RequestHeadParser()
    req = parser.feed(head + frames)
    assert isinstance(req, Request) and req.upgrade == b"websocket"
    assert req.raw_head_len == len(head)
    assert parser.trailing_data == frames


def test_pipelined_requests():
    second = b"GET /2 HTTP/1.1\r\nHost: a\r\n\r\n"
    parser = RequestHeadParser()
    assert parser.feed(SIMPLE + second).path == b"/x"
    assert _parse(parser.trailing_data).path == b"/2"


def test_leading_empty_lines_are_consumed():
    parser = RequestHeadParser()
    req = parser.feed(b"\r\n\n" + SIMPLE + b"body")
    assert req.raw_head_len == 3 + len(SIMPLE)
    assert parser.trailing_data == b"body"


VALID = [
    SIMPLE,
    b"GET / HTTP/1.1\nHost: a\n\nrest",
    b"POST /a/../b%20c HTTP/1.1\r\nHost: A.example.:8080\r\nContent-Length: 3\r\n"
    b"X-A:\tv \r\nX_B: ignored\r\nName-Only\r\n\r\nabc",
    b"GET http://h.example/p?q HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\r\n\x81\x00",
    b"GET /\r\nextra",
]


@pytest.mark.parametrize("data", VALID)
def test_any_split_gives_the_same_result(data):
    whole = RequestHeadParser()
    expect = whole.feed(data)
    for cut in range(len(data) + 1):
        parser = RequestHeadParser()
        first = parser.feed(data[:cut])
        if first is NEED_DATA:
            assert parser.feed(data[cut:]) == expect
        else:
            assert first == expect
            # the head was complete: the rest is trailing, whatever the split
            assert parser.trailing_data + data[cut:] == whole.trailing_data
            continue
        assert parser.trailing_data == whole.trailing_data


@pytest.mark.parametrize("data", VALID)
def test_byte_by_byte(data):
    parser = RequestHeadParser()
    expect = RequestHeadParser().feed(data)
    results = []
    for i in range(len(data)):
        if parser.done:
            break
        results.append(parser.feed(data[i:i + 1]))
    assert results[-1] == expect
    assert all(r is NEED_DATA for r in results[:-1])


def test_incomplete_head_needs_data():
    assert RequestHeadParser().feed(b"GET / HTTP/1.1\r\nHost: a\r\n") is NEED_DATA


def test_underscores_in_headers_on():
    req = _parse(b"GET / HTTP/1.1\r\nHost: a\r\nX_A: 1\r\n\r\n", underscores_in_headers=True)
    assert (b"X_A", b"1") in req.headers


def test_ignore_invalid_headers_off_keeps_them():
    req = _parse(b"GET / HTTP/1.1\r\nHost: a\r\nX@A: 1\r\nX_B: 2\r\n\r\n",
                 ignore_invalid_headers=False)
    assert (b"X@A", b"1") in req.headers and (b"X_B", b"2") in req.headers


def test_merge_slashes_off():
    assert _parse(b"GET //a//b HTTP/1.0\r\n\r\n", merge_slashes=False).path == b"//a//b"


def test_http09_error_flag():
    with pytest.raises(BadRequest) as err:
        RequestHeadParser().feed(b"POST /\r\n")
    assert err.value.http09


# Buffer geometry: nginx's test http_header_buffers.t uses small buffers; the
# default-size boundaries below were checked against real nginx (see the JSON).
SMALL = HeaderLimits(buffer_size=128, large_num=2, large_size=256)


def test_long_request_line_is_414_before_the_line_ends():
    with pytest.raises(RemoteProtocolError) as err:
        RequestHeadParser(SMALL).feed(b"GET /" + b"a" * 300)
    assert (err.value.status_hint, err.value.message) == (414, "client sent too long URI")


def test_long_header_line_is_494():
    with pytest.raises(RemoteProtocolError) as err:
        RequestHeadParser(SMALL).feed(b"GET / HTTP/1.1\r\nX-A: " + b"b" * 300)
    assert err.value.status_hint == 494
    assert err.value.message.startswith('client sent too long header line: "X-A: bbb')


def test_too_many_buffers_is_494():
    line = b"X-A: " + b"b" * 200 + b"\r\n"
    with pytest.raises(RemoteProtocolError) as err:
        RequestHeadParser(SMALL).feed(b"GET / HTTP/1.1\r\nHost: a\r\n" + line * 3 + b"\r\n")
    assert err.value.status_hint == 494


def test_line_of_exactly_one_large_buffer_fits():
    line = b"X-A: " + b"b" * (256 - 7) + b"\r\n"
    assert len(line) == 256
    assert _parse(b"GET / HTTP/1.1\r\nHost: a\r\n" + line + b"\r\n", limits=SMALL)


def test_max_headers_opt_in():
    limits = HeaderLimits(max_headers=2)
    data = b"GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\n\r\n"
    assert isinstance(RequestHeadParser().feed(data), Request)
    with pytest.raises(RemoteProtocolError) as err:
        RequestHeadParser(limits).feed(data)
    assert (err.value.status_hint, err.value.message) == (400, "client sent too many header lines")
