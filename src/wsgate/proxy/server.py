"""The serving worker: listening sockets, config generations, connections.

`Runtime` is one config generation (servers grouped per listen address, upstreams,
access logs); connections keep the generation they were accepted under. `Worker`
binds the listeners (G's listen.py), serves them on the running loop, and swaps
generations on reload: a listener whose address survives keeps its socket, new
addresses are bound, vanished ones are closed. Graceful stop closes listeners and
idle keep-alive connections, then waits for in-flight requests and tunnels.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import itertools
import socket
from collections.abc import Callable, Coroutine
from functools import partial
from typing import Any, Protocol

from wsgate.observe.accesslog import AccessLogs
from wsgate.observe.errorlog import ErrorLog
from wsgate.observe.metrics import Metrics
from wsgate.observe.status import LiveTunnels
from wsgate.proxy import listen as listen_mod
from wsgate.proxy.context import ConnInfo
from wsgate.proxy.downstream import Downstream
from wsgate.proxy.tunnellife import TunnelLife
from wsgate.proxy.wsfeatures import WsPlan, route_kept, start_drain
from wsgate.proxy.route import AddressServers
from wsgate.proxy.stream import Stream
from wsgate.tls.accept import start_tls_serving
from wsgate.tls.serving import ServingTLS

__all__ = ["Runtime", "Worker", "listen_key", "group_servers"]

_WILDCARDS = ("0.0.0.0", "::")
_POLITE_GRACE = 1.0   # seconds a politely closed tunnel gets before it is dropped


class _Listener(Protocol):
    """What the worker needs of a serving listener: an asyncio server (plain) or a
    wsgate.tls.accept.TlsServer (peek-then-TLS)."""

    def close(self) -> None: ...


def listen_key(listen: Any) -> tuple[str, int | None, str | None]:
    """(host, port, unix path) of a `listen`: the identity of a socket."""
    if listen.unix_path is not None:
        return ("unix", None, listen.unix_path)
    return (listen.host or "0.0.0.0", listen.port, None)


def group_servers(servers: tuple[Any, ...]) -> dict[tuple[str, int | None, str | None],
                                                      AddressServers]:
    """Servers per listen address, with each address's default server."""
    members: dict[Any, list[Any]] = {}
    defaults: dict[Any, Any] = {}
    for srv in servers:
        for lst in srv.listens:
            key = listen_key(lst)
            bucket = members.setdefault(key, [])
            if srv not in bucket:
                bucket.append(srv)
            if lst.default_server and key not in defaults:
                defaults[key] = srv
    return {k: AddressServers(tuple(v), defaults.get(k, v[0])) for k, v in members.items()}


def _all_locations(servers: tuple[Any, ...]) -> list[Any]:
    out: list[Any] = []

    def walk(locs: tuple[Any, ...]) -> None:
        for loc in locs:
            out.append(loc)
            walk(loc.locations)
    for srv in servers:
        out.append(srv.root)
        walk(srv.locations)
    return out


class Runtime:
    """One config generation, as the connections accepted under it see it."""

    def __init__(self, cfg: Any, log: ErrorLog, metrics: Metrics | None = None,
                 live_tunnels: LiveTunnels | None = None) -> None:
        self.cfg = cfg
        self.log = log
        self.prefix = cfg.prefix
        http = cfg.http
        self.servers = http.servers if http is not None else ()
        self.groups = group_servers(self.servers)
        self.tls = ServingTLS(cfg, self.groups)   # contexts built once per load
        self.upstreams = dict(http.upstreams) if http is not None else {}
        self.access = AccessLogs(http)
        self.access.open_all(_all_locations(self.servers))
        self.closing = False
        self.draining = False               # graceful stop: tunnels opening now close politely
        self.ws = WsPlan(self.access.formats)  # which locations get the frame-aware tunnel
        # Client connections; one that became a tunnel is its TunnelLife from then on
        # (its Downstream's task has ended: proxy/tunnellife.py).
        self.connections: set[Downstream | TunnelLife] = set()
        # The worker's, shared by every generation; standalone if none is given.
        self.metrics = metrics if metrics is not None else Metrics(process=False)
        self.live_tunnels = live_tunnels if live_tunnels is not None else LiveTunnels()

    def group_for(self, key: Any, local: Any) -> AddressServers | None:
        """The address group of a connection accepted on listener `key`."""
        host, port, unix = key
        if unix is not None or host not in _WILDCARDS:
            return self.groups.get(key)
        # A wildcard socket also serves the specific addresses on its port.
        specific = self.groups.get((local[0], port, None)) if isinstance(local, tuple) \
            else None
        return specific or self.groups.get(key)

    def access_log(self, ex: Any) -> None:
        try:
            self.access.log(ex.location, ex.vars)
        except Exception as exc:   # a bad log template must not break serving
            self.log.write("alert", f"access log failed: {exc}")

    def close(self) -> None:
        self.access.close()


