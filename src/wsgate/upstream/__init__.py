"""Upstream groups: peers, balancers, passive health, keep-alive pools.

Public interface (see balancer.py for the request flow):
    build_peer_set(name, [ServerSpec...]) -> PeerSet
    build(peer_set, BalancerParams(method, args)) -> Balancer
    balancer.pick(PickContext(now, client_addr, key)) -> Pick (iterator of Peer)
    pick.get(now) / pick.release(peer, Outcome, now)
    validate(params, servers, method_index) -> [(message, server index)]
    parse_next_upstream(tokens), should_retry(...), FailureKind
"""

from wsgate.upstream.balancer import (
    Balancer, BalancerParams, Pick, PickContext, disabled_now)
from wsgate.upstream.failure import (
    FailureKind, effective_next_upstream, failure_status, is_idempotent,
    parse_next_upstream, peer_outcome, should_retry)
from wsgate.upstream.methods import build, check_args, validate
from wsgate.upstream.peers import (
    Outcome, Peer, PeerSet, ServerSpec, build_peer_set, implicit_peer_set)

__all__ = [
    "Balancer", "BalancerParams", "FailureKind", "Outcome", "Peer", "PeerSet",
    "Pick", "PickContext", "ServerSpec", "build", "build_peer_set",
    "check_args", "disabled_now", "effective_next_upstream", "failure_status",
    "implicit_peer_set", "is_idempotent", "parse_next_upstream", "peer_outcome",
    "should_retry", "validate",
]
