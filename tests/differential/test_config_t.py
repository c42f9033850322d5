"""`wsgate -t` against real nginx 1.22 `-t`, config by config.

Every configuration in tests/differential/configs/ (a file is a main config; a
directory holds `nginx.conf` plus the files it includes) and every file in the shared
folder `<repo>/../shared/configs/` (as a main file and, for `http {}` fragments, also
included from a wrapper) is copied into two fresh prefixes and tested by both
programs with `-t -p PREFIX/ -c PREFIX/nginx.conf -e stderr`. The expected outcome is
whatever nginx does, at test time: both accept, or both reject with the same first
error (level, message text, file, line). A first line `# wsgate-test-g: STRING` passes
STRING as `-g`.

Configs where wsgate differs on purpose (directives of modules it does not implement)
are listed in DELIBERATE with the exact wsgate error, so nothing is silently excluded.
"""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

pytestmark = pytest.mark.nginx

HERE = Path(__file__).resolve().parent
CONFIGS = HERE / "configs"
REPO = HERE.parents[1]
SHARED = REPO.parent / "shared" / "configs"
NGINX = Path("/usr/sbin/nginx")
WSGATE = Path(sys.executable).parent / "wsgate"
TIMEOUT = 60

# name -> (level, wsgate's message without position, file relative to prefix, line).
# `emerg`: wsgate refuses the config; `warn`: wsgate accepts it and warns that the
# directive is ignored (the config loader's table decides which, per directive).
DELIBERATE: dict[str, tuple[str, str, str, int]] = {
    "deliberate-allow.conf": ("emerg", '"allow" directive is not supported by wsgate', "nginx.conf", 6),
    "deliberate-gzip.conf": ("warn", '"gzip" is not supported by wsgate and is ignored', "nginx.conf", 3),
    "deliberate-limit-req.conf": (
        "emerg", '"limit_req_zone" directive is not supported by wsgate', "nginx.conf", 3),
}

G_MARK = re.compile(r"\A# wsgate-test-g: (.*)\n")
LOG_LINE = re.compile(r"^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d \[(?P<level>\w+)\] \d+#\d+: (?P<msg>.*)$")
CONSOLE_LINE = re.compile(r"^(?:nginx|wsgate): \[(?P<level>\w+)\] (?P<msg>.*)$")
POSITION = re.compile(r"^(?P<text>.*) in (?P<file>\S+):(?P<line>\d+)$")
FAILING_LEVELS = {"emerg", "alert", "crit"}
FRAGMENT_WRAPPER = "events {}\nhttp {\n    include %s;\n}\n"


@dataclass(frozen=True)
class Case:
    """One configuration tree: relative path -> bytes, with `nginx.conf` the main file."""

    name: str
    files: dict[str, bytes]
    globals_: str | None = None
    missing: str | None = None  # set when the case could not be built: the test fails


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _case(name: str, files: dict[str, bytes]) -> Case:
    match = G_MARK.match(files["nginx.conf"].decode("utf-8", "replace"))
    return Case(name, files, match.group(1) if match else None)


def _is_fragment(text: str) -> bool:
    return re.search(r"^\s*events\s*\{", text, re.MULTILINE) is None


def corpus_cases() -> list[Case]:
    cases = []
    for path in sorted(CONFIGS.iterdir()):
        files = _tree(path) if path.is_dir() else {"nginx.conf": path.read_bytes()}
        cases.append(_case(path.name, files))
    return cases


def shared_cases() -> list[Case]:
    if not SHARED.is_dir():
        return [Case("shared-configs", {}, missing=f"shared configs folder {SHARED} is missing")]
    cases = []
    for path in sorted(SHARED.glob("*.conf")):
        text = path.read_bytes()
        cases.append(_case(f"shared:{path.name}", {"nginx.conf": text}))
        if _is_fragment(text.decode("utf-8", "replace")):
            wrapper = (FRAGMENT_WRAPPER % path.name).encode()
            cases.append(_case(f"shared-in-http:{path.name}", {"nginx.conf": wrapper, path.name: text}))
    if not cases:
        cases.append(Case("shared-configs", {}, missing=f"no *.conf files in {SHARED}"))
    return cases


