"""Turns samples into bench/results/REPORT.md (markdown tables with ratios to
nginx with one worker), results.json (every sample) and two PNG charts.

Figures are the median over the runs without errors, with min-max beside them; runs
with errors are listed as such and never enter a median. The TLS tables add the load
generator's own CPU per unit (no `direct` row can exist over TLS) and say what was
negotiated; a target that cannot terminate TLS reads "n/a" there.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from dataclasses import asdict
from pathlib import Path

from bench.runner import Results
from bench.targets import BASELINE, TARGETS
from bench.workloads import MIB, WORKLOADS, Sample, Sizes

GOALS = {  # the issue's goals: wsgate-1's ratio to nginx-1, lower is better
    "echo100": ("cpu_us", 1.3), "echo1": ("cpu_us", 1.5), "bulk": ("cpu_us", 0.25),
    "churn": ("cpu_us", 2.0), "idle": ("mem_kb", 0.25), "http": ("cpu_us", 2.5),
}
# The TLS rows are informative: the issue sets no figure for them.
INFORMATIVE = {"wss-echo100": "cpu_us", "wss-bulk": "cpu_us", "tls-churn": "cpu_us"}
# Above this share of one core the load generator could not have pushed 2x the rate.
CLIENT_BUSY_LIMIT = 0.5


def fmt(x: float) -> str:
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    if abs(x) >= 10:
        return f"{x:.1f}"
    return f"{x:.2f}"


def _good(res: Results, target: str, workload: str) -> list[Sample]:
    return [s for s in res.samples if s.target == target and s.workload == workload and s.ok]


def _all(res: Results, target: str, workload: str) -> list[Sample]:
    return [s for s in res.samples if s.target == target and s.workload == workload]


def median(res: Results, target: str, workload: str, key: str) -> float | None:
    vals = [s.metrics[key] for s in _good(res, target, workload) if key in s.metrics]
    return statistics.median(vals) if vals else None


def cell(res: Results, target: str, workload: str, key: str) -> str:
    vals = [s.metrics[key] for s in _good(res, target, workload) if key in s.metrics]
    if not vals:
        return "—"
    text = fmt(statistics.median(vals))
    if len(vals) > 1:
        text += f" ({fmt(min(vals))}–{fmt(max(vals))})"
    return text


def ratio(res: Results, target: str, workload: str, key: str) -> str:
    mine, base = median(res, target, workload, key), median(res, BASELINE, workload, key)
    if mine is None or not base:
        return "—"
    return f"{mine / base:.2f}x"


def _runs(res: Results, target: str, workload: str) -> str:
    runs = _all(res, target, workload)
    bad = [s for s in runs if not s.ok]
    text = f"{len(runs) - len(bad)}/{len(runs)} ok"
    if bad:
        text += "; with errors: " + "; ".join(sorted({s.error for s in bad}))
    return _esc(text)


def _esc(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _columns(workload: str) -> list[tuple[str, str, str]]:
    """(header, metric key, kind) per column; kind 'v' value, 'r' ratio to nginx-1."""
    w = WORKLOADS[workload]
    if w.tls:
        return _tls_columns(workload)
    if workload == "idle":
        return [("held", "held", "v"), ("proxy KB/conn", "mem_kb", "v"), ("KB vs nginx-1", "mem_kb", "r"),
                ("CPU µs/connection", "cpu_us", "v"), ("CPU vs nginx-1", "cpu_us", "r")]
    cols = [(w.rate_label, "rate", "v")]
    if workload != "bulk":
        if workload != "http":
            cols.append((f"p50 µs ({w.latency_label})", "p50_us", "v"))
        cols.append((f"p99 µs ({w.latency_label})", "p99_us", "v"))
    cols += [(f"CPU µs/{w.unit}", "cpu_us", "v"), ("CPU vs nginx-1", "cpu_us", "r")]
    return cols


def _tls_columns(workload: str) -> list[tuple[str, str, str]]:
    w = WORKLOADS[workload]
    cols = [(w.rate_label, "rate", "v")]
    if w.latency_label:
        cols += [(f"p50 µs ({w.latency_label})", "p50_us", "v"),
                 (f"p99 µs ({w.latency_label})", "p99_us", "v")]
    if workload == "tls-churn":
        cols.append(("handshakes per proxy CPU s", "hs_per_cpu_s", "v"))
    return cols + [(f"CPU µs/{w.unit}", "cpu_us", "v"), ("CPU vs nginx-1", "cpu_us", "r"),
                   (f"client CPU µs/{w.unit}", "client_cpu_us", "v")]


def _size(n: int) -> str:
    gib = n / (1 << 30)
    return f"{gib:g} GiB" if gib >= 1 else f"{n / MIB:g} MiB"


def title(workload: str, sizes: Sizes) -> str:
    return WORKLOADS[workload].title.format(bulk=_size(sizes.bulk_bytes),
                                            wss_bulk=_size(sizes.wss_bulk_bytes),
                                            idle=f"{sizes.idle_conns:,}")


def table(res: Results, workload: str) -> list[str]:
    cols = _columns(workload)
    lines = [f"## {title(workload, res.sizes)}", "",
             "| target | " + " | ".join(c[0] for c in cols) + " | runs |",
             "|---|" + "---:|" * len(cols) + "---|"]
    for t in res.targets:
        if workload == "idle" and not TARGETS[t].proxied:
            continue
        if (t, workload) in res.not_applicable:
            na = " | ".join(["n/a"] * len(cols))
            lines.append(f"| {t} | {na} | n/a: {_esc(res.not_applicable[(t, workload)])} |")
            continue
        if t in res.start_errors and not _all(res, t, workload):
            blanks = " | " * (len(cols) - 1)
            lines.append(f"| {t} | failed to start: {_esc(res.start_errors[t])}{blanks} | 0 runs |")
            continue
        vals = [cell(res, t, workload, k) if kind == "v" else ratio(res, t, workload, k)
                for _, k, kind in cols]
        lines.append(f"| {t} | " + " | ".join(vals) + f" | {_runs(res, t, workload)} |")
    if WORKLOADS[workload].tls:
        return lines + ["", negotiated(res, workload), "", client_check(res, workload), ""]
    lines += ["", direct_check(res, workload), ""]
    return lines


def negotiated(res: Results, workload: str) -> str:
    """What the first handshake of each run negotiated (wsload reports it)."""
    seen: dict[str, list[str]] = {}
    for t in res.targets:
        for got in sorted({s.info.get("tls", "") for s in _good(res, t, workload)} - {""}):
            seen.setdefault(got, []).append(t)
    if not seen:
        return "Negotiated: nothing reported."
    if len(seen) == 1:
        return f"Negotiated by every target measured (protocol, cipher, group): {next(iter(seen))}."
    return "Negotiated (protocol, cipher, group): " + "; ".join(
        f"{', '.join(ts)}: {got}" for got, ts in seen.items()) + "."


def client_check(res: Results, workload: str) -> str:
    """The TLS tables' stand-in for `direct`: was the load generator ever busy more
    than half of one core (so that it could not have pushed twice the rate)?"""
    busy = {t: b for t in res.targets
            if (b := median(res, t, workload, "client_busy")) is not None}
    if not busy:
        return "No TLS run without errors: the load generator's CPU was not measured."
    span = f"{min(busy.values()) * 100:.0f}–{max(busy.values()) * 100:.0f}%"
    slow = [f"{t} ({b * 100:.0f}%)" for t, b in busy.items() if b > CLIENT_BUSY_LIMIT]
    if not slow:
        return (f"No `direct` row over TLS; instead: the load generator used {span} of one core "
                "(its getrusage over the window), at most half of it: it could have pushed at least "
                "2x the rate and was not the bottleneck.")
    return ("**The harness could not show that it is not the bottleneck**: the load generator "
            f"(one thread) used more than half of one core against {', '.join(slow)}.")


def direct_check(res: Results, workload: str) -> str:
    """Does `direct` push at least twice what each proxy does? Else the harness may limit."""
    if workload == "idle":
        return "CPU and memory are the proxy's own (all its processes); `direct` has no proxy."
    direct = median(res, "direct", workload, "rate")
    if direct is None:
        return "`direct` was not measured: this table cannot show that the harness is not the bottleneck."
    slow = []
    for t in res.targets:
        rate = median(res, t, workload, "rate")
        if TARGETS[t].proxied and rate and direct < 2 * rate:
            slow.append(f"{t} ({direct / rate:.2f}x)")
    if not slow:
        return (f"`direct` ({fmt(direct)}) is at least 2x every proxied target's throughput: "
                "the load generator and backend are not the bottleneck.")
    return ("**The harness could not show that it is not the bottleneck**: `direct` is less than "
            f"2x the throughput of {', '.join(slow)}.")


def goals(res: Results) -> list[str]:
    lines = ["## The issue's goals: wsgate (1 worker) ÷ nginx (1 worker)", "",
             "| workload | measure | goal | wsgate-1 | met |", "|---|---|---:|---:|---|"]
    for w in res.workloads:
        if w not in GOALS:
            continue
        key, goal = GOALS[w]
        mine, base = median(res, "wsgate-1", w, key), median(res, BASELINE, w, key)
        if mine is None or not base:
            got, met = "—", "not measured" if "wsgate-1" not in res.start_errors else "wsgate-1 did not start"
        else:
            got, met = f"{mine / base:.2f}x", "yes" if mine / base <= goal else "no"
        what = "memory per connection" if key == "mem_kb" else f"CPU per {WORKLOADS[w].unit}"
        lines.append(f"| {w} | {what} | ≤ {goal}x | {got} | {met} |")
    for w in res.workloads:
        if w not in INFORMATIVE:
            continue
        mine, base = (median(res, t, w, INFORMATIVE[w]) for t in ("wsgate-1", BASELINE))
        got = f"{mine / base:.2f}x" if mine is not None and base else "—"
        lines.append(f"| {w} | CPU per {WORKLOADS[w].unit} (TLS) | — | {got} | — (no goal) |")
    return lines + [""]


def markdown(res: Results) -> str:
    s = res.sizes
    head = [
        "# wsgate benchmark report", "",
        f"{time.strftime('%Y-%m-%d %H:%M:%S %Z')} on {platform.node() or 'this host'}, "
        f"{os.cpu_count()} CPUs, Linux {platform.release()}. Repeats: {res.repeat}; "
        f"echo/churn {s.duration:g} s after {s.warmup:g} s warm-up; wrk {s.http_duration} s; "
        f"idle {s.idle_conns:,} connections.", "",
        "Figures: median (min–max) over the runs without errors. \"CPU\" is the proxy's "
        "user+system CPU time (all its processes) per unit of work; \"vs nginx-1\" divides by nginx "
        "with one worker (lower is better). Access logs are off for every target.", "",
    ]
    if any(WORKLOADS[w].tls for w in res.workloads):
        head += ["TLS workloads: wss:// from the load generator to the proxy, plain ws:// to the "
                 "backend; TLS 1.3 only, one self-signed ECDSA P-256 certificate for every target, "
                 "a full handshake on every connection (no resumption).", ""]
    if res.notes:
        head += ["Setup notes:", ""] + [f"- {_esc(n)}" for n in res.notes] + [""]
    body = []
    for w in res.workloads:
        body += table(res, w)
    return "\n".join(head + goals(res) + body)


def write(res: Results, out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    path = out / "REPORT.md"
    path.write_text(markdown(res))
    raw = {"targets": res.targets, "workloads": res.workloads, "repeat": res.repeat,
           "sizes": asdict(res.sizes), "start_errors": res.start_errors, "notes": res.notes,
           "not_applicable": [{"target": t, "workload": w, "why": why}
                              for (t, w), why in res.not_applicable.items()],
           "samples": [asdict(x) for x in res.samples]}
    (out / "results.json").write_text(json.dumps(raw, indent=1))
    charts(res, out)
    return path


def charts(res: Results, out: Path) -> list[Path]:
    """cpu_per_unit.png and memory_per_conn.png (skipped, with a note, without matplotlib)."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        res.notes.append("matplotlib is not installed: no charts")
        return []
    made = []
    cpu_ws = [w for w in res.workloads if any(median(res, t, w, "cpu_us") for t in res.targets)]
    if cpu_ws:
        fig, axes = plt.subplots(1, len(cpu_ws), figsize=(4 * len(cpu_ws), 4), squeeze=False)
        for ax, w in zip(axes[0], cpu_ws):
            _bars(ax, res, w, "cpu_us", f"µs per {WORKLOADS[w].unit}")
            ax.set_title(w)
        fig.suptitle("proxy CPU time per unit of work (lower is better)")
        fig.tight_layout()
        made.append(out / "cpu_per_unit.png")
        fig.savefig(made[-1], dpi=90)
        plt.close(fig)
    if "idle" in res.workloads and any(median(res, t, "idle", "mem_kb") for t in res.targets):
        fig, ax = plt.subplots(figsize=(6, 4))
        _bars(ax, res, "idle", "mem_kb", "KB per idle connection")
        ax.set_title("proxy memory per idle WebSocket connection (lower is better)")
        fig.tight_layout()
        made.append(out / "memory_per_conn.png")
        fig.savefig(made[-1], dpi=90)
        plt.close(fig)
    return made


def _bars(ax: object, res: Results, workload: str, key: str, label: str) -> None:
    names, meds, lo, hi = [], [], [], []
    for t in res.targets:
        vals = [s.metrics[key] for s in _good(res, t, workload) if key in s.metrics]
        if vals:
            m = statistics.median(vals)
            names.append(t); meds.append(m); lo.append(m - min(vals)); hi.append(max(vals) - m)
    colors = ["tab:red" if n.startswith("wsgate") else "tab:blue" if n.startswith("nginx")
              else "tab:gray" for n in names]
    ax.bar(names, meds, yerr=[lo, hi], color=colors, capsize=3)  # type: ignore[attr-defined]
    ax.set_ylabel(label)  # type: ignore[attr-defined]
    ax.tick_params(axis="x", labelrotation=60)  # type: ignore[attr-defined]
