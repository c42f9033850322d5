"""Smooth weighted round robin: nginx's ngx_http_upstream_round_robin.c.

Every pick adds each eligible peer's effective_weight to its current_weight,
takes the largest (first on ties) and subtracts the sum from the winner; a
failed peer's effective_weight drops by weight/max_fails and climbs back by
one per pick. Peers tried by this request are skipped (the `tried` bitmap).
When no primary peer is eligible the request moves to the backup set, once.
The helpers here are reused by the other methods, which fall back to them.
"""

from __future__ import annotations

from typing import Callable

from wsgate.upstream.balancer import Balancer, Pick
from wsgate.upstream.peers import Peer

Getter = Callable[[Pick, int], "Peer | None"]


def smooth_pick(pick: Pick, now: int, server: str | None = None) -> Peer | None:
    """ngx_http_upstream_get_peer (and chash's loop when `server` is given)."""
    best: Peer | None = None
    best_i = 0
    total = 0
    for i, peer in enumerate(pick.peers.peers):
        if pick.is_tried(i) or not peer.usable(now):
            continue
        if server is not None and peer.server != server:
            continue
        peer.current_weight += peer.effective_weight
        total += peer.effective_weight
        if peer.effective_weight < peer.weight:
            peer.effective_weight += 1
        if best is None or peer.current_weight > best.current_weight:
            best, best_i = peer, i
    if best is None:
        return None
    pick.mark_tried(best_i)
    best.current_weight -= total
    best.mark_checked(now)
    return best


def to_backup(pick: Pick, now: int, getter: Getter) -> Peer | None:
    """The `failed:` label: retry the whole pick on the backup set, if any."""
    backup = pick.peers.backup
    if backup is None:
        return None
    pick.peers = backup
    pick.tried = 0
    return getter(pick, now)


def get_round_robin(pick: Pick, now: int) -> Peer | None:
    """ngx_http_upstream_get_round_robin_peer (without conns++)."""
    peers = pick.peers
    if peers.single:
        peer = peers.peers[0]
        if not peer.down and not peer.full():
            return peer  # a lone peer ignores max_fails, as in nginx
    else:
        peer_or_none = smooth_pick(pick, now)
        if peer_or_none is not None:
            return peer_or_none
    return to_backup(pick, now, get_round_robin)


class RoundRobinPick(Pick):
    def _get(self, now: int) -> Peer | None:
        return get_round_robin(self, now)


class RoundRobin(Balancer):
    """The default method (no balancing directive in the upstream block)."""

    method = "round_robin"
    pick_class = RoundRobinPick
