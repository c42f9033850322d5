"""The balancing methods by name: build a balancer, check its arguments and servers.

This is where the config loader meets the balancers. Messages are nginx's
words without the trailing "in file:line", which the loader's ConfigError adds.
"""

from __future__ import annotations

from typing import Sequence

from wsgate.upstream.balancer import Balancer, BalancerParams
from wsgate.upstream.hash import ConsistentHash, Hash
from wsgate.upstream.ip_hash import IpHash
from wsgate.upstream.least_conn import LeastConn
from wsgate.upstream.peers import PeerSet, ServerSpec
from wsgate.upstream.random import Random
from wsgate.upstream.round_robin import RoundRobin

METHODS: dict[str, type[Balancer]] = {
    "round_robin": RoundRobin,
    "least_conn": LeastConn,
    "ip_hash": IpHash,
    "hash": Hash,
    "random": Random,
}

#: Checked in this order so the reported parameter is stable.
_PARAM_ORDER = ("weight", "max_conns", "max_fails", "fail_timeout", "backup",
                "down")


def balancer_class(params: BalancerParams) -> type[Balancer]:
    if params.method == "hash" and params.args[1:2] == ("consistent",):
        return ConsistentHash
    try:
        return METHODS[params.method]
    except KeyError:
        raise ValueError(f'unknown balancing method "{params.method}"') from None


def build(peers: PeerSet, params: BalancerParams = BalancerParams()) -> Balancer:
    """nginx's init_upstream: once per configuration (re)load."""
    return balancer_class(params)(peers, params)


def check_args(params: BalancerParams) -> str | None:
    """The directive's own argument errors (`invalid parameter "x"`)."""
    args = params.args
    if params.method == "hash" and len(args) > 1 and args[1] != "consistent":
        return f'invalid parameter "{args[1]}"'
    if params.method == "random":
        if args[:1] and args[0] != "two":
            return f'invalid parameter "{args[0]}"'
        if args[1:2] and args[1] != "least_conn":
            return f'invalid parameter "{args[1]}"'
    return None


def validate(params: BalancerParams, servers: Sequence[ServerSpec],
             method_index: int = 0,
             upstream: str = "") -> list[tuple[str, int | None]]:
    """Errors nginx reports for these servers under this method.

    nginx checks a `server` line's parameters against the method in force
    when the line is read, so only servers[method_index:] (those written after
    the balancing directive) are checked; earlier ones were checked against
    round robin, which accepts everything. Each error is (message, index of
    the server) or (message, None) for the upstream block itself.
    """
    supported = balancer_class(params).server_params
    errors: list[tuple[str, int | None]] = []
    for index, server in enumerate(servers):
        if index < method_index:
            continue
        for name in _PARAM_ORDER:
            if name in server.params and name not in supported:
                errors.append((f'balancing method does not support parameter "{name}"',
                               index))
                break
    if not any(not s.backup and s.addrs for s in servers):
        errors.append((f'no servers in upstream "{upstream}"', None))
    return errors
