"""nginx's `stub_status` page and wsgate's live status page (HTML and JSON).

Owns the connection counters behind stub_status, their exact text format, the
registry of live tunnels and the status page rendered from a snapshot of it. Pure:
no I/O; the engine updates the counters and writes what the handlers return.

Connection states, as nginx 1.22 counts them (verified against real nginx):

    accept ------> WAITING  (no byte of a request yet; also idle keep-alive)
    first bytes -> READING  (`requests` += 1: a request exists from its first byte)
    head parsed -> WRITING  (until the request is finalized; a WebSocket tunnel
                             stays WRITING for its whole life, and so does the
                             stub_status request that is being answered)
    finalized --> WAITING  (keep-alive) or closed
    active = reading + writing + waiting; handled = accepted unless a connection
    was dropped at accept (worker_connections exceeded).

Each process writes its own slot of a shared region (wsgate.observe.shared) and
every read sums all slots: with several workers, each worker's stub_status shows
the whole server, as nginx's shared-memory counters do.
"""

from __future__ import annotations

import enum
import html
import json
from dataclasses import asdict, dataclass
from typing import Callable, Iterable, Protocol, TypeVar

from wsgate.observe.shared import (
    ACCEPTED, HANDLED, READING, REQUESTS, WAITING, WRITING, Region, Slot)

__all__ = ["ConnectionCounters", "ConnState", "ConnStat", "ConnTotals", "LiveTunnel",
           "LiveTunnels", "TunnelInfo", "TunnelRecord", "handle_status", "handle_stub_status", "render_status_html",
           "render_status_json", "stub_status_body"]


class ConnState(enum.Enum):
    WAITING = "waiting"
    READING = "reading"
    WRITING = "writing"
    CLOSED = "closed"


class ConnectionCounters:
    """nginx's ngx_stat_* counters: this process writes its own slot of `region`,
    and every read (`accepted`, `active`, `snapshot()` ...) sums all slots, so a
    worker's stub_status shows the whole server, as nginx's does."""

    __slots__ = ("slot", "_ints")

    def __init__(self, slot: Slot | None = None) -> None:
        self.slot = slot if slot is not None else Region.private(rows=0).slot(0)
        self._ints = self.slot.ints

    def snapshot(self) -> ConnTotals:
        """The summed counters, read once (one consistent-enough page)."""
        return ConnTotals(*self.slot.region.conn_totals())

    @property
    def accepted(self) -> int:
        return self.snapshot().accepted

    @property
    def handled(self) -> int:
        return self.snapshot().handled

    @property
    def requests(self) -> int:
        return self.snapshot().requests

    @property
    def reading(self) -> int:
        return self.snapshot().reading

    @property
    def writing(self) -> int:
        return self.snapshot().writing

    @property
    def waiting(self) -> int:
        return self.snapshot().waiting

    @property
    def active(self) -> int:
        return self.snapshot().active

    def open(self, handled: bool = True) -> ConnStat:
        """A connection was accepted: returns its tracker, in WAITING."""
        self._ints[ACCEPTED] += 1
        if not handled:
            return ConnStat(self, ConnState.CLOSED)
        self._ints[HANDLED] += 1
        self._ints[WAITING] += 1
        return ConnStat(self, ConnState.WAITING)


# A connection's state as the index of its counter in the slot (CLOSED: none), so
# a transition is two list updates (enum keys cost a hash each, per request).
_CLOSED = -1
_STATE_FIELD = {ConnState.READING: READING, ConnState.WRITING: WRITING,
                ConnState.WAITING: WAITING, ConnState.CLOSED: _CLOSED}
_FIELD_STATE = {field: state for state, field in _STATE_FIELD.items()}


@dataclass(frozen=True, slots=True)
class ConnTotals:
    """The connection counters summed over every worker at one moment."""

    accepted: int
    handled: int
    requests: int
    reading: int
    writing: int
    waiting: int

    @property
    def active(self) -> int:
        return self.reading + self.writing + self.waiting

    def snapshot(self) -> ConnTotals:
        return self