def bind_keys(groups: dict[Any, Any]) -> dict[Any, Any]:
    """The sockets to bind: wildcard ports cover their specific addresses."""
    wild_ports = {(k[0], k[1]) for k in groups if k[0] in _WILDCARDS}
    out = {}
    for key in groups:
        host, port, unix = key
        if unix is None and host not in _WILDCARDS:
            wildcard = "::" if ":" in host else "0.0.0.0"
            if (wildcard, port) in wild_ports:
                continue
        out[key] = key
    return out


def spec_for(key: Any, listens: list[Any]) -> listen_mod.ListenSpec:
    host, port, unix = key
    opts: dict[str, Any] = {}
    for lst in listens:
        if listen_key(lst) == key:
            opts = dict(backlog=lst.backlog, reuseport=lst.reuseport,
                        ipv6only=lst.ipv6only, rcvbuf=lst.rcvbuf, sndbuf=lst.sndbuf)
            break
    if unix is not None:
        return listen_mod.ListenSpec(unix=unix, **opts)
    return listen_mod.ListenSpec(host=host, port=port or 80, **opts)


class Worker:
    """Serves listeners with the current Runtime; see the module docstring."""

    def __init__(self, log: ErrorLog) -> None:
        self.log = log
        self.runtime: Runtime | None = None
        self.sockets: dict[Any, socket.socket] = {}
        self.specs: dict[Any, listen_mod.ListenSpec] = {}
        self.servers: dict[Any, _Listener] = {}
        self.old: list[Runtime] = []
        self.tasks: set[asyncio.Task[None]] = set()
        self.numbers = itertools.count(1)
        self.metrics = Metrics()            # per worker, survives reloads
        self.live_tunnels = LiveTunnels()
        self.drain_timers: list[asyncio.TimerHandle] = []
        self.drain_tasks: set[asyncio.Task[Any]] = set()  # polite closes under way
        self.loop: asyncio.AbstractEventLoop = None  # type: ignore[assignment]

    # -- binding ----------------------------------------------------------------------

    def bind(self, cfg: Any) -> dict[Any, socket.socket]:
        """Bind every listener of `cfg` not bound yet (ListenError on failure)."""
        listens = cfg.listens
        groups = group_servers(cfg.servers)
        fresh: dict[Any, socket.socket] = {}
        try:
            for key in bind_keys(groups):
                if key in self.sockets:
                    continue
                spec = spec_for(key, listens)
                fresh[key] = listen_mod.bind_socket(spec)
                self.specs[key] = spec
        except BaseException:
            for sock in fresh.values():
                sock.close()
            raise
        return fresh

    # -- serving ----------------------------------------------------------------------

    async def start(self, cfg: Any, sockets: dict[Any, socket.socket]) -> None:
        self.loop = asyncio.get_running_loop()
        self.runtime = Runtime(cfg, self.log, self.metrics, self.live_tunnels)
        self.sockets.update(sockets)
        wanted = bind_keys(self.runtime.groups)
        for key in list(self.servers):
            if key not in wanted:
                self.servers.pop(key).close()
                sock = self.sockets.pop(key, None)
                if sock is not None:
                    sock.close()
                listen_mod.unlink_unix(self.specs.pop(key))
        for key in wanted:
            if key in self.servers:
                continue
            spec = self.specs[key]
            if self.runtime.tls.is_ssl(key):
                # peek one byte, then TLS or plain (497): wsgate.tls.accept
                self.servers[key] = await start_tls_serving(
                    self.sockets[key], partial(self._accept, key),
                    partial(self._tls_context, key),
                    partial(self._tls_timeout, key), self.log.write)
                continue
            self.servers[key] = await listen_mod.start_serving(
                self.sockets[key], partial(self._accept, key), backlog=spec.backlog)

    async def reload(self, cfg: Any, sockets: dict[Any, socket.socket]) -> None:
        """Swap in a new generation; old connections keep theirs.

        As in an nginx worker told to shut down by a reload: the old generation's
        idle keep-alive connections close now, busy ones after their request, and
        tunnels live on until they end -- or, when `worker_shutdown_timeout` is set,
        until it expires (then they are closed, politely where frame-aware)."""
        old = self.runtime
        await self.start(cfg, sockets)
        if old is None:
            return
        self.old.append(old)
        old.closing = True
        for dc in list(old.connections):
            # Only keep-alive waits are idle (nginx's c->idle): a connection just
            # accepted whose first request is still on its way must be served.
            if dc.conn.requests > 0:
                dc.close_idle()
        timeout = cfg.worker_shutdown_timeout
        if timeout is not None:
            loop = asyncio.get_running_loop()
            self.drain_timers.append(loop.call_later(timeout, self.close_runtime, old))
        self._drain_removed_routes(cfg)

    def _drain_removed_routes(self, cfg: Any) -> None:
        """Frame-aware tunnels whose location or upstream peer the new generation
        no longer has get Close 1001; tunnels whose route is unchanged live on."""
        gone = [dc.tunnel for rt in self.old for dc in list(rt.connections)
                if dc.tunnel is not None and dc.tunnel.info is not None
                and not route_kept(dc.tunnel.info.route, cfg)]
        self._start_drain(gone, "route removed")

    def _start_drain(self, tunnels: list[Any], reason: str) -> None:
        for task in start_drain(tunnels, reason):
            self.drain_tasks.add(task)
            task.add_done_callback(self.drain_tasks.discard)

    def close_runtime(self, rt: Runtime) -> None:
        """worker_shutdown_timeout expired for `rt`: close what it still serves."""
        for dc in list(rt.connections):
            if dc.tunnel is not None:
                close = getattr(dc.tunnel, "close_politely", None) or dc.tunnel.close
                close()
            else:
                dc.stream.abort()

    def over_limit(self) -> bool:
        """worker_connections counts listeners and connections, as nginx's do."""
        if self.runtime is None:
            return False
        limit: int = self.runtime.cfg.worker_connections
        return bool(limit) and self.live + len(self.servers) >= limit

    @property
    def live(self) -> int:
        """Client connections now open (tunnels included), in every generation."""
        return sum(len(rt.connections) for rt in self.runtimes())

    def _tls_context(self, key: Any) -> Any:
        return self.runtime.tls.context(key) if self.runtime is not None else None

    def _tls_timeout(self, key: Any) -> float:
        return self.runtime.tls.header_timeout(key) if self.runtime is not None else 60.0

    def _accept(self, key: Any) -> asyncio.Protocol:
        runtime = self.runtime
        assert runtime is not None
        return _ClientStream(lambda stream, transport: self._start_connection(
            runtime, key, stream, transport))

    def _start_connection(self, runtime: Runtime, key: Any, stream: Stream,
                          transport: asyncio.BaseTransport) -> None:
        if self.over_limit():
            # nginx: ngx_get_connection() finds no free slot, logs and drops it.
            self.log.write("alert", f"{runtime.cfg.worker_connections} "
                                    "worker_connections are not enough")
            stream.abort()
            return
        peer = transport.get_extra_info("peername")
        host, port, unix = key
        # a listener on one IPv4 address: that is the local address (getsockname()
        # is a system call per connection); wildcards and the rest ask the socket
        local = (host, port) if unix is None and _ipv4_literal(host) \
            else transport.get_extra_info("sockname")
        group = runtime.group_for(key, local)
        if group is None:
            transport.close()
            return
        conn = ConnInfo(next(self.numbers), *_addr(peer, "unix:"), *_addr(local, "unix:"))
        dc = Downstream(runtime, group, stream, conn)
        dc.tls_port = runtime.tls.is_ssl(key)
        runtime.connections.add(dc)
        loop = self.loop
        stream._loop = loop           # each get_running_loop() costs a getpid()
        # a no-op once it became a tunnel (TunnelLife took its place)
        dc.start(loop, self.spawn, partial(runtime.connections.discard, dc))

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """A task for a connection's request (Downstream.hand_over), kept until it
        ends: a graceful stop waits for it, a fast one cancels it."""
        task = self.loop.create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    # -- stopping ---------------------------------------------------------------------

    def stop_listening(self) -> None:
        for server in self.servers.values():
            server.close()
        self.servers.clear()

    def close_sockets(self) -> None:
        for key, sock in self.sockets.items():
            sock.close()
            spec = self.specs.get(key)
            if spec is not None:
                listen_mod.unlink_unix(spec)
        self.sockets.clear()

    def runtimes(self) -> list[Runtime]:
        return [r for r in [*self.old, self.runtime] if r is not None]

    async def graceful(self, timeout: float | None) -> None:
        """QUIT: stop accepting, let in-flight requests and tunnels finish."""
        self.stop_listening()
        for rt in self.runtimes():
            rt.closing = rt.draining = True
            for dc in list(rt.connections):
                dc.close_idle()
        # Frame-aware tunnels can say goodbye: Close 1001, spread over
        # websocket_drain_spread; byte tunnels live on until they end (nginx).
        self._start_drain([dc.tunnel for rt in self.runtimes() for dc in rt.connections
                           if dc.tunnel is not None], "server going away")
        if not await self._all_ended(timeout):
            # worker_shutdown_timeout expired: close politely, give Close frames a
            # moment to leave, then drop whatever is left.
            for rt in self.runtimes():
                self.close_runtime(rt)
            await self._all_ended(_POLITE_GRACE)
        self.fast()

    async def _all_ended(self, timeout: float | None) -> bool:
        """Wait, at most `timeout` seconds, until every request task and every tunnel
        has ended (a tunnel outlives its connection's task); True when all have.
        Tasks still running may open tunnels: hence the second look (bounded: no new
        connections are accepted)."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        for _ in range(3):
            # tunnels, and connections whose request is under way in callbacks
            ends = [dc.tunnel.ended() if dc.tunnel is not None else dc.ended()
                    for rt in self.runtimes() for dc in rt.connections
                    if dc.tunnel is None or dc.tunnel.stats is None]
            if not self.tasks and not ends:
                return True
            left = None if deadline is None else max(0.0, deadline - loop.time())
            try:
                await asyncio.wait({*self.tasks, *ends}, timeout=left)
            finally:
                for end in ends:
                    end.cancel()
        return not self.tasks and not any(
            dc.tunnel is None or dc.tunnel.stats is None
            for rt in self.runtimes() for dc in rt.connections)

    def fast(self) -> None:
        """TERM/INT: drop everything now."""
        self.stop_listening()
        for timer in self.drain_timers:
            timer.cancel()
        self.drain_timers.clear()
        for drain_task in list(self.drain_tasks):
            drain_task.cancel()
        for task in list(self.tasks):
            task.cancel()
        for rt in self.runtimes():
            for dc in list(rt.connections):
                if dc.tunnel is not None:
                    dc.tunnel.abort()     # its client transport is the stream's
                else:
                    dc.stream.abort()
            rt.close()
        self.close_sockets()

    def reopen_logs(self) -> None:
        for rt in self.runtimes():
            rt.access.reopen()

    def prune(self) -> None:
        """Forget old generations whose last connection ended."""
        keep = []
        for rt in self.old:
            if rt.connections:
                keep.append(rt)
            else:
                rt.close()
        self.old = keep


class _ClientStream(Stream):
    """A client connection's stream: starts its Downstream once connected."""

    def __init__(self, on_made: Callable[[Stream, asyncio.BaseTransport], None]) -> None:
        super().__init__()
        self._on_made = on_made

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        listen_mod.set_nodelay(transport)
        self._on_made(self, transport)


@functools.lru_cache(maxsize=64)
def _ipv4_literal(host: str) -> bool:
    """A listen host that is one IPv4 address as getsockname() writes it (not a
    wildcard, a name or IPv6)."""
    try:
        return host not in _WILDCARDS and str(ipaddress.IPv4Address(host)) == host
    except ValueError:
        return False


def _addr(name: Any, unix_text: str) -> tuple[str, int | None]:
    if isinstance(name, tuple):
        return str(name[0]), int(name[1])
    return unix_text, None
