"""Captured responses (proxy/capture.py) parsed back into status, fields, body."""

from __future__ import annotations

from wsgate.proxy.capture import split_response


def test_content_length() -> None:
    got = split_response(b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n"
                         b"Content-Length: 3\r\n\r\nabc", b"GET")
    assert got is not None and got.status == 200 and got.body == b"abc" and got.complete
    assert got.field(b"content-type") == b"text/html"


def test_chunked_and_close_delimited() -> None:
    got = split_response(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                         b"2\r\nab\r\n1\r\nc\r\n0\r\n\r\n", b"GET")
    assert got is not None and got.body == b"abc" and got.complete
    got = split_response(b"HTTP/1.0 200 OK\r\n\r\nrest", b"GET")
    assert got is not None and got.body == b"rest"


def test_incomplete_and_garbage() -> None:
    got = split_response(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nabc", b"GET")
    assert got is not None and not got.complete
    assert split_response(b"", b"GET") is None
    assert split_response(b"HTTP/1.1 200 OK\r\n", b"GET") is None


def test_no_body_statuses() -> None:
    got = split_response(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n", b"GET")
    assert got is not None and got.status == 101 and got.body == b""
