"""The one-regex fast paths of the head parsers decide exactly what the
line-by-line paths decide: every generated head is parsed twice, once with the fast
pattern disabled, and the results (or errors, with status) must be equal."""

import random
import re

import pytest

from wsgate.http import parse, response
from wsgate.http.events import Request
from wsgate.limits import HeaderLimits

_NEVER = re.compile(rb"(?!)")

REQUEST_LINES = [
    b"GET / HTTP/1.1", b"GET /a/../b?x=1 HTTP/1.0", b"POST /x HTTP/1.1",
    b"GET http://h.com:80/p HTTP/1.1", b"CONNECT h:1 HTTP/1.1", b"GET / HTTP/1.1234",
    b"GET /%2e%2e/ HTTP/1.9", b"GET //a//b HTTP/1.1", b"get / HTTP/1.1", b"GET / HTTP/1.01",
    b"TRACE / HTTP/1.1", b"GET /#frag HTTP/1.1", b"GET / HTTP/2.0", b"GET /  HTTP/1.1",
]
REQUEST_FIELDS = [
    b"Host: a.com", b"Host: b.com", b"Host: bad/h", b"Host: A.Com.:8080",
    b"Connection: close", b"Connection: keep-alive", b"Content-Length: 5",
    b"Content-Length: x", b"Transfer-Encoding: chunked", b"Transfer-Encoding: gzip",
    b"Expect: 100-continue", b"Upgrade: websocket", b"X-A:  v  ", b"User-Agent: curl",
    b"Content-Length: 3", b"X-Long: " + b"y" * 200, b"X_U: 1", b"Bad Name: 1",
]
STATUS_LINES = [
    b"HTTP/1.1 200 OK", b"HTTP/1.0 404 Not Found", b"HTTP/1.1 200", b"HTTP/1.1 200 ",
    b"HTTP/1.1  204 x.y", b"HTTP/2.0 200.OK", b"HTTP/1.1 101 Switching Protocols",
    b"HTTP/1.1 100 Continue", b"HTTP/10.12 302 Found ", b"HTTP/1.1 20 OK",
]
RESPONSE_FIELDS = [
    b"Content-Type: text/plain", b"Content-Length: 3", b"Content-Length:  5 ",
    b"content-length: 3", b"Transfer-Encoding: chunked", b"Connection: close",
    b"X_U: a b ", b"Server:", b"Content-Length: x", b"Transfer-Encoding: gzip",
    b"A: \x01b", b"Connection: Keep-Alive, Close", b"Location: /x",
]


def _outcome(call):
    try:
        return "ok", call()
    except Exception as exc:  # the error kind, message and status must match too
        return type(exc).__name__, str(exc), getattr(exc, "status_hint", None)


def _request(buf: bytes, fast: bool, monkeypatch, **options):
    with monkeypatch.context() as m:
        if not fast:
            m.setattr(parse, "_FAST_HEAD", _NEVER)
        parser = parse.RequestHeadParser(
            HeaderLimits(buffer_size=256, large_num=4, large_size=512), **options)
        return _outcome(lambda: (parser.feed(buf), parser.trailing_data))


def _response(buf: bytes, fast: bool, strict: bool, monkeypatch):
    with monkeypatch.context() as m:
        if not fast:
            m.setattr(response, "_FAST_HEAD", _NEVER)
        parser = response.ResponseHeadParser(65536, strict=strict)
        return _outcome(lambda: (parser.feed(buf), parser.trailing_data))


def _heads(lines, fields, seed):
    rng = random.Random(seed)
    for line in lines:
        for _ in range(40):
            chosen = rng.sample(fields, rng.randint(0, 5))
            yield line + b"\r\n" + b"".join(f + b"\r\n" for f in chosen) + b"\r\nabc"


@pytest.mark.parametrize("options", [{}, {"underscores_in_headers": True},
                                     {"merge_slashes": False}])
def test_request_fast_path_matches_line_path(options, monkeypatch):
    fast_taken = 0
    for buf in _heads(REQUEST_LINES, REQUEST_FIELDS, 7):
        slow = _request(buf, False, monkeypatch, **options)
        assert _request(buf, True, monkeypatch, **options) == slow, buf
        fast_taken += parse._FAST_HEAD.match(buf) is not None and len(buf) <= 256
    assert fast_taken > 100     # the fast path really ran


@pytest.mark.parametrize("strict", [False, True])
def test_response_fast_path_matches_line_path(strict, monkeypatch):
    fast_taken = 0
    for buf in _heads(STATUS_LINES, RESPONSE_FIELDS, 11):
        if buf.startswith(b"HTTP/1.1 100"):
            buf += b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\n"
        slow = _response(buf, False, strict, monkeypatch)
        assert _response(buf, True, strict, monkeypatch) == slow, buf
        fast_taken += response._FAST_HEAD.match(buf) is not None
    assert fast_taken > 100


def test_fast_init_keeps_events_frozen():
    r = parse.RequestHeadParser().feed(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    assert isinstance(r, Request) and r.host == b"a" and r.path == b"/"
    with pytest.raises(AttributeError):
        r.method = b"POST"  # type: ignore[misc]


QUICK_LINES = REQUEST_LINES + [
    b"GET /a/b?x=1&y=%20 HTTP/1.1", b"GET /a%20b HTTP/1.1", b"HEAD /x/ HTTP/1.0",
    b"GET /a/./b HTTP/1.1", b"GET /?q HTTP/1.1", b"DELETE /r HTTP/1.1",
]


def test_quick_request_agrees_with_the_parser():
    """downstream.py tries quick_request (no parser object) first: whatever it
    accepts must be the parser's Request, with the head ending where the parser's
    did; everything else (errors included) it leaves to the parser."""
    limits = HeaderLimits(buffer_size=256, large_num=4, large_size=512)
    taken = 0
    typical = [b"Host: example.org:8080", b"Host: A.b.", b"Upgrade: websocket",
               b"Upgrade: h2c", b"Connection: Upgrade", b"Connection: close",
               b"Accept: */*", b"X-A:  v  ", b"Cookie: a=b; c=d"]
    heads = list(_heads(QUICK_LINES, REQUEST_FIELDS, 5)) + \
        list(_heads(QUICK_LINES, typical, 6))
    for buf in heads:
        quick = parse.quick_request(buf, limits)
        if quick is None:
            continue
        taken += 1
        parser = parse.RequestHeadParser(limits)
        assert parser.feed(buf) == quick, buf
        assert parser.trailing_data == buf[quick.raw_head_len:]
    assert taken > 100
