"""Upstream groups of one config generation: the config model turned into the
balancers of wsgate.upstream, plus each block's keep-alive pool.

`groups_for(runtime)` gives the generation's `Groups`, built once on first use:
every `upstream` block becomes a PeerSet (one peer per resolved address) and a
balancer; `proxy_pass http://host:port` naming no block gets an implicit group
(weight 1, max_fails 1, fail_timeout 10, as nginx), made on first use and kept.

Reloads: nginx without `zone` starts new workers with fresh peer state; with
`zone` the state lives in shared memory and a new configuration that keeps the
block unchanged keeps it. wsgate mirrors both: a block with `zone` whose servers
and method are unchanged reuses the previous generation's peers (fails, weights,
conns); any other block starts fresh. The previous generation's idle keep-alive
connections are closed when a new generation is built (nginx's old workers close
theirs when they exit).
"""

from __future__ import annotations

import ipaddress
import weakref
from dataclasses import dataclass
from typing import Any

from wsgate.proxy.resolve import resolve
from wsgate.config.variables import VariableTable, compile_template
from wsgate.proxy.pool import Pool
from wsgate.upstream import (
    Balancer, BalancerParams, PeerSet, ServerSpec, build, build_peer_set,
    implicit_peer_set)

__all__ = ["Group", "Groups", "groups_for", "addr_name"]


@dataclass(eq=False)
class Group:
    """One upstream block (or implicit upstream) of one generation."""

    name: str
    balancer: Balancer
    pool: Pool | None = None
    hash_key: Any = None          # the compiled `hash` key template, if any


class Groups:
    """All groups of one generation; implicit ones are added on first use."""

    def __init__(self, upstreams: dict[str, Any], table: Any = None) -> None:
        self.explicit: dict[str, Group] = {}
        self.implicit: dict[tuple[str, int], Group] = {}
        for name, conf in upstreams.items():
            if not getattr(conf, "implicit", False):
                self.explicit[name] = _explicit_group(conf, table)

    def named(self, name: str) -> Group | None:
        return self.explicit.get(name)

    def implied(self, host: str, port: int) -> Group:
        key = (host, port)
        group = self.implicit.get(key)
        if group is None:
            name = f"{_bracket(host)}:{port}" if port != 80 or ":" in host else host
            addrs = [(addr_name(a, port), (a, port)) for a in _resolve(host, port)]
            group = Group(name, build(implicit_peer_set(name, addrs)))
            self.implicit[key] = group
        return group

    def unix(self, path: str) -> Group:
        key = (f"unix:{path}", 0)
        group = self.implicit.get(key)
        if group is None:
            name = f"unix:{path}"
            group = Group(name, build(implicit_peer_set(name, [(name, path)])))
            self.implicit[key] = group
        return group

    def close(self) -> None:
        for group in self.explicit.values():
            if group.pool is not None:
                group.pool.close()


_generations: "weakref.WeakKeyDictionary[Any, Groups]" = weakref.WeakKeyDictionary()
_latest: list["weakref.ReferenceType[Groups]"] = []
# `zone` blocks: (name, signature) -> the PeerSet that the next generation may keep.
_zones: dict[str, tuple[Any, PeerSet]] = {}


def groups_for(runtime: Any) -> Groups:
    """The groups of `runtime`'s config generation (built on first call)."""
    groups = _generations.get(runtime)
    if groups is None:
        http = getattr(runtime.cfg, "http", None)
        groups = Groups(runtime.upstreams, getattr(http, "variables", None))
        _generations[runtime] = groups
        previous = _latest[0]() if _latest else None
        if previous is not None and previous is not groups:
            previous.close()
        _latest[:] = [weakref.ref(groups)]
    return groups


# -- building ----------------------------------------------------------------------------

def _explicit_group(conf: Any, table: Any) -> Group:
    params = BalancerParams(conf.balancer, tuple(conf.balancer_args))
    specs = [_spec(s) for s in conf.servers]
    peers = _peer_set(conf, specs, params)
    pool = Pool(conf.keepalive, conf.keepalive_requests, conf.keepalive_time,
                conf.keepalive_timeout) if conf.keepalive else None
    key = None
    if conf.balancer == "hash" and conf.balancer_args:
        key = _key_template(conf.balancer_args[0], table)
    return Group(conf.name, build(peers, params), pool, key)


def _key_template(text: str, table: Any) -> Any:
    """`hash KEY`'s template, compiled once against the generation's variables."""
    if table is None:
        table = VariableTable()
    return compile_template(text, table)


def _peer_set(conf: Any, specs: list[ServerSpec], params: BalancerParams) -> PeerSet:
    if not conf.zone:
        return build_peer_set(conf.name, specs)
    signature = (params, tuple(specs))
    kept = _zones.get(conf.name)
    if kept is not None and kept[0] == signature:
        return kept[1]
    peers = build_peer_set(conf.name, specs)
    _zones[conf.name] = (signature, peers)
    return peers


def _spec(server: Any) -> ServerSpec:
    if server.unix_path is not None:
        name = f"unix:{server.unix_path}"
        addrs: list[tuple[str, Any]] = [(name, server.unix_path)]
    else:
        port = server.port if server.port is not None else 80
        name = f"{_bracket(server.host)}:{port}"
        hosts = server.addresses or tuple(_resolve(server.host, port))
        addrs = [(addr_name(a, port), (a, port)) for a in hosts]
    return ServerSpec(name=name, addrs=tuple(addrs), weight=server.weight,
                      max_fails=server.max_fails, fail_timeout=int(server.fail_timeout),
                      backup=server.backup, down=server.down, max_conns=server.max_conns)


def addr_name(host: str, port: int) -> str:
    """nginx's printed peer address: 127.0.0.1:80, [::1]:80."""
    return f"{_bracket(host)}:{port}"


def _bracket(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _resolve(host: str, port: int) -> list[str]:
    """IP literals as they are; names through the load-time resolver (nginx
    resolves at load); a name that does not resolve gives no peers."""
    try:
        return [str(ipaddress.ip_address(host))]
    except ValueError:
        pass
    try:
        return resolve(host, port)
    except LookupError:
        return []
