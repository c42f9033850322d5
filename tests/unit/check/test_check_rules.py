"""One minimal config per `wsgate check` rule: the rule fires, at its line, with its
severity and a fix; and the clean counterpart does not fire it."""

from __future__ import annotations

import pathlib
import re

import pytest

from wsgate.check import RULES, Finding, check_text

MAIN = "events {}\nhttp {\n%s\n}\n"        # body starts at line 3
GOOD_LOC = ("proxy_http_version 1.1; proxy_set_header Upgrade $http_upgrade; "
            "proxy_set_header Connection $connection_upgrade; proxy_set_header Host $host;")
MAP = "map $http_upgrade $connection_upgrade { default upgrade; '' close; }"


def run(text: str, tmp_path: pathlib.Path, name: str = "t.conf") -> list[Finding]:
    return check_text(text, str(tmp_path / name))


def of(findings: list[Finding], rule: str) -> list[Finding]:
    return [f for f in findings if f.rule == rule]


def server(locations: str, extra: str = "") -> str:
    return MAIN % f"{MAP}\n{extra}\nserver {{ listen 8080;\n{locations}\n}}"


# (rule, severity, line, config text)
CASES = [
    ("WS001", "error", 4, MAIN % "server {\n listen 80 }\n"),
    ("WS002", "error", 3, MAIN % "proxy_pas http://a;"),
    ("WS003", "error", 4, MAIN % "server {\n    ...\n    location /ws { proxy_pass http://127.0.0.1:1; }\n}"),
    ("WS004", "error", 4, MAIN % "upstream b {\n    127.0.0.1:3000;\n}"),
    ("WS005", "error", 4, MAIN % "server {\n  map $a $b { default 1; }\n}"),
    ("WS006", "error", 3, MAIN % "proxy_http_version 1.1 2;"),
    ("WS007", "error", 6, MAIN % "map $http_upgrade $c {\n default upgrade;\n '' close;\nclose; }"),
    ("WS008", "error", 3, MAIN % "upstream b { }"),
    ("WS009", "error", 6, MAIN % ("upstream backend { server 127.0.0.1:1; }\n"
                                  "server {\n location /x {\n  proxy_pass http://upstream;\n }\n}")),
    ("WS010", "note", 3, MAIN % "server { location /x { proxy_pass http://app.example.invalid:3000; } }"),
    ("WS011", "error", 3, MAIN % "add_header X-Id $request_idd;"),
    ("WS012", "error", 1, "http { }\n"),
    ("WS013", "error", 3, MAIN % "include /nonexistent/wsgate-check-missing.conf;"),
    ("WS020", "error", 7, server(" location /ws {\n  proxy_pass http://127.0.0.1:1;\n"
                                 "  proxy_http_version 1.1;\n"
                                 "  proxy_set_header Connection $connection_upgrade; }")),
    ("WS021", "error", 7, server(" location /ws {\n  proxy_pass http://127.0.0.1:1;\n"
                                 "  proxy_http_version 1.1;\n"
                                 "  proxy_set_header Upgrade $http_upgrade; }")),
    ("WS022", "error", 9, server(" location /ws {\n  proxy_pass http://127.0.0.1:1;\n"
                                 "  proxy_set_header Upgrade $http_upgrade;\n"
                                 "  proxy_http_version 1.0;\n"
                                 "  proxy_set_header Connection $connection_upgrade; }")),
    ("WS023", "error", 6, MAIN % ("server {\n location /ws {\n  proxy_pass http://127.0.0.1:1;\n"
                                  "  proxy_set_header Connection $connection_upgrade;\n }\n}")),
    ("WS024", "warning", 3, MAIN % "map $http_upgrade $connection_upgrade { default upgrade; }"),
    ("WS025", "warning", 7, MAIN % (f"{MAP}\nserver {{\n proxy_set_header X-Real-IP $remote_addr;\n"
                                    " location /ws {\n  proxy_set_header Upgrade $http_upgrade;\n"
                                    "  proxy_pass http://127.0.0.1:1;\n }\n}")),
    ("WS030", "note", 8, server(" location /ws {\n  proxy_pass http://127.0.0.1:1;\n"
                                "  proxy_set_header Connection \"upgrade\";\n"
                                f"  {GOOD_LOC.split(' proxy_set_header Connection')[0]} }}")),
    ("WS031", "warning", 9, server(f" location /ws {{\n  proxy_pass http://127.0.0.1:1;\n"
                                   f"  {GOOD_LOC}\n  proxy_read_timeout 30s;\n }}")),
    ("WS032", "warning", 8, server(" location /events {\n  proxy_pass http://127.0.0.1:1;\n"
                                   "  proxy_buffering on;\n }")),
    ("WS033", "note", 3, MAIN % ("upstream sio { ip_hash; server 127.0.0.1:1; server 127.0.0.1:2; }\n"
                                    f"{MAP}\nserver {{\n location /socket.io/ {{\n"
                                    f"  proxy_pass http://sio;\n  {GOOD_LOC}\n }}\n}}")),
    ("WS034", "note", 3, MAIN % ("upstream ws { server 127.0.0.1:1; server 127.0.0.1:2; }\n"
                                 f"{MAP}\nserver {{\n location /ws {{\n"
                                 f"  proxy_pass http://ws;\n  {GOOD_LOC}\n }}\n}}")),
    ("WS035", "note", 8, server(" location /ws {\n  proxy_http_version 1.1;\n"
                                "  proxy_pass http://127.0.0.1:1;\n"
                                "  proxy_set_header Upgrade $http_upgrade;\n"
                                "  proxy_set_header Connection $connection_upgrade;\n }")),
    ("WS036", "error", 7, MAIN % ("upstream sio { server 127.0.0.1:1; server 127.0.0.1:2; }\n"
                                  f"{MAP}\nserver {{\n location /socket.io/ {{\n"
                                  f"  proxy_pass http://sio;\n  {GOOD_LOC}\n }}\n}}")),
    ("WS040", "note", 4, MAIN % "server {\n  location /ws { websocket on; proxy_pass http://127.0.0.1:1; }\n}"),
    ("WS041", "warning", 3, MAIN % "sendfile on;"),
    ("WS042", "error", 3, MAIN % "proxy_cache_path /tmp/x keys_zone=a:1m;"),
]


