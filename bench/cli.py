"""`python -m bench`: flags, set-up, the run, the report.

    python -m bench                      everything, 3 repeats (about 10-15 minutes)
    python -m bench --quick              fewer targets, smaller sizes, 1 repeat (< 2 min)
    python -m bench --targets direct,nginx-1,wsgate-1 --workloads echo100,idle --repeat 5
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

from bench import install, procs, report, runner
from bench.targets import TARGETS
from bench.workloads import MIB, WORKLOADS, Sizes

QUICK_TARGETS = ["direct", "wsgate-1", "nginx-1", "haproxy", "caddy", "node-http-proxy"]
QUICK = Sizes(duration=1.0, warmup=0.3, bulk_bytes=128 * MIB, idle_conns=2000,
              idle_settle=1.0, http_duration=1, http_warm=1, wss_bulk_bytes=64 * MIB)
TINY = Sizes(duration=0.5, warmup=0.2, bulk_bytes=16 * MIB, idle_conns=200,
             idle_settle=0.3, http_duration=1, http_warm=1, wss_bulk_bytes=8 * MIB)


def _names(text: str, known: Mapping[str, object], what: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    bad = [n for n in names if n not in known]
    if bad:
        raise argparse.ArgumentTypeError(f"unknown {what}: {', '.join(bad)} (known: {', '.join(known)})")
    return names


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--targets", type=lambda s: _names(s, TARGETS, "target"),
                   help=f"comma-separated, from: {', '.join(TARGETS)}")
    p.add_argument("--workloads", type=lambda s: _names(s, WORKLOADS, "workload"),
                   help=f"comma-separated, from: {', '.join(WORKLOADS)}")
    p.add_argument("--repeat", type=int, help="measurements per target and workload (default 3)")
    p.add_argument("--quick", action="store_true", help="fewer targets, smaller sizes, 1 repeat")
    p.add_argument("--tiny", action="store_true", help="smallest sizes (for the test suite)")
    p.add_argument("--duration", type=float, help="seconds per echo/churn measurement")
    p.add_argument("--idle-conns", type=int, help="idle connections to hold (at most 9,900)")
    p.add_argument("--no-install", action="store_true", help="do not apt/npm/pip install anything")
    p.add_argument("--out", type=Path, default=install.BENCH_DIR / "results",
                   help="where REPORT.md, results.json and the charts go")
    return p.parse_args(argv)


def settings(args: argparse.Namespace) -> tuple[list[str], list[str], int, Sizes]:
    sizes = TINY if args.tiny else QUICK if args.quick else Sizes()
    if args.duration:
        sizes = replace(sizes, duration=args.duration, http_duration=max(1, round(args.duration)))
    if args.idle_conns:
        sizes = replace(sizes, idle_conns=max(1, min(args.idle_conns, 9900)))
    small = args.quick or args.tiny
    targets = args.targets or (QUICK_TARGETS if small else list(TARGETS))
    repeat = args.repeat or (1 if small else 3)
    return targets, args.workloads or list(WORKLOADS), max(1, repeat), sizes


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    targets, workloads, repeat, sizes = settings(args)
    procs.install_cleanup()
    procs.raise_nofile()
    log = runner.default_log
    try:
        notes = install.ensure(targets, workloads, install=not args.no_install)
        tools = install.build()
        log(f"bench: targets {','.join(targets)}; workloads {','.join(workloads)}; repeat {repeat}")
        res = runner.Results(targets, workloads, sizes, repeat, notes=notes)
        runner.run(res, tools, log)
        path = report.write(res, args.out)
    except procs.Interrupted as exc:
        log(f"bench: interrupted ({exc}); every process it started is stopped")
        return 130
    finally:
        procs.kill_all()
    print(path.read_text())
    log(f"bench: report in {path}")
    return 0
