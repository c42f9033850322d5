"""The engine's WebSocket policy: which tunnel a location gets, the Origin check at
the handshake, the log lines a frame-aware tunnel's ending deserves, and which
tunnels a graceful stop or a reload closes politely.

- `WsPlan` (one per config generation): a location's `WsOptions`, computed once per
  location and generation. The frame-aware tunnel is chosen only where something
  needs frames: pings, limits, or an access log whose format uses a `$ws_*`
  variable (wstunnel.WsOptions.from_location).
- `refused_origin(ex)`: `websocket_allow_origin` (cross-site WebSocket hijacking
  protection) for a request asking to upgrade to WebSocket.
- `TunnelInfo`: what the engine attaches to an open tunnel (`tunnel.info`): its route
  (server, location, upstream target and peer) and drain settings. `route_kept`
  tells whether a new generation still has that route; `start_drain` closes tunnels
  politely, spread per location's `websocket_drain_spread`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from wsgate.proxy.balance import addr_name
from wsgate.proxy.tunnel import Tunnel
from wsgate.proxy.wstunnel import WsOptions, WsTunnel, WsTunnelStats, drain
from wsgate.websocket.handshake import header_tokens, header_values, origin_allowed

__all__ = ["WsPlan", "TunnelInfo", "RouteKey", "refused_origin", "route_of", "route_kept",
           "start_drain", "ending_message"]

GOING_AWAY = 1001


class WsPlan:
    """Per config generation: the frame-aware tunnel's options for each location."""

    def __init__(self, formats: dict[str, tuple[Any, str]]) -> None:
        self._formats = formats  # AccessLogs.formats: name -> (template, escape)
        self._cache: dict[int, tuple[Any, WsOptions | None]] = {}

    def options(self, loc: Any) -> WsOptions | None:
        found = self._cache.get(id(loc))
        if found is None or found[0] is not loc:
            found = (loc, WsOptions.from_location(loc, session_vars=self.logs_ws_vars(loc)))
            self._cache[id(loc)] = found  # the entry keeps loc alive: ids stay unique
        return found[1]

    def logs_ws_vars(self, loc: Any) -> bool:
        """Does one of the location's access logs write a `$ws_*` variable?"""
        combined = self._formats.get("combined")
        for entry in getattr(loc, "access_log", ()) or ():
            if entry.path is None:
                continue
            template = self._formats.get(entry.format, combined or (None, ""))[0]
            if any(v.startswith("ws_") for v in getattr(template, "variables", ())):
                return True
        return False


# -- websocket_allow_origin ------------------------------------------------------------

def refused_origin(ex: Any) -> str | None:
    """The Origin to refuse with 403 ("" for a missing one), or None to go on.

    Only requests asking for a WebSocket (`Upgrade: websocket`) are checked: the
    directive protects the handshake, not plain requests to the same location."""
    allowed = getattr(ex.location, "websocket_allow_origin", ())
    if not allowed:
        return None
    headers = ex.request.headers
    if "websocket" not in (t.lower() for t in header_tokens(headers, b"upgrade")):
        return None
    origins = header_values(headers, b"origin")
    hosts = header_values(headers, b"host")
    origin = origins[0] if len(origins) == 1 else None
    if len(origins) > 1:
        return ", ".join(origins)   # ambiguous: refuse rather than pick one
    if origin_allowed(origin, allowed, hosts[0].strip() if hosts else None):
        return None
    return origin or ""


# -- routes and drain ------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class RouteKey:
    """A tunnel's route: enough to find it again in another config generation."""

    server_names: tuple[str, ...]
    kind: str
    pattern: str
    block: str | None                              # the `upstream` block, if one
    direct: tuple[Any, ...] | None                 # (host, port, unix) otherwise
    peer: str | None                               # the peer's address, as logged


@dataclass(frozen=True, slots=True)
class TunnelInfo:
    """What the engine attaches to an open tunnel (`tunnel.info`)."""

    route: RouteKey
    spread: float                                  # websocket_drain_spread
    close_timeout: float                           # websocket_close_timeout


