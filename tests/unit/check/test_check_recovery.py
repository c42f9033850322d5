"""`check` reports every error, not the first: syntax recovery, block recovery,
fragments, and the absence of any network access."""

from __future__ import annotations

import pathlib
import socket

import pytest

from wsgate.check import check_text
from wsgate.check.syntax import parse_recovering
from wsgate.check.validate import context_of
from wsgate.config.directives import HTTP, LOC, MAIN, SRV


def test_several_syntax_errors_each_reported() -> None:
    stmts = parse_recovering("a b;\n;\nserver { x 1 }\n}\nfoo \"a\"b;\nlast 1;\n", "f")
    errors = []

    def collect(items: object) -> None:
        for s in items:  # type: ignore[attr-defined]
            if s.error is not None:
                errors.append((s.error.message, s.line))
            collect(s.block or ())
    collect(stmts)
    assert errors == [('unexpected ";"', 2), ('unexpected "}"', 3), ('unexpected "}"', 4),
                      ('unexpected "b"', 5)]
    assert stmts[-1].name == "last"


def test_errors_after_the_first_are_found(tmp_path: pathlib.Path) -> None:
    text = ("events {}\nhttp {\n  bogus_one;\n  server {\n    listen 80 }\n"
            "  bogus_two 1;\n  proxy_http_version 2.0;\n}\n")
    found = [(f.rule, f.line) for f in check_text(text, str(tmp_path / "a.conf"))
             if f.severity == "error"]
    assert ("WS002", 3) in found and ("WS001", 5) in found
    assert ("WS002", 6) in found and ("WS006", 7) in found


def test_body_of_rejected_block_still_checked(tmp_path: pathlib.Path) -> None:
    text = "events {}\nhttp {\n server extra {\n  bogus;\n }\n}\n"
    found = [(f.rule, f.line) for f in check_text(text, str(tmp_path / "a.conf"))]
    assert ("WS006", 3) in found and ("WS002", 4) in found


@pytest.mark.parametrize("text,ctx", [
    ("events {}\nhttp {}\n", MAIN),
    ("map $a $b { default 1; }\nserver { listen 80; }\n", HTTP),
    ("upstream u { server 127.0.0.1:1; }\n", HTTP),
    ("location / { proxy_pass http://127.0.0.1:1; }\n", SRV),
    ("proxy_pass http://127.0.0.1:1;\nproxy_http_version 1.1;\n", LOC),
    ("events {}\nserver {}\n", MAIN),
])
def test_fragment_context(text: str, ctx: str) -> None:
    assert context_of(parse_recovering(text, "f")) == ctx


def test_fragment_needs_no_events(tmp_path: pathlib.Path) -> None:
    found = check_text("upstream u { server 127.0.0.1:1; }\n", str(tmp_path / "u.conf"))
    assert found == []


def test_includes_followed_with_recovery(tmp_path: pathlib.Path) -> None:
    (tmp_path / "conf.d").mkdir()
    (tmp_path / "conf.d" / "a.conf").write_text("upstream u {\n  127.0.0.1:1;\n}\nbad;\n")
    main = tmp_path / "nginx.conf"
    text = "events {}\nhttp {\n  include conf.d/*.conf;\n  oops;\n}\n"
    found = [(pathlib.Path(f.file).name, f.rule, f.line) for f in check_text(text, str(main))]
    assert found == [("nginx.conf", "WS002", 4), ("a.conf", "WS004", 2), ("a.conf", "WS002", 4)]


def test_no_dns_lookup(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kw: object) -> None:
        raise AssertionError("check must not resolve names")
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket, "gethostbyname", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    text = ("events {}\nhttp {\n upstream u { server no-such-host.invalid:3000; }\n"
            " server { location / { proxy_pass http://also-not-a-host.invalid; } }\n}\n")
    found = check_text(text, str(tmp_path / "n.conf"))
    assert [f.rule for f in found if f.rule == "WS010"] == ["WS010"]
