"""The benchmark suite (bench/) end to end, at its tiniest: it builds the C load
generator and echo backend, runs `direct` and `nginx-1` through every workload --
the TLS ones too, where `direct` (no proxy, nothing to terminate TLS) reads "n/a" --
and writes a well-formed report with no errors. It also proves that SIGTERM stops the
bench and every process it started. No timing assertions: figures are only parsed.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
WORKLOAD_HEADINGS = ["## echo, 1 connection", "## echo, 100 connections", "## bulk,",
                     "## handshake churn", "## idle,", "## plain HTTP"]
TLS_HEADINGS = ["## wss echo, 100 TLS connections", "## wss bulk,", "## TLS handshake churn"]
NUMBER = re.compile(r"^[\d,]+(\.\d+)?x?( \([\d,.]+–[\d,.]+\))?$")


def bench_cmd(out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "bench", "--tiny", "--targets", "direct,nginx-1",
            "--out", str(out), *extra]


def bench_env(tmp: Path) -> dict[str, str]:
    # Temp prefixes under tmp, so leftover processes can be found by their command line.
    return dict(os.environ, TMPDIR=str(tmp))


def leftovers(tmp: Path) -> list[str]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmd = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if str(tmp) in cmd and int(entry) != os.getpid():
            found.append(f"{entry}: {cmd}")
    return found


def table_rows(report: str, heading: str) -> dict[str, list[str]]:
    section = report.split(heading, 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        if line.startswith("| ") and not line.startswith("| target"):
            cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
            rows[cells[0]] = cells[1:]
    return rows


@pytest.mark.timeout(400)
def test_tiny_run_writes_a_clean_report(tmp_path: Path) -> None:
    out = tmp_path / "results"
    proc = subprocess.run(bench_cmd(out), cwd=ROOT, env=bench_env(tmp_path),
                          capture_output=True, text=True, timeout=360)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = (out / "REPORT.md").read_text()
    assert proc.stdout.strip() == report.strip()
    for heading in WORKLOAD_HEADINGS:
        rows = table_rows(report, heading)
        expected = {"nginx-1"} if heading == "## idle," else {"direct", "nginx-1"}
        assert set(rows) == expected, (heading, rows)
        for target, cells in rows.items():
            assert cells[-1] == "1/1 ok", (heading, target, cells)
            numbers = [c for c in cells[:-1] if c != "—"]
            assert numbers, (heading, target)
            assert all(NUMBER.match(c) for c in numbers), (heading, target, cells)
        assert rows["nginx-1"][-2] == "1.00x"  # CPU ratio of the baseline to itself
    for heading in TLS_HEADINGS:
        check_tls_table(report, heading)
    assert "with errors" not in report and "failed to start" not in report
    raw = json.loads((out / "results.json").read_text())
    assert raw["samples"] and all(s["ok"] for s in raw["samples"])
    idle = [s for s in raw["samples"] if s["workload"] == "idle"]
    assert idle[0]["metrics"]["held"] == 200 and idle[0]["metrics"]["mem_kb"] > 0
    tls = {s["workload"]: s for s in raw["samples"] if s["workload"] in ("wss-echo100", "wss-bulk", "tls-churn")}
    assert set(tls) == {"wss-echo100", "wss-bulk", "tls-churn"}
    for sample in tls.values():
        assert sample["target"] == "nginx-1"
        assert sample["info"]["tls"].startswith("TLSv1.3 TLS_AES_128_GCM_SHA256"), sample
        assert sample["metrics"]["cpu_us"] > 0 and sample["metrics"]["client_cpu_us"] > 0
    churn = tls["tls-churn"]["metrics"]
    assert abs(churn["hs_per_cpu_s"] * churn["cpu_us"] - 1e6) < 1.0
    assert {(n["target"], n["workload"]) for n in raw["not_applicable"]} == {
        ("direct", w) for w in tls}
    assert (out / "cpu_per_unit.png").stat().st_size > 0
    assert (out / "memory_per_conn.png").stat().st_size > 0
    assert leftovers(tmp_path) == []


def check_tls_table(report: str, heading: str) -> None:
    """nginx-1 measured over TLS without errors; direct is "n/a"; the table says what
    was negotiated and whether the load generator could be the bottleneck."""
    rows = table_rows(report, heading)
    assert set(rows) == {"direct", "nginx-1"}, (heading, rows)
    direct, nginx = rows["direct"], rows["nginx-1"]
    assert set(direct[:-1]) == {"n/a"} and direct[-1].startswith("n/a: no proxy"), direct
    assert nginx[-1] == "1/1 ok", (heading, nginx)
    assert all(NUMBER.match(c) for c in nginx[:-1]), (heading, nginx)
    assert nginx[-3] == "1.00x"  # CPU ratio to itself; the last figure is the client's CPU
    section = report.split(heading, 1)[1].split("\n## ", 1)[0]
    assert "Negotiated by every target measured (protocol, cipher, group): TLSv1.3 " \
           "TLS_AES_128_GCM_SHA256" in section, section
    assert "load generator used" in section or "could not show" in section, section
    workload = {"## wss echo": "wss-echo100", "## wss bulk": "wss-bulk",
                "## TLS hand": "tls-churn"}[heading[:11]]
    # Informative in the goals table: no goal figure; wsgate-1 is not in this run.
    goal_rows = [line for line in report.splitlines() if line.startswith(f"| {workload} |")]
    assert len(goal_rows) == 1 and re.fullmatch(
        rf"\| {workload} \| CPU per [A-Za-z ]+ \(TLS\) \| — \| — \| — \(no goal\) \|", goal_rows[0]), goal_rows


@pytest.mark.timeout(120)
def test_sigterm_stops_the_bench_and_its_processes(tmp_path: Path) -> None:
    out = tmp_path / "results"
    proc = subprocess.Popen(bench_cmd(out, "--workloads", "echo100", "--repeat", "20"),
                            cwd=ROOT, env=bench_env(tmp_path), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 90
        seen = ""
        assert proc.stderr is not None
        while time.monotonic() < deadline and "nginx-1: started" not in seen:
            line = proc.stderr.readline()
            if not line:
                break
            seen += line
        assert "nginx-1: started" in seen, seen  # nginx is running its repeats now
        assert leftovers(tmp_path), "expected nginx under the temp prefix while running"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 130
    finally:
        if proc.poll() is None:  # a failed assertion above: still let it clean up
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    assert leftovers(tmp_path) == []
