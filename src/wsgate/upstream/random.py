"""random [two [least_conn]]: nginx's ngx_http_upstream_random_module.c.

A draw x = rand() % total_weight selects the peer whose cumulative weight
range holds x. `two` draws two distinct eligible peers and keeps the one with
fewer connections relative to weight (the first on ties). 20 rejected draws
fall back to round robin. The draws cannot match nginx's (its libc random()
state is private), so only the rules, not the sequence, are nginx's.
"""

from __future__ import annotations

import bisect

from wsgate.upstream.balancer import (
    MAX_DRAWS, Balancer, BalancerParams, Pick, PickContext, default_rand, draw_usable)
from wsgate.upstream.peers import Peer, PeerSet
from wsgate.upstream.round_robin import get_round_robin


class RandomPick(Pick):
    def __init__(self, balancer: Balancer, ctx: PickContext) -> None:
        super().__init__(balancer, ctx)
        assert isinstance(balancer, Random)
        self.ranges = balancer.ranges
        self.rand = ctx.rand or balancer.rand
        self.rand_tries = 0

    def peek(self) -> int:
        """ngx_http_upstream_peek_random_peer: the index owning the draw."""
        x = self.rand() % self.peers.total_weight
        return bisect.bisect_right(self.ranges, x) - 1

    def _get(self, now: int) -> Peer | None:
        if self.rand_tries > MAX_DRAWS or self.peers.single:
            return get_round_robin(self, now)
        peer, self.rand_tries = draw_usable(self, now, self.peek, self.rand_tries)
        return peer if peer is not None else get_round_robin(self, now)


class RandomTwoPick(RandomPick):
    def _get(self, now: int) -> Peer | None:
        if self.rand_tries > MAX_DRAWS or self.peers.single:
            return get_round_robin(self, now)
        prev: Peer | None = None
        p = 0
        while True:
            i = self.peek()
            peer = self.peers.peers[i]
            if peer is not prev and not self.is_tried(i) and peer.usable(now):
                if prev is not None:
                    if peer.conns * prev.weight > prev.conns * peer.weight:
                        peer, i = prev, p
                    break
                prev, p = peer, i
            self.rand_tries += 1
            if self.rand_tries > MAX_DRAWS:
                return get_round_robin(self, now)
        peer.mark_checked(now)
        self.mark_tried(i)
        return peer


class Random(Balancer):
    method = "random"
    server_params = frozenset(
        {"weight", "max_conns", "max_fails", "fail_timeout", "down"})
    pick_class = RandomPick

    def __init__(self, peers: PeerSet, params: BalancerParams) -> None:
        super().__init__(peers, params)
        self.ranges = _ranges(peers)
        self.rand = default_rand()
        self.two = params.args[:1] == ("two",)

    def pick(self, ctx: PickContext) -> Pick:
        if self.two:
            return RandomTwoPick(self, ctx)
        return RandomPick(self, ctx)


def _ranges(peers: PeerSet) -> list[int]:
    """Where each peer's weight range starts (ranges[i].range in nginx)."""
    starts = []
    total = 0
    for peer in peers.peers:
        starts.append(total)
        total += peer.weight
    return starts
