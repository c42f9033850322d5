"""Rules WS030-WS035: configurations under which WebSockets work, but badly.

Each rule looks at one proxying location (a `Site`); thresholds and heuristics are
documented with the rule in docs/check-rules.md.
"""

from __future__ import annotations

from wsgate.check.findings import WARNING, Finding
from wsgate.check.rules import finding
from wsgate.check.scope import STREAM_PATH, Site, source
from wsgate.check.validate import CheckBuilder

__all__ = ["check_weakeners", "HEARTBEATS"]

# (seconds of silence a healthy idle connection can show, who) -- the proxy's idle
# timeout must be longer than each, or it cuts live-but-quiet tunnels.
HEARTBEATS = ((45.0, "Socket.IO (25 s ping + 20 s timeout)"), (30.0, "Jupyter (30 s)"),
              (20.0, "Python websockets (20 s ping)"))


def check_weakeners(b: CheckBuilder, sites: list[Site]) -> list[Finding]:
    out: list[Finding] = []
    for site in sites:
        out += _forced_upgrade(site)
        if site.is_websocket:
            out += _read_timeout(site) + _balancing(site) + _host(site)
        out += _buffering(site)
    return out


def _forced_upgrade(site: Site) -> list[Finding]:
    entry = site.header("connection")
    if entry is None or site.websocket_on:
        return []
    text = source(entry)
    if "$" in text or "upgrade" not in text.lower():
        return []
    ups = site.upstream()
    keepalive = ups is not None and "keepalive" in ups.values
    msg = (f'Connection "{text}" is sent on every request, plain HTTP too: the backend is '
           "asked to upgrade requests that are not WebSockets, and upstream keep-alive "
           "cannot work")
    severity = WARNING if keepalive else None
    if keepalive:
        msg += f' (upstream "{ups.extra["name"]}" sets keepalive)'  # type: ignore[union-attr]
    fix = ("proxy_set_header Connection $connection_upgrade; with, in http {}: "
           "map $http_upgrade $connection_upgrade { default upgrade; '' close; }")
    return [finding("WS030", site.index.pos(entry, "proxy_set_header"), msg, fix, severity)]


def _read_timeout(site: Site) -> list[Finding]:
    entry = site.entry("proxy_read_timeout")
    if entry is None or site.value("websocket_ping_interval", 0.0):
        return []
    timeout = float(entry.value)
    cut = [who for limit, who in HEARTBEATS if timeout <= limit]
    if not cut:
        return []
    msg = (f"proxy_read_timeout {timeout:g}s closes an idle WebSocket tunnel at or before "
           f"the heartbeat of {', '.join(cut)} arrives, and no websocket_ping_interval is set")
    fix = "proxy_read_timeout 3600s; (or, under wsgate: websocket_ping_interval 20s;)"
    return [finding("WS031", site.index.pos(entry, "proxy_read_timeout"), msg, fix)]


def _buffering(site: Site) -> list[Finding]:
    if not STREAM_PATH.search(site.path) or site.websocket_on:
        return []
    entry = site.entry("proxy_buffering")
    if entry is not None and not entry.value:
        return []
    where = "" if entry is not None else " (nginx's default)"
    msg = (f"proxy_buffering is on{where} in front of {site.path}, which looks like a "
           "streaming endpoint (SSE/events/stream): responses are held in the buffer "
           "and reach the client in bursts")
    pos = site.index.pos(entry, "proxy_buffering") if entry is not None else site.pos
    return [finding("WS032", pos, msg, "proxy_buffering off;")]


def _balancing(site: Site) -> list[Finding]:
    ups = site.upstream()
    if ups is None:
        return []
    balancer = ups.extra["balancer"][0]
    stmt_pos = site.index.pos(ups, "upstream")
    name = ups.extra["name"]
    if balancer == "ip_hash" and "socket.io" in site.path.lower():
        msg = (f'upstream "{name}" uses ip_hash in front of Socket.IO ({site.path}): '
               "every client behind one NAT or corporate proxy lands on the same backend")
        return [finding("WS033", stmt_pos, msg,
                        "hash $cookie_io consistent; (or hash $arg_sid consistent;)")]
    live = [s for s in ups.extra["servers"] if not s.backup and not s.down]
    if balancer == "round_robin" and len(live) >= 2:
        msg = (f'upstream "{name}" balances long-lived WebSocket connections round robin: '
               "new handshakes are spread evenly however many tunnels each backend "
               "already holds, so a restarted backend stays empty")
        return [finding("WS034", stmt_pos, msg, "least_conn;")]
    return []


def _host(site: Site) -> list[Finding]:
    if site.header("host") is not None:
        return []
    target = _proxy_host(site)
    msg = (f'Host is not forwarded: the backend sees "Host: {target}" (nginx\'s '
           "$proxy_host), not the browser's; backends that compare Origin with Host "
           "(Socket.IO, Django Channels, Rails Action Cable, Jupyter) refuse the handshake")
    return [finding("WS035", site.pos, msg, "proxy_set_header Host $host;")]


def _proxy_host(site: Site) -> str:
    pp = site.proxy_pass.value
    host = getattr(pp, "host", None)
    if host is None:
        return "the proxy_pass host"
    port = getattr(pp, "port", None)
    return host if port in (None, 80) else f"{host}:{port}"
