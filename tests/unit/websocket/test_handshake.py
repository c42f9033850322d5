"""Opening handshake: keys, the client's request head, server-side checks of an upgrade
request, client-side checks of a 101, and the Origin allow-list."""

import base64

import httptools
import pytest

from wsgate.websocket.handshake import (
    GUID, accept_key, check_switching_response, check_upgrade_request, client_request,
    header_tokens, is_upgrade_request, make_key, origin_allowed, parse_origin,
)

RFC_KEY = "dGhlIHNhbXBsZSBub25jZQ=="           # RFC 6455 1.3
RFC_ACCEPT = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def H(*pairs: tuple[str, str]) -> list[tuple[bytes, bytes]]:
    return [(n.encode(), v.encode()) for n, v in pairs]


GOOD = H(("Host", "example.com"), ("Upgrade", "websocket"), ("Connection", "Upgrade"),
         ("Sec-WebSocket-Key", RFC_KEY), ("Sec-WebSocket-Version", "13"))


def replace(headers, name, value=None):
    out = [(n, v) for n, v in headers if n.lower() != name.lower().encode()]
    return out + (H((name, value)) if value is not None else [])


def test_guid_and_rfc_accept_key():
    assert GUID == "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
    assert accept_key(RFC_KEY) == RFC_ACCEPT


def test_make_key_is_base64_of_16_random_bytes():
    keys = {make_key() for _ in range(10)}
    assert len(keys) == 10
    assert all(len(base64.b64decode(k, validate=True)) == 16 for k in keys)


# -- client_request ----------------------------------------------------------------------


class _Collector:
    def __init__(self):
        self.headers, self.url, self.done = [], None, False

    def on_url(self, url):
        self.url = url

    def on_header(self, name, value):
        self.headers.append((name, value))

    def on_message_complete(self):
        self.done = True


def test_client_request_literal_and_parses_as_valid_handshake():
    head, key = client_request("example.com:8080", "/chat?x=1", origin="https://example.com",
                               subprotocols=["chat", "superchat"],
                               extra_headers=[("User-Agent", "wsgate-probe")], key=RFC_KEY)
    assert key == RFC_KEY
    assert head == (b"GET /chat?x=1 HTTP/1.1\r\nHost: example.com:8080\r\nUpgrade: websocket\r\n"
                    b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                    b"Sec-WebSocket-Version: 13\r\nOrigin: https://example.com\r\n"
                    b"Sec-WebSocket-Protocol: chat, superchat\r\nUser-Agent: wsgate-probe\r\n\r\n")
    sink = _Collector()
    parser = httptools.HttpRequestParser(sink)
    try:
        parser.feed_data(head)
    except httptools.HttpParserUpgrade:
        pass
    assert sink.url == b"/chat?x=1" and parser.should_upgrade()
    version = tuple(int(x) for x in parser.get_http_version().split("."))
    assert check_upgrade_request(parser.get_method(), version, sink.headers) == []


def test_client_request_generates_a_key():
    head, key = client_request("h", "/")
    assert f"Sec-WebSocket-Key: {key}\r\n".encode() in head
    assert check_upgrade_request(b"GET", (1, 1), H(("Host", "h"), ("Upgrade", "websocket"),
                                                    ("Connection", "Upgrade"),
                                                    ("Sec-WebSocket-Key", key),
                                                    ("Sec-WebSocket-Version", "13"))) == []


@pytest.mark.parametrize("kwargs", [dict(path="/a b"), dict(path="/\r\nX: y"), dict(path=""),
                                    dict(extra_headers=[("X", "a\r\nInjected: 1")]),
                                    dict(extra_headers=[("Bad Name", "v")]),
                                    dict(origin="https://a\nb")])
def test_client_request_refuses_injection(kwargs):
    kwargs.setdefault("path", "/")
    with pytest.raises(ValueError):
        client_request("example.com", **kwargs)


# -- is_upgrade_request / check_upgrade_request ------------------------------------------


@pytest.mark.parametrize("upgrade,connection,expected", [
    ("websocket", "Upgrade", True),
    ("WebSocket", "keep-alive, UPGRADE", True),
    ("h2c, websocket", "upgrade,close", True),
    ("websocket", "keep-alive", False),
    ("h2c", "upgrade", False),
    ("websocket/13", "upgrade", False),
    ("websocket", "upgrade-insecure", False),
    (None, "upgrade", False),
    ("websocket", None, False),
])
def test_is_upgrade_request(upgrade, connection, expected):
    headers = H(("Host", "h"))
    if upgrade is not None:
        headers += H(("Upgrade", upgrade))
    if connection is not None:
        headers += H(("Connection", connection))
    assert is_upgrade_request(headers) is expected


