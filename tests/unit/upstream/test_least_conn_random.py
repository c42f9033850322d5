"""least_conn (live connections, tunnels included) and random [two]."""

from __future__ import annotations

import collections
import random

from wsgate.upstream import (
    BalancerParams, Outcome, PickContext, ServerSpec, build, build_peer_set)


def spec(name: str, **kw: object) -> ServerSpec:
    return ServerSpec(name=name, addrs=[(name, (name, 80))], **kw)  # type: ignore[arg-type]


LC = BalancerParams("least_conn")


def test_least_conn_prefers_fewest_live_connections() -> None:
    lc = build(build_peer_set("u", [spec("a"), spec("b"), spec("c")]), LC)
    held = []
    for _ in range(3):  # three open tunnels, one per peer
        pick = lc.pick(PickContext(0))
        held.append((pick, pick.get(0)))
    assert sorted(p.name for _, p in held) == ["a", "b", "c"]  # type: ignore[union-attr]
    pick, b = next((pk, p) for pk, p in held if p.name == "b")  # type: ignore[union-attr]
    pick.release(b, Outcome.OK, 0)  # type: ignore[arg-type]  # b's tunnel ended
    assert lc.pick(PickContext(0)).get(0) is b


def test_least_conn_compares_conns_relative_to_weight() -> None:
    lc = build(build_peer_set("u", [spec("a", weight=3), spec("b")]), LC)
    a, b = lc.peers.peers
    a.conns, b.conns = 2, 1  # 2/3 < 1/1
    assert lc.pick(PickContext(0)).get(0) is a
    a.conns = 4  # 4/3 > 1/1
    b.conns = 1
    assert lc.pick(PickContext(0)).get(0) is b


def test_least_conn_ties_are_weighted_round_robin() -> None:
    lc = build(build_peer_set("u", [spec("a", weight=5), spec("b"), spec("c")]), LC)
    names = []
    for _ in range(7):
        pick = lc.pick(PickContext(0))
        peer = pick.get(0)
        names.append(peer.name)  # type: ignore[union-attr]
        pick.release(peer, Outcome.OK, 0)  # type: ignore[arg-type]
    assert names == list("aabacaa")


def test_least_conn_backup_after_primary_failures() -> None:
    lc = build(build_peer_set("u", [spec("a"), spec("z", backup=True)]), LC)
    pick = lc.pick(PickContext(0))
    a = pick.get(0)
    pick.release(a, Outcome.FAILED, 0)  # type: ignore[arg-type]
    assert pick.get(0).name == "z"  # type: ignore[union-attr]


def test_random_is_weighted_and_valid() -> None:
    rng = random.Random(7)
    ctx_rand = lambda: rng.getrandbits(31)  # noqa: E731
    rb = build(build_peer_set("u", [spec("a", weight=3), spec("b"), spec("c", down=True)]),
               BalancerParams("random"))
    counts: collections.Counter[str] = collections.Counter()
    for _ in range(2000):
        pick = rb.pick(PickContext(0, rand=ctx_rand))
        peer = pick.get(0)
        counts[peer.name] += 1  # type: ignore[union-attr]
        pick.release(peer, Outcome.OK, 0)  # type: ignore[arg-type]
    assert counts["c"] == 0
    assert 1300 < counts["a"] < 1700 and 300 < counts["b"] < 700


def test_random_retry_never_repeats_a_peer() -> None:
    rb = build(build_peer_set("u", [spec("a"), spec("b"), spec("c")]),
               BalancerParams("random"))
    rng = random.Random(1)
    pick = rb.pick(PickContext(0, rand=lambda: rng.getrandbits(31)))
    names = []
    for peer in pick:
        names.append(peer.name)
        pick.release(peer, Outcome.FAILED, 0)
        assert len(names) <= 3
    assert sorted(names) == ["a", "b", "c"]


def test_random_two_picks_the_less_loaded_of_two() -> None:
    rb = build(build_peer_set("u", [spec("a"), spec("b")]),
               BalancerParams("random", ("two", "least_conn")))
    a, b = rb.peers.peers
    a.conns = 5
    rng = random.Random(3)
    for _ in range(50):
        pick = rb.pick(PickContext(0, rand=lambda: rng.getrandbits(31)))
        peer = pick.get(0)
        assert peer is b
        pick.release(peer, Outcome.OK, 0)
