"""A tunnel's life in the worker, after the request that opened it has finished.

Once the upstream answered 101 and the tunnel runs (tunnel.py), the client
connection's coroutine and its Task end at once: an idle tunnel should cost its two
transports and a few slotted objects, not a suspended coroutine chain, a Task, the
request's Exchange, its parsed head and its decoded header copies (together about
9 KB of the 16 KB an idle tunnel cost while a coroutine awaited the tunnel's end;
tests/soak/idle_memory.py measures it).

`TunnelLife` keeps only what the end of the request still needs, and does that work
from the tunnel's end callback, in nginx's order:

- `start()`, as the tunnel opens: the tunnel metrics; the live-tunnel registry (the
  life object is the registry's row: `client` and the byte counts are computed when
  the status page asks); the client connection's place in the worker's connection
  set, taken over from the Downstream (graceful stop, reload, worker_connections and
  `prune` keep seeing the connection; `close_idle` is a no-op for a tunnel);
- `__call__(stats)`, when both connections are gone: the relay's callback (frees the
  upstream peer), the registry and the tunnel metrics, the error-log lines about how
  the tunnel ended, the request's metrics, the access-log line, and the connection's
  stub_status state (WRITING for the tunnel's whole life, as nginx counts it).

The access log's variables (the request's `VarContext`) are kept only when the
location has an access log; otherwise they die with the request's coroutine, and the
closing error-log lines use the few strings kept for them.
"""

from __future__ import annotations

import time
from sys import intern
from typing import Any, Callable

from wsgate.observe.errorlog import context
from wsgate.proxy.context import log_host
from wsgate.proxy.tunnel import Tunnel, TunnelStats
from wsgate.proxy.wsfeatures import TunnelInfo, ending_message, route_of
from wsgate.proxy.wstunnel import WsTunnelStats

__all__ = ["TunnelLife", "access_logged", "route_info"]

_ACTION = "proxying upgraded connection"
_TUNNEL_STATUS = 101      # a tunnel's request ends with the 101 it was answered with


def access_logged(location: Any) -> bool:
    """Does `location` write an access-log line (one `access_log` not `off`)?"""
    return any(entry.path is not None for entry in getattr(location, "access_log", ()) or ())


# Tunnels on one route share one (frozen, hashable) TunnelInfo: route_of builds a new
# one per call. Values only (no config objects), so old generations are not pinned.
_routes: dict[TunnelInfo, TunnelInfo] = {}
_ROUTES_MAX = 1024


def route_info(ex: Any, upstreams: dict[str, Any]) -> TunnelInfo:
    """`wsfeatures.route_of(ex, upstreams)`, shared between tunnels of one route."""
    info = route_of(ex, upstreams)
    try:
        shared = _routes.get(info)
    except TypeError:     # an unhashable part: keep this tunnel's own
        return info
    if shared is not None:
        return shared
    if len(_routes) >= _ROUTES_MAX:
        _routes.clear()   # bounded: routes come and go with the configuration
    _routes[info] = info
    return info


def _last_peer(ex: Any) -> str | None:
    for group in reversed(ex.vars.upstream_groups):
        if group:
            return str(group[-1].addr)
    return None


class _Logged:
    """What Runtime.access_log reads of an Exchange."""

    __slots__ = ("location", "vars")

    def __init__(self, location: Any, vars_: Any) -> None:
        self.location, self.vars = location, vars_


