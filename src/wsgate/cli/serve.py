"""`wsgate serve --listen 8080 --to 127.0.0.1:3000 [--to ...]`: quick mode.

Builds the equivalent nginx config text (the map idiom, HTTP/1.1 upstream,
Upgrade/Connection passed, an upstream group for several `--to`), loads it with the
same loader as nginx mode and serves it. `--print-config` prints the text instead.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

from wsgate.errors import ConfigError

__all__ = ["main", "build_config_text"]


def _listen(value: str) -> str:
    """nginx's listen syntax already covers PORT, HOST:PORT, [::1]:PORT, unix:PATH."""
    return value


def build_config_text(listens: list[str], targets: list[str], *, read_timeout: str = "1h",
                      access_log: str | None = None, error_log: str = "stderr") -> str:
    """The nginx config quick mode runs (WebSockets and plain HTTP both work)."""
    servers = "".join(f"        server {t};\n" for t in targets)
    listen_lines = "".join(f"        listen {_listen(v)};\n" for v in listens)
    log = f"access_log {access_log};" if access_log else "access_log off;"
    return (
        "daemon off;\n"
        "master_process off;\n"
        f"error_log {error_log} notice;\n"
        "events {}\n"
        "http {\n"
        f"    {log}\n"
        "    map $http_upgrade $connection_upgrade {\n"
        "        default upgrade;\n"
        "        ''      '';\n"
        "    }\n"
        "    upstream wsgate_backend {\n"
        f"{servers}"
        "        keepalive 16;\n"
        "    }\n"
        "    server {\n"
        f"{listen_lines}"
        "        location / {\n"
        "            proxy_pass http://wsgate_backend;\n"
        "            proxy_http_version 1.1;\n"
        "            proxy_set_header Host $host;\n"
        "            proxy_set_header Upgrade $http_upgrade;\n"
        "            proxy_set_header Connection $connection_upgrade;\n"
        "            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\n"
        "            proxy_set_header X-Forwarded-Proto $scheme;\n"
        f"            proxy_read_timeout {read_timeout};\n"
        f"            proxy_send_timeout {read_timeout};\n"
        "        }\n"
        "    }\n"
        "}\n")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="wsgate serve",
                                description="Reverse proxy with WebSockets, no config file.")
    p.add_argument("--listen", action="append", required=True,
                   help="address to listen on: PORT, HOST:PORT, [::1]:PORT, unix:PATH")
    p.add_argument("--to", action="append", required=True,
                   help="backend HOST:PORT or unix:PATH (repeat for a group)")
    p.add_argument("--read-timeout", default="1h",
                   help="idle limit of a tunnel (proxy_read_timeout), default 1h")
    p.add_argument("--access-log", default=None, help="access log file (default off)")
    p.add_argument("--print-config", action="store_true",
                   help="print the equivalent nginx config and exit")
    return p


def main(argv: list[str]) -> int:
    opts = _parser().parse_args(argv)
    text = build_config_text(opts.listen, opts.to, read_timeout=opts.read_timeout,
                             access_log=opts.access_log)
    if opts.print_config:
        sys.stdout.write(text)
        return 0
    from wsgate.config.load import load_config_text
    from wsgate.master import run
    from wsgate.observe.errorlog import ErrorLog
    log = ErrorLog(None, "notice")
    prefix = tempfile.mkdtemp(prefix="wsgate-serve-")
    try:
        cfg = load_config_text(text, name="wsgate-serve.conf", prefix=prefix,
                               globals_=f"pid {os.path.join(prefix, 'wsgate.pid')};")
    except ConfigError as exc:
        log.write("emerg", str(exc))
        return 1
    return int(run(cfg, prefix=prefix, conf_file=cfg.conf_file, log=log) or 0)
