"""Rules WS033 and WS036: balancing in front of Socket.IO, which needs sticky sessions.

Socket.IO (Engine.IO) opens every session with HTTP long-polling: a handshake GET
whose response issues the session id (`sid`), then GETs and POSTs that carry it,
then a WebSocket upgrade that carries it too. Every one of those requests must
reach the process that issued the sid; any other answers 400 "Session ID unknown".
The browser tests (tests/e2e/test_socketio_sticky.py) show it through wsgate with
two Socket.IO processes:

* round robin (and least_conn, random: none is tied to the client) breaks sessions;
* `hash $arg_sid` is no stickiness: the handshake has no sid yet, so it hashes ""
  to one backend while the sid that backend issues hashes anywhere (the same holds
  for Socket.IO's `io` cookie, which the handshake's response sets);
* `ip_hash`, or `hash` on an id the client sends on every request
  (`io({query: {client: id}})` + `hash $arg_client consistent;`), keeps them.

A client started with `transports: ["websocket"]` skips polling and needs no
stickiness; `check` cannot see the client, so the fix names it first.
"""

from __future__ import annotations

import re

from wsgate.check.findings import Finding
from wsgate.check.rules import finding
from wsgate.check.scope import Site
from wsgate.config.build import Level

__all__ = ["check_sticky", "is_socketio", "SESSION_VARYING"]

# Where a location serves Socket.IO: its default path, in a prefix or a regex.
_SOCKETIO = re.compile(r"socket\\?\.io", re.IGNORECASE)
# Variables whose value differs between the requests of one Engine.IO session, so a
# `hash` on them is not sticky. Absent from the handshake: the session id and
# Socket.IO's `io` cookie; different per request: the rest.
SESSION_VARYING = frozenset({
    "arg_sid", "cookie_io", "request_uri", "args", "query_string", "arg_t",
    "arg_transport", "request", "request_id", "request_method", "msec", "connection",
    "connection_requests", "content_length", "content_type", "http_content_length",
    "http_content_type", "http_upgrade", "connection_upgrade", "time_local",
    "time_iso8601", "http_cookie"})
_BY_ADDRESS = ("$remote_addr", "$binary_remote_addr")
_VAR = re.compile(r"\$(?:\{(\w+)\}|(\w+))")
_BALANCER_WORDS = {"round_robin": "round robin (no balancing directive)",
                   "least_conn": "least_conn", "random": "random"}

CLIENT_FIXES = ('best, on the client: io(URL, {transports: ["websocket"]}) '
                "(no polling, so no stickiness needed); or, in the upstream: "
                "hash $arg_client consistent; with io(URL, {query: {client: ID}}) sending "
                "a stable id on every request")


def is_socketio(site: Site) -> bool:
    return bool(_SOCKETIO.search(site.path))


def check_sticky(site: Site, ups: Level) -> list[Finding]:
    """WS036 when the upstream is not sticky, WS033 when it sticks by address."""
    live = [s for s in ups.extra["servers"] if not s.backup and not s.down]
    if len(live) < 2:
        return []
    balancer, args = ups.extra["balancer"]
    if balancer == "ip_hash" or (balancer == "hash" and args[0] in _BY_ADDRESS):
        return [_by_address(site, ups, balancer, args)]
    if balancer == "hash":
        varying = _varying(args[0])
        return [_hash_varies(site, ups, args, varying)] if varying else []
    return [_not_sticky(site, ups, balancer, len(live))]


def _varying(key: str) -> list[str]:
    names = [(m.group(1) or m.group(2)).lower() for m in _VAR.finditer(key)]
    return [f"${n}" for n in names if n in SESSION_VARYING]


def _upstream(ups: Level) -> str:
    return f'upstream "{ups.extra["name"]}" (line {ups.line})'


def _not_sticky(site: Site, ups: Level, balancer: str, n: int) -> Finding:
    how = _BALANCER_WORDS.get(balancer, balancer)
    msg = (f"Socket.IO long-polling needs sticky sessions: {site.path} is proxied to "
           f"{_upstream(ups)}, which spreads requests over {n} servers by {how}; a "
           "session's requests after the handshake reach a process that did not issue "
           'its sid and get 400 "Session ID unknown"')
    fix = CLIENT_FIXES + "; or ip_hash; when clients are not behind one NAT"
    return finding("WS036", site.pos, msg, fix)


def _hash_varies(site: Site, ups: Level, args: tuple[str, ...], varying: list[str]) -> Finding:
    msg = (f"Socket.IO long-polling needs sticky sessions: {_upstream(ups)} hashes on "
           f"\"{args[0]}\", which is not the same for every request of a session "
           f"({', '.join(varying)})")
    if {"$arg_sid", "$cookie_io"} & set(varying):
        msg += ("; the polling handshake carries no sid or io cookie yet (its response "
                "issues them), so it hashes to one backend and the session's next "
                "requests to another")
    msg += ', which answers 400 "Session ID unknown"'
    fix = CLIENT_FIXES.replace("in the upstream: hash", "instead of this key: hash")
    return finding("WS036", site.pos, msg, fix + "; or ip_hash; when clients are not "
                   "behind one NAT")


def _by_address(site: Site, ups: Level, balancer: str, args: tuple[str, ...]) -> Finding:
    how = ("ip_hash, which keys IPv4 clients on the first three octets of their "
           "address" if balancer == "ip_hash" else f"hash {args[0]}")
    msg = (f"{_upstream(ups)} keeps Socket.IO sessions ({site.path}) sticky by {how}: "
           "sessions work, but every client behind one NAT, corporate proxy or CDN "
           "(or, with ip_hash, one /24 network) lands on the same backend")
    fix = CLIENT_FIXES + "; or keep it, if clients reach the proxy from many addresses"
    return finding("WS033", site.index.pos(ups, "upstream"), msg, fix)
