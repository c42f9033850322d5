"""The targets: what runs between the load generator and the echo backend.

Each is configured the way its own documentation says for WebSockets, with access
logs off everywhere (the fairness rule; error logs stay on, at warn). nginx and
wsgate get the very same nginx.conf. `direct` means no proxy at all: the load
generator talks to the backend, which shows what the harness itself can push.

For the TLS workloads a target is started with `tls` (the bench's certificate, see
bench/tlsfiles.py): its one listener then terminates TLS 1.3 and proxies to the same
plain ws:// backend. A target that cannot terminate TLS says why (`tls_unavailable`)
and its TLS rows read "n/a".
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from bench import procs
from bench.tlsfiles import TlsFiles

BENCH_DIR = Path(__file__).resolve().parent
NODE_DIR = BENCH_DIR / "node"

# nginx keeps 1/16 of worker_connections in reserve (it starts closing "reusable"
# connections below that), so one worker holds at most ~9,375 tunnels (2 connections
# each) with worker_connections 20000 -- the most the 20,000-file hard limit allows.
NGINX_WORKER_CONNECTIONS = 20000


class StartError(Exception):
    """A target did not come up: the message says why (its stderr's last lines)."""


@dataclass(frozen=True)
class Launch:
    argv: list[str]
    env: dict[str, str] | None = None
    cwd: Path | None = None


# (prefix, port, backend port, TLS files or None for plain) -> Launch
Launcher = Callable[[Path, int, int, "TlsFiles | None"], Launch]


def _tls_always() -> str | None:
    return None


@dataclass(frozen=True)
class Target:
    name: str
    what: str  # one line for the README/report: how it is configured
    launch: Launcher | None
    # Why this target cannot terminate TLS, or None if it can (asked once per run).
    tls_check: Callable[[], str | None] = _tls_always

    @property
    def proxied(self) -> bool:
        return self.launch is not None

    def tls_unavailable(self) -> str | None:
        if self.launch is None:
            return "no proxy: nothing terminates TLS"
        return self.tls_check()


# Every TLS target offers TLS 1.3 only, so all negotiate the same protocol and (with
# the load generator offering one suite) the same cipher; wsload reports what it got.
def nginx_tls(tls: TlsFiles | None) -> tuple[str, str]:
    """(listen parameter, ssl_* lines) for the server block: nothing for plain."""
    if tls is None:
        return "", ""
    return " ssl", f"""
        ssl_certificate {tls.cert};
        ssl_certificate_key {tls.key};
        ssl_protocols TLSv1.3;
"""


def nginx_conf(prefix: Path, port: int, backend: int, workers: str, extra: str = "",
               tls: TlsFiles | None = None) -> str:
    """The classic WebSocket idiom from nginx's docs; wsgate reads the same file.

    The map's '' value is '' rather than close, with `keepalive` in the upstream: the
    documented way (ngx_http_upstream_module, "keepalive") to reuse backend
    connections for plain requests, as HAProxy, Caddy and node do by default.
    Upgraded connections are never returned to that pool. With `tls` the listener is
    `listen ... ssl` with the bench's certificate, TLS 1.3 only (ssl_* defaults
    otherwise: session cache none, tickets on)."""
    ssl, ssl_lines = nginx_tls(tls)
    return f"""daemon off;
master_process on;
worker_processes {workers};
worker_rlimit_nofile 20000;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;

events {{
    worker_connections {NGINX_WORKER_CONNECTIONS};
}}

http {{
    access_log off;

    map $http_upgrade $connection_upgrade {{
        default upgrade;
        ''      '';
    }}

    upstream backend {{
        server 127.0.0.1:{backend};
        keepalive 32;
    }}

    server {{
        listen 127.0.0.1:{port}{ssl};
{ssl_lines}
        location / {{
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            proxy_set_header Host $host;
            proxy_read_timeout 3600s;{extra}
        }}
    }}
}}
"""


def _nginx_like(binary: Callable[[], list[str]], workers: str, extra: str = "") -> Launcher:
    def launch(prefix: Path, port: int, backend: int, tls: TlsFiles | None) -> Launch:
        conf = nginx_conf(prefix, port, backend, workers, extra, tls)
        (prefix / "nginx.conf").write_text(conf)
        return Launch(binary() + ["-p", f"{prefix}/", "-c", str(prefix / "nginx.conf")])
    return launch


def nginx_binary() -> list[str]:
    return [shutil.which("nginx") or "/usr/sbin/nginx"]


def wsgate_binary() -> list[str]:
    exe = Path(sys.executable).parent / "wsgate"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "wsgate"]


def wsgate_serve(prefix: Path, port: int, backend: int, tls: TlsFiles | None) -> Launch:
    extra = ["--tls-cert", str(tls.cert), "--tls-key", str(tls.key)] if tls else []
    return Launch(wsgate_binary() + ["serve", "--listen", f"127.0.0.1:{port}",
                                     "--to", f"127.0.0.1:{backend}", *extra])


_SERVE_TLS: list[str | None] = []


def wsgate_serve_tls() -> str | None:
    """Quick mode terminates TLS only if this wsgate's `serve` has --tls-cert."""
    if not _SERVE_TLS:
        try:
            out = subprocess.run(wsgate_binary() + ["serve", "--help"], capture_output=True,
                                 text=True, timeout=30).stdout
        except (OSError, subprocess.TimeoutExpired) as exc:
            out = str(exc)
        _SERVE_TLS.append(None if "--tls-cert" in out and "--tls-key" in out
                          else "`wsgate serve` has no --tls-cert/--tls-key")
    return _SERVE_TLS[0]


