"""Prometheus metrics: one `Metrics` object per process (or per embedded server).

Owns the metric families, their names and labels, and the exposition. Each
`Metrics` has a private `CollectorRegistry`, never prometheus_client's global one,
because the library API may run several servers in one process and each must
export only its own numbers.

Every worker counts the whole server. The wsgate_* families below (all but the
upstream_peer ones) live in this process's slot of a shared region
(`wsgate.observe.shared`): the update methods add to rows of the slot, and the
collectors sum every worker's slot at scrape time, so any worker's `/metrics`
shows the same totals, as nginx's stub_status does. `upstream_peer_*` are this
worker's view of its peers (peer state is per worker, as in nginx without a
`zone`), and process_*/python_* describe the worker that answered.

Cost model. The engine calls the update methods at event boundaries only -- a
request finished, a handshake answered, a tunnel opened or closed -- never per
chunk. Tunnel bytes and messages are therefore added when a tunnel closes. Numbers
that already live elsewhere are read at scrape time by custom collectors and cost
nothing between scrapes: the stub_status connection counters
(`wsgate.observe.status.ConnectionCounters`) and the upstream peers' state
(`wsgate.upstream.Peer`: conns, fails, checked, down).

Families (all prefixed `wsgate_`; "in" is client->upstream, "out" upstream->client,
as in `$ws_bytes_in`/`$ws_bytes_out`):

    connections_accepted_total / connections_handled_total   counters (stub_status)
    connections_active, connections{state=reading|writing|waiting}   gauges
    http_requests_total{server,upstream,status_class}         counter
    websocket_handshakes_total{server,status}                  counter
    tunnels_active{server,upstream}                            gauge
    tunnels_opened_total{server,upstream}                      counter
    tunnels_closed_total{server,upstream,close_code,closed_by} counter
    tunnel_bytes_total{server,upstream,direction}              counter
    tunnel_messages_total{server,upstream,direction}           counter
    tunnel_duration_seconds{server,upstream}                   histogram, 1 s .. 24 h
    upstream_peer_up / _fails / _active{upstream,peer}         gauges (this worker)
    metrics_series_dropped_total                               counter (slot full)
plus process_* , python_info and python_gc_* from prometheus_client's collectors.
"""

from __future__ import annotations

import bisect
import gzip
import math
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Mapping

from prometheus_client import (
    GC_COLLECTOR, CollectorRegistry, PlatformCollector, ProcessCollector)
from prometheus_client.core import (
    CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric)
from prometheus_client.utils import floatToGoString
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector

from wsgate.observe.shared import SEP, Region, Slot
from wsgate.observe.status import ConnectionCounters

__all__ = ["Metrics", "DURATION_BUCKETS", "PeerSource", "handle_metrics",
           "status_class"]

#: Tunnel lifetimes run from a failed page load (about a second) to a day-long
#: dashboard session; the default buckets (5 ms .. 10 s) would put them all in +Inf.
DURATION_BUCKETS = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0,
                    3600.0, 7200.0, 14400.0, 43200.0, 86400.0)

#: Returns the live upstream groups, name -> PeerSet, for the current config
#: generation; a callable because a reload swaps the peer sets.
PeerSource = Callable[[], Mapping[str, Any]]

_TUNNEL = ("server", "upstream")


def status_class(status: int) -> str:
    """'2xx' for 200..299; '1xx' .. '5xx'; anything else (0, 499 excepted) 'other'."""
    if 100 <= status <= 599:
        return f"{status // 100}xx"
    return "other"


def _label(value: object) -> str:
    return "" if value is None else str(value)


@dataclass(frozen=True, slots=True)
class _Family:
    name: str
    kind: str                  # "counter", "gauge" or "histogram"
    help: str
    labels: tuple[str, ...]


