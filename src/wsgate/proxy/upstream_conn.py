"""Where a proxied request goes: the upstream group of `proxy_pass`, the URI sent,
the connection to one peer (with proxy_connect_timeout), nginx's error-log wording.

`resolve_target` names the group (balance.py: an `upstream` block, or the implicit
upstream of `host:port` / `unix:`); the relay asks that group's balancer for peers.
`UpstreamStream` is the upstream side's protocol: a `Stream` that can wait in a
keep-alive pool, where any byte or EOF from the upstream drops it at once (nginx's
ngx_http_upstream_keepalive_close_handler).
"""

from __future__ import annotations

import asyncio
import errno
import time
from dataclasses import dataclass
from typing import Any

from wsgate.http.events import fast_init
from wsgate.proxy.balance import Group, groups_for
from wsgate.proxy.context import Exchange
from wsgate.proxy.stream import Stream

__all__ = ["Target", "UpstreamStream", "resolve_target", "open_peer",
           "connect_error_message", "escape_uri"]


@fast_init            # made per proxied request
@dataclass(frozen=True, slots=True)
class Target:
    group: Group
    proxy_host: str
    proxy_port: str
    uri: bytes
    scheme: str = "http"


class UpstreamStream(Stream):
    """An upstream connection; while pooled, any activity from the peer drops it."""

    def __init__(self) -> None:
        super().__init__()
        self.requests = 0
        self.started = time.monotonic()
        self.pool: Any = None
        self.pool_key: Any = None

    def reusable_now(self) -> bool:
        return not (self.eof or self.lost or self.buffer or self.transport is None
                    or self.transport.is_closing())

    # The pool is looked at before the event reaches the stream: a request waiting
    # in callbacks (inline.py) may finish and pool the connection from inside
    # super()'s call, and that must not count as activity while pooled.
    def data_received(self, data: bytes) -> None:
        pool = self.pool
        super().data_received(data)
        if pool is not None:
            pool.drop(self)

    def eof_received(self) -> bool:
        pool = self.pool
        result = super().eof_received()
        if pool is not None:
            pool.drop(self)
        return result

    def connection_lost(self, exc: Exception | None) -> None:
        pool = self.pool
        super().connection_lost(exc)
        if pool is not None:
            pool.drop(self)


# NGX_ESCAPE_URI: what nginx escapes when it rebuilds a URI from the decoded $uri.
_ESCAPE = frozenset(range(0, 0x21)) | {0x22, 0x23, 0x25, 0x3F} | frozenset(range(0x7F, 0x100))


def escape_uri(path: bytes) -> bytes:
    if not any(b in _ESCAPE for b in path):
        return path
    return b"".join(b"%%%02X" % b if b in _ESCAPE else bytes((b,)) for b in path)


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


def _authority(authority: str, default: int = 80) -> tuple[str | None, int | None,
                                                          str | None]:
    if authority.startswith("unix:"):
        return None, None, authority[5:]
    if authority.startswith("["):
        host, _, port = authority[1:].partition("]")
        return host, int(port[1:]) if port.startswith(":") else default, None
    host, colon, port = authority.partition(":")
    return host, int(port) if colon and port.isdigit() else default, None


def _request_uri(ex: Exchange, pp_uri: str | None, loc_len: int) -> bytes:
    req = ex.request
    if pp_uri is None or ex.extra.get("rewrite_break"):
        # a URI changed by `rewrite ... break` is passed whole (nginx's docs)
        if not ex.internal and not ex.extra.get("uri_changed"):
            return req.request_uri
        uri = escape_uri(ex.uri.encode("latin-1"))
    else:
        rest = ex.uri.encode("latin-1")[loc_len:]
        uri = pp_uri.encode("latin-1") + escape_uri(rest)
    args = ex.vars.args
    return uri + (b"?" + args.encode("latin-1") if args else b"")