class ConnStat:
    """One connection's place in the counters; each transition is idempotent,
    so an error path that closes twice cannot drive a counter negative."""

    __slots__ = ("_ints", "_field")

    def __init__(self, counters: ConnectionCounters, state: ConnState) -> None:
        self._ints = counters._ints
        self._field = _STATE_FIELD[state]

    @property
    def state(self) -> ConnState:
        return _FIELD_STATE[self._field]

    def reading(self) -> None:
        """The first bytes of a request arrived: a request now exists."""
        if self._field == WAITING:
            ints = self._ints
            ints[REQUESTS] += 1
            ints[WAITING] -= 1
            ints[READING] += 1
            self._field = READING

    def writing(self) -> None:
        """The request head is parsed; it is being processed (or tunnelled)."""
        field = self._field
        if field == WAITING or field == READING:
            ints = self._ints
            if field == WAITING:          # head arrived in one read
                ints[REQUESTS] += 1
            ints[field] -= 1
            ints[WRITING] += 1
            self._field = WRITING

    def waiting(self) -> None:
        """The request is finalized and the connection is kept alive."""
        field = self._field
        if field != _CLOSED and field != WAITING:
            ints = self._ints
            ints[field] -= 1
            ints[WAITING] += 1
            self._field = WAITING

    def close(self) -> None:
        field = self._field
        if field != _CLOSED:
            self._ints[field] -= 1
            self._field = _CLOSED


# -- stub_status --------------------------------------------------------------------

def stub_status_body(counters: ConnectionCounters | ConnTotals) -> bytes:
    """ngx_http_stub_status_handler's text, trailing spaces included."""
    c = counters.snapshot()
    return (f"Active connections: {c.active} \n"
            "server accepts handled requests\n"
            f" {c.accepted} {c.handled} {c.requests} \n"
            f"Reading: {c.reading} Writing: {c.writing} Waiting: {c.waiting} \n"
            ).encode("ascii")


Handled = tuple[int, list[tuple[str, str]], bytes]


def handle_stub_status(counters: ConnectionCounters, method: str) -> Handled:
    """The content handler of a `stub_status;` location: (status, headers, body).

    nginx answers methods other than GET and HEAD with its 405 page (the caller's
    error page machinery makes it: the body here is empty). Content-Type is always
    text/plain, whatever default_type says. For HEAD the caller sends the head
    only; Content-Length is still the body's length, as nginx sends it.
    """
    if method not in ("GET", "HEAD"):
        return 405, [], b""
    return 200, [("Content-Type", "text/plain")], stub_status_body(counters)


# -- live tunnels -------------------------------------------------------------------

#: Returns (bytes_in, bytes_out, messages_in, messages_out) of a live tunnel so far;
#: messages are 0 for a byte tunnel, which does not see frames.
Probe = Callable[[], tuple[int, int, int, int]]


class LiveTunnel(Protocol):
    """What the registry needs of a live tunnel. The engine registers its own
    per-tunnel object (proxy/tunnellife.py), which computes `client` and the counts
    on demand: thousands of idle tunnels should not each hold a row of text."""

    id: int                 # set by LiveTunnels.add

    @property
    def server(self) -> str: ...
    @property
    def client(self) -> str: ...       # "addr:port" of the client
    @property
    def upstream(self) -> str: ...     # upstream group name, or the proxied host:port
    @property
    def peer(self) -> str: ...         # the address actually connected to
    @property
    def uri(self) -> str: ...
    @property
    def started(self) -> float: ...    # wall-clock time.time() at the 101

    def counts(self) -> tuple[int, int, int, int]: ...


@dataclass(slots=True)
class TunnelRecord:
    """A live tunnel given as plain values (tests, tools): a `LiveTunnel`."""

    server: str
    client: str         # "addr:port" of the client
    upstream: str       # upstream group name, or the proxied host:port
    peer: str           # the address actually connected to
    uri: str
    started: float      # wall-clock time.time() at the 101
    probe: Probe | None = None
    id: int = 0         # set by LiveTunnels.add

    def counts(self) -> tuple[int, int, int, int]:
        return self.probe() if self.probe is not None else (0, 0, 0, 0)


@dataclass(frozen=True, slots=True)
class TunnelInfo:
    """One row of the status page: a tunnel at the moment of the snapshot."""

    id: int
    server: str
    client: str
    upstream: str
    peer: str
    uri: str
    age: float
    bytes_in: int
    bytes_out: int
    messages_in: int
    messages_out: int


T = TypeVar("T", bound=LiveTunnel)