def route_of(ex: Any, upstreams: dict[str, Any]) -> TunnelInfo:
    loc = ex.location
    pp = loc.proxy_pass
    tries = [a for group in ex.vars.upstream_groups for a in group]
    block = direct = None
    if pp is not None and pp.template is None:
        name = pp.upstream or pp.host
        if pp.unix_path is None and name in upstreams:
            block = name
        else:
            direct = (pp.host, pp.port, pp.unix_path)
    route = RouteKey(tuple(ex.server.server_names), loc.kind, loc.pattern, block, direct,
                     tries[-1].addr if tries else None)
    return TunnelInfo(route, float(getattr(loc, "websocket_drain_spread", 0.0) or 0.0),
                      float(getattr(loc, "websocket_close_timeout", 5.0) or 0.0))


def route_kept(route: RouteKey, cfg: Any) -> bool:
    """Does generation `cfg` still route this tunnel the same way (same server names,
    same location, same upstream target, and its peer still a live server there)?"""
    http = getattr(cfg, "http", None)
    if http is None:
        return False
    loc = _find_location(http.servers, route)
    if loc is None or loc.proxy_pass is None:
        return False
    pp = loc.proxy_pass
    if pp.template is not None:
        return True                       # the target is chosen per request: keep
    if route.block is not None:
        ups = http.upstreams.get(pp.upstream or pp.host)
        return (pp.unix_path is None and (pp.upstream or pp.host) == route.block
                and ups is not None and (route.peer is None or route.peer in _peers(ups)))
    return (pp.host, pp.port, pp.unix_path) == route.direct


def _find_location(servers: Iterable[Any], route: RouteKey) -> Any:
    for srv in servers:
        if tuple(srv.server_names) != route.server_names:
            continue
        found = _walk(srv.locations, route)
        if found is not None:
            return found
    return None


def _walk(locations: Iterable[Any], route: RouteKey) -> Any:
    for loc in locations:
        if loc.kind == route.kind and loc.pattern == route.pattern:
            return loc
        found = _walk(loc.locations, route)
        if found is not None:
            return found
    return None


def _peers(ups: Any) -> set[str]:
    out: set[str] = set()
    for server in ups.servers:
        if server.down:
            continue
        if server.unix_path is not None:
            out.add(f"unix:{server.unix_path}")
            continue
        port = server.port if server.port is not None else 80
        out.update(addr_name(a, port) for a in server.addresses or (server.host,))
    return out


def start_drain(tunnels: Iterable[Tunnel], reason: str) -> list[asyncio.Task[Any]]:
    """Close frame-aware `tunnels` politely (Close 1001 both ways), each location's
    tunnels spread over its websocket_drain_spread; returns the drain tasks."""
    groups: dict[tuple[float, float], list[Tunnel]] = {}
    for tunnel in tunnels:
        if not isinstance(tunnel, WsTunnel) or tunnel.stats is not None:
            continue
        info = getattr(tunnel, "info", None)
        key = (info.spread, info.close_timeout) if info is not None else (0.0, 5.0)
        groups.setdefault(key, []).append(tunnel)
    loop = asyncio.get_running_loop()
    return [loop.create_task(drain(todo, spread, timeout, code=GOING_AWAY, reason=reason))
            for (spread, timeout), todo in groups.items()]


# -- log lines for a frame-aware tunnel's ending ----------------------------------------

def ending_message(stats: Any, side: str | None) -> tuple[str, str] | None:
    """(level, message) for the error log when a frame-aware tunnel ended on a
    protocol error, a size limit or a ping timeout; None otherwise. Faults of the
    client are [info] (as nginx logs client errors), of the upstream [error]."""
    if not isinstance(stats, WsTunnelStats):
        return None
    who = side or "peer"
    level = "error" if side == "upstream" else "info"
    if stats.how == "protocol_error":
        return level, f"{who} sent invalid WebSocket data: {stats.error}"
    if stats.how == "too_big":
        return level, f"{who} sent too big WebSocket data: {stats.error}"
    if stats.how == "ping_timeout":
        return level, f"{who} did not answer WebSocket ping"
    return None
