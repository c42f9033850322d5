"""The bench's TLS certificate: one self-signed ECDSA P-256 certificate for
`localhost` and 127.0.0.1, made with the `openssl` command when a run includes a TLS
workload, and served by every target that terminates TLS.

The load generator verifies the server's certificate against this same file (it is
its own CA) for the name `localhost`, which proves that each target serves it.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

SNI = "localhost"


@dataclass(frozen=True)
class TlsFiles:
    cert: Path
    key: Path
    pem: Path  # certificate then key in one file (HAProxy's `crt`)


def make(directory: Path) -> TlsFiles:
    """Create the key and certificate in `directory`; RuntimeError says why not."""
    directory.mkdir(parents=True, exist_ok=True)
    files = TlsFiles(directory / "cert.pem", directory / "key.pem", directory / "both.pem")
    argv = ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-keyout", str(files.key), "-out", str(files.cert), "-days", "7",
            "-subj", f"/CN={SNI}", "-addext", f"subjectAltName=DNS:{SNI},IP:127.0.0.1"]
    try:
        res = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise RuntimeError(f"openssl req failed: {exc}") from exc
    if res.returncode != 0:
        raise RuntimeError(f"openssl req failed: {res.stderr.strip()[-300:]}")
    files.pem.write_text(files.cert.read_text() + files.key.read_text())
    return files


def loadgen_args(files: TlsFiles) -> list[str]:
    """wsload's flags for wss://: TLS with SNI, verified against our own certificate."""
    return ["--tls", "--sni", SNI, "--ca", str(files.cert)]