ALL_CASES = corpus_cases() + shared_cases()


@dataclass(frozen=True)
class Outcome:
    accepted: bool
    error: dict[str, str] | None
    stderr: str
    prefix: str


def _materialise(case: Case, prefix: Path) -> None:
    (prefix / "logs").mkdir(parents=True)  # default pid/log location under the prefix
    for rel, data in case.files.items():
        target = prefix / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)


def run_t(program: Path, case: Case, prefix: Path) -> Outcome:
    _materialise(case, prefix)
    argv = [str(program), "-t", "-p", f"{prefix}/", "-c", f"{prefix}/nginx.conf", "-e", "stderr"]
    if case.globals_ is not None:
        argv += ["-g", case.globals_]
    proc = subprocess.run(argv, capture_output=True, timeout=TIMEOUT, cwd=prefix, check=False)
    stderr = proc.stderr.decode("utf-8", "replace")
    return Outcome(proc.returncode == 0, first_error(stderr, prefix), stderr, str(prefix))


def first_error(stderr: str, prefix: Path) -> dict[str, str] | None:
    """The first emerg/alert/crit line as {level, text, file, line}, paths made relative."""
    return first_message(stderr, prefix, FAILING_LEVELS)


def first_message(stderr: str, prefix: Path, levels: set[str]) -> dict[str, str] | None:
    """The first log line at one of `levels`, split like first_error's."""
    for raw in stderr.splitlines():
        match = LOG_LINE.match(raw) or CONSOLE_LINE.match(raw)
        if match is None or match["level"] not in levels:
            continue
        msg = match["msg"].replace(f"{prefix}/", "PREFIX/")
        pos = POSITION.match(msg)
        if pos is None:
            return {"level": match["level"], "text": msg, "file": "", "line": ""}
        return {"level": match["level"], "text": pos["text"], "file": pos["file"], "line": pos["line"]}
    return None


def test_nginx_is_installed() -> None:
    assert NGINX.is_file(), f"{NGINX} is missing: run scripts/setup.sh test (installs nginx-light)"


def test_wsgate_is_installed() -> None:
    assert WSGATE.is_file(), f"{WSGATE} is missing: the package is not installed in this venv"


def test_corpus_is_large_enough() -> None:
    assert len(corpus_cases()) >= 70


def test_deliberate_set_exists_in_corpus() -> None:
    names = {case.name for case in corpus_cases()}
    assert set(DELIBERATE) <= names


@pytest.mark.parametrize("case", ALL_CASES, ids=[c.name for c in ALL_CASES])
def test_wsgate_t_matches_nginx(case: Case, tmp_path: Path) -> None:
    assert case.missing is None, case.missing
    assert NGINX.is_file(), f"{NGINX} is missing: run scripts/setup.sh test"
    nginx = run_t(NGINX, case, tmp_path / "nginx")
    ours = run_t(WSGATE, case, tmp_path / "wsgate")
    assert "Traceback" not in ours.stderr, ours.stderr
    if case.name in DELIBERATE:
        _assert_deliberate(case, nginx, ours)
        return
    assert ours.accepted == nginx.accepted, _explain(nginx, ours)
    if not nginx.accepted:
        assert nginx.error is not None, f"nginx failed without an error line:\n{nginx.stderr}"
        assert ours.error == nginx.error, _explain(nginx, ours)


def _assert_deliberate(case: Case, nginx: Outcome, ours: Outcome) -> None:
    level, text, file, line = DELIBERATE[case.name]
    assert nginx.accepted, f"nginx now rejects {case.name}; move it out of DELIBERATE:\n{nginx.stderr}"
    assert ours.accepted == (level == "warn"), ours.stderr
    expected = {"level": level, "text": text, "file": f"PREFIX/{file}", "line": str(line)}
    assert first_message(ours.stderr, Path(ours.prefix), {level}) == expected, ours.stderr


def _explain(nginx: Outcome, ours: Outcome) -> str:
    return f"\n--- nginx stderr:\n{nginx.stderr}--- wsgate stderr:\n{ours.stderr}"


def test_shared_configs_folder_exists() -> None:
    assert SHARED.is_dir(), f"shared configs folder {SHARED} is missing"