def haproxy(prefix: Path, port: int, backend: int, tls: TlsFiles | None) -> Launch:
    """HAProxy's docs: WebSockets need nothing in HTTP mode but `timeout tunnel`;
    TLS is `bind ... ssl crt FILE` (certificate and key in one PEM)."""
    ssl = f" ssl crt {tls.pem} ssl-min-ver TLSv1.3" if tls else ""
    cfg = f"""global
    maxconn 9950

defaults
    mode http
    timeout connect 5s
    timeout client 3600s
    timeout server 3600s
    timeout tunnel 3600s

frontend fe
    bind 127.0.0.1:{port}{ssl}
    default_backend be

backend be
    server s1 127.0.0.1:{backend}
"""
    (prefix / "haproxy.cfg").write_text(cfg)
    return Launch(["haproxy", "-db", "-f", str(prefix / "haproxy.cfg")])


def caddy(prefix: Path, port: int, backend: int, tls: TlsFiles | None) -> Launch:
    """Caddy's docs: `reverse_proxy` handles WebSockets with no extra settings; TLS
    from files is the `tls CERT KEY` directive (auto-HTTPS stays off)."""
    site = f"https://:{port}" if tls else f"http://127.0.0.1:{port}"
    tls_lines = (f"    tls {tls.cert} {tls.key} {{\n        protocols tls1.3\n    }}\n"
                 if tls else "")
    cfg = f"""{{
    admin off
    auto_https off
}}

{site} {{
    bind 127.0.0.1
{tls_lines}    reverse_proxy 127.0.0.1:{backend}
}}
"""
    (prefix / "Caddyfile").write_text(cfg)
    env = dict(os.environ, HOME=str(prefix), XDG_DATA_HOME=str(prefix / "data"),
               XDG_CONFIG_HOME=str(prefix / "config"))
    return Launch(["caddy", "run", "--config", str(prefix / "Caddyfile"),
                   "--adapter", "caddyfile"], env=env)


def node_http_proxy(prefix: Path, port: int, backend: int, tls: TlsFiles | None) -> Launch:
    """http-proxy's README: `ws: true` plus `server.on('upgrade', proxy.ws)`; with TLS
    the server is node's https.createServer (TLS 1.3 only) and the rest the same."""
    extra = [str(tls.cert), str(tls.key)] if tls else []
    return Launch(["node", str(NODE_DIR / "proxy.js"), str(port), str(backend), *extra],
                  cwd=NODE_DIR)


TARGETS: dict[str, Target] = {t.name: t for t in [
    Target("direct", "no proxy: the load generator talks to the echo backend", None),
    Target("wsgate-1", "`wsgate -p PREFIX -c nginx.conf`, the nginx.conf below, worker_processes 1",
           _nginx_like(wsgate_binary, "1")),
    Target("wsgate-auto", "same, worker_processes auto", _nginx_like(wsgate_binary, "auto")),
    # A ping interval no run reaches: it only switches on the frame-aware tunnel, whose
    # cost per message issue 6 bounds at 1.5x the plain tunnel's (wsgate-1).
    Target("wsgate-frames", "wsgate-1 plus `websocket_ping_interval 30s;` (frame-aware tunnel)",
           _nginx_like(wsgate_binary, "1", "\n            websocket_ping_interval 30s;")),
    Target("wsgate-serve", "`wsgate serve --listen 127.0.0.1:PORT --to 127.0.0.1:BACKEND`",
           wsgate_serve, wsgate_serve_tls),
    Target("nginx-1", "nginx 1.22 (Debian nginx-light), the nginx.conf below, worker_processes 1",
           _nginx_like(nginx_binary, "1")),
    Target("nginx-auto", "same, worker_processes auto", _nginx_like(nginx_binary, "auto")),
    Target("haproxy", "HAProxy 2.6, mode http, `timeout tunnel 3600s`, maxconn 9950", haproxy),
    Target("caddy", "Caddy 2.6, `reverse_proxy` (admin and auto-HTTPS off)", caddy),
    Target("node-http-proxy", "node 20 + http-proxy, `ws: true` and the upgrade handler",
           node_http_proxy),
]}

BASELINE = "nginx-1"


@dataclass
class Running:
    """A started target: its process (session leader) and the port to load."""
    target: Target
    port: int
    proc: subprocess.Popen[bytes] | None
    prefix: Path

    @property
    def sid(self) -> int | None:
        return self.proc.pid if self.proc else None


def _tail(path: Path, lines: int = 3) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return " | ".join(line.strip() for line in text[-lines:])


def start(target: Target, prefix: Path, backend: int, timeout: float = 15.0,
          tls: TlsFiles | None = None) -> Running:
    """Start `target` in front of the backend (terminating TLS with `tls`, which the
    caller has checked it can); StartError says why it did not come up."""
    if target.launch is None:
        return Running(target, backend, None, prefix)
    prefix.mkdir(parents=True, exist_ok=True)
    port = procs.free_port()
    launch = target.launch(prefix, port, backend, tls)
    if shutil.which(launch.argv[0]) is None and not Path(launch.argv[0]).exists():
        raise StartError(f"{launch.argv[0]} is not installed")
    log = prefix / "stderr.log"
    with open(log, "wb") as err:
        proc = procs.spawn(launch.argv, cwd=launch.cwd or prefix, env=launch.env,
                           stdout=err, stderr=subprocess.STDOUT)
    if procs.wait_port(port, proc, timeout):
        return Running(target, port, proc, prefix)
    code = proc.poll()
    procs.stop(proc)
    why = _tail(log) or _tail(prefix / "error.log") or "no output"
    state = f"exited with status {code}" if code is not None else f"not listening after {timeout:.0f}s"
    raise StartError(f"{state}: {why}")


def stop(running: Running) -> None:
    if running.proc is not None:
        procs.stop(running.proc)
