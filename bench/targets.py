"""The targets: what runs between the load generator and the echo backend.

Each is configured the way its own documentation says for WebSockets, with access
logs off everywhere (the fairness rule; error logs stay on, at warn). nginx and
wsgate get the very same nginx.conf. `direct` means no proxy at all: the load
generator talks to the backend, which shows what the harness itself can push.
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


@dataclass(frozen=True)
class Target:
    name: str
    what: str  # one line for the README/report: how it is configured
    launch: Callable[[Path, int, int], Launch] | None  # (prefix, port, backend) -> Launch

    @property
    def proxied(self) -> bool:
        return self.launch is not None


def nginx_conf(prefix: Path, port: int, backend: int, workers: str, extra: str = "") -> str:
    """The classic WebSocket idiom from nginx's docs; wsgate reads the same file.

    The map's '' value is '' rather than close, with `keepalive` in the upstream: the
    documented way (ngx_http_upstream_module, "keepalive") to reuse backend
    connections for plain requests, as HAProxy, Caddy and node do by default.
    Upgraded connections are never returned to that pool."""
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
        listen 127.0.0.1:{port};

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


def _nginx_like(binary: Callable[[], list[str]], workers: str,
                extra: str = "") -> Callable[[Path, int, int], Launch]:
    def launch(prefix: Path, port: int, backend: int) -> Launch:
        (prefix / "nginx.conf").write_text(nginx_conf(prefix, port, backend, workers, extra))
        return Launch(binary() + ["-p", f"{prefix}/", "-c", str(prefix / "nginx.conf")])
    return launch


def nginx_binary() -> list[str]:
    return [shutil.which("nginx") or "/usr/sbin/nginx"]


def wsgate_binary() -> list[str]:
    exe = Path(sys.executable).parent / "wsgate"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "wsgate"]


def wsgate_serve(prefix: Path, port: int, backend: int) -> Launch:
    return Launch(wsgate_binary() + ["serve", "--listen", f"127.0.0.1:{port}",
                                     "--to", f"127.0.0.1:{backend}"])


def haproxy(prefix: Path, port: int, backend: int) -> Launch:
    """HAProxy's docs: WebSockets need nothing in HTTP mode but `timeout tunnel`."""
    cfg = f"""global
    maxconn 9950

defaults
    mode http
    timeout connect 5s
    timeout client 3600s
    timeout server 3600s
    timeout tunnel 3600s

frontend fe
    bind 127.0.0.1:{port}
    default_backend be

backend be
    server s1 127.0.0.1:{backend}
"""
    (prefix / "haproxy.cfg").write_text(cfg)
    return Launch(["haproxy", "-db", "-f", str(prefix / "haproxy.cfg")])


def caddy(prefix: Path, port: int, backend: int) -> Launch:
    """Caddy's docs: `reverse_proxy` handles WebSockets with no extra settings."""
    cfg = f"""{{
    admin off
    auto_https off
}}

http://127.0.0.1:{port} {{
    bind 127.0.0.1
    reverse_proxy 127.0.0.1:{backend}
}}
"""
    (prefix / "Caddyfile").write_text(cfg)
    env = dict(os.environ, HOME=str(prefix), XDG_DATA_HOME=str(prefix / "data"),
               XDG_CONFIG_HOME=str(prefix / "config"))
    return Launch(["caddy", "run", "--config", str(prefix / "Caddyfile"),
                   "--adapter", "caddyfile"], env=env)


def node_http_proxy(prefix: Path, port: int, backend: int) -> Launch:
    """http-proxy's README: `ws: true` plus `server.on('upgrade', proxy.ws)`."""
    return Launch(["node", str(NODE_DIR / "proxy.js"), str(port), str(backend)], cwd=NODE_DIR)


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
           wsgate_serve),
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


def start(target: Target, prefix: Path, backend: int, timeout: float = 15.0) -> Running:
    """Start `target` in front of the backend; StartError says why it did not come up."""
    if target.launch is None:
        return Running(target, backend, None, prefix)
    prefix.mkdir(parents=True, exist_ok=True)
    port = procs.free_port()
    launch = target.launch(prefix, port, backend)
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
