"""`wsgate serve --listen 8080 --to 127.0.0.1:3000 [--to ...]`: quick mode.

Builds the equivalent nginx config text (the map idiom, HTTP/1.1 upstream,
Upgrade/Connection passed, an upstream group for the `--to`s with the `--balance`
method), writes it to a private prefix directory and serves it with the same loader
and process model as nginx mode -- so `kill -HUP` reloads it and `wsgate -p DIR -s
quit` stops it. `--print-config` prints the text instead.

TLS, as an nginx user would write it: `--tls-cert C --tls-key K` makes every
`--listen` a `listen ... ssl` with nginx's ssl_* directives (TLSv1.2 and TLSv1.3);
`--to https://H:P` (or `wss://`) proxies to TLS backends with `proxy_pass https://`,
SNI on, and nginx's default `proxy_ssl_verify off` unless `--tls-verify-upstream CA`
asks for the check (against `--tls-upstream-name`, else the one host the `--to`s name).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
from dataclasses import dataclass, field

from wsgate.errors import ConfigError

__all__ = ["main", "build_config_text", "QuickOptions", "BALANCERS", "Target", "parse_target"]

BALANCERS = ("round_robin", "least_conn", "ip_hash", "random")
_TIME = re.compile(r"^\d+(ms|s|m|h|d)?$")
_SCHEMES = {"http": False, "ws": False, "https": True, "wss": True}   # -> TLS?
# Quick mode's TLS defaults: nginx's directives with today's usual values (nginx
# 1.22's own default ssl_protocols still lists TLSv1 and TLSv1.1).
_SSL_DEFAULTS = ("ssl_protocols TLSv1.2 TLSv1.3;",
                 "ssl_session_cache shared:wsgate_ssl:10m;",
                 "ssl_session_timeout 1h;")


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
    tls_cert: str | None = None
    tls_key: str | None = None
    tls_verify_upstream: str | None = None      # CA file: proxy_ssl_verify on
    tls_upstream_name: str | None = None        # proxy_ssl_name (SNI, certificate check)


@dataclass(frozen=True)
class Target:
    """One `--to`: the `server` address, its host (None for unix sockets), TLS or not."""

    address: str
    host: str | None
    tls: bool


def parse_target(text: str) -> Target:
    """`HOST:PORT`, `unix:PATH`, or either behind http:// ws:// (plain) or https://
    wss:// (TLS; the port defaults to 443 as in a URL)."""
    scheme, sep, rest = text.partition("://")
    if not sep:
        scheme, rest = "", text
    elif scheme.lower() not in _SCHEMES:
        raise ValueError(f'invalid --to "{text}": the scheme must be http, ws, https or wss')
    tls = _SCHEMES.get(scheme.lower(), False)
    if rest.startswith("unix:"):
        return Target(rest, None, tls)
    rest = rest[:-1] if rest.endswith("/") else rest
    if not rest or "/" in rest or "?" in rest:
        raise ValueError(f'invalid --to "{text}": a backend is HOST:PORT or unix:PATH, '
                         "without a path")
    host, port = _host_port(rest)
    if port is None and sep:
        rest = f"{rest}:{443 if tls else 80}"
    return Target(rest, host, tls)


def _host_port(text: str) -> tuple[str, str | None]:
    if text.startswith("[") and "]" in text:
        host, _, after = text[1:].partition("]")
        return host, after[1:] if after.startswith(":") else None
    if text.count(":") == 1:
        host, _, port = text.partition(":")
        return host, port
    return text, None


def _targets(o: QuickOptions) -> tuple[list[Target], bool]:
    """The parsed `--to`s and whether the group speaks TLS (all or none may)."""
    targets = [parse_target(t) for t in o.to]
    kinds = {t.tls for t in targets}
    if len(kinds) > 1:
        plain = next(t for t, p in zip(o.to, targets) if not p.tls)
        secure = next(t for t, p in zip(o.to, targets) if p.tls)
        raise ValueError(f'--to "{plain}" and --to "{secure}" mix plain and TLS backends: '
                         "one group speaks one scheme (use https:// or wss:// on every "
                         "--to, or on none)")
    tls = kinds == {True}
    if not tls and (o.tls_verify_upstream or o.tls_upstream_name):
        flag = "--tls-verify-upstream" if o.tls_verify_upstream else "--tls-upstream-name"
        raise ValueError(f"{flag} needs TLS backends: --to https://HOST:PORT or "
                         "wss://HOST:PORT")
    return targets, tls


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


def _tls_server_lines(o: QuickOptions) -> str:
    """The server block's ssl_* lines for --tls-cert/--tls-key ('' without them)."""
    if o.tls_key and not o.tls_cert:
        raise ValueError("--tls-key needs --tls-cert")
    if not o.tls_cert:
        return ""
    lines = (f"ssl_certificate {_quote(o.tls_cert)};",
             f"ssl_certificate_key {_quote(o.tls_key or o.tls_cert)};", *_SSL_DEFAULTS)
    return "".join(f"        {line}\n" for line in lines)


