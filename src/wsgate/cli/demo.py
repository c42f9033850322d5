"""`wsgate demo`: wsgate in front of a built-in WebSocket chat app (see wsgate.demo).

    wsgate demo                     serve on 127.0.0.1:8080 (or a free port), live view
    wsgate demo --listen 9000       another address
    wsgate demo --check             start everything, run the self-test, print OK/FAIL
    wsgate demo --print-config      print the nginx-syntax config it runs, and exit

This module only parses arguments and prints; failures become one clear message and
exit status 1, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from wsgate.demo.run import DemoError, DemoOptions, run_demo

PROG = "wsgate demo"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG, description="Run wsgate in front of a built-in WebSocket chat app.")
    p.add_argument("--listen", metavar="[HOST:]PORT",
                   help="proxy address (default 127.0.0.1:8080, or a free port if taken; "
                        "0 picks a free port)")
    p.add_argument("--check", "--self-test", dest="check", action="store_true",
                   help="start everything, exchange messages through wsgate, print OK or "
                        "FAIL and exit")
    p.add_argument("--print-config", action="store_true",
                   help="print the generated nginx-syntax config and exit")
    p.add_argument("--dir", metavar="DIR",
                   help="keep the config and logs in DIR (default: a temporary directory, "
                        "removed on exit)")
    p.add_argument("--stats-interval", type=float, default=10.0, metavar="SECONDS",
                   help="how often to print the counts line (default 10)")
    return p


def _write(line: str) -> None:
    try:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()
    except OSError:
        pass


def main(argv: list[str]) -> int:
    """Run `wsgate demo`; returns the exit status."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:          # argparse exits on --help and on usage errors
        return int(exc.code or 0)
    opts = DemoOptions(listen=args.listen, check=args.check, print_config=args.print_config,
                       directory=args.dir, stats_interval=max(0.5, args.stats_interval))
    try:
        return asyncio.run(run_demo(opts, _write))
    except DemoError as exc:
        sys.stderr.write(f"{PROG}: {exc}\n")
        return 1
    except KeyboardInterrupt:
        return 130
    except OSError as exc:
        sys.stderr.write(f"{PROG}: {exc.strerror or exc}\n")
        return 1
