"""The balancer contract: build once per config, pick per request, release per try.

This mirrors nginx's peer API (init_upstream / init / get / free):

    balancer = build(peer_set, BalancerParams("hash", ("$arg_x",)))   # per config
    pick = balancer.pick(PickContext(now, client_addr=..., key=...))  # per request
    peer = pick.get(now)          # first choice; None = "no live upstreams"
    ...connect, proxy...
    pick.release(peer, Outcome.FAILED, now)   # nginx's free: fails, conns--
    if should_retry(kind, mask, ..., pick.tries_done, pick.initial_tries, ...):
        peer = pick.get(now)      # the fallback nginx would choose

`Pick` is also an iterator (using `pick.now`), so `next(pick)` gives the same
sequence. Every balancer's `_get` is a transliteration of its nginx module;
`conns++` and the bookkeeping shared by all of them live here.
"""

from __future__ import annotations

import random as _random
from dataclasses import dataclass
from typing import Callable, ClassVar, Iterator

from wsgate.upstream.peers import Outcome, Peer, PeerSet

#: Every `server` parameter nginx 1.22 knows (its NGX_HTTP_UPSTREAM_* flags).
ALL_SERVER_PARAMS = frozenset(
    {"weight", "max_conns", "max_fails", "fail_timeout", "down", "backup"})


@dataclass(frozen=True)
class BalancerParams:
    """The balancing directive: method name and its arguments as written.

    method: "round_robin" (no directive), "least_conn", "ip_hash", "hash"
    (args: KEY [consistent]) or "random" (args: [two [least_conn]]).
    """

    method: str = "round_robin"
    args: tuple[str, ...] = ()


@dataclass
class PickContext:
    """What one request tells the balancer."""

    now: float
    client_addr: str | None = None  # textual IP; None for unix-socket clients
    key: str | bytes = b""  # `hash` key, already rendered by the proxy
    next_upstream_tries: int = 0  # proxy_next_upstream_tries, 0 = unlimited
    rand: Callable[[], int] | None = None  # stands in for ngx_random()


class Pick:
    """One request's walk over the peers: nginx's rr_peer_data_t + pc->tries."""

    def __init__(self, balancer: Balancer, ctx: PickContext) -> None:
        self.balancer = balancer
        self.ctx = ctx
        self.now = ctx.now
        self.peers: PeerSet = balancer.peers  # switches to the backup set
        self.tried = 0  # nginx's `tried` bitmap over self.peers
        self.current: Peer | None = None
        self.no_live = False
        self.tries = _initial_tries(balancer.peers, ctx.next_upstream_tries)
        self.initial_tries = self.tries

    @property
    def tries_done(self) -> int:
        return self.initial_tries - self.tries

    def __iter__(self) -> Iterator[Peer]:
        return self

    def __next__(self) -> Peer:
        peer = self.get(self.now)
        if peer is None:
            raise StopIteration
        return peer

    def get(self, now: float) -> Peer | None:
        """nginx's peer.get: the next peer to try, or None (NGX_BUSY)."""
        peer = self._get(int(now))
        if peer is None:
            self.no_live = True
            return None
        peer.conns += 1
        self.current = peer
        return peer

    def release(self, peer: Peer, outcome: Outcome, now: float) -> None:
        """nginx's peer.free after a try (or when a tunnel ends)."""
        single = self.peers.single
        self.balancer.release(peer, outcome, now, single=single)
        if single:
            self.tries = 0
        elif self.tries:
            self.tries -= 1

    def _get(self, now: int) -> Peer | None:
        raise NotImplementedError

    # helpers shared by the method modules

    def is_tried(self, index: int) -> bool:
        return bool(self.tried >> index & 1)

    def mark_tried(self, index: int) -> None:
        self.tried |= 1 << index


#: Rejected draws after which ip_hash, hash and random give up and fall back to round
#: robin (nginx: `if (++hp->tries > 20)` / `if (++rp->tries > 20)`).
MAX_DRAWS = 20


def draw_usable(pick: Pick, now: int, draw: Callable[[], int],
                rejected: int) -> tuple[Peer | None, int]:
    """The loop ip_hash, hash and random share: `draw()` peer indexes until one is
    untried and usable, and take it (checked, tried).  Returns that peer, or None
    once more than MAX_DRAWS draws were rejected, with the updated rejection count."""
    peers = pick.peers.peers
    while True:
        index = draw()
        peer = peers[index]
        if not pick.is_tried(index) and peer.usable(now):
            peer.mark_checked(now)
            pick.mark_tried(index)
            return peer, rejected
        rejected += 1
        if rejected > MAX_DRAWS:
            return None, rejected


def _initial_tries(peers: PeerSet, cap: int) -> int:
    """ngx_http_upstream_tries, capped by proxy_next_upstream_tries."""
    tries = peers.tries + (peers.backup.tries if peers.backup else 0)
    if cap and tries > cap:
        return cap
    return tries


class Balancer:
    """A balancing method built over one upstream's peers."""

    method: ClassVar[str] = ""
    #: `server` parameters this method accepts (nginx's uscf->flags).
    server_params: ClassVar[frozenset[str]] = ALL_SERVER_PARAMS
    pick_class: ClassVar[type[Pick]] = Pick

    def __init__(self, peers: PeerSet, params: BalancerParams) -> None:
        self.peers = peers
        self.params = params

    def pick(self, ctx: PickContext) -> Pick:
        return self.pick_class(self, ctx)

    def release(self, peer: Peer, outcome: Outcome, now: float, *,
                single: bool | None = None) -> None:
        """ngx_http_upstream_free_round_robin_peer's accounting on one peer."""
        if single is None:
            single = self.peers.single and peer is self.peers.peers[0]
        if not single:
            _account(peer, outcome, int(now))
        peer.conns -= 1

    def all_down(self, now: float) -> bool:
        """True when no peer (primary or backup) could be picked right now."""
        t = int(now)
        return not any(p.usable(t) for p in self.peers.all_peers())


def _account(peer: Peer, outcome: Outcome, now: int) -> None:
    if outcome & Outcome.FAILED:
        peer.fails += 1
        peer.accessed = now
        peer.checked = now
        if peer.max_fails:
            peer.effective_weight -= peer.weight // peer.max_fails
        if peer.effective_weight < 0:
            peer.effective_weight = 0
    elif peer.accessed < peer.checked:
        peer.fails = 0  # a try after fail_timeout passed: the peer is live


def disabled_now(peer: Peer, outcome: Outcome) -> bool:
    """Whether this release is where nginx logs `upstream server temporarily
    disabled` (a warn): call after `release`."""
    return bool(outcome & Outcome.FAILED and peer.max_fails
                and peer.fails >= peer.max_fails)


def default_rand() -> Callable[[], int]:
    """A 31-bit generator like ngx_random(); tests pass a seeded one."""
    rng = _random.Random()
    return lambda: rng.getrandbits(31)


__all__ = [
    "ALL_SERVER_PARAMS", "Balancer", "BalancerParams", "Pick", "PickContext",
    "disabled_now", "default_rand",
]