CASES_BY_RULE = {c[0]: c[3] for c in CASES}


@pytest.mark.parametrize("rule,severity,line,text", CASES, ids=[c[0] for c in CASES])
def test_rule_fires_at_its_line(rule: str, severity: str, line: int, text: str,
                                tmp_path: pathlib.Path) -> None:
    found = of(run(text, tmp_path), rule)
    assert found, f"{rule} not reported for:\n{text}\n{run(text, tmp_path)}"
    assert found[0].line == line, found
    assert found[0].severity == severity, found
    assert found[0].fix, found


def test_every_rule_has_a_case() -> None:
    assert {c[0] for c in CASES} == set(RULES)


def test_every_rule_documented_once() -> None:
    docs = (pathlib.Path(__file__).resolve().parents[3] / "docs" / "check-rules.md").read_text()
    headings = re.findall(r"^### (WS\d{3}) ", docs, re.M)
    assert sorted(headings) == sorted(RULES)


def test_clean_websocket_location_has_no_findings(tmp_path: pathlib.Path) -> None:
    text = server(f" location /ws {{\n  proxy_pass http://127.0.0.1:1;\n  {GOOD_LOC}\n }}")
    assert run(text, tmp_path) == []


def test_websocket_on_satisfies_upgrade_rules(tmp_path: pathlib.Path) -> None:
    text = MAIN % ("server {\n location /ws {\n  websocket on; proxy_set_header Host $host;\n"
                   "  proxy_pass http://127.0.0.1:1;\n }\n}")
    rules = {f.rule for f in run(text, tmp_path)}
    assert rules == {"WS040"}