class TunnelLife:
    """An open tunnel's bookkeeping in the worker; see the module docstring."""

    # Slots: one per idle tunnel, thousands per worker.
    __slots__ = ("tunnel", "runtime", "conn", "stat", "server", "label", "upstream",
                 "peer", "uri", "id", "log", "request_line", "host", "upstream_url",
                 "handshake", "release")

    def __init__(self, runtime: Any, conn: Any, stat: Any, ex: Any, tunnel: Tunnel, *,
                 server: str, label: str, head_bytes: int) -> None:
        self.tunnel = tunnel
        self.runtime = runtime
        self.conn = conn                  # ConnInfo: error-log connection number, client
        conn.server_addr = intern(conn.server_addr)   # the listener's: one for all
        self.stat = stat                  # ConnStat: WRITING until the tunnel ends
        self.server = server
        self.label = label
        v = ex.vars
        # Interned: tunnels to one endpoint (the usual case: many clients, one URI)
        # share these strings instead of holding a copy each; an interned string is
        # freed with its last user.
        self.upstream = intern(v.proxy_host or "")
        self.peer = _last_peer(ex) or ""
        self.uri = intern(v.request_uri)
        self.id = 0
        # (location, variables, 101 head bytes) for the access-log line, if one
        self.log: tuple[Any, Any, int] | None = (
            (ex.location, v, head_bytes) if access_logged(ex.location) else None)
        self.request_line = intern(v.request_line)
        host = log_host(v)
        self.host = intern(host) if host is not None else None
        self.upstream_url = intern(ex.upstream_url) if ex.upstream_url else ex.upstream_url
        upgrade = ex.request.upgrade
        self.handshake = upgrade is not None and b"websocket" in upgrade.lower()
        self.release: Callable[[TunnelStats], None] | None = None

    # -- the registry row (status.LiveTunnel) and the connection set's member ------

    @property
    def client(self) -> str:
        conn = self.conn
        if conn.remote_port is None:
            return str(conn.remote_addr)
        host = f"[{conn.remote_addr}]" if ":" in conn.remote_addr else conn.remote_addr
        return f"{host}:{conn.remote_port}"

    @property
    def started(self) -> float:
        """Wall-clock time.time() of the 101 (the tunnel keeps the loop's clock)."""
        tunnel = self.tunnel
        return time.time() - (tunnel.loop.time() - tunnel.started)

    def counts(self) -> tuple[int, int, int, int]:
        """Bytes read from each side so far (wire bytes: client -> upstream is "in"),
        and finished messages, which only frame-aware legs count."""
        c, u = self.tunnel.client, self.tunnel.upstream
        return c.nread, u.nread, getattr(c, "messages", 0), getattr(u, "messages", 0)

    def close_idle(self) -> None:
        """Graceful stop closes idle keep-alive connections; a tunnel is not one."""

    # -- open and end ----------------------------------------------------------------

    def start(self, downstream: Any) -> None:
        """The tunnel runs: count it, list it, and take `downstream`'s place in the
        connection set; from now on the tunnel's end calls this object."""
        runtime = self.runtime
        runtime.metrics.tunnel_opened(self.server, self.label)
        runtime.live_tunnels.add(self)
        runtime.connections.discard(downstream)
        runtime.connections.add(self)
        tunnel = self.tunnel
        self.release, tunnel.on_end = tunnel.on_end, self
        if tunnel.stats is not None:    # it ended before we got here
            self(tunnel.stats)

    def __call__(self, stats: TunnelStats) -> None:
        """The tunnel's end callback: the end of the request (module docstring)."""
        try:
            self._end(stats)
        except Exception as exc:  # never let a tunnel's end kill the worker
            self.runtime.log.write("alert", f"unexpected error: {type(exc).__name__}: {exc}",
                                   connection=self.conn.number)
        finally:
            self.stat.close()
            self.runtime.connections.discard(self)

    def _end(self, stats: TunnelStats) -> None:
        release, self.release = self.release, None
        if release is not None:
            release(stats)
        self._closed(stats)
        if stats.how == "read_timeout":
            self._log_error("error", "upstream timed out", err=110)
        ending = ending_message(stats, getattr(stats, "error_side", None))
        if ending is not None:
            self._log_error(*ending)
        metrics = self.runtime.metrics
        metrics.request_done(self.server, _TUNNEL_STATUS, self.label)
        if self.handshake:
            metrics.handshake(self.server, _TUNNEL_STATUS)
        if self.log is not None:
            self._access_log(*self.log, stats)

    def _closed(self, stats: TunnelStats) -> None:
        """The registry and the tunnel metrics."""
        runtime = self.runtime
        runtime.live_tunnels.remove(self)
        bytes_in, bytes_out, messages_in, messages_out = self.counts()
        code, closer = None, stats.closed_by
        if isinstance(stats, WsTunnelStats):  # frame-aware: the Close frames decide
            code, closer = stats.ws_close_code, stats.ws_closed_by or closer
        runtime.metrics.tunnel_closed(
            self.server, self.label, close_code=code, closed_by=closer,
            duration=time.time() - self.started, bytes_in=bytes_in,
            bytes_out=bytes_out, messages_in=messages_in, messages_out=messages_out)

    def _access_log(self, location: Any, v: Any, head_bytes: int,
                    stats: TunnelStats) -> None:
        v.bytes_sent = head_bytes + stats.bytes_down
        v.body_bytes_sent = stats.bytes_down    # nginx: all bytes after the 101 head
        v.now = v.start_time + (time.time() - v.start_time)
        v.status = _TUNNEL_STATUS
        if isinstance(stats, WsTunnelStats):
            for name, value in stats.session_vars().items():
                setattr(v, name, value)
        self.runtime.access_log(_Logged(location, v))

    def _log_error(self, level: str, message: str, *, err: int | None = None) -> None:
        tail = context(_ACTION, client=self.conn.remote_addr, server=self.server,
                       request=self.request_line or None, upstream=self.upstream_url,
                       host=self.host)
        self.runtime.log.write(level, message, err=err, connection=self.conn.number,
                               tail=tail)