def resolve_target(ex: Exchange, runtime: Any) -> Target:
    """The group, $proxy_host/$proxy_port and the URI of this request.

    Raises LookupError when an implicit upstream's host has no address."""
    loc = ex.location
    pp = loc.proxy_pass
    if pp.template is None:
        # all but the URI is the location's: found once per location and runtime
        known = _STATIC.get(id(loc))
        if known is None or known[0] is not loc or known[1] is not runtime:
            first = _resolve(ex, runtime, pp)
            if len(_STATIC) >= 4096:
                _STATIC.clear()
            known = _STATIC[id(loc)] = (loc, runtime, first.group, first.proxy_host,
                                        first.proxy_port, first.scheme)
            return first
        _, _, group, proxy_host, proxy_port, scheme = known
        return Target(group, proxy_host, proxy_port,
                      _request_uri(ex, pp.uri, _matched_len(loc)), scheme)
    return _resolve(ex, runtime, pp)


_PREFIX_KINDS = frozenset(("prefix", "prefix_nosearch", "exact"))


def _matched_len(loc: Any) -> int:
    """How much of $uri a proxy_pass URI part replaces: a prefix location's
    pattern (nothing for a regex location)."""
    return len(loc.pattern) if loc.kind in _PREFIX_KINDS else 0


# id(location) -> (location, runtime, group, proxy_host, proxy_port, scheme) of a
# proxy_pass without variables
_STATIC: dict[int, tuple[Any, Any, Any, str, str, str]] = {}


def _resolve(ex: Exchange, runtime: Any, pp: Any) -> Target:
    groups = groups_for(runtime)
    if pp.template is not None:
        scheme, authority, uri_part = _split_url(pp.template.render(ex.vars))
        uri = uri_part.encode("latin-1") if uri_part is not None else (
            _request_uri(ex, None, 0))
        host, port, unix = _authority(authority, 443 if scheme == "https" else 80)
        name = authority
    else:
        scheme = getattr(pp, "scheme", "http") or "http"
        host, port, unix = pp.host, pp.port, pp.unix_path
        uri = _request_uri(ex, pp.uri, _matched_len(ex.location))
        name = None
    if unix is not None:
        return Target(groups.unix(unix), "localhost", "", uri, scheme)
    default = 443 if scheme == "https" else 80
    named = groups.named(host or "") if port is None or pp.template is not None else None
    if named is not None:
        return Target(named, host or "", str(default), uri, scheme)
    port = port if port is not None else default
    proxy_host = name or (host if port == default else f"{_bracket(host)}:{port}")
    try:
        group = groups.implied(host or "", port)
    except ValueError:
        raise LookupError(host) from None
    return Target(group, proxy_host or "", str(port), uri, scheme)


def _bracket(host: str | None) -> str:
    return f"[{host}]" if host and ":" in host else (host or "")


async def open_peer(sockaddr: Any, timeout: float | None,
                    loop: asyncio.AbstractEventLoop | None = None) -> UpstreamStream:
    """Connect to one peer address; raises OSError or asyncio.TimeoutError. `loop`,
    when the caller knows it, spares a get_running_loop() (a getpid() call in 3.11)."""
    if loop is None:
        loop = asyncio.get_running_loop()
    if timeout is None:
        return await _connect(loop, sockaddr)
    # asyncio.timeout's rule with one timer and no context object (it measured ~3%
    # of a handshake cycle): the expiry cancels this task, and a cancellation that
    # is ours alone becomes TimeoutError
    task = asyncio.current_task(loop)
    assert task is not None
    expiry = _Expiry(task)
    timer = loop.call_later(timeout, expiry)
    try:
        return await _connect(loop, sockaddr)
    except asyncio.CancelledError:
        if expiry.fired and task.uncancel() <= expiry.cancelling:
            raise asyncio.TimeoutError() from None
        raise
    finally:
        timer.cancel()


class _Expiry:
    """open_peer's timer callback: cancel the connecting task, remember it did."""

    __slots__ = ("task", "fired", "cancelling")

    def __init__(self, task: "asyncio.Task[Any]") -> None:
        self.task = task
        self.fired = False
        self.cancelling = task.cancelling()

    def __call__(self) -> None:
        self.fired = True
        self.task.cancel()


async def _connect(loop: asyncio.AbstractEventLoop, sockaddr: Any) -> UpstreamStream:
    if isinstance(sockaddr, str):
        _, stream = await loop.create_unix_connection(UpstreamStream, sockaddr)
    else:
        _, stream = await loop.create_connection(UpstreamStream, sockaddr[0], sockaddr[1])
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
