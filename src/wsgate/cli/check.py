"""`wsgate check FILE...`: report what breaks or weakens WebSockets, then exit 1 on errors.

The command line only: parse options, run wsgate.check on each file, print the
findings (text on stdout, colours on a terminal unless NO_COLOR is set; or
`--format json`), and turn them into an exit status: 1 when there is an error
finding, 0 otherwise, 2 for a usage error (argparse's).
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import TextIO

from wsgate.check import ERROR, check_paths
from wsgate.check.output import render_json, render_text

__all__ = ["main", "use_colour"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="wsgate check",
        description="Find everything that breaks or weakens WebSockets in nginx configs "
                    "(rules: docs/check-rules.md). Never starts a server or uses the network.")
    p.add_argument("files", nargs="+", metavar="FILE",
                   help="nginx.conf, or a conf.d-style fragment (read as included from http {})")
    p.add_argument("--format", choices=("text", "json"), default="text")
    p.add_argument("--color", choices=("auto", "always", "never"), default="auto",
                   help="colour the text output (auto: on a terminal, unless NO_COLOR is set)")
    return p


def use_colour(choice: str, stream: TextIO) -> bool:
    if choice != "auto":
        return choice == "always"
    if os.environ.get("NO_COLOR"):
        return False
    return bool(getattr(stream, "isatty", lambda: False)())


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    findings, _files = check_paths(args.files)
    out = sys.stdout
    if args.format == "json":
        out.write(render_json(findings))
    else:
        out.write(render_text(findings, use_colour(args.color, out)))
    out.flush()
    return 1 if any(f.severity == ERROR for f in findings) else 0
