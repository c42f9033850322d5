"""`wsgate check` as a user runs it: the published configs in ../shared/configs,
exit statuses, text and JSON output, colours, and no network access."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import pytest

pytestmark = pytest.mark.timeout(60)

WSGATE = str(pathlib.Path(sys.executable).with_name("wsgate"))
SHARED = pathlib.Path(__file__).resolve().parents[3] / "shared" / "configs"

# file -> the (rule, line, severity) findings it must produce, exactly.
EXPECTED: dict[str, set[tuple[str, int, str]]] = {
    "article-minimal-broken.conf": {("WS020", 7, "error"), ("WS021", 7, "error"),
                                    ("WS022", 7, "error")},
    "article-minimal-fixed.conf": {("WS030", 8, "note"), ("WS035", 11, "note")},
    "article-map.conf": {("WS003", 8, "error")},
    "article-map-complete.conf": set(),
    "article-multi-backend.conf": {("WS004", 2, "error"), ("WS004", 3, "error"),
                                   ("WS007", 9, "error"), ("WS003", 12, "error"),
                                   ("WS009", 14, "error")},
    "docs-chat-location.conf": {("WS034", 4, "note"), ("WS035", 13, "note"),
                                ("WS030", 16, "note")},
    "docs-chat-map.conf": {("WS034", 9, "note"), ("WS035", 18, "note")},
}


def shared(name: str) -> str:
    path = SHARED / name
    if not path.is_file():
        pytest.fail(f"shared config {path} is missing (expected ../shared/configs)")
    return str(path)


def check(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([WSGATE, "check", *args], capture_output=True, text=True,
                          timeout=30, env={**os.environ, **(env or {})})


def check_json(path: str) -> tuple[int, list[dict[str, object]]]:
    done = check("--format", "json", path)
    return done.returncode, json.loads(done.stdout)


def test_every_shared_config_is_covered() -> None:
    if not SHARED.is_dir():
        pytest.fail(f"{SHARED} is missing")
    assert {p.name for p in SHARED.glob("*.conf")} == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_shared_config_findings(name: str) -> None:
    rc, findings = check_json(shared(name))
    got = {(f["rule"], f["line"], f["severity"]) for f in findings}
    assert got == EXPECTED[name], json.dumps(findings, indent=1)
    assert all(f["fix"] for f in findings)
    assert rc == (1 if any(s == "error" for _, _, s in EXPECTED[name]) else 0)


def test_multi_backend_fixes_say_what_to_write() -> None:
    _, findings = check_json(shared("article-multi-backend.conf"))
    fixes = {(f["rule"], f["line"]): f["fix"] for f in findings}
    assert fixes[("WS004", 2)] == "server 192.168.3.1:3000;"
    assert fixes[("WS004", 3)] == "server 192.168.3.2:300;"
    assert "close;" in str(fixes[("WS007", 9)])
    assert "listen 80; server_name example.com;" in str(fixes[("WS003", 12)])
    assert fixes[("WS009", 14)] == "proxy_pass http://backend;"


def test_minimal_broken_fixes() -> None:
    _, findings = check_json(shared("article-minimal-broken.conf"))
    fixes = {f["rule"]: f["fix"] for f in findings}
    assert fixes["WS020"] == "proxy_set_header Upgrade $http_upgrade;"
    assert str(fixes["WS021"]).startswith("proxy_set_header Connection $connection_upgrade;")
    assert "map $http_upgrade $connection_upgrade" in str(fixes["WS021"])
    assert fixes["WS022"] == "proxy_http_version 1.1;"


def test_text_format_sorted_with_fix_lines_and_summary() -> None:
    path = shared("article-multi-backend.conf")
    done = check(path)
    assert done.returncode == 1
    lines = done.stdout.splitlines()
    heads = [ln for ln in lines if not ln.startswith("    ")]
    assert heads[-1] == "5 errors, 0 warnings, 0 notes"
    positions = [tuple(int(x) for x in ln[len(path) + 1:].split(":")[:2]) for ln in heads[:-1]]
    assert positions == sorted(positions)
    assert heads[0].startswith(f"{path}:2:5: error: ") and heads[0].endswith("[WS004]")
    assert lines[1] == "    fix: server 192.168.3.1:3000;"
    assert "\033[" not in done.stdout


def test_several_files_and_exit_zero_without_errors() -> None:
    done = check(shared("article-minimal-fixed.conf"), shared("docs-chat-map.conf"))
    assert done.returncode == 0
    assert done.stdout.splitlines()[-1] == "0 errors, 0 warnings, 4 notes"
    first = done.stdout.index("article-minimal-fixed.conf:")
    assert first < done.stdout.index("docs-chat-map.conf:")


def test_colour_only_when_asked_and_never_with_no_color() -> None:
    path = shared("article-minimal-broken.conf")
    assert "\033[" in check("--color", "always", path).stdout
    assert "\033[" not in check(path).stdout                     # not a terminal
    assert "\033[" not in check(path, env={"NO_COLOR": "1"}).stdout


def test_no_color_env_beats_a_terminal() -> None:
    import pty
    path = shared("article-minimal-broken.conf")
    outputs = {}
    for no_color in ("", "1"):
        master, slave = pty.openpty()
        env = {**os.environ, "NO_COLOR": no_color}
        proc = subprocess.run([WSGATE, "check", path], stdout=slave, stderr=subprocess.DEVNULL,
                              env=env, timeout=30)
        os.close(slave)
        chunks = []
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:
                break
            if not data:
                break
            chunks.append(data)
        os.close(master)
        outputs[no_color] = b"".join(chunks)
        assert proc.returncode == 1
    assert b"\033[" in outputs[""]
    assert b"\033[" not in outputs["1"]


def test_missing_file_is_an_error() -> None:
    done = check("/nonexistent/wsgate/nginx.conf")
    assert done.returncode == 1
    assert "WS013" in done.stdout and "No such file" in done.stdout


def test_usage_error() -> None:
    assert check().returncode == 2


def test_no_network_with_unresolvable_hosts(tmp_path: pathlib.Path) -> None:
    conf = tmp_path / "n.conf"
    conf.write_text("events {}\nhttp {\n upstream u { server a.invalid:1; server b.invalid:2; }\n"
                    " server {\n  location /ws {\n   proxy_pass http://c.invalid:3000;\n"
                    "   websocket on;\n  }\n }\n}\n")
    rc, findings = check_json(str(conf))
    assert rc == 0
    assert {f["rule"] for f in findings} == {"WS010", "WS035", "WS040"}


def test_json_is_valid_and_complete() -> None:
    rc, findings = check_json(shared("article-map.conf"))
    assert rc == 1
    (f,) = findings
    assert set(f) == {"file", "line", "col", "severity", "rule", "message", "fix"}
    assert (f["line"], f["col"], f["rule"]) == (8, 5, "WS003")
