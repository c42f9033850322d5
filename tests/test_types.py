"""The types gate (STYLE.md 15): `mypy --strict` over the packages and modules that
are clean today, asserting no errors.  A module joins GATED once it is clean; a module
leaves it only by fixing what mypy reports, never by loosening the flags.

Imports are followed silently: the gate judges the listed files, so an error inside an
imported module outside the gate (being edited elsewhere) does not fail it, while the
types that module exports are still used to check the gated code.  The cache lives in
the project's (git-ignored) .mypy_cache, so a warm run takes about a second.
"""

from __future__ import annotations

import importlib.util
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "wsgate"

GATED = [
    "http", "websocket", "upstream", "observe", "demo",
    "cli/probe.py", "cli/probe_conn.py", "cli/probe_diagnose.py",
    "proxy/tunnel.py", "proxy/wstunnel.py", "proxy/wsfeatures.py", "proxy/listen.py", "proxy/loop.py",
    "proxy/flow.py", "proxy/timers.py",
    "config", "cli/nginx.py", "cli/main.py", "cli/check.py", "proxy/server.py",
    "proxy/static.py", "proxy/inline.py", "proxy/downstream.py", "proxy/relay.py", "proxy/stream.py", "proxy/tunnellife.py", "proxy/splice.py", "tls", "master",
]


@pytest.mark.timeout(180)
def test_mypy_strict_is_clean() -> None:
    if importlib.util.find_spec("mypy") is None:
        pytest.fail("mypy is missing: pip install mypy (it is in the test extras)")
    paths = [str(SRC / p) for p in GATED]
    missing = [p for p in paths if not pathlib.Path(p).exists()]
    assert not missing, f"gated paths that no longer exist: {missing}"
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--follow-imports=silent",
         "--cache-dir", str(ROOT / ".mypy_cache"), "--no-color-output", "--no-error-summary",
         *paths],
        cwd=ROOT, capture_output=True, text=True, timeout=170)
    assert done.returncode == 0 and not done.stdout.strip(), \
        f"mypy --strict found errors:\n{done.stdout}{done.stderr}"
