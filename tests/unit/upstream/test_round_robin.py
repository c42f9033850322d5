"""Smooth weighted round robin, failures, backups, down and max_conns, as nginx does."""

from __future__ import annotations

from wsgate.upstream import (
    BalancerParams, Outcome, PickContext, ServerSpec, build, build_peer_set,
    disabled_now)


def spec(name: str, **kw: object) -> ServerSpec:
    return ServerSpec(name=name, addrs=[(name, (name, 80))], **kw)  # type: ignore[arg-type]


def run(balancer, n: int, now: float = 100.0, outcome: Outcome = Outcome.OK) -> list[str]:  # type: ignore[no-untyped-def]
    out = []
    for _ in range(n):
        pick = balancer.pick(PickContext(now))
        peer = pick.get(now)
        assert peer is not None
        out.append(peer.name)
        pick.release(peer, outcome, now)
    return out


def test_documented_sequence_5_1_1() -> None:
    rr = build(build_peer_set("u", [spec("a", weight=5), spec("b"), spec("c")]))
    assert run(rr, 14) == list("aabacaa") * 2


def test_equal_weights_rotate() -> None:
    rr = build(build_peer_set("u", [spec("a"), spec("b"), spec("c")]))
    assert run(rr, 6) == list("abcabc")


def test_host_with_several_addresses_gives_several_peers() -> None:
    server = ServerSpec(name="app:80", addrs=[("10.0.0.1:80", ("10.0.0.1", 80)),
                                              ("10.0.0.2:80", ("10.0.0.2", 80))],
                        weight=2)
    peers = build_peer_set("u", [server, spec("b")])
    assert [p.name for p in peers.peers] == ["10.0.0.1:80", "10.0.0.2:80", "b"]
    assert peers.total_weight == 5 and peers.tries == 3
    assert {p.server for p in peers.peers[:2]} == {"app:80"}


def test_down_peer_is_skipped_and_not_counted_in_tries() -> None:
    rr = build(build_peer_set("u", [spec("a"), spec("b", down=True), spec("c")]))
    assert run(rr, 4) == list("acac")
    assert rr.pick(PickContext(0)).tries == 2


def test_retry_goes_to_untried_peers_then_stops() -> None:
    rr = build(build_peer_set("u", [spec("a"), spec("b"), spec("c")]))
    pick = rr.pick(PickContext(100))
    names = []
    for peer in pick:
        names.append(peer.name)
        pick.release(peer, Outcome.FAILED, 100)
    assert names == ["a", "b", "c"]
    assert pick.no_live and pick.tries == 0


def test_failed_peer_skipped_until_fail_timeout_then_one_trial() -> None:
    rr = build(build_peer_set("u", [spec("a", max_fails=1, fail_timeout=10),
                                    spec("b")]))
    pick = rr.pick(PickContext(100))
    a = pick.get(100)
    assert a is not None and a.name == "a"
    pick.release(a, Outcome.FAILED, 100)
    assert disabled_now(a, Outcome.FAILED)
    assert a.fails == 1 and a.checked == 100 and a.accessed == 100
    assert run(rr, 3, now=110) == ["b", "b", "b"]  # 110 - 100 <= 10: still out
    # eligible again, with effective_weight 0 climbing back by one per pass:
    # it gets its turn on the third pick, which opens a new window
    assert run(rr, 3, now=111) == ["b", "b", "a"]
    assert a.checked == 111
    assert a.fails == 0  # succeeded with accessed(100) < checked(111): live again


def test_trial_failure_keeps_peer_out_for_another_window() -> None:
    rr = build(build_peer_set("u", [spec("a"), spec("b")]))
    pick = rr.pick(PickContext(100))
    a = pick.get(100)
    pick.release(a, Outcome.FAILED, 100)  # type: ignore[arg-type]
    assert run(rr, 2, now=111) == ["b", "b"]
    pick = rr.pick(PickContext(111))
    assert pick.get(111) is a
    pick.release(a, Outcome.FAILED, 111)  # type: ignore[arg-type]
    assert a.fails == 2  # type: ignore[union-attr]
    assert run(rr, 2, now=121) == ["b", "b"]


