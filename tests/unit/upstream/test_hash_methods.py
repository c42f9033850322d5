"""ip_hash, hash and hash consistent against values printed by nginx 1.22.1.

The expected numbers come from nginx's debug log (`error_log ... debug`) for
upstreams of 127.0.0.1:1, 127.0.0.1:2 weight=2, 127.0.0.1:3, all refusing
connections, so each request walks every peer:
    get hash peer, value:13840, peer:0 / value:17638, peer:1 / value:71547, peer:2
    consistent hash peer:151, server:"127.0.0.1:2" / 152 "127.0.0.1:1" /
        153 "127.0.0.1:2" (tried) / 154 "127.0.0.1:3"
    ip_hash from 127.10.20.30: peers 1, 2, 0
"""

from __future__ import annotations

import zlib

from wsgate.upstream import (
    BalancerParams, Outcome, PickContext, ServerSpec, build, build_peer_set)
from wsgate.upstream.hash import build_ring, rehash_value, server_points, split_server
from wsgate.upstream.ip_hash import hash_bytes, ip_hash_step


def spec(name: str, **kw: object) -> ServerSpec:
    return ServerSpec(name=name, addrs=[(name, (name, 80))], **kw)  # type: ignore[arg-type]


SERVERS = [spec("127.0.0.1:1"), spec("127.0.0.1:2", weight=2), spec("127.0.0.1:3")]


def walk(params: BalancerParams, ctx: PickContext, servers=SERVERS) -> list[str]:  # type: ignore[no-untyped-def]
    """Every peer one request tries when each try fails."""
    pick = build(build_peer_set("u", servers), params).pick(ctx)
    names = []
    for peer in pick:
        names.append(peer.name)
        pick.release(peer, Outcome.FAILED, ctx.now)
        assert len(names) <= 10
    return names


def test_hash_rounds_match_nginx_values() -> None:
    total = 0
    values = []
    for rehash in range(7):
        total += rehash_value(b"hello", rehash)
        values.append(total)
    # nginx logs only the rounds that land on an untried peer: 0, 1 and 6
    # (rounds 2-5 land on peers 0 and 1, already tried, w = value % 4)
    assert values[0] == 13840 and values[1] == 17638 and values[6] == 71547
    assert [v % 4 for v in values[2:6]] == [0, 2, 1, 0]


def test_hash_walk_matches_nginx() -> None:
    ctx = PickContext(100, key="hello")
    assert walk(BalancerParams("hash", ("$arg_x",)), ctx) == [
        "127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"]


def test_hash_empty_key_falls_back_to_round_robin() -> None:
    balancer = build(build_peer_set("u", SERVERS), BalancerParams("hash", ("$arg_x",)))
    names = []
    for _ in range(4):
        pick = balancer.pick(PickContext(0, key=""))
        peer = pick.get(0)
        assert peer is not None
        names.append(peer.name)
        pick.release(peer, Outcome.OK, 0)
    assert names == ["127.0.0.1:2", "127.0.0.1:1", "127.0.0.1:3", "127.0.0.1:2"]


def test_consistent_walk_matches_nginx() -> None:
    ctx = PickContext(100, key="hello")
    params = BalancerParams("hash", ("$arg_x", "consistent"))
    assert walk(params, ctx) == ["127.0.0.1:2", "127.0.0.1:1", "127.0.0.1:3"]
    ring = build_ring(build_peer_set("u", SERVERS))
    start = next(i for i, h in enumerate(ring.hashes) if h >= zlib.crc32(b"hello"))
    assert start == 151
    assert ring.servers[151:155] == ["127.0.0.1:2", "127.0.0.1:1", "127.0.0.1:2",
                                     "127.0.0.1:3"]


def test_ring_points_follow_memcached_fast() -> None:
    points = server_points("10.0.0.1:11211", 1)
    assert len(points) == 160
    first = zlib.crc32(b"10.0.0.1\x0011211" + b"\0\0\0\0")
    assert points[0] == first
    assert points[1] == zlib.crc32(b"10.0.0.1\x0011211" + first.to_bytes(4, "little"))


def test_split_server_like_nginx() -> None:
    assert split_server("backend:8080") == (b"backend", b"8080")
    assert split_server("backend") == (b"backend", b"")
    assert split_server("unix:/tmp/s.sock") == (b"/tmp/s.sock", b"")
    assert split_server("[::1]:80") == (b"[::1]", b"80")


def test_consistent_key_moves_little_when_a_server_is_added() -> None:
    params = BalancerParams("hash", ("$arg_x", "consistent"))
    three = build(build_peer_set("u", SERVERS), params)
    four = build(build_peer_set("u", SERVERS + [spec("127.0.0.1:4")]), params)
    moved = 0
    for i in range(200):
        a = three.pick(PickContext(0, key=f"k{i}")).get(0)
        b = four.pick(PickContext(0, key=f"k{i}")).get(0)
        assert a is not None and b is not None
        if a.name != b.name:
            assert b.name == "127.0.0.1:4"  # keys only move to the new server
            moved += 1
    assert 0 < moved < 100


def test_ip_hash_uses_three_octets() -> None:
    assert hash_bytes("127.10.20.30") == bytes([127, 10, 20])
    assert hash_bytes("::1") == bytes(15) + b"\x01"
    assert hash_bytes(None) == b"\0\0\0"
    h = 89
    for octet in (127, 10, 20):
        h = (h * 113 + octet) % 6271
    assert ip_hash_step(89, bytes([127, 10, 20])) == h == 5190


def test_ip_hash_walk_matches_nginx() -> None:
    ctx = PickContext(100, client_addr="127.10.20.30")
    assert walk(BalancerParams("ip_hash"), ctx) == [
        "127.0.0.1:2", "127.0.0.1:3", "127.0.0.1:1"]


def test_ip_hash_same_slash24_same_peer() -> None:
    balancer = build(build_peer_set("u", SERVERS), BalancerParams("ip_hash"))
    chosen = {balancer.pick(PickContext(0, client_addr=f"192.168.7.{i}")).get(0).name  # type: ignore[union-attr]
              for i in range(1, 50)}
    assert len(chosen) == 1


def test_ip_hash_skips_down_peer() -> None:
    servers = [spec("a"), spec("b", down=True), spec("c")]
    balancer = build(build_peer_set("u", servers), BalancerParams("ip_hash"))
    for i in range(40):
        peer = balancer.pick(PickContext(0, client_addr=f"10.{i}.1.1")).get(0)
        assert peer is not None and peer.name != "b"


def test_ip_hash_all_down_after_20_tries_is_no_live() -> None:
    servers = [spec("a", down=True), spec("b", down=True)]
    balancer = build(build_peer_set("u", servers), BalancerParams("ip_hash"))
    pick = balancer.pick(PickContext(0, client_addr="10.1.1.1"))
    assert pick.get(0) is None and pick.no_live
