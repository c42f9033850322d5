"""Rules WS020-WS025: configurations under which a WebSocket handshake cannot succeed.

nginx does not pass `Upgrade`/`Connection` (hop-by-hop) unless told to, sends
`Connection: close` and speaks HTTP/1.0 upstream by default; a backend then answers
the handshake with 426/400/505 instead of 101. `websocket on;` (wsgate) does all of
it and satisfies WS020-WS022.
"""

from __future__ import annotations

from wsgate.check.findings import ERROR, NOTE, Finding
from wsgate.check.rules import Position, finding
from wsgate.check.scope import Site, source
from wsgate.check.validate import CheckBuilder, position
from wsgate.check.xref import MAP_IDIOM

__all__ = ["check_breakers"]

UPGRADE_FIX = "proxy_set_header Upgrade $http_upgrade;"
CONNECTION_FIX = "proxy_set_header Connection $connection_upgrade;"
VERSION_FIX = "proxy_http_version 1.1;"


def check_breakers(b: CheckBuilder, sites: list[Site]) -> list[Finding]:
    out: list[Finding] = []
    mapped = _maps_connection_upgrade(b)
    for site in sites:
        if not site.websocket_on:
            out += _upgrade(site) + _connection(site, mapped) + _version(site)
        out += _trap(site)
    out += _map_without_empty(b)
    return out


def _severity(site: Site) -> str:
    """Error where WebSockets are meant or land (a catch-all); a note elsewhere."""
    return ERROR if site.is_websocket or site.catch_all else NOTE


def _found(rule: str, site: Site, pos: Position, msg: str, fix: str,
           severity: str | None = None) -> Finding:
    severity = severity or _severity(site)
    if severity == NOTE:
        msg = "if WebSocket clients reach it: " + msg
    return finding(rule, pos, msg, fix, severity)


def _where(site: Site) -> str:
    kind = "" if site.loc.extra.get("kind") == "prefix" else "~ "
    return f'location {kind}{site.path}' if site.path else "this location"


def _upgrade(site: Site) -> list[Finding]:
    entry = site.header("upgrade")
    if entry is not None and source(entry).strip():
        return []
    msg = (f"{_where(site)} proxies without passing the Upgrade header: it is hop-by-hop, "
           "so nginx drops it and the backend never sees a WebSocket handshake "
           "(node's ws answers 426)")
    return [_found("WS020", site, site.pos, msg, UPGRADE_FIX)]


def _connection(site: Site, mapped: bool) -> list[Finding]:
    entry = site.header("connection")
    fix = CONNECTION_FIX if mapped else f"{CONNECTION_FIX} and in http {{}}: {MAP_IDIOM}"
    if entry is None:
        msg = (f"{_where(site)} proxies without setting Connection: nginx sends "
               '"Connection: close", so the backend cannot switch protocols')
        return [_found("WS021", site, site.pos, msg, fix)]
    text = source(entry)
    if "$" in text or "upgrade" in text.lower():
        return []
    msg = f'Connection is set to "{text}", which never asks the backend to upgrade'
    return [_found("WS021", site, site.index.pos(entry, "proxy_set_header"), msg, fix)]


def _version(site: Site) -> list[Finding]:
    entry = site.entry("proxy_http_version")
    if entry is not None and entry.value == "1.1":
        return []
    severity = ERROR if site.upgrade_configured else _severity(site)
    msg = ("HTTP/1.0 to the backend (nginx's default): a WebSocket handshake needs "
           "HTTP/1.1 (Python websockets answers 505, others 400)")
    if entry is None:
        return [_found("WS022", site, site.pos, msg, VERSION_FIX, severity)]
    msg = f"proxy_http_version {entry.value}: " + msg.split(": ", 1)[1]
    return [_found("WS022", site, site.index.pos(entry, "proxy_http_version"), msg,
                   VERSION_FIX, severity)]


def _trap(site: Site) -> list[Finding]:
    """proxy_set_header of an outer level, silently replaced by this level's own."""
    levels = site.header_levels()
    if len(levels) < 2:
        return []
    (inner, own), (outer, lost_all) = levels[0], levels[1]
    kept = {e.value.name.lower() for e in own}
    lost = [e for e in lost_all if e.value.name.lower() not in kept]
    if not lost:
        return []
    names = ", ".join(f'"{e.value.name}" (line {e.line})' for e in lost)
    first = own[0]
    at = f" (line {outer.line})" if outer.line else ""
    msg = (f"proxy_set_header here replaces all of those at the {outer.kind} level"
           f"{at}: {names} are not sent from this {inner.kind}, "
           "because nginx inherits proxy_set_header only when a level sets none")
    fix = " ".join(f"proxy_set_header {e.value.name} {source(e)};" for e in lost)
    return [finding("WS025", site.index.pos(first, "proxy_set_header"), msg, fix)]


def _maps_connection_upgrade(b: CheckBuilder) -> bool:
    return any(s.stmt.name == "map" and len(s.stmt.args) == 2
               and s.stmt.args[1].lower() == "$connection_upgrade" for s in b.seen)


def _map_without_empty(b: CheckBuilder) -> list[Finding]:
    out = []
    for seen in b.seen:
        stmt = seen.stmt
        if stmt.name != "map" or len(stmt.args) != 2 or stmt.args[0].lower() != "$http_upgrade":
            continue
        items = stmt.block or ()
        if any(item.name == "" and item.quoted[:1] == (True,) for item in items):
            continue
        default = [i.words[-1] for i in items if i.name == "default" and len(i.words) == 2]
        if not default or "upgrade" not in default[-1].lower():
            continue
        msg = (f"map $http_upgrade {stmt.args[1]} has no '' entry: requests without "
               "Upgrade get the default value, so every plain request is sent "
               f'"Connection: {default[-1]}"')
        out.append(finding("WS024", position(stmt), msg, "'' close;"))
    return out