def test_effective_weight_drops_and_recovers() -> None:
    rr = build(build_peer_set("u", [spec("a", weight=4, max_fails=2), spec("b")]))
    a = rr.peers.peers[0]
    pick = rr.pick(PickContext(100))
    assert pick.get(100) is a
    pick.release(a, Outcome.FAILED, 100)
    assert a.effective_weight == 2  # 4 - 4 // 2
    run(rr, 1)
    assert a.effective_weight == 3  # +1 per pass over the peer
    run(rr, 1)
    assert a.effective_weight == 4


def test_next_outcome_is_not_a_failure() -> None:
    rr = build(build_peer_set("u", [spec("a"), spec("b")]))
    pick = rr.pick(PickContext(100))
    a = pick.get(100)
    pick.release(a, Outcome.NEXT, 100)  # type: ignore[arg-type]
    assert a is not None and a.fails == 0 and pick.tries == 1
    assert pick.get(100).name == "b"  # type: ignore[union-attr]


def test_single_peer_ignores_max_fails_and_ends_tries() -> None:
    rr = build(build_peer_set("u", [spec("a")]))
    pick = rr.pick(PickContext(100))
    a = pick.get(100)
    pick.release(a, Outcome.FAILED, 100)  # type: ignore[arg-type]
    assert pick.tries == 0 and a.fails == 0  # type: ignore[union-attr]
    assert run(rr, 1) == ["a"]


def test_single_down_peer_has_no_live_upstream() -> None:
    rr = build(build_peer_set("u", [spec("a", down=True)]))
    pick = rr.pick(PickContext(0))
    assert pick.tries == 0
    assert pick.get(0) is None and pick.no_live


def test_backup_unused_while_primaries_live() -> None:
    rr = build(build_peer_set("u", [spec("a"), spec("b"), spec("z", backup=True)]))
    assert "z" not in run(rr, 10)


def test_backup_used_when_all_primaries_fail() -> None:
    rr = build(build_peer_set("u", [spec("a"), spec("b"),
                                    spec("y", backup=True), spec("z", backup=True)]))
    pick = rr.pick(PickContext(100))
    assert pick.tries == 4
    names = []
    for peer in pick:
        names.append(peer.name)
        pick.release(peer, Outcome.FAILED, 100)
    assert names == ["a", "b", "y", "z"]
    assert rr.pick(PickContext(100)).get(100) is None
    assert rr.all_down(100) and not rr.all_down(111)


def test_single_primary_with_backup_honours_max_fails() -> None:
    rr = build(build_peer_set("u", [spec("a"), spec("z", backup=True)]))
    assert not rr.peers.single
    pick = rr.pick(PickContext(100))
    a = pick.get(100)
    pick.release(a, Outcome.FAILED, 100)  # type: ignore[arg-type]
    assert pick.get(100).name == "z"  # type: ignore[union-attr]
    assert run(rr, 2) == ["z", "z"]


def test_max_conns_skips_busy_peer_and_release_frees_it() -> None:
    rr = build(build_peer_set("u", [spec("a", max_conns=1), spec("b")]))
    first = rr.pick(PickContext(0))
    a = first.get(0)
    assert a is not None and a.name == "a" and a.conns == 1
    assert run(rr, 2) == ["b", "b"]  # a is full while its tunnel lives
    first.release(a, Outcome.OK, 0)
    assert a.conns == 0
    assert "a" in run(rr, 2)


def test_single_peer_at_max_conns_is_busy() -> None:
    rr = build(build_peer_set("u", [spec("a", max_conns=1)]))
    held = rr.pick(PickContext(0))
    assert held.get(0) is not None
    assert rr.pick(PickContext(0)).get(0) is None


def test_next_upstream_tries_caps_the_budget() -> None:
    rr = build(build_peer_set("u", [spec("a"), spec("b"), spec("c")]))
    assert rr.pick(PickContext(0, next_upstream_tries=2)).tries == 2
    assert rr.pick(PickContext(0, next_upstream_tries=5)).tries == 3


def test_implicit_weights_params_default() -> None:
    rr = build(build_peer_set("u", [spec("a")]), BalancerParams())
    peer = rr.peers.peers[0]
    assert (peer.weight, peer.max_fails, peer.fail_timeout, peer.max_conns) == (1, 1, 10, 0)
