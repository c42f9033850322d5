"""Server and location selection: pure functions over the config model, nginx's rules.

Server choice (ngx_http_find_virtual_server): among the servers listening on the
address a connection arrived on, an exact `server_name` wins, then the longest
`*.wildcard` (leading), then the longest `wildcard.*` (trailing), then the first
matching `~regex` in config order; with no match the address's default server
(`default_server`, else the first server listing the address) answers.

Location choice (ngx_http_core_find_location), recursively per nesting level:
an `=` location equal to the URI ends the search; otherwise the longest matching
prefix is remembered and its nested locations are searched the same way; unless
that prefix is `^~`, the level's regex locations (`~`, `~*`) are then tried in
config order and the first match (searched again for nested locations) wins.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from dataclasses import dataclass
from typing import Any

from wsgate.config.regex import compile_nginx_regex
from wsgate.http.events import fast_init

__all__ = ["AddressServers", "Match", "find_server", "find_location", "named_location",
           "server_name_matches"]

_PREFIX_KINDS = ("prefix", "prefix_nosearch")
_REGEX_KINDS = ("regex", "regex_caseless")


@dataclass(frozen=True, slots=True)
class AddressServers:
    """The servers of one listen address, the default first-class."""

    servers: tuple[Any, ...]
    default: Any
    # no server here has a ~regex name (whose match would set captures)
    plain_names: bool = dataclasses.field(init=False)

    def __post_init__(self) -> None:
        plain = not any(name.startswith("~") for srv in self.servers
                        for name in srv.server_names)
        object.__setattr__(self, "plain_names", plain)


@fast_init            # made per request
@dataclass(frozen=True, slots=True)
class Match:
    """A selected location and the regex match that selected it (if any)."""

    location: Any
    regex_match: re.Match[str] | None = None
    redirect_slash: bool = False   # nginx's auto_redirect: 301 to the URI plus "/"


def _wildcard_len(name: str, host: str) -> int:
    """Length of a matching wildcard name, or -1 (nginx prefers the longest)."""
    if name.startswith("*."):
        return len(name) if host.endswith(name[1:]) else -1
    if name.startswith("."):      # ".example.com" = exact + "*.example.com"
        return len(name) if host == name[1:] or host.endswith(name) else -1
    if name.endswith(".*"):
        return len(name) if host.startswith(name[:-1]) else -1
    return -1


def server_name_matches(names: tuple[str, ...], host: str) -> tuple[int, int, Any]:
    """(rank, length, regex match) of the best name of one server for `host`.

    rank 0 exact, 1 leading wildcard, 2 trailing wildcard, 3 regex, 9 none.
    """
    best: tuple[int, int, Any] = (9, 0, None)
    for name in names:
        lname = name.lower()
        if lname == host and not lname.startswith("~"):
            return (0, len(name), None)
        if lname.startswith(("*.", ".")):
            n = _wildcard_len(lname, host)
            if n >= 0 and (1, -n) < (best[0], -best[1]):
                best = (1, n, None)
        elif lname.endswith(".*"):
            n = _wildcard_len(lname, host)
            if n >= 0 and (2, -n) < (best[0], -best[1]):
                best = (2, n, None)
        elif name.startswith("~") and best[0] > 3:
            m = _server_regex(name[1:]).search(host)
            if m is not None:
                best = (3, 0, m)
    return best


@functools.lru_cache(maxsize=256)
def _server_regex(pattern: str) -> re.Pattern[str]:
    """nginx (PCRE) syntax, e.g. `(?<name>...)`, compiled once per pattern."""
    return compile_nginx_regex(pattern, False)


def find_server(group: AddressServers, host: str | None) -> tuple[Any, Any]:
    """The server for `host` on this address and the server_name regex match."""
    if not host:
        return group.default, None
    servers = group.servers
    if len(servers) == 1 and servers[0] is group.default and group.plain_names:
        return group.default, None    # the only server answers; no regex to capture
    host = host.lower()
    best: tuple[int, int, int, Any, Any] = (9, 0, 0, None, None)
    for index, srv in enumerate(group.servers):
        rank, length, m = server_name_matches(srv.server_names, host)
        if rank == 9:
            continue
        key = (rank, -length if rank < 3 else index)
        if key < (best[0], best[1]):
            best = (rank, key[1], index, srv, m)
    if best[3] is None:
        return group.default, None
    return best[3], best[4]


def _static(locations: tuple[Any, ...], uri: str) -> tuple[Any, bool]:
    """(location, exact) of the exact or longest-prefix match at one level."""
    best = None
    for loc in locations:
        if loc.kind == "exact" and loc.pattern == uri:
            return loc, True
        if loc.kind in _PREFIX_KINDS and uri.startswith(loc.pattern):
            if best is None or len(loc.pattern) > len(best.pattern):
                best = loc
    return best, False


def _slash_redirect(locations: tuple[Any, ...], uri: str) -> Any:
    """A prefix location `uri + "/"` with proxy_pass: nginx redirects to it."""
    for loc in locations:
        if (loc.kind in _PREFIX_KINDS and loc.pattern == uri + "/"
                and getattr(loc, "proxy_pass", None) is not None):
            return loc
    return None


def _find(locations: tuple[Any, ...], uri: str) -> tuple[Match | None, bool]:
    """One nesting level of ngx_http_core_find_location: (match, final)."""
    loc, exact = _static(locations, uri)
    if exact:
        return Match(loc), True
    found: Match | None = Match(loc) if loc is not None else None
    noregex = loc is not None and loc.kind == "prefix_nosearch"
    if loc is not None and loc.locations:
        inner, final = _find(loc.locations, uri)
        if inner is not None:
            found = inner
        if final:
            return found, True
    if not noregex:
        for rloc in locations:
            if rloc.kind not in _REGEX_KINDS:
                continue
            m = rloc.regex.search(uri)
            if m is None:
                continue
            inner, _ = _find(rloc.locations, uri) if rloc.locations else (None, True)
            if inner is not None:
                return Match(inner.location, inner.regex_match or m), True
            return Match(rloc, m), True
    return found, False


def find_location(server: Any, uri: str) -> Match:
    """The location serving `uri` in `server` (its server level when none matches)."""
    found, _ = _find(server.locations, uri)
    if found is None or found.location.kind in _PREFIX_KINDS:
        redirect = _slash_redirect(server.locations, uri)
        if redirect is not None and (found is None
                                     or len(found.location.pattern) < len(uri) + 1):
            return Match(redirect, None, True)
    return found if found is not None else Match(server.root)


def named_location(server: Any, name: str) -> Any:
    """The `@name` location of a server, or None."""
    for loc in server.locations:
        if loc.kind == "named" and loc.pattern == name:
            return loc
    return None
