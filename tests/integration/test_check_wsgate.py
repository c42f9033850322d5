"""The whole user story of `wsgate check`, end to end: check a published config, apply
each suggested `fix:` as a person would edit the file, re-check (no errors left), see
that real nginx and wsgate both accept the result (`-t`), then run it under wsgate and
`wsgate probe` it successfully. The per-config findings themselves are covered by
test_check.py; this file only adds the loop.

How a fix text is applied is the editor's part, by rule: some fixes are lines to add
in the block that needs them (WS020-WS022, with the map in `http {}`), some replace the
flagged line (WS003, WS004, WS009), and WS007 says what to delete.
"""

from __future__ import annotations

import json
import pathlib
import re
import subprocess
import sys

import pytest

from helpers.backends import start_node_ws_echo, start_websockets_echo
from helpers.fixtures import SHARED_CONFIGS, procs, wsgate_server  # noqa: F401
from helpers.nginx import NginxServer, WsgateServer, substitute_ports
from helpers.ports import free_port
from helpers.procs import ProcessGroup

pytestmark = pytest.mark.timeout(90)

WSGATE = str(pathlib.Path(sys.executable).with_name("wsgate"))
INSERT, REPLACE, DELETE = {"WS020", "WS021", "WS022"}, {"WS003", "WS004", "WS009"}, {"WS007"}
IN_HTTP = " and in http {}: "


def shared(name: str) -> str:
    path = SHARED_CONFIGS / name
    if not path.is_file():
        pytest.fail(f"shared config {path} is missing (expected ../shared/configs)")
    return path.read_text()


def check(path: pathlib.Path) -> tuple[int, list[dict[str, object]]]:
    done = subprocess.run([WSGATE, "check", "--format", "json", str(path)],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode in (0, 1), done.stderr
    return done.returncode, json.loads(done.stdout)


def errors(findings: list[dict[str, object]]) -> list[dict[str, object]]:
    return [f for f in findings if f["severity"] == "error"]


# --- applying fix texts ------------------------------------------------------------------

def statements(fix: str) -> list[str]:
    """`a; b; (a remark)` -> ["a;", "b;"]: the directives a fix text says to write."""
    fix = re.sub(r"\s*\(.*\)\s*$", "", fix).strip()
    return [s.strip() + ";" for s in fix.split(";") if s.strip()]


def apply_fix(lines: list[str], finding: dict[str, object], http_adds: list[str]) -> None:
    """Edit `lines` (0-based list of the file's lines) the way the fix says."""
    rule, fix, index = str(finding["rule"]), str(finding["fix"]), int(str(finding["line"])) - 1
    indent = re.match(r"\s*", lines[index]).group(0)  # type: ignore[union-attr]
    if rule in INSERT:
        here, _, in_http = fix.partition(IN_HTTP)
        lines[index:index] = [indent + s for s in statements(here)]
        if in_http and in_http not in http_adds:
            http_adds.append(in_http)
    elif rule in REPLACE:
        lines[index:index + 1] = [indent + s for s in statements(fix)]
    elif rule in DELETE:
        stray = re.search(r"`([^`]+)`", fix)
        assert stray, fix
        assert stray.group(1) in lines[index], (lines[index], fix)
        lines[index] = lines[index].replace(stray.group(1), "", 1)
    else:
        raise AssertionError(f"no editing rule for {rule}: {fix}")


def apply_all(text: str, findings: list[dict[str, object]]) -> str:
    """Apply every finding's fix, bottom-up so earlier line numbers stay valid; what
    belongs in `http {}` goes right after its opening line (or at the top of a
    fragment, which is read as included from `http {}`)."""
    lines, http_adds = text.splitlines(), list[str]()
    for finding in sorted(findings, key=lambda f: -int(str(f["line"]))):
        apply_fix(lines, finding, http_adds)
    at = next((i + 1 for i, ln in enumerate(lines) if re.match(r"\s*http\s*\{", ln)), 0)
    lines[at:at] = [("    " if at else "") + add for add in http_adds]
    return "\n".join(lines) + "\n"


# --- the loop ------------------------------------------------------------------------------

def fix_and_recheck(tmp_path: pathlib.Path, name: str) -> tuple[pathlib.Path, list[dict[str, object]]]:
    """Check the shared config, apply every fix, re-check: (fixed file, its findings)."""
    original = tmp_path / name
    original.write_text(shared(name))
    rc, findings = check(original)
    assert rc == 1 and errors(findings), findings
    fixed = tmp_path / f"fixed-{name}"
    fixed.write_text(apply_all(original.read_text(), findings))
    rc, after = check(fixed)
    assert errors(after) == [], f"{json.dumps(after, indent=1)}\n{fixed.read_text()}"
    assert rc == 0
    return fixed, after


def test_minimal_broken_fixed_by_its_own_advice(tmp_path: pathlib.Path) -> None:
    fixed, after = fix_and_recheck(tmp_path, "article-minimal-broken.conf")
    text = fixed.read_text()
    assert "map $http_upgrade $connection_upgrade" in text
    # Connection comes from the map, so the "forced upgrade" note (WS030) is gone too.
    assert "WS030" not in {f["rule"] for f in after}, after


@pytest.mark.nginx
def test_fixed_minimal_broken_passes_nginx_and_wsgate_t(tmp_path: pathlib.Path) -> None:
    fixed, _ = fix_and_recheck(tmp_path, "article-minimal-broken.conf")
    text = substitute_ports(fixed.read_text(), {80: free_port(), 3000: free_port()})
    for cls in (NginxServer, WsgateServer):
        done = cls(text, tmp_path / cls.name).test_config()
        assert done.returncode == 0, f"{cls.name} -t:\n{done.stderr}\n{text}"


@pytest.mark.parametrize("backend", ["websockets", pytest.param("node", marks=pytest.mark.node)])
def test_fixed_minimal_broken_runs_and_probe_succeeds(tmp_path: pathlib.Path, backend: str,
                                                      procs: ProcessGroup,  # noqa: F811
                                                      wsgate_server) -> None:  # noqa: F811
    start = start_websockets_echo if backend == "websockets" else start_node_ws_echo
    be = start(procs)
    fixed, _ = fix_and_recheck(tmp_path, "article-minimal-broken.conf")
    srv = wsgate_server(substitute_ports(fixed.read_text(), {80: free_port(), 3000: be.port}))
    done = subprocess.run([WSGATE, "probe", srv.url("/"), "--count", "5", "--message", "hi"],
                          capture_output=True, text=True, timeout=40, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "5/5 echoes ok" in done.stdout
    assert srv.alerts() == []


@pytest.mark.nginx
def test_multi_backend_fragment_fixed_by_its_own_advice(tmp_path: pathlib.Path) -> None:
    fixed, _ = fix_and_recheck(tmp_path, "article-multi-backend.conf")
    text = fixed.read_text()
    assert "server 192.168.3.1:3000;" in text and "proxy_pass http://backend;" in text
    assert "..." not in text and "close; }" not in text
    # The fragment is meant for http {}: included there, both servers accept it.
    fragment = tmp_path / "conf.d" / "ws.conf"
    fragment.parent.mkdir()
    fragment.write_text(substitute_ports(text, {80: free_port()}))
    main = f"events {{}}\nhttp {{\n    include {fragment};\n}}\n"
    for cls in (NginxServer, WsgateServer):
        done = cls(main, tmp_path / cls.name).test_config()
        assert done.returncode == 0, f"{cls.name} -t:\n{done.stderr}\n{text}"