_FAMILIES = (
    _Family("wsgate_http_requests", "counter", "HTTP requests finished, by status "
            "class.", ("server", "upstream", "status_class")),
    _Family("wsgate_websocket_handshakes", "counter", "WebSocket upgrade attempts, by "
            "the status answered to the client (101, 426, 502 ...).", ("server", "status")),
    _Family("wsgate_tunnels_active", "gauge", "WebSocket tunnels open now.", _TUNNEL),
    _Family("wsgate_tunnels_opened", "counter", "WebSocket tunnels opened.", _TUNNEL),
    _Family("wsgate_tunnels_closed", "counter", "WebSocket tunnels closed, by close code "
            "(\"none\" when no Close frame was seen) and by who closed first.",
            _TUNNEL + ("close_code", "closed_by")),
    _Family("wsgate_tunnel_bytes", "counter", "Bytes relayed by closed tunnels; "
            "direction in is client to upstream, out is upstream to client.",
            _TUNNEL + ("direction",)),
    _Family("wsgate_tunnel_messages", "counter", "WebSocket messages relayed by closed "
            "tunnels.", _TUNNEL + ("direction",)),
    _Family("wsgate_tunnel_duration_seconds", "histogram", "Lifetime of closed tunnels.",
            _TUNNEL),
)
_BY_NAME = {f.name: f for f in _FAMILIES}
_BUCKET, _SUM = "_bucket", "_sum"
_LES = tuple(str(floatToGoString(b))  # type: ignore[no-untyped-call]
             for b in DURATION_BUCKETS) + ("+Inf",)


def _key(family: str, *labels: str) -> str:
    return SEP.join((family, *labels))


class _TunnelKeys:
    """Every series key of one (server, upstream) pair's tunnel families, joined
    once: a closing tunnel updates ~20 series (measured 3-5% of a handshake cycle
    when each key was joined per update)."""

    __slots__ = ("opened", "active", "bytes_in", "bytes_out", "messages_in",
                 "messages_out", "buckets", "sum", "closed")

    def __init__(self, server: str, up: str) -> None:
        self.opened = _key("wsgate_tunnels_opened", server, up)
        self.active = _key("wsgate_tunnels_active", server, up)
        self.bytes_in = _key("wsgate_tunnel_bytes", server, up, "in")
        self.bytes_out = _key("wsgate_tunnel_bytes", server, up, "out")
        self.messages_in = _key("wsgate_tunnel_messages", server, up, "in")
        self.messages_out = _key("wsgate_tunnel_messages", server, up, "out")
        name = "wsgate_tunnel_duration_seconds"
        self.buckets = tuple(_key(name + _BUCKET, server, up, le) for le in _LES)
        self.sum = _key(name + _SUM, server, up)
        self.closed: dict[tuple[str, str], str] = {}   # (code, closed_by) -> key

    def closed_key(self, server: str, up: str, code: str, closed_by: str) -> str:
        key = self.closed.get((code, closed_by))
        if key is None:
            if len(self.closed) >= _CACHE_MAX:
                self.closed.clear()
            key = self.closed[(code, closed_by)] = _key(
                "wsgate_tunnels_closed", server, up, code, closed_by)
        return key


# Key caches are bounded (labels come from the configuration, close codes from
# peers): past this many entries a cache starts over.
_CACHE_MAX = 4096


