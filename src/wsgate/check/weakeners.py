"""Rules WS030-WS036: configurations under which WebSockets work badly, or not at all.

Each rule looks at one proxying location (a `Site`); thresholds and heuristics are
documented with the rule in docs/check-rules.md. Balancing in front of Socket.IO
(WS033, WS036) has its own module, sticky.py.
"""

from __future__ import annotations

from wsgate.check.findings import Finding
from wsgate.check.rules import finding
from wsgate.check.scope import STREAM_PATH, Site, source
from wsgate.check.sticky import check_sticky, is_socketio
from wsgate.check.validate import CheckBuilder

__all__ = ["check_weakeners", "HEARTBEATS"]

# (seconds between heartbeats on an idle connection, who). nginx re-arms
# proxy_read_timeout whenever the tunnel moves data either way
# (ngx_http_upstream_process_upgraded), so an idle tunnel survives as long as the
# timeout is longer than the heartbeat interval.
HEARTBEATS = ((25.0, "Socket.IO (pingInterval 25 s)"),
              (30.0, "Jupyter Server (ws_ping_interval 30 s)"),
              (20.0, "Python websockets (ping_interval 20 s)"))


def check_weakeners(b: CheckBuilder, sites: list[Site]) -> list[Finding]:
    out: list[Finding] = []
    for site in sites:
        out += _forced_upgrade(site) + _socketio(site)
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
    msg = (f'Connection "{text}" is sent on every request, plain HTTP too: requests '
           'without "Upgrade" reach the backend marked as upgrade requests; nginx\'s '
           "documented idiom asks for an upgrade only when the client did")
    empty = "''" if keepalive else "close"
    if keepalive:
        msg += (f'; upstream "{ups.extra["name"]}" sets keepalive, so '  # type: ignore[union-attr]
                "plain requests should send no Connection header at all")
    fix = ("proxy_set_header Connection $connection_upgrade; with, in http {}: "
           f"map $http_upgrade $connection_upgrade {{ default upgrade; '' {empty}; }}")
    return [finding("WS030", site.index.pos(entry, "proxy_set_header"), msg, fix)]


def _read_timeout(site: Site) -> list[Finding]:
    entry = site.entry("proxy_read_timeout")
    if entry is None or site.value("websocket_ping_interval", 0.0):
        return []
    timeout = float(entry.value)
    cut = [who for limit, who in HEARTBEATS if timeout <= limit]
    if not cut:
        return []
    msg = (f"proxy_read_timeout {timeout:g}s closes a WebSocket tunnel after that long "
           "with no data in either direction, which is no longer than the heartbeat "
           f"interval of {', '.join(cut)}; no websocket_ping_interval is set")
    fix = ("proxy_read_timeout 3600s; (or a heartbeat more frequent than the timeout; "
           "under wsgate: websocket_ping_interval 20s;)")
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


def _socketio(site: Site) -> list[Finding]:
    """Polling needs stickiness, WebSocket headers or not (sticky.py)."""
    ups = site.upstream()
    return check_sticky(site, ups) if ups is not None and is_socketio(site) else []


def _balancing(site: Site) -> list[Finding]:
    ups = site.upstream()
    if ups is None or is_socketio(site):   # there least_conn would break sessions too
        return []
    balancer = ups.extra["balancer"][0]
    name = ups.extra["name"]
    live = [s for s in ups.extra["servers"] if not s.backup and not s.down]
    if balancer == "round_robin" and len(live) >= 2:
        msg = (f'upstream "{name}" balances long-lived WebSocket connections round robin: '
               "new handshakes are spread by weight however many tunnels each backend "
               "already holds, so a restarted backend stays under-used until old "
               "tunnels close")
        fix = "least_conn; (with zone NAME 64k; when nginx runs several worker processes)"
        return [finding("WS034", site.index.pos(ups, "upstream"), msg, fix)]
    return []


def _host(site: Site) -> list[Finding]:
    if site.header("host") is not None:
        return []
    target = _proxy_host(site)
    msg = (f'Host is not forwarded: the backend sees "Host: {target}" (nginx\'s '
           "$proxy_host), not the browser's; backends that compare Origin with Host "
           "(Tornado and Jupyter, Rails Action Cable, Go's gorilla/websocket) refuse the "
           "handshake")
    return [finding("WS035", site.pos, msg, "proxy_set_header Host $host;")]


def _proxy_host(site: Site) -> str:
    pp = site.proxy_pass.value
    host = getattr(pp, "host", None)
    if host is None:
        return "the proxy_pass host"
    port = getattr(pp, "port", None)
    return host if port in (None, 80) else f"{host}:{port}"
