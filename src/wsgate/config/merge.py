"""UNSET + merge -> frozen model, and the cross-field checks nginx makes after parsing.

Inheritance is nginx's: http -> server -> location -> nested location. A value
unset at a level comes from the enclosing one; array directives (proxy_set_header,
add_header, access_log, error_page ...) are inherited only when the level defines
none of its own (the "array trap"); `local` rows (proxy_pass, return, alias,
stub_status) are never inherited. nginx's defaults apply last.
"""

from __future__ import annotations

import dataclasses

from typing import Any

from wsgate.config import script, templates
from wsgate.config.build import Builder, Level, full_name, is_ip
from wsgate.config.directives import DIRECTIVES, LOC, SRV, UNSET, find_form
from wsgate.config.websocket import expand_websocket
from wsgate.config.model import (LOCATION_FIELDS, SERVER_FIELDS, AccessLog, Config,
                                 Header, HttpConf, Listen, LocationConf, ServerConf,
                                 UpstreamConf, attr)
from wsgate.errors import ConfigError

__all__ = ["build_config", "InitError"]

# nginx adds these to proxy_set_header unless the user set the same header.
PROXY_DEFAULT_HEADERS = (("Host", "$proxy_host"), ("Connection", "close"))


def _resolve(name: str, chain: list[Level], ctx: str) -> Any:
    form = find_form(DIRECTIVES[name], ctx)
    assert form is not None
    levels = chain if form.merge != "local" else chain[-1:]
    for level in reversed(levels):
        if form.store == "array" or form.merge == "array":
            if level.arrays.get(name):
                return tuple(e.value for e in level.arrays[name])
        elif name in level.values:
            return level.values[name].value
    if form.merge == "array" or form.store == "array":
        return () if form.default is UNSET else form.default
    return None if form.default is UNSET else form.default


def _proxy_headers(b: Builder, headers: tuple[Header, ...]) -> tuple[Header, ...]:
    names = {h.name.lower() for h in headers}
    extra = tuple(Header(n, templates.compile(v, b.table)) for n, v in PROXY_DEFAULT_HEADERS
                  if n.lower() not in names)
    return extra + headers


def _location(b: Builder, chain: list[Level], kind: str, pattern: str) -> Any:
    values = {attr(name): _resolve(name, chain, LOC) for name in LOCATION_FIELDS}
    expand_websocket(b, chain, values)
    values["proxy_set_header"] = _proxy_headers(b, values["proxy_set_header"])
    if not values["access_log"]:
        values["access_log"] = _default_access_log(b)
    loc = chain[-1]
    if values.get("rewrite"):
        values["rewrite"] = _bind_script(b, chain, kind, pattern, values)
    nested = tuple(_location(b, chain + [c], c.extra["kind"], c.extra["pattern"])
                   for c in loc.extra.get("locations", ()))
    return LocationConf(kind=kind, pattern=pattern, regex=loc.extra.get("regex"),
                        locations=nested, file=loc.file, line=loc.line, **values)


# Content-handler slots an `if` block takes from its location when it sets none
# (nginx keeps the location's content handler and merges these confs from it).
_IF_INHERITED = ("proxy_pass", "alias", "stub_status", "metrics")


def _bind_script(b: Builder, chain: list[Level], kind: str, pattern: str,
                 values: dict[str, Any]) -> tuple[Any, ...]:
    """A level's rewrite script with each `if` op holding its merged conf."""
    ops = []
    for op in values["rewrite"]:
        if isinstance(op, script.If) and isinstance(op.conf, Level):
            conf = _location(b, chain + [op.conf], kind, pattern)
            keep = {f: values[f] for f in _IF_INHERITED
                    if f in values and getattr(conf, f, None) in (None, False)}
            op = dataclasses.replace(op, conf=dataclasses.replace(conf, **keep))
        ops.append(op)
    return tuple(ops)


def _default_access_log(b: Builder) -> tuple[AccessLog, ...]:
    return (AccessLog(full_name("logs/access.log", b.prefix)),)


def _check_duplicate_locations(b: Builder, level: Level) -> None:
    seen: set[tuple[bool, str]] = set()
    for child in level.extra.get("locations", ()):
        kind, pattern = child.extra["kind"], child.extra["pattern"]
        if kind in ("exact", "prefix", "prefix_nosearch", "named"):
            key = (kind == "exact", pattern)
            if key in seen:
                raise ConfigError(f'duplicate location "{pattern}"', child.file, child.line)
            seen.add(key)
        _check_duplicate_locations(b, child)


