"""Balancing in front of Socket.IO (WS033, WS036), as the browser tests in
tests/e2e/test_socketio_sticky.py found it through wsgate: round robin, least_conn,
random and `hash $arg_sid` break polling sessions; ip_hash and `hash $arg_client`
keep them. Also the heartbeat thresholds of WS031, and that `check` reads the
lexer through its public API only."""

from __future__ import annotations

import pathlib
import re

import pytest

from wsgate.check import Finding, check_text

MAP = "map $http_upgrade $connection_upgrade { default upgrade; '' close; }"
LOC = ("proxy_http_version 1.1; proxy_set_header Upgrade $http_upgrade; "
       "proxy_set_header Connection $connection_upgrade; proxy_set_header Host $host;")


def conf(balancer: str, servers: str = "server 127.0.0.1:1; server 127.0.0.1:2;",
         location: str = "location /socket.io/") -> str:
    """upstream on line 3, location on line 6, its proxy_pass on line 7."""
    return (f"events {{}}\nhttp {{\nupstream sio {{ {balancer} {servers} }}\n{MAP}\n"
            f"server {{ listen 8080;\n {location} {{\n  proxy_pass http://sio;\n"
            f"  {LOC}\n }}\n}}\n}}\n")


def balancing(text: str, tmp_path: pathlib.Path) -> list[Finding]:
    found = check_text(text, str(tmp_path / "sio.conf"))
    return [f for f in found if f.rule in ("WS033", "WS034", "WS036")]


@pytest.mark.parametrize("balancer", ["", "least_conn;", "random;", "random two least_conn;"])
def test_non_sticky_balancer_is_an_error(balancer: str, tmp_path: pathlib.Path) -> None:
    (f,) = balancing(conf(balancer), tmp_path)
    assert (f.rule, f.severity, f.line) == ("WS036", "error", 7)
    assert "sticky sessions" in f.message and "Session ID unknown" in f.message
    assert 'upstream "sio" (line 3)' in f.message
    # The fixes, most robust first: no polling, then a client id, then ip_hash.
    fix = f.fix or ""
    assert fix.index('transports: ["websocket"]') < fix.index("hash $arg_client consistent;") \
        < fix.index("ip_hash;")
    assert "$arg_sid" not in fix and "$cookie_io" not in fix


def test_round_robin_error_fails_the_check(tmp_path: pathlib.Path) -> None:
    found = check_text(conf(""), str(tmp_path / "sio.conf"))
    assert [f.rule for f in found if f.severity == "error"] == ["WS036"]


def test_ip_hash_gets_the_nat_note_only(tmp_path: pathlib.Path) -> None:
    (f,) = balancing(conf("ip_hash;"), tmp_path)
    assert (f.rule, f.severity, f.line) == ("WS033", "note", 3)
    assert "NAT" in f.message and "first three octets" in f.message
    fix = f.fix or ""
    assert 'transports: ["websocket"]' in fix and "hash $arg_client consistent;" in fix
    assert "$arg_sid" not in fix and "$cookie_io" not in fix


def test_hash_on_the_client_address_gets_the_nat_note(tmp_path: pathlib.Path) -> None:
    (f,) = balancing(conf("hash $remote_addr consistent;"), tmp_path)
    assert (f.rule, f.severity) == ("WS033", "note")


def test_single_server_needs_no_stickiness(tmp_path: pathlib.Path) -> None:
    assert balancing(conf("", servers="server 127.0.0.1:1;"), tmp_path) == []


def test_down_server_does_not_count(tmp_path: pathlib.Path) -> None:
    text = conf("", servers="server 127.0.0.1:1; server 127.0.0.1:2 down;")
    assert balancing(text, tmp_path) == []


def test_hash_on_a_client_id_is_sticky(tmp_path: pathlib.Path) -> None:
    assert balancing(conf("hash $arg_client consistent;"), tmp_path) == []


@pytest.mark.parametrize("key", ["$arg_sid", "$cookie_io", "$request_uri"])
def test_hash_on_a_key_that_changes_within_a_session(key: str,
                                                     tmp_path: pathlib.Path) -> None:
    (f,) = balancing(conf(f"hash {key} consistent;"), tmp_path)
    assert (f.rule, f.severity, f.line) == ("WS036", "error", 7)
    assert f'"{key}"' in f.message and "Session ID unknown" in f.message
    if key != "$request_uri":
        assert "handshake carries no sid" in f.message


def test_regex_location_is_recognised(tmp_path: pathlib.Path) -> None:
    (f,) = balancing(conf("", location=r"location ~ ^/socket\.io/"), tmp_path)
    assert f.rule == "WS036"


def test_polling_only_location_needs_stickiness_too(tmp_path: pathlib.Path) -> None:
    """No upgrade headers (a regex path, so not a WebSocket path either): polling
    alone breaks without stickiness."""
    text = conf("", location=r"location ~ ^/socket\.io/").replace(LOC, "")
    (f,) = balancing(text, tmp_path)
    assert (f.rule, f.line) == ("WS036", 7)


def test_other_websocket_paths_keep_the_round_robin_note(tmp_path: pathlib.Path) -> None:
    (f,) = balancing(conf("", location="location /ws"), tmp_path)
    assert (f.rule, f.severity) == ("WS034", "note")
    assert (f.fix or "").startswith("least_conn;")


def test_proxy_pass_to_one_address_is_not_balanced(tmp_path: pathlib.Path) -> None:
    text = conf("").replace("proxy_pass http://sio;", "proxy_pass http://127.0.0.1:1;")
    assert balancing(text, tmp_path) == []


def read_timeout(seconds: int, tmp_path: pathlib.Path) -> list[Finding]:
    text = conf("ip_hash;", location="location /ws").replace(
        "proxy_pass http://sio;", f"proxy_pass http://sio; proxy_read_timeout {seconds}s;")
    return [f for f in check_text(text, str(tmp_path / "t.conf")) if f.rule == "WS031"]


def test_read_timeout_compares_with_heartbeat_intervals(tmp_path: pathlib.Path) -> None:
    """nginx re-arms proxy_read_timeout on traffic either way, so a timeout longer
    than the heartbeat interval (Socket.IO 25 s, Jupyter 30 s, websockets 20 s) holds."""
    assert read_timeout(40, tmp_path) == []
    (f,) = read_timeout(25, tmp_path)
    assert "Socket.IO" in f.message and "Jupyter" in f.message
    assert "Python websockets" not in f.message
    (f,) = read_timeout(20, tmp_path)
    assert "Python websockets" in f.message


def test_check_uses_only_the_public_lexer_api() -> None:
    src = pathlib.Path(__file__).resolve().parents[3] / "src" / "wsgate" / "check"
    private = [(p.name, m.group(0)) for p in sorted(src.glob("*.py"))
               for m in re.finditer(r"lexer\._\w+", p.read_text())]
    assert private == []
