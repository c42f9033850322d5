"""Peers and peer sets: nginx's ngx_http_upstream_rr_peer(s)_t, as plain values.

A `Peer` is one address of one `server` line; a server whose host resolves to
several addresses contributes several peers (the caller resolves and passes the
address list in `ServerSpec.addrs`). A `PeerSet` is nginx's rr_peers_t: the
primary peers, with the backup peers hanging off `backup` (nginx's `next`).

Runtime fields follow nginx exactly, including its integer seconds: `accessed`
and `checked` hold ngx_time() values, i.e. `int(now)` of the caller's clock.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, Sequence, Union

#: What the proxy connects to: (host, port[, flow, scope]) or a unix path.
SockAddr = Union[tuple[Any, ...], str]


class Outcome(enum.IntEnum):
    """How a try with a peer ended (nginx's NGX_PEER_* states given to free)."""

    OK = 0
    KEEPALIVE = 1
    NEXT = 2  # proxy_next_upstream on 403/404: try another, not a failure
    FAILED = 4


@dataclass(frozen=True)
class ServerSpec:
    """One `server` line, resolved: the balancers' input from the config."""

    name: str  # as written in the config: "host:port" or "unix:/path"
    addrs: Sequence[tuple[str, SockAddr]]  # (printed name, sockaddr) per address
    weight: int = 1
    max_fails: int = 1
    fail_timeout: int = 10  # seconds, as nginx stores it
    backup: bool = False
    down: bool = False
    max_conns: int = 0
    params: frozenset[str] = frozenset()  # parameter names written on the line


class Peer:
    """One upstream address with nginx's balancing state."""

    __slots__ = (
        "name", "sockaddr", "server", "weight", "max_fails", "fail_timeout",
        "backup", "down", "max_conns", "current_weight", "effective_weight",
        "conns", "fails", "accessed", "checked",
    )

    def __init__(self, name: str, sockaddr: SockAddr, server: str, *,
                 weight: int = 1, max_fails: int = 1, fail_timeout: int = 10,
                 backup: bool = False, down: bool = False,
                 max_conns: int = 0) -> None:
        self.name = name
        self.sockaddr = sockaddr
        self.server = server
        self.weight = weight
        self.max_fails = max_fails
        self.fail_timeout = fail_timeout
        self.backup = backup
        self.down = down
        self.max_conns = max_conns
        self.current_weight = 0
        self.effective_weight = weight
        self.conns = 0
        self.fails = 0
        self.accessed = 0
        self.checked = 0

    def __repr__(self) -> str:
        return (f"Peer({self.name!r}, w={self.weight}, cw={self.current_weight},"
                f" ew={self.effective_weight}, conns={self.conns},"
                f" fails={self.fails})")

    def usable(self, now: int) -> bool:
        """nginx's three skip tests: down, failed within fail_timeout, max_conns."""
        if self.down:
            return False
        if self.failed(now):
            return False
        return not self.full()

    def failed(self, now: int) -> bool:
        """Too many fails, and the last check is at most fail_timeout old."""
        return bool(self.max_fails and self.fails >= self.max_fails
                    and now - self.checked <= self.fail_timeout)

    def full(self) -> bool:
        return bool(self.max_conns and self.conns >= self.max_conns)

    def mark_checked(self, now: int) -> None:
        """After a pick: open a new fail_timeout window if the last one expired."""
        if now - self.checked > self.fail_timeout:
            self.checked = now


@dataclass
class PeerSet:
    """nginx's rr_peers_t: one list of peers plus its backup list."""

    name: str  # the upstream's name, for "no live upstreams" messages
    peers: list[Peer]
    backup: PeerSet | None = None
    single: bool = False
    total_weight: int = 0
    tries: int = 0  # peers that are not down: the retry budget they add
    weighted: bool = field(default=False)

    @property
    def number(self) -> int:
        return len(self.peers)

    def all_peers(self) -> list[Peer]:
        """Primary then backup peers, for status pages and metrics."""
        return self.peers + (self.backup.peers if self.backup else [])


def _peers_of(servers: Sequence[ServerSpec], backup: bool) -> list[Peer]:
    return [
        Peer(name, sockaddr, s.name, weight=s.weight, max_fails=s.max_fails,
             fail_timeout=s.fail_timeout, backup=s.backup, down=s.down,
             max_conns=s.max_conns)
        for s in servers if s.backup == backup
        for name, sockaddr in s.addrs
    ]


def _make_set(name: str, peers: list[Peer]) -> PeerSet:
    total = sum(p.weight for p in peers)
    return PeerSet(name=name, peers=peers, single=len(peers) == 1,
                   total_weight=total,
                   tries=sum(1 for p in peers if not p.down),
                   weighted=total != len(peers))


def build_peer_set(name: str, servers: Sequence[ServerSpec]) -> PeerSet:
    """nginx's ngx_http_upstream_init_round_robin for an `upstream` block.

    Raises ValueError('no servers in upstream "NAME"') when no primary
    address exists, as nginx does at startup.
    """
    primary = _make_set(name, _peers_of(servers, backup=False))
    if primary.number == 0:
        raise ValueError(f'no servers in upstream "{name}"')
    backups = _peers_of(servers, backup=True)
    if backups:
        primary.single = False  # with backups, the primary is never "single"
        primary.backup = _make_set(name, backups)
        primary.backup.single = False
    return primary


def implicit_peer_set(name: str,
                      addrs: Sequence[tuple[str, SockAddr]]) -> PeerSet:
    """Peers of an upstream implied by `proxy_pass http://host:port`.

    nginx gives them weight 1, max_fails 1, fail_timeout 10 and no backups.
    """
    spec = ServerSpec(name=name, addrs=addrs)
    return build_peer_set(name, [spec])