def _server(b: Builder, http: Level, srv: Level) -> Any:
    listens = tuple(srv.extra["listens"]) or (Listen("0.0.0.0", 80, file=srv.file,
                                                     line=srv.line),)
    values = {attr(name): _resolve(name, [http, srv], SRV) for name in SERVER_FIELDS}
    root = _location(b, [http, srv], "server", "")
    locations = tuple(_location(b, [http, srv, c], c.extra["kind"], c.extra["pattern"])
                      for c in srv.extra["locations"])
    return ServerConf(listens=listens, server_names=tuple(srv.extra["server_names"] or [""]),
                      locations=locations, root=root, file=srv.file, line=srv.line, **values)


def _check_upstreams(b: Builder) -> None:
    """nginx's init_main_conf order: explicit upstreams' servers, implicit hosts."""
    for name, ups in b.upstreams.items():
        if all(s.backup for s in ups.extra["servers"]):   # round robin's init
            raise ConfigError(f'no servers in upstream "{name}"', ups.file, ups.line)
    for host, port, stmt in b.upstream_refs:
        if host in b.upstreams:
            if port is not None:
                raise b.err(stmt, f'upstream "{host}" may not have port {port}')
            continue
        if host is None or is_ip(host):
            continue
        b.resolve_host(stmt, host, port, f'host not found in upstream "{host}"')


def _check_default_servers(servers: tuple[Any, ...]) -> None:
    defaults: set[str] = set()
    for srv in servers:
        for listen in srv.listens:
            if listen.default_server:
                if listen.addr in defaults:
                    raise ConfigError(f"a duplicate default server for {listen.addr}",
                                      listen.file, listen.line)
                defaults.add(listen.addr)


def _own(level: Level, name: str, default: Any) -> Any:
    """The value `level` itself sets for `name`, else `default` (nothing inherited)."""
    entry = level.values.get(name)
    return entry.value if entry is not None else default


def _upstream(ups: Level) -> UpstreamConf:
    balancer, args = ups.extra["balancer"]
    return UpstreamConf(ups.extra["name"], tuple(ups.extra["servers"]), balancer,
                        tuple(args), _own(ups, "keepalive", 0),
                        _own(ups, "keepalive_requests", 1000),
                        _own(ups, "keepalive_time", 3600.0),
                        _own(ups, "keepalive_timeout", 60.0),
                        tuple(_own(ups, "zone", ())), False, ups.file, ups.line)


def _http(b: Builder) -> HttpConf | None:
    http = b.http
    if http is None:
        return None
    _check_upstreams(b)
    for srv in http.children:
        _check_duplicate_locations(b, srv)
    servers = tuple(_server(b, http, srv) for srv in http.children)
    _check_default_servers(servers)
    templates.finalize(b.table)
    settings = {n: e.value for n, e in http.values.items()}
    access_log = tuple(e.value for e in http.arrays.get("access_log", ()))
    return HttpConf(servers, {n: _upstream(u) for n, u in b.upstreams.items()},
                    dict(http.extra.get("log_formats", {})),
                    tuple(http.extra.get("maps", ())), b.table, settings,
                    http.file, http.line, access_log or _default_access_log(b))


class InitError(ConfigError):
    """A problem nginx finds after parsing, in its init_conf phase, i.e. after
    `nginx -t` has already printed "syntax is ok" (no events section ...)."""


def build_config(b: Builder, conf_file: str, default_error_log: str | None = None) -> Config:
    """`default_error_log` is nginx's compiled-in/`-e` log, used when main has none."""
    main, events = b.main, b.events
    if events is None:
        raise InitError('no "events" section in configuration')
    error_logs = tuple(e.value for e in main.arrays.get("error_log", ()))
    default_log = not error_logs
    if default_log:
        path = default_error_log or "logs/error.log"
        error_logs = ((path if path == "stderr" else full_name(path, b.prefix), "error"),)
    return Config(
        prefix=b.prefix, conf_file=conf_file, user=_own(main, "user", None),
        worker_processes=_own(main, "worker_processes", 1),
        daemon=_own(main, "daemon", True), master_process=_own(main, "master_process", True),
        pid=full_name(_own(main, "pid", "logs/nginx.pid"), b.prefix), error_logs=error_logs,
        worker_connections=_own(events, "worker_connections", 512),
        worker_rlimit_nofile=_own(main, "worker_rlimit_nofile", None),
        worker_shutdown_timeout=_own(main, "worker_shutdown_timeout", None),
        env=tuple(e.value for e in main.arrays.get("env", ())),
        events={n: e.value for n, e in events.values.items()},
        http=_http(b), files=tuple(b.files), error_log_default=default_log)



