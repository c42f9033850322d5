"""ip_hash: nginx's ngx_http_upstream_ip_hash_module.c.

The hash runs over the first three octets of an IPv4 client address (all 16
bytes of an IPv6 one; three zero bytes for unix-socket clients):
hash = (hash * 113 + octet) % 6271, from 89. It selects a peer by weight over
all primary peers (down ones included, then skipped); each rejection rehashes
from the last value, and after 20 rejections nginx falls back to round robin.
"""

from __future__ import annotations

import ipaddress

from wsgate.upstream.balancer import MAX_DRAWS, Balancer, Pick, PickContext, draw_usable
from wsgate.upstream.peers import Peer
from wsgate.upstream.round_robin import get_round_robin

_PSEUDO_ADDR = b"\0\0\0"


def hash_bytes(client_addr: str | None) -> bytes:
    """The address bytes nginx feeds the hash."""
    if not client_addr:
        return _PSEUDO_ADDR
    addr = ipaddress.ip_address(client_addr.strip("[]"))
    if addr.version == 4:
        return addr.packed[:3]
    return addr.packed


def ip_hash_step(hash_: int, addr: bytes) -> int:
    for octet in addr:
        hash_ = (hash_ * 113 + octet) % 6271
    return hash_


def weighted_index(pick: Pick, value: int) -> int:
    """Walk the peers by weight to the one owning `value % total_weight`."""
    peers = pick.peers.peers
    w = value % pick.peers.total_weight
    p = 0
    while w >= peers[p].weight:
        w -= peers[p].weight
        p += 1
    return p


class IpHashPick(Pick):
    def __init__(self, balancer: Balancer, ctx: PickContext) -> None:
        super().__init__(balancer, ctx)
        self.addr = hash_bytes(ctx.client_addr)
        self.hash = 89
        self.hash_tries = 0

    def _get(self, now: int) -> Peer | None:
        if self.hash_tries > MAX_DRAWS or self.peers.single:
            return get_round_robin(self, now)
        peer, self.hash_tries = draw_usable(self, now, self._draw, self.hash_tries)
        return peer if peer is not None else get_round_robin(self, now)

    def _draw(self) -> int:
        """Rehash from the last value (a later try continues where this one stopped)."""
        self.hash = ip_hash_step(self.hash, self.addr)
        return weighted_index(self, self.hash)


class IpHash(Balancer):
    method = "ip_hash"
    server_params = frozenset(
        {"weight", "max_conns", "max_fails", "fail_timeout", "down"})
    pick_class = IpHashPick
