"""hash KEY [consistent]: nginx's ngx_http_upstream_hash_module.c.

Plain hash (Cache::Memcached compatible): each round adds
(crc32([REHASH] KEY) >> 16) & 0x7fff to a running sum, REHASH being the round
number in decimal, omitted in round 0; the sum modulo total weight selects a
peer by weight. 20 rejected rounds, an empty key or a single peer fall back to
round robin.

Consistent hash (Cache::Memcached::Fast compatible ketama ring): every primary
peer puts weight*160 points on a ring; point j of server "HOST:PORT" is
crc32(HOST "\\0" PORT prev), prev being point j-1's hash as 4 little-endian
bytes (0 for j=0). A key goes to the first point >= crc32(KEY); the peers of
that point's server compete by smooth weighted round robin, and a miss moves
to the next point (20 times at most, then round robin).
"""

from __future__ import annotations

import bisect
import zlib
from dataclasses import dataclass

from wsgate.upstream.balancer import (
    MAX_DRAWS, Balancer, BalancerParams, Pick, PickContext, draw_usable)
from wsgate.upstream.ip_hash import weighted_index
from wsgate.upstream.peers import Peer, PeerSet
from wsgate.upstream.round_robin import get_round_robin, smooth_pick


def key_bytes(key: str | bytes) -> bytes:
    if isinstance(key, bytes):
        return key
    return key.encode("utf-8", "surrogateescape")


def rehash_value(key: bytes, rehash: int) -> int:
    """One round's 15-bit contribution to the running hash."""
    prefix = str(rehash).encode() if rehash > 0 else b""
    return (zlib.crc32(prefix + key) >> 16) & 0x7FFF


class HashPick(Pick):
    def __init__(self, balancer: Balancer, ctx: PickContext) -> None:
        super().__init__(balancer, ctx)
        self.key = key_bytes(ctx.key)
        self.hash = 0
        self.rehash = 0
        self.hash_tries = 0

    def _get(self, now: int) -> Peer | None:
        if self.hash_tries > MAX_DRAWS or self.peers.single or not self.key:
            return get_round_robin(self, now)
        peer, self.hash_tries = draw_usable(self, now, self._draw, self.hash_tries)
        return peer if peer is not None else get_round_robin(self, now)

    def _draw(self) -> int:
        """The next round: add its contribution to the running hash."""
        self.hash += rehash_value(self.key, self.rehash)
        self.rehash += 1
        return weighted_index(self, self.hash)


class Hash(Balancer):
    method = "hash"
    server_params = frozenset(
        {"weight", "max_conns", "max_fails", "fail_timeout", "down"})
    pick_class = HashPick


@dataclass(frozen=True)
class Ring:
    """The sorted, de-duplicated ring: point hashes and their server names."""

    hashes: list[int]
    servers: list[str]


def split_server(server: str) -> tuple[bytes, bytes]:
    """HOST and PORT as nginx cuts the server string (unix: has no port)."""
    raw = server.encode()
    if raw[:5].lower() == b"unix:":
        return raw[5:], b""
    for j in range(len(raw)):
        c = raw[len(raw) - j - 1]
        if c == ord(":"):
            return raw[:len(raw) - j - 1], raw[len(raw) - j:]
        if not ord("0") <= c <= ord("9"):
            break
    return raw, b""


def server_points(server: str, weight: int) -> list[int]:
    host, port = split_server(server)
    base = host + b"\0" + port
    points = []
    prev = 0
    for _ in range(weight * 160):
        prev = zlib.crc32(base + prev.to_bytes(4, "little"))
        points.append(prev)
    return points


def build_ring(peers: PeerSet) -> Ring:
    """ngx_http_upstream_init_chash: one entry per peer, so a server with
    several addresses adds the same points several times (then de-duplicated)."""
    points = [(h, peer.server) for peer in peers.peers
              for h in server_points(peer.server, peer.weight)]
    points.sort(key=lambda point: point[0])  # stable, like glibc's merge sort
    hashes: list[int] = []
    servers: list[str] = []
    for h, server in points:
        if not hashes or hashes[-1] != h:
            hashes.append(h)
            servers.append(server)
    return Ring(hashes, servers)


class ConsistentHashPick(HashPick):
    def __init__(self, balancer: Balancer, ctx: PickContext) -> None:
        super().__init__(balancer, ctx)
        ring = self.ring
        self.hash = bisect.bisect_left(ring.hashes, zlib.crc32(self.key))

    @property
    def ring(self) -> Ring:
        assert isinstance(self.balancer, ConsistentHash)
        return self.balancer.ring

    def _get(self, now: int) -> Peer | None:
        if self.hash_tries > MAX_DRAWS or self.peers.single or not self.key:
            return get_round_robin(self, now)
        ring = self.ring
        while True:
            server = ring.servers[self.hash % len(ring.servers)]
            best = smooth_pick(self, now, server=server)
            if best is not None:
                return best
            self.hash += 1
            self.hash_tries += 1
            if self.hash_tries > MAX_DRAWS:
                return get_round_robin(self, now)


class ConsistentHash(Hash):
    pick_class = ConsistentHashPick

    def __init__(self, peers: PeerSet, params: BalancerParams) -> None:
        super().__init__(peers, params)
        self.ring = build_ring(peers)
