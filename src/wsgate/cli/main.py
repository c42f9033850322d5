"""The `wsgate` command: subcommands (serve, check, probe, demo) beside nginx's flags.

A first argument that names a subcommand goes to that subcommand's module; anything
else is nginx's command line (`-c`, `-t`, `-s reload` ...), handled by `cli.nginx`.
Subcommand modules are imported lazily so `wsgate -t` stays fast.
"""

from __future__ import annotations

import importlib
import sys

SUBCOMMANDS = {
    "serve": "wsgate.cli.serve",
    "check": "wsgate.cli.check",
    "probe": "wsgate.cli.probe",
    "demo": "wsgate.cli.demo",
}


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else list(argv)
    if args and args[0] in SUBCOMMANDS:
        module = importlib.import_module(SUBCOMMANDS[args[0]])
        return int(module.main(args[1:]) or 0)
    from wsgate.cli import nginx
    return int(nginx.main(args) or 0)