def test_connection_token_list_spans_repeated_fields():
    headers = H(("Connection", "keep-alive, "), ("connection", " , Upgrade"), ("UPGRADE", "websocket"))
    assert header_tokens(headers, b"connection") == ["keep-alive", "Upgrade"]
    assert is_upgrade_request(headers)


def test_valid_request_has_no_problems():
    assert check_upgrade_request(b"GET", (1, 1), GOOD) == []
    assert check_upgrade_request(b"GET", (1, 1), GOOD + H(("Sec-WebSocket-Protocol", "chat, v2.json"))) == []


@pytest.mark.parametrize("method,version,headers,problem", [
    (b"POST", (1, 1), GOOD, 'method is "POST", must be GET'),
    (b"GET", (1, 0), GOOD, "HTTP version is 1.0, must be 1.1 or later"),
    (b"GET", (1, 1), replace(GOOD, "Host"), "no Host header"),
    (b"GET", (1, 1), replace(GOOD, "Upgrade"), "no Upgrade header"),
    (b"GET", (1, 1), replace(GOOD, "Upgrade", "h2c"), 'Upgrade is "h2c", must include "websocket"'),
    (b"GET", (1, 1), replace(GOOD, "Connection"), "no Connection header"),
    (b"GET", (1, 1), replace(GOOD, "Connection", "keep-alive"),
     'Connection is "keep-alive", must include the "upgrade" token'),
    (b"GET", (1, 1), replace(GOOD, "Sec-WebSocket-Key"), "no Sec-WebSocket-Key header"),
    (b"GET", (1, 1), replace(GOOD, "Sec-WebSocket-Key", "c2hvcnQ="),
     'Sec-WebSocket-Key "c2hvcnQ=" is not the base64 of 16 bytes'),
    (b"GET", (1, 1), replace(GOOD, "Sec-WebSocket-Key", "not base64 at all!!!!!!!"),
     'Sec-WebSocket-Key "not base64 at all!!!!!!!" is not the base64 of 16 bytes'),
    (b"GET", (1, 1), GOOD + H(("Sec-WebSocket-Key", RFC_KEY)),
     "2 Sec-WebSocket-Key headers, must be exactly one"),
    (b"GET", (1, 1), replace(GOOD, "Sec-WebSocket-Version"), "no Sec-WebSocket-Version header"),
    (b"GET", (1, 1), replace(GOOD, "Sec-WebSocket-Version", "8"), "Sec-WebSocket-Version is 8, must be 13"),
    (b"GET", (1, 1), GOOD + H(("Sec-WebSocket-Protocol", "chat, a b")),
     'Sec-WebSocket-Protocol element "a b" is not a token'),
])
def test_each_request_problem_in_words(method, version, headers, problem):
    assert check_upgrade_request(method, version, headers) == [problem]


def test_all_problems_reported_together():
    problems = check_upgrade_request(b"POST", (1, 0), H(("Host", "h")))
    assert len(problems) == 6


def test_http_2_0_version_passes_version_check():
    assert check_upgrade_request(b"GET", (2, 0), GOOD) == []


# -- check_switching_response --------------------------------------------------------------

OK_101 = H(("Upgrade", "websocket"), ("Connection", "Upgrade"), ("Sec-WebSocket-Accept", RFC_ACCEPT))


def test_valid_101():
    assert check_switching_response(101, OK_101, RFC_KEY) == []
    assert check_switching_response(101, OK_101, RFC_KEY, subprotocols=[], extensions=[]) == []


@pytest.mark.parametrize("status,headers,problem", [
    (426, OK_101, "status is 426, expected 101 Switching Protocols"),
    (101, replace(OK_101, "Sec-WebSocket-Accept"), "no Sec-WebSocket-Accept header"),
    (101, replace(OK_101, "Sec-WebSocket-Accept", "wrong="),
     f'Sec-WebSocket-Accept is "wrong=", expected "{RFC_ACCEPT}"'),
    (101, OK_101 + H(("Sec-WebSocket-Accept", RFC_ACCEPT)),
     "2 Sec-WebSocket-Accept headers, must be exactly one"),
    (101, replace(OK_101, "Upgrade"), "no Upgrade header"),
    (101, replace(OK_101, "Connection", "close"), 'Connection is "close", must include the "upgrade" token'),
])
def test_each_response_problem_in_words(status, headers, problem):
    assert check_switching_response(status, headers, RFC_KEY) == [problem]


