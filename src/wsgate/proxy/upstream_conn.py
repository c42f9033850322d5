"""Where a proxied request goes: the peers of `proxy_pass`, the URI sent, the
connection attempt (with proxy_connect_timeout), nginx's error-log wording.

Peers: `proxy_pass http://NAME` with an `upstream NAME` block uses its servers in
round-robin order (skipping `down`, `backup` only when nothing else is left), a
`host:port` or `unix:` target is one peer. A failed connect tries the next peer
(proxy_next_upstream's default `error timeout`), each peer once.
"""

from __future__ import annotations

import asyncio
import errno
import itertools
from dataclasses import dataclass
from typing import Any

from wsgate.proxy.context import Exchange
from wsgate.proxy.stream import Stream

__all__ = ["Peer", "Target", "resolve_target", "connect", "ConnectFailed", "escape_uri"]


@dataclass(frozen=True, slots=True)
class Peer:
    host: str | None
    port: int | None
    unix: str | None = None

    @property
    def addr(self) -> str:
        if self.unix is not None:
            return f"unix:{self.unix}"
        host = f"[{self.host}]" if self.host and ":" in self.host else self.host
        return f"{host}:{self.port}"


@dataclass(frozen=True, slots=True)
class Target:
    peers: tuple[Peer, ...]
    proxy_host: str
    proxy_port: str
    uri: bytes


class ConnectFailed(Exception):
    """Every peer failed; `timeout` says the last failure was a timeout."""

    def __init__(self, timeout: bool):
        super().__init__("timeout" if timeout else "error")
        self.timeout = timeout


_counters: dict[str, itertools.count[int]] = {}

# NGX_ESCAPE_URI: what nginx escapes when it rebuilds a URI from the decoded $uri.
_ESCAPE = frozenset(range(0, 0x21)) | {0x22, 0x23, 0x25, 0x3F} | frozenset(range(0x7F, 0x100))


def escape_uri(path: bytes) -> bytes:
    if not any(b in _ESCAPE for b in path):
        return path
    return b"".join(b"%%%02X" % b if b in _ESCAPE else bytes((b,)) for b in path)


def _upstream_peers(ups: Any) -> tuple[Peer, ...]:
    primary = [s for s in ups.servers if not s.down and not s.backup]
    backup = [s for s in ups.servers if not s.down and s.backup]
    servers = primary or backup
    if not servers:
        return ()
    counter = _counters.setdefault(ups.name, itertools.count())
    start = next(counter) % len(servers)
    ordered = servers[start:] + servers[:start] + (backup if primary else [])
    return tuple(Peer(s.host, s.port, s.unix_path) for s in ordered)


def _split_url(url: str) -> tuple[str, str, str | None]:
    """(scheme, authority, uri or None) of a rendered proxy_pass URL."""
    scheme, _, rest = url.partition("://")
    if rest.startswith("unix:"):
        path, colon, uri = rest.partition(":")[2].partition(":")
        return scheme, "unix:" + path, uri if colon and uri else None
    slash = rest.find("/")
    if slash < 0:
        return scheme, rest, None
    return scheme, rest[:slash], rest[slash:]


def _authority(authority: str) -> tuple[str | None, int | None, str | None]:
    if authority.startswith("unix:"):
        return None, None, authority[5:]
    if authority.startswith("["):
        host, _, port = authority[1:].partition("]")
        return host, int(port[1:]) if port.startswith(":") else 80, None
    host, colon, port = authority.partition(":")
    return host, int(port) if colon and port.isdigit() else 80, None


def _request_uri(ex: Exchange, pp_uri: str | None, loc_len: int) -> bytes:
    req = ex.request
    if pp_uri is None:
        if not ex.internal:
            return req.request_uri
        uri = escape_uri(ex.uri.encode("latin-1"))
    else:
        rest = ex.uri.encode("latin-1")[loc_len:]
        uri = pp_uri.encode("latin-1") + escape_uri(rest)
    args = ex.vars.args
    return uri + (b"?" + args.encode("latin-1") if args else b"")


def resolve_target(ex: Exchange, upstreams: dict[str, Any]) -> Target:
    """The peers, $proxy_host/$proxy_port and the URI of this request."""
    pp = ex.location.proxy_pass
    if pp.template is not None:
        scheme, authority, uri_part = _split_url(pp.template.render(ex.vars))
        uri = uri_part.encode("latin-1") if uri_part is not None else (
            _request_uri(ex, None, 0))
        host, port, unix = _authority(authority)
        name = authority
    else:
        host, port, unix = pp.host, pp.port, pp.unix_path
        loc = ex.location
        loc_len = len(loc.pattern) if loc.kind in ("prefix", "prefix_nosearch", "exact") \
            else 0
        uri = _request_uri(ex, pp.uri, loc_len)
        name = None
    if unix is not None:
        return Target((Peer(None, None, unix),), "localhost", "", uri)
    if host in upstreams and (port is None or pp.template is not None):
        ups = upstreams[host]
        return Target(_upstream_peers(ups), host or "", "80", uri)
    port = port if port is not None else 80
    proxy_host = name or (host if port == 80 else f"{_bracket(host)}:{port}")
    return Target((Peer(host, port),), proxy_host or "", str(port), uri)


def _bracket(host: str | None) -> str:
    return f"[{host}]" if host and ":" in host else (host or "")


async def open_peer(peer: Peer, timeout: float | None) -> Stream:
    """Connect to one peer; raises OSError or asyncio.TimeoutError."""
    loop = asyncio.get_running_loop()
    if peer.unix is not None:
        coro = loop.create_unix_connection(Stream, peer.unix)
    else:
        coro = loop.create_connection(Stream, peer.host, peer.port)
    _, stream = await asyncio.wait_for(coro, timeout)
    return stream


def connect_error_message(exc: BaseException) -> tuple[str, int | None]:
    """nginx's wording for a failed connect: (message, errno)."""
    if isinstance(exc, asyncio.TimeoutError):
        return "upstream timed out", errno.ETIMEDOUT
    if isinstance(exc, OSError) and exc.errno:
        return "connect() failed", exc.errno
    if isinstance(exc, OSError):
        return "connect() failed", errno.ECONNREFUSED
    return f"connect() failed: {exc}", None


async def connect(target: Target, timeout: float | None,
                  on_fail: Any) -> tuple[Peer, Stream]:
    """The first peer that accepts; `on_fail(peer, exc)` is told of each failure."""
    if not target.peers:
        raise ConnectFailed(False)
    last_timeout = False
    for peer in target.peers:
        try:
            return peer, await open_peer(peer, timeout)
        except (OSError, asyncio.TimeoutError) as exc:
            last_timeout = isinstance(exc, asyncio.TimeoutError)
            on_fail(peer, exc)
    raise ConnectFailed(last_timeout)