def _tls_name(o: QuickOptions, targets: list[Target]) -> str | None:
    """proxy_ssl_name: --tls-upstream-name, else the one host the --to's share."""
    if o.tls_upstream_name:
        return o.tls_upstream_name
    hosts = sorted({t.host for t in targets if t.host})
    if len(hosts) == 1:
        return hosts[0]
    if o.tls_verify_upstream:
        raise ValueError(f"--tls-verify-upstream: the --to's name several hosts "
                         f"({', '.join(hosts) or 'unix sockets'}); give the name their "
                         "certificates carry with --tls-upstream-name")
    return None


def _tls_upstream_lines(o: QuickOptions, targets: list[Target]) -> list[str]:
    """The location's proxy_ssl_* lines for https:// / wss:// backends."""
    name = _tls_name(o, targets)
    # Without a name (several hosts) no SNI is sent: `proxy_ssl_server_name on` alone
    # would send $proxy_host, the group's name `wsgate_backend`, which no backend knows.
    lines = ["proxy_ssl_server_name on;", f"proxy_ssl_name {_quote(name)};"] if name else []
    if o.tls_verify_upstream:
        return lines + ["proxy_ssl_verify on;",
                        f"proxy_ssl_trusted_certificate {_quote(o.tls_verify_upstream)};"]
    return lines + ["proxy_ssl_verify off;      # nginx's default: the backend's "
                    "certificate is not checked"]


def _render(o: QuickOptions) -> str:
    timeout = _check_time(o.read_timeout, "--read-timeout")
    method = balance_line(o.balance)
    targets, upstream_tls = _targets(o)
    ssl_lines = _tls_server_lines(o)
    servers = "".join(f"        server {_quote(t.address)};\n" for t in targets)
    listen_lines = "".join(f"        listen {_quote(v)}{' ssl' if ssl_lines else ''};\n"
                           for v in o.listen)
    proxy_tls = "".join(f"            {line}\n" for line in
                        (_tls_upstream_lines(o, targets) if upstream_tls else ()))
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
        f"{ssl_lines}"
        "        location / {\n"
        f"            proxy_pass {'https' if upstream_tls else 'http'}://wsgate_backend;\n"
        f"{proxy_tls}"
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
                   help="backend HOST:PORT or unix:PATH (repeat for a group); "
                        "https://HOST[:PORT] or wss://... for a TLS backend (every --to "
                        "of the group, or none)")
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
    tls = p.add_argument_group(
        "TLS", "--tls-cert/--tls-key make every --listen a TLS (https, wss) listener with "
        "TLSv1.2 and TLSv1.3. TLS backends (--to https://...) are NOT verified by "
        "default, as in nginx (proxy_ssl_verify off): give --tls-verify-upstream to "
        "check their certificates.")
    tls.add_argument("--tls-cert", metavar="PEM",
                     help="certificate (chain) to serve: ssl_certificate")
    tls.add_argument("--tls-key", metavar="PEM",
                     help="its private key: ssl_certificate_key (default: --tls-cert)")
    tls.add_argument("--tls-verify-upstream", metavar="CAFILE",
                     help="verify TLS backends' certificates against these CAs "
                          "(proxy_ssl_verify on + proxy_ssl_trusted_certificate)")
    tls.add_argument("--tls-upstream-name", metavar="NAME",
                     help="name sent as SNI to TLS backends and checked in their "
                          "certificates (proxy_ssl_name; default: the --to host when "
                          "every --to names the same one)")
    return p


def _absolute(path: str | None) -> str | None:
    """File options are relative to the current directory (the generated config
    lives in the prefix, where nginx would resolve relative names)."""
    return os.path.abspath(path) if path else None


def unreadable_file(opts: QuickOptions) -> str | None:
    """The first certificate/key/CA file that cannot be read, worded for the user."""
    for flag, path in (("--tls-cert", opts.tls_cert), ("--tls-key", opts.tls_key),
                       ("--tls-verify-upstream", opts.tls_verify_upstream)):
        if not path:
            continue
        try:
            with open(path, "rb") as fh:
                fh.read(1)
        except OSError as exc:
            return f'cannot read {flag} file "{path}": {exc.strerror or exc}'
    return None


def options_from(argv: list[str]) -> tuple[QuickOptions, argparse.Namespace]:
    ns = _parser().parse_args(argv)
    opts = QuickOptions(ns.listen, ns.to, balance=ns.balance, websocket=ns.websocket,
                        read_timeout=ns.read_timeout, access_log=ns.access_log,
                        error_log=ns.error_log, workers=ns.workers,
                        tls_cert=_absolute(ns.tls_cert),
                        tls_key=_absolute(ns.tls_key),
                        tls_verify_upstream=_absolute(ns.tls_verify_upstream),
                        tls_upstream_name=ns.tls_upstream_name)
    return opts, ns


def main(argv: list[str]) -> int:
    opts, ns = options_from(argv)
    try:
        text = build_config_text(opts)
    except ValueError as exc:
        sys.stderr.write(f"wsgate serve: {exc}\n")
        return 2
    problem = unreadable_file(opts)
    if problem is not None:
        sys.stderr.write(f"wsgate serve: {problem}\n")
        return 1
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
        from wsgate.tls import check_config
        check_config(cfg, warn=warn)     # a key not matching its certificate: [emerg]
    except ConfigError as exc:
        log.write("emerg", str(exc))
        return 1
    return int(run(cfg, prefix=prefix, conf_file=conf, log=log) or 0)