def test_non_websocket_location_gets_notes_not_errors(tmp_path: pathlib.Path) -> None:
    text = server(f" location /ws {{ proxy_pass http://127.0.0.1:1; {GOOD_LOC} }}\n"
                  " location /api { proxy_pass http://127.0.0.1:2; }")
    found = [f for f in run(text, tmp_path) if f.rule in ("WS020", "WS021", "WS022")]
    assert {f.rule for f in found} == {"WS020", "WS021", "WS022"}
    assert {f.severity for f in found} == {"note"}


def test_catch_all_location_is_an_error(tmp_path: pathlib.Path) -> None:
    text = MAIN % "server {\n location / {\n  proxy_pass http://127.0.0.1:1;\n }\n}"
    found = [f for f in run(text, tmp_path) if f.rule in ("WS020", "WS021", "WS022")]
    assert [(f.rule, f.severity, f.line) for f in found] == [
        ("WS020", "error", 5), ("WS021", "error", 5), ("WS022", "error", 5)]


def test_trap_names_lost_headers_and_lines(tmp_path: pathlib.Path) -> None:
    text = MAIN % (f"{MAP}\nserver {{\n proxy_set_header X-Real-IP $remote_addr;\n"
                   " proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\n"
                   f" location /ws {{\n  proxy_pass http://127.0.0.1:1;\n  {GOOD_LOC}\n }}\n}}")
    (f,) = of(run(text, tmp_path), "WS025")
    assert '"X-Real-IP" (line 5)' in f.message and '"X-Forwarded-For" (line 6)' in f.message
    assert "proxy_set_header X-Real-IP $remote_addr;" in (f.fix or "")


def test_trap_not_reported_when_location_repeats_headers(tmp_path: pathlib.Path) -> None:
    text = MAIN % (f"{MAP}\nserver {{\n proxy_set_header Host $host;\n"
                   f" location /ws {{\n  proxy_pass http://127.0.0.1:1;\n  {GOOD_LOC}\n }}\n}}")
    assert of(run(text, tmp_path), "WS025") == []


def test_timeout_of_60s_or_with_ping_is_fine(tmp_path: pathlib.Path) -> None:
    for extra in ("proxy_read_timeout 60s;", "proxy_read_timeout 30s; websocket_ping_interval 20s;"):
        text = server(f" location /ws {{ proxy_pass http://127.0.0.1:1; {GOOD_LOC} {extra} }}")
        assert of(run(text, tmp_path), "WS031") == []


def test_forced_upgrade_with_keepalive_suggests_an_empty_connection(
        tmp_path: pathlib.Path) -> None:
    """nginx reuses upstream connections whatever the request's Connection says (a
    node backend behind nginx 1.22 served three forced-"upgrade" requests on one
    connection); `'' close` in the map would end keep-alive for plain requests, so
    with `keepalive` the fix maps '' to an empty value (the header is not sent)."""
    text = MAIN % ("upstream b { server 127.0.0.1:1; keepalive 8; }\nserver {\n location /ws {\n"
                   "  proxy_pass http://b; proxy_http_version 1.1;\n"
                   "  proxy_set_header Upgrade $http_upgrade; proxy_set_header Connection upgrade;\n"
                   " }\n}")
    (f,) = of(run(text, tmp_path), "WS030")
    assert f.severity == "note" and f.line == 7
    assert "'' '';" in (f.fix or "") and "keepalive" in f.message


def test_forced_upgrade_without_keepalive_suggests_the_map_idiom(
        tmp_path: pathlib.Path) -> None:
    (f,) = of(run(CASES_BY_RULE["WS030"], tmp_path), "WS030")
    assert "'' close;" in (f.fix or "")


def test_wsgate_only_variables_do_not_confuse_map_detection(tmp_path: pathlib.Path) -> None:
    text = MAIN % "map $http_upgrade $connection_upgrade { default upgrade; \"\" close; }"
    assert of(run(text, tmp_path), "WS024") == []