def test_subprotocol_negotiation():
    chose = OK_101 + H(("Sec-WebSocket-Protocol", "chat"))
    assert check_switching_response(101, chose, RFC_KEY, subprotocols=["chat", "v2"]) == []
    assert check_switching_response(101, chose, RFC_KEY, subprotocols=["v2"]) == [
        'server chose subprotocol "chat", which the client did not offer (offered: v2)']
    assert check_switching_response(101, chose, RFC_KEY, subprotocols=[]) == [
        'server chose subprotocol "chat", which the client did not offer (offered: none)']
    assert check_switching_response(101, chose, RFC_KEY) == []      # not checked when unknown
    two = OK_101 + H(("Sec-WebSocket-Protocol", "chat, v2"))
    assert check_switching_response(101, two, RFC_KEY, subprotocols=["chat", "v2"]) == [
        'Sec-WebSocket-Protocol is "chat, v2", the server must choose one']


def test_extensions_must_echo_an_offer():
    resp = OK_101 + H(("Sec-WebSocket-Extensions", "permessage-deflate; server_no_context_takeover"))
    offer = ["permessage-deflate; client_max_window_bits"]
    assert check_switching_response(101, resp, RFC_KEY, extensions=offer) == []
    assert check_switching_response(101, resp, RFC_KEY, extensions=[]) == [
        'server accepted extension "permessage-deflate", which the client did not offer']


# -- origin_allowed ----------------------------------------------------------------------


@pytest.mark.parametrize("origin,expected", [
    ("https://example.com", ("https", "example.com", 443)),
    ("HTTP://Example.COM:8080", ("http", "example.com", 8080)),
    ("http://[::1]:3000", ("http", "[::1]", 3000)),
    ("null", None), ("example.com", None), ("https://", None), ("https://a:99999", None),
    ("ftp://example.com", None),
])
def test_parse_origin(origin, expected):
    assert parse_origin(origin) == expected


ALLOW = ["https://app.example.com", "*.example.org", ".example.net", "localhost:*",
         "http://dev.local:8080"]


@pytest.mark.parametrize("origin,expected", [
    ("https://app.example.com", True),
    ("http://app.example.com", False),           # scheme-exact entry
    ("https://app.example.com:8443", False),     # no port in entry = default port only
    ("https://APP.example.com", True),
    ("https://evil-app.example.com", False),
    ("https://app.example.com.evil.io", False),
    ("https://a.example.org", True),
    ("http://a.b.example.org", True),            # no scheme in entry: any scheme
    ("https://example.org", False),              # "*." is subdomains only
    ("https://evilexample.org", False),
    ("https://example.net", True),               # "." is the domain and subdomains
    ("https://x.example.net", True),
    ("http://localhost:5173", True),
    ("http://localhost", True),
    ("http://dev.local:8080", True),
    ("http://dev.local", False),
    ("null", False),
    ("garbage", False),
])
def test_origin_allow_list(origin, expected):
    assert origin_allowed(origin, ALLOW, "gateway.example.com") is expected


@pytest.mark.parametrize("origin,host,expected", [
    ("https://example.com", "example.com", True),
    ("http://example.com", "example.com", True),
    ("https://example.com:8443", "example.com:8443", True),
    ("https://example.com", "example.com:8443", False),
    ("https://example.com:8443", "example.com", False),
    ("https://evil.com", "example.com", False),
    ("https://example.com", None, False),
    ("http://[::1]:8080", "[::1]:8080", True),
])
def test_origin_same_host(origin, host, expected):
    assert origin_allowed(origin, ["$host"], host) is expected


def test_missing_null_and_star_origins():
    assert origin_allowed(None, ["https://a.com"], "a.com") is True
    assert origin_allowed(None, ["https://a.com"], "a.com", allow_missing=False) is False
    assert origin_allowed("null", ["null"], None) is True
    assert origin_allowed("null", ["https://a.com"], None) is False
    assert origin_allowed("null", ["*"], None) is True
    assert origin_allowed("https://anything.io", ["*"], None) is True
    assert origin_allowed("https://a.com", [], "a.com") is False
