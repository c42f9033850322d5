"""least_conn: nginx's ngx_http_upstream_least_conn_module.c.

The peer with the fewest live connections relative to its weight wins
(conns_a * weight_b < conns_b * weight_a, no division); ties go to smooth
weighted round robin among the tied peers, starting from the first of them.
`conns` counts every open upstream connection, upgraded tunnels included,
because the proxy releases a peer only when its tunnel ends.
"""

from __future__ import annotations

from wsgate.upstream.balancer import Balancer, Pick
from wsgate.upstream.peers import Peer
from wsgate.upstream.round_robin import get_round_robin, to_backup


def _least(pick: Pick, now: int) -> tuple[Peer | None, int, bool]:
    """First pass: the least loaded eligible peer, and whether others tie."""
    best: Peer | None = None
    best_i = 0
    many = False
    for i, peer in enumerate(pick.peers.peers):
        if pick.is_tried(i) or not peer.usable(now):
            continue
        if best is None or peer.conns * best.weight < best.conns * peer.weight:
            best, best_i, many = peer, i, False
        elif peer.conns * best.weight == best.conns * peer.weight:
            many = True
    return best, best_i, many


def _break_tie(pick: Pick, now: int, best: Peer, best_i: int) -> tuple[Peer, int, int]:
    """Second pass: round robin among the peers tied with `best`."""
    total = 0
    peers = pick.peers.peers
    for i in range(best_i, len(peers)):
        peer = peers[i]
        if pick.is_tried(i) or peer.down:
            continue
        if peer.conns * best.weight != best.conns * peer.weight:
            continue
        if peer.failed(now) or peer.full():
            continue
        peer.current_weight += peer.effective_weight
        total += peer.effective_weight
        if peer.effective_weight < peer.weight:
            peer.effective_weight += 1
        if peer.current_weight > best.current_weight:
            best, best_i = peer, i
    return best, best_i, total


def get_least_conn(pick: Pick, now: int) -> Peer | None:
    """ngx_http_upstream_get_least_conn_peer (without conns++)."""
    if pick.peers.single:
        return get_round_robin(pick, now)
    best, best_i, many = _least(pick, now)
    if best is None:
        return to_backup(pick, now, get_least_conn)
    total = 0
    if many:
        best, best_i, total = _break_tie(pick, now, best, best_i)
    best.current_weight -= total
    best.mark_checked(now)
    pick.mark_tried(best_i)
    return best


class LeastConnPick(Pick):
    def _get(self, now: int) -> Peer | None:
        return get_least_conn(self, now)


class LeastConn(Balancer):
    method = "least_conn"
    pick_class = LeastConnPick
