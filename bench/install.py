"""What the bench needs on the machine, installed idempotently, and the C build.

Debian packages (nginx-light, haproxy, caddy, wrk) come from apt-get as root with a
policy-rc.d that keeps Debian from starting them as services; node's http-proxy and
ws come from npm into bench/node (package-lock.json pins them); matplotlib from pip
into the running interpreter's environment. The C load generator and echo backend
are compiled with the machine's gcc into bench/build/, again only when a source or
the compile command changed; the load generator links OpenSSL's libssl (Debian's
libssl-dev, installed like the rest) for its wss:// mode, and the TLS workloads make
their certificate with the `openssl` command. Every step that cannot be done is returned as a note, never raised, so
that the report can say which targets are missing and why.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

from bench.workloads import WORKLOADS

BENCH_DIR = Path(__file__).resolve().parent
BUILD_DIR = BENCH_DIR / "build"
LOADGEN_DIR = BENCH_DIR / "loadgen"
NODE_DIR = BENCH_DIR / "node"
APT = {"nginx": "nginx-light", "haproxy": "haproxy", "caddy": "caddy", "wrk": "wrk",
       "openssl": "openssl", "libssl": "libssl-dev"}
SSL_HEADER = Path("/usr/include/openssl/ssl.h")
# How each program is built (link flags after the source); a change rebuilds it.
LINK = {"wsload": ["-lssl", "-lcrypto"], "wsecho": []}


def needed(targets: list[str], workloads: list[str]) -> set[str]:
    """The commands (and libssl, which wsload always links) a run of these uses."""
    cmds = {t.split("-")[0] for t in targets} & set(APT)
    cmds.add("libssl")
    if "http" in workloads:
        cmds.add("wrk")
    if any(WORKLOADS[w].tls for w in workloads if w in WORKLOADS):
        cmds.add("openssl")
    if "node-http-proxy" in targets:
        cmds.add("node")
    return cmds
POLICY = Path("/usr/sbin/policy-rc.d")


def _have(cmd: str) -> bool:
    if cmd == "libssl":
        return SSL_HEADER.exists()
    return shutil.which(cmd) is not None or (cmd == "nginx" and Path("/usr/sbin/nginx").exists())


def _run(argv: list[str], cwd: Path | None = None, env: dict[str, str] | None = None) -> str | None:
    """Run a setup command; None on success, else the tail of its output."""
    try:
        res = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return str(exc)
    if res.returncode == 0:
        return None
    return (res.stderr or res.stdout).strip().splitlines()[-1:][0] if (res.stderr or res.stdout) else f"exit {res.returncode}"


def apt_packages(cmds: set[str], notes: list[str]) -> None:
    missing = [pkg for cmd, pkg in APT.items() if cmd in cmds and not _have(cmd)]
    if not missing:
        return
    if os.geteuid() != 0:
        notes.append(f"not root: cannot install {' '.join(missing)}")
        return
    created = False
    if not POLICY.exists():
        # Exit 101 = "action forbidden": the packages' postinst scripts start nothing.
        POLICY.write_text("#!/bin/sh\nexit 101\n")
        POLICY.chmod(0o755)
        created = True
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    try:
        _run(["apt-get", "update", "-qq"], env=env)
        err = _run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing], env=env)
        if err:
            notes.append(f"apt-get install {' '.join(missing)} failed: {err}")
    finally:
        if created:
            POLICY.unlink(missing_ok=True)


def node_packages(notes: list[str]) -> None:
    if (NODE_DIR / "node_modules" / "http-proxy").is_dir() and (NODE_DIR / "node_modules" / "ws").is_dir():
        return
    if shutil.which("npm") is None:
        notes.append("npm is not installed: node-http-proxy cannot run")
        return
    err = _run(["npm", "ci", "--silent", "--no-audit", "--no-fund"], cwd=NODE_DIR)
    if err:
        notes.append(f"npm ci in bench/node failed: {err}")


def matplotlib(notes: list[str]) -> None:
    if importlib.util.find_spec("matplotlib") is not None:
        return
    err = _run([sys.executable, "-m", "pip", "install", "-q", "matplotlib"])
    if err:
        notes.append(f"pip install matplotlib failed (no charts): {err}")


def build() -> dict[str, Path]:
    """Compile wsload and wsecho (only if a source is newer than the binary, or the
    command that built it differs: its record is kept beside it as NAME.cmd)."""
    BUILD_DIR.mkdir(exist_ok=True)
    out = {}
    header = LOADGEN_DIR / "wsutil.h"
    for name, libs in LINK.items():
        src, exe, record = LOADGEN_DIR / f"{name}.c", BUILD_DIR / name, BUILD_DIR / f"{name}.cmd"
        argv = ["gcc", "-O2", "-Wall", "-Wextra", "-o", str(exe), str(src), *libs]
        newest = max(src.stat().st_mtime, header.stat().st_mtime)
        built_by = record.read_text() if record.exists() else ""
        if not exe.exists() or exe.stat().st_mtime < newest or built_by != " ".join(argv):
            res = subprocess.run(argv, capture_output=True, text=True, timeout=120)
            if res.returncode != 0:
                hint = "" if SSL_HEADER.exists() else " (OpenSSL's headers are missing: install libssl-dev)"
                raise RuntimeError(f"gcc {src.name} failed{hint}:\n{res.stderr}")
            record.write_text(" ".join(argv))
        out[name] = exe
    return out


def ensure(targets: list[str], workloads: list[str], install: bool = True) -> list[str]:
    """Install what these targets need and is missing (if `install`); returns notes
    about what could not be installed."""
    notes: list[str] = []
    cmds = needed(targets, workloads)
    if install:
        apt_packages(cmds, notes)
        if "node" in cmds:
            node_packages(notes)
        matplotlib(notes)
    return notes