class Metrics:
    """The metric families of one server; see the module docstring.

    `slot` is this process's slot of the region the master shares between its
    workers; without one the Metrics count alone (master_process off, library)."""

    def __init__(self, *, connections: ConnectionCounters | None = None,
                 peers: PeerSource | None = None, process: bool = True,
                 clock: Callable[[], float] = time.time, slot: Slot | None = None) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        if connections is None:
            connections = ConnectionCounters(slot if slot is not None else
                                             Region.private().slot(0))
        self.connections = connections
        self.slot = connections.slot
        self._peers = peers
        self._clock = clock
        self._request_keys: dict[tuple[str, str | None, int], str] = {}
        self._handshake_keys: dict[tuple[str, int], str] = {}
        self._tunnel_key_cache: dict[tuple[str, str], _TunnelKeys] = {}
        self.registry.register(_SharedCollector(self.slot.region))
        self.registry.register(_ConnectionCollector(self.connections))
        self.registry.register(_PeerCollector(self))
        if process:
            self._register_process_collectors()

    def _register_process_collectors(self) -> None:
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        # GCCollector registers itself only into a registry given at construction;
        # the global instance's collect() is reusable, so reuse it here.
        self.registry.register(_Delegate(GC_COLLECTOR))

    # -- updates (event boundaries only) -------------------------------------------

    def set_peer_source(self, peers: PeerSource | None) -> None:
        """Point the upstream collector at the live peer sets (after a reload)."""
        self._peers = peers

    def request_done(self, server: str, status: int, upstream: str | None = None) -> None:
        """One HTTP request finished with `status` (a tunnel's request counts as 101)."""
        ident = (server, upstream, status)
        key = self._request_keys.get(ident)
        if key is None:
            if len(self._request_keys) >= _CACHE_MAX:
                self._request_keys.clear()
            key = self._request_keys[ident] = _key(
                "wsgate_http_requests", server, _label(upstream), status_class(status))
        self.slot.add(key, 1)

    def _tunnel_keys(self, server: str, up: str) -> _TunnelKeys:
        keys = self._tunnel_key_cache.get((server, up))
        if keys is None:
            if len(self._tunnel_key_cache) >= _CACHE_MAX:
                self._tunnel_key_cache.clear()
            keys = self._tunnel_key_cache[(server, up)] = _TunnelKeys(server, up)
        return keys

    def handshake(self, server: str, status: int) -> None:
        """A WebSocket upgrade attempt was answered with `status`."""
        ident = (server, status)
        key = self._handshake_keys.get(ident)
        if key is None:       # the key's text, built once per (server, status)
            if len(self._handshake_keys) >= _CACHE_MAX:
                self._handshake_keys.clear()
            key = self._handshake_keys[ident] = _key("wsgate_websocket_handshakes",
                                                     server, str(status))
        self.slot.add(key, 1)

    def tunnel_opened(self, server: str, upstream: str | None) -> None:
        keys = self._tunnel_keys(server, _label(upstream))
        self.slot.add(keys.opened, 1)
        self.slot.add(keys.active, 1, gauge=True)

    def tunnel_closed(self, server: str, upstream: str | None, *,
                      close_code: int | None, closed_by: str, duration: float,
                      bytes_in: int, bytes_out: int, messages_in: int = 0,
                      messages_out: int = 0) -> None:
        """A tunnel opened with `tunnel_opened(server, upstream)` has ended."""
        up, add = _label(upstream), self.slot.add
        code = "none" if close_code is None else str(close_code)
        keys = self._tunnel_keys(server, up)
        add(keys.active, -1, gauge=True)
        add(keys.closed_key(server, up, code, closed_by), 1)
        add(keys.bytes_in, bytes_in)
        add(keys.bytes_out, bytes_out)
        add(keys.messages_in, messages_in)
        add(keys.messages_out, messages_out)
        self._observe_duration(keys, max(duration, 0.0))

    def _observe_duration(self, keys: _TunnelKeys, seconds: float) -> None:
        """Cumulative buckets are stored as such: one add per bucket reached (every
        bucket from the first bound >= seconds, and +Inf)."""
        add = self.slot.add
        for key in keys.buckets[bisect.bisect_left(DURATION_BUCKETS, seconds):]:
            add(key, 1)
        add(keys.sum, seconds)

    # -- exposition ----------------------------------------------------------------

    def render(self, accept: str | None = None) -> tuple[str, bytes]:
        """(content type, body): Prometheus text, or OpenMetrics when Accept asks."""
        encoder, content_type = choose_encoder(accept or "")
        return content_type, encoder(self.registry)

    def peer_groups(self) -> Mapping[str, Any]:
        return self._peers() if self._peers is not None else {}

    def now(self) -> float:
        return self._clock()


class _SharedCollector(Collector):
    """The labelled wsgate_* families, summed over every slot at scrape time."""

    def __init__(self, region: Region) -> None:
        self._region = region

    def collect(self) -> Iterator[Metric]:
        grouped: dict[str, dict[tuple[str, ...], float]] = {f.name: {} for f in _FAMILIES}
        for key, value in sorted(self._region.series().items()):
            name, *labels = key.split(SEP)
            grouped.setdefault(name, {})[tuple(labels)] = value
        for fam in _FAMILIES:
            if fam.kind == "histogram":
                yield _histogram(fam, grouped.get(fam.name + _BUCKET, {}),
                                 grouped.get(fam.name + _SUM, {}))
            else:
                yield _simple(fam, grouped[fam.name])
        yield CounterMetricFamily(
            "wsgate_metrics_series_dropped", "Updates lost because a worker's shared "
            "metrics slot was full or a label was too long.",
            value=self._region.dropped())