class LiveTunnels:
    """The tunnels open in this process, for the status page."""

    def __init__(self) -> None:
        self._open: dict[int, LiveTunnel] = {}
        self._next = 1

    def __len__(self) -> int:
        return len(self._open)

    def add(self, record: T) -> T:
        record.id = self._next
        self._next += 1
        self._open[record.id] = record
        return record

    def remove(self, record: LiveTunnel) -> None:
        self._open.pop(record.id, None)

    def snapshot(self, now: float) -> list[TunnelInfo]:
        """Every open tunnel, oldest first, with its counters read now."""
        return [_info(r, now) for r in self._open.values()]


def _info(r: LiveTunnel, now: float) -> TunnelInfo:
    return TunnelInfo(r.id, r.server, r.client, r.upstream, r.peer, r.uri,
                      max(now - r.started, 0.0), *r.counts())


# -- the status page ----------------------------------------------------------------

def _connections(counters: ConnectionCounters | ConnTotals | None) -> dict[str, int]:
    if counters is None:
        return {}
    c = counters.snapshot()
    return {"active": c.active, "accepted": c.accepted, "handled": c.handled,
            "requests": c.requests, "reading": c.reading, "writing": c.writing,
            "waiting": c.waiting}


def render_status_json(tunnels: Iterable[TunnelInfo],
                       counters: ConnectionCounters | None = None) -> bytes:
    rows = [asdict(t) | {"age": round(t.age, 3)} for t in tunnels]
    doc = {"connections": _connections(counters), "tunnels": rows}
    return json.dumps(doc, separators=(",", ":")).encode("utf-8") + b"\n"


def _age(seconds: float) -> str:
    whole = int(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


#: How often the HTML page reloads itself.
REFRESH_SECONDS = 5

_COLUMNS = ("id", "server", "client", "upstream", "peer", "uri", "age",
            "bytes in", "bytes out", "messages in", "messages out")


def _row(t: TunnelInfo) -> str:
    cells = (t.id, t.server, t.client, t.upstream, t.peer, t.uri, _age(t.age),
             t.bytes_in, t.bytes_out, t.messages_in, t.messages_out)
    return "<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in cells) + "</tr>"


def render_status_html(tunnels: Iterable[TunnelInfo],
                       counters: ConnectionCounters | None = None) -> bytes:
    rows = [_row(t) for t in tunnels]
    conns = " ".join(f"{k}: {v}" for k, v in _connections(counters).items())
    head = "".join(f"<th>{c}</th>" for c in _COLUMNS)
    body = "\n".join(rows) if rows else f'<tr><td colspan="{len(_COLUMNS)}">none</td></tr>'
    # A live view: the browser reloads it every few seconds; JSON is for scripts.
    return ("<!DOCTYPE html>\n<html>\n<head><meta charset=\"utf-8\">"
            f"<meta http-equiv=\"refresh\" content=\"{REFRESH_SECONDS}\">"
            "<title>wsgate status</title></head>\n<body>\n<h1>wsgate status</h1>\n"
            f"<p>Connections: {conns}</p>\n"
            f"<h2>Open tunnels: {len(rows)}</h2>\n"
            f"<table>\n<tr>{head}</tr>\n{body}\n</table>\n</body>\n</html>\n"
            ).encode("utf-8")


def _wants_json(accept: str | None, args: str | None) -> bool:
    if args and "format=json" in args.split("&"):
        return True
    if args and "format=html" in args.split("&"):
        return False
    media = [part.split(";")[0].strip().lower() for part in (accept or "").split(",")]
    return "application/json" in media and "text/html" not in media


def handle_status(tunnels: Iterable[TunnelInfo], method: str, *,
                  counters: ConnectionCounters | None = None, accept: str | None = None,
                  args: str | None = None) -> Handled:
    """The live status page: JSON for `?format=json` or `Accept: application/json`,
    else HTML. GET and HEAD only. Never cached: it is a live view."""
    if method not in ("GET", "HEAD"):
        return 405, [], b""
    if _wants_json(accept, args):
        ctype, body = "application/json", render_status_json(tunnels, counters)
    else:
        ctype, body = "text/html; charset=utf-8", render_status_html(tunnels, counters)
    return 200, [("Content-Type", ctype), ("Cache-Control", "no-store")], body
