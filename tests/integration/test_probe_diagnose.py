"""`wsgate probe`'s explanation rules, as pure functions: response/exception in,
Diagnosis out (the socket-level paths are in test_probe.py)."""

from __future__ import annotations

import ssl

from wsgate.cli.probe_diagnose import (diagnose_bad_101, diagnose_cut, diagnose_exception,
                                       diagnose_garbage, diagnose_response, first_line,
                                       proxy_evidence)

NGINX_502 = (b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
             b"<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx/1.22.1</center>\r\n")


def test_proxy_evidence_sources() -> None:
    assert proxy_evidence([("Via", "1.1 varnish")], b"") == "a `via: 1.1 varnish` header"
    assert proxy_evidence([("Server", "nginx/1.22.1")], b"") == "`Server: nginx/1.22.1`"
    assert proxy_evidence([], NGINX_502) == "an nginx error page"
    assert proxy_evidence([("Server", "Python/3.11 websockets/17.4")], b"plain") is None


def test_426_without_proxy_trace_still_names_lost_headers() -> None:
    d = diagnose_response(426, "Upgrade Required", [], b"Upgrade Required", "ws://h/")
    assert d.problem == "upgrade-headers-lost"
    assert "proxy_set_header Connection $connection_upgrade;" in d.fix


def test_426_for_another_protocol() -> None:
    d = diagnose_response(426, "Upgrade Required", [("Upgrade", "TLS/1.2")], b"", "ws://h/")
    assert d.problem == "upgrade-other-protocol" and "TLS/1.2" in d.explanation


def test_400_saying_http10_is_the_proxy_version() -> None:
    d = diagnose_response(400, "Bad Request", [], b"Unsupported HTTP version HTTP/1.0", "ws://h/")
    assert d.problem == "proxy-http-1.0"


def test_plain_http_to_https_port() -> None:
    body = b"<center>The plain HTTP request was sent to HTTPS port</center>"
    d = diagnose_response(400, "Bad Request", [("Server", "nginx")], body, "ws://h:443/")
    assert d.problem == "plain-to-tls-port" and "wss://" in d.fix


def test_spa_fallback_200() -> None:
    d = diagnose_response(200, "OK", [], b"<!DOCTYPE html><html><title>App</title>", "ws://h/ws")
    assert "single-page app's fallback" in d.explanation


def test_redirect_relative_location_keeps_scheme() -> None:
    d = diagnose_response(308, "Permanent Redirect", [("Location", "/ws/")], b"", "ws://h:8/ws")
    assert d.details["new_url"] == "ws://h:8/ws/"
    assert "to another path (/ws/)" in d.explanation


def test_401_and_unknown_status() -> None:
    d = diagnose_response(401, "Unauthorized", [("WWW-Authenticate", "Bearer")], b"", "ws://h/")
    assert "Authorization" in d.fix
    d = diagnose_response(418, "I'm a teapot", [], b"short and stout", "ws://h/")
    assert d.problem == "unexpected-status" and "short and stout" in d.explanation


def test_bad_101_other_than_accept() -> None:
    d = diagnose_bad_101(["no Upgrade: websocket header"], [])
    assert d.problem == "bad-101"


def test_garbage_and_tls_alert() -> None:
    assert diagnose_garbage(b"\x15\x03\x01\x00\x02\x02\x46").problem == "tls-port"
    assert diagnose_garbage(b"SSH-2.0-OpenSSH\r\n").problem == "not-http"


def test_exceptions() -> None:
    d = diagnose_exception(OSError("Name or service not known"), "dns", "nope.invalid", 80, 5)
    assert d.problem == "dns-failed" and "nope.invalid" in d.explanation
    d = diagnose_exception(TimeoutError(), "response", "h", 80, 3)
    assert d.problem == "response-timeout" and "within 3 s" in d.explanation
    d = diagnose_exception(ssl.SSLError(1, "[SSL: WRONG_VERSION_NUMBER] wrong version number"),
                           "tls", "h", 80, 3)
    assert "does not speak TLS" in d.explanation and "ws://" in d.fix


def test_cut_with_close_frame() -> None:
    d = diagnose_cut("close", 30.04, 1001, "bye")
    assert d.problem == "closed-by-server"
    assert "code 1001 (going away)" in d.explanation and "30.0 s" in d.explanation


def test_first_line_strips_tags() -> None:
    assert first_line(NGINX_502) == "502 Bad Gateway"
