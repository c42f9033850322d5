"""`wsgate serve --listen 8080 --to 127.0.0.1:3000 [--to ...]`: quick mode.

Builds the equivalent nginx config text (the map idiom, HTTP/1.1 upstream,
Upgrade/Connection passed, an upstream group for the `--to`s with the `--balance`
method), writes it to a private prefix directory and serves it with the same loader
and process model as nginx mode -- so `kill -HUP` reloads it and `wsgate -p DIR -s
quit` stops it. `--print-config` prints the text instead.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
from dataclasses import dataclass, field

from wsgate.errors import ConfigError

__all__ = ["main", "build_config_text", "QuickOptions", "BALANCERS"]

BALANCERS = ("round_robin", "least_conn", "ip_hash", "random")
_TIME = re.compile(r"^\d+(ms|s|m|h|d)?$")


@dataclass
class QuickOptions:
    """Everything quick mode asks for; `build_config_text` turns it into nginx syntax."""

    listen: list[str]
    to: list[str]
    balance: str = "round_robin"
    websocket: bool = True
    read_timeout: str = "1h"
    access_log: str | None = None
    error_log: str = "stderr"
    workers: str = "1"
    extra_http: list[str] = field(default_factory=list)


def balance_line(balance: str) -> str:
    """`--balance` -> the upstream block's method directive ('' for round robin).

    `hash:KEY` hashes on KEY (an nginx variable template, e.g. `hash:$remote_addr`);
    `hash:KEY:consistent` is ketama consistent hashing."""
    if balance == "round_robin":
        return ""
    if balance in ("least_conn", "ip_hash", "random"):
        return f"{balance};"
    if balance.startswith("hash:") and len(balance) > 5:
        key, _, mode = balance[5:].partition(":consistent")
        return f"hash {_quote(key)}{' consistent' if _ == ':consistent' else ''};"
    raise ValueError(f'invalid --balance "{balance}": use round_robin, least_conn, '
                     "ip_hash, random or hash:KEY")


def _quote(value: str) -> str:
    if re.fullmatch(r"[\w$.:/{}\-]+", value):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _check_time(value: str, flag: str) -> str:
    if not _TIME.match(value):
        raise ValueError(f'invalid {flag} "{value}": use e.g. 30s, 5m, 1h')
    return value


def build_config_text(listens: list[str] | QuickOptions, targets: list[str] | None = None, *,
                      read_timeout: str = "1h", access_log: str | None = None,
                      error_log: str = "stderr") -> str:
    """The nginx config quick mode runs (WebSockets and plain HTTP both work).

    Takes a QuickOptions, or (for older callers) listens and targets lists."""
    if isinstance(listens, QuickOptions):
        opts = listens
    else:
        opts = QuickOptions(list(listens), list(targets or ()), read_timeout=read_timeout,
                            access_log=access_log, error_log=error_log)
    return _render(opts)


def _render(o: QuickOptions) -> str:
    timeout = _check_time(o.read_timeout, "--read-timeout")
    method = balance_line(o.balance)
    servers = "".join(f"        server {_quote(t)};\n" for t in o.to)
    listen_lines = "".join(f"        listen {_quote(v)};\n" for v in o.listen)
    log = f"access_log {_quote(o.access_log)};" if o.access_log else "access_log off;"
    ws = ("            proxy_set_header Upgrade $http_upgrade;\n"
          "            proxy_set_header Connection $connection_upgrade;\n") if o.websocket else ""
    ws_map = ("    map $http_upgrade $connection_upgrade {\n"
              "        default upgrade;\n"
              "        ''      '';\n"
              "    }\n") if o.websocket else ""
    return (
        "daemon off;\n"
        f"worker_processes {o.workers};\n"
        f"error_log {_quote(o.error_log)} notice;\n"
        "events {}\n"
        "http {\n"
        f"    {log}\n"
        f"{ws_map}"
        "    upstream wsgate_backend {\n"
        f"{'        ' + method + chr(10) if method else ''}"
        f"{servers}"
        "        keepalive 16;\n"
        "    }\n"
        "    server {\n"
        f"{listen_lines}"
        "        location / {\n"
        "            proxy_pass http://wsgate_backend;\n"
        "            proxy_http_version 1.1;\n"
        "            proxy_set_header Host $host;\n"
        f"{ws}"
        "            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\n"
        "            proxy_set_header X-Forwarded-Proto $scheme;\n"
        f"            proxy_read_timeout {timeout};\n"
        f"            proxy_send_timeout {timeout};\n"
        "        }\n"
        "    }\n"
        "}\n")


def _workers(value: str) -> str:
    if value != "auto" and not (value.isdigit() and int(value) > 0):
        raise argparse.ArgumentTypeError(f'invalid --workers "{value}": a number or auto')
    return value


def _on_off(value: str) -> bool:
    if value not in ("on", "off"):
        raise argparse.ArgumentTypeError(f'invalid value "{value}": on or off')
    return value == "on"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="wsgate serve",
                                description="Reverse proxy with WebSockets, no config file.")
    p.add_argument("--listen", action="append", required=True,
                   help="address to listen on: PORT, HOST:PORT, [::1]:PORT, unix:PATH "
                        "(repeatable)")
    p.add_argument("--to", action="append", required=True,
                   help="backend HOST:PORT or unix:PATH (repeat for a group)")
    p.add_argument("--balance", default="round_robin",
                   help="group method: round_robin (default), least_conn, ip_hash, random, "
                        "hash:KEY[:consistent]")
    p.add_argument("--websocket", type=_on_off, default=True, metavar="on|off",
                   help="pass WebSocket upgrades (default on)")
    p.add_argument("--read-timeout", default="1h",
                   help="idle limit of a tunnel or response (proxy_read_timeout), default 1h")
    p.add_argument("--access-log", default=None, help="access log file (default off)")
    p.add_argument("--error-log", default="stderr", help="error log file (default stderr)")
    p.add_argument("--workers", type=_workers, default="1",
                   help="worker processes: a number or auto (default 1)")
    p.add_argument("--prefix", default=None,
                   help="directory for the generated config and pid file "
                        "(default: a new temporary directory)")
    p.add_argument("--print-config", action="store_true",
                   help="print the equivalent nginx config and exit")
    return p


def options_from(argv: list[str]) -> tuple[QuickOptions, argparse.Namespace]:
    ns = _parser().parse_args(argv)
    opts = QuickOptions(ns.listen, ns.to, balance=ns.balance, websocket=ns.websocket,
                        read_timeout=ns.read_timeout, access_log=ns.access_log,
                        error_log=ns.error_log, workers=ns.workers)
    return opts, ns


def main(argv: list[str]) -> int:
    opts, ns = options_from(argv)
    try:
        text = build_config_text(opts)
    except ValueError as exc:
        sys.stderr.write(f"wsgate serve: {exc}\n")
        return 2
    if ns.print_config:
        sys.stdout.write(text)
        return 0
    return _serve(text, ns.prefix)


def _serve(text: str, prefix: str | None) -> int:
    from wsgate.config.load import load_config
    from wsgate.master import run
    from wsgate.master.common import resolve
    from wsgate.observe.errorlog import ErrorLog
    log = ErrorLog(None, "notice")
    prefix = os.path.abspath(prefix or tempfile.mkdtemp(prefix="wsgate-serve-"))
    os.makedirs(os.path.join(prefix, "logs"), exist_ok=True)
    conf = os.path.join(prefix, "wsgate-serve.conf")
    with open(conf, "w") as fh:     # a real file, so that HUP can reload it
        fh.write(text)

    def warn(finding: ConfigError) -> None:
        log.write(finding.level or "warn", str(finding))
    try:
        cfg = load_config(conf, prefix=prefix, resolve=resolve, warn=warn)
    except ConfigError as exc:
        log.write("emerg", str(exc))
        return 1
    return int(run(cfg, prefix=prefix, conf_file=conf, log=log) or 0)