def _simple(fam: _Family, series: dict[tuple[str, ...], float]) -> Metric:
    cls = CounterMetricFamily if fam.kind == "counter" else GaugeMetricFamily
    out = cls(fam.name, fam.help, labels=fam.labels)
    for labels, value in series.items():
        if len(labels) == len(fam.labels):
            out.add_metric(labels, value)
    return out


def _histogram(fam: _Family, buckets: dict[tuple[str, ...], float],
               sums: dict[tuple[str, ...], float]) -> Metric:
    out = HistogramMetricFamily(fam.name, fam.help, labels=fam.labels)
    for labels, total in sums.items():
        counts = [(le, buckets.get((*labels, le), 0.0)) for le in _LES]
        out.add_metric(labels, counts, total)
    return out


class _Delegate(Collector):
    """Registers another collector's output under a second registry."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def collect(self) -> Iterable[Metric]:
        return self._inner.collect()  # type: ignore[no-any-return]


class _ConnectionCollector(Collector):
    """stub_status's numbers, read at scrape time."""

    def __init__(self, counters: ConnectionCounters) -> None:
        self._c = counters

    def collect(self) -> Iterator[Metric]:
        c = self._c
        yield CounterMetricFamily("wsgate_connections_accepted",
                                  "Client connections accepted.", value=c.accepted)
        yield CounterMetricFamily("wsgate_connections_handled",
                                  "Client connections handled.", value=c.handled)
        yield GaugeMetricFamily("wsgate_connections_active",
                                "Client connections open now.", value=c.active)
        states = GaugeMetricFamily("wsgate_connections",
                                   "Client connections by state, as stub_status counts "
                                   "them.", labels=("state",))
        states.add_metric(("reading",), c.reading)
        states.add_metric(("writing",), c.writing)
        states.add_metric(("waiting",), c.waiting)
        yield states


class _PeerCollector(Collector):
    """Upstream peer state, read from the live `Peer` objects at scrape time."""

    def __init__(self, metrics: Metrics) -> None:
        self._m = metrics

    def collect(self) -> Iterator[Metric]:
        labels = ("upstream", "peer")
        up = GaugeMetricFamily("wsgate_upstream_peer_up", "1 when the peer may be "
                               "picked: not down and not failed within fail_timeout.",
                               labels=labels)
        fails = GaugeMetricFamily("wsgate_upstream_peer_fails", "Failures counted "
                                  "against the peer in its fail_timeout window.",
                                  labels=labels)
        active = GaugeMetricFamily("wsgate_upstream_peer_active", "Connections to "
                                   "the peer in use now.", labels=labels)
        now = int(self._m.now())
        for name, peer_set in sorted(self._m.peer_groups().items()):
            for peer in peer_set.all_peers():
                key = (name, peer.name)
                up.add_metric(key, 0.0 if peer.down or peer.failed(now) else 1.0)
                fails.add_metric(key, peer.fails)
                active.add_metric(key, peer.conns)
        yield from (up, fails, active)


# -- the `metrics;` location ------------------------------------------------------------

Handled = tuple[int, list[tuple[str, str]], bytes]


def handle_metrics(metrics: Metrics, method: str, accept: str | None = None,
                   accept_encoding: str | None = None) -> Handled:
    """The content handler of a `metrics;` location: (status, headers, body).

    GET and HEAD only, like stub_status (nginx answers other methods 405). For HEAD
    the caller sends the head only; the body is still returned for Content-Length.
    """
    if method not in ("GET", "HEAD"):
        return 405, [], b""
    content_type, body = metrics.render(accept)
    headers = [("Content-Type", content_type)]
    if _wants_gzip(accept_encoding):
        body = gzip.compress(body, compresslevel=5, mtime=0)
        headers.append(("Content-Encoding", "gzip"))
    return 200, headers, body


def _wants_gzip(accept_encoding: str | None) -> bool:
    for item in (accept_encoding or "").split(","):
        token, _, params = item.strip().partition(";")
        if token.strip().lower() == "gzip":
            return params.replace(" ", "").lower() not in ("q=0", "q=0.0", "q=0.00",
                                                            "q=0.000")
    return False
