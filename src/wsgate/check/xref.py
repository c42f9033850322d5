"""Cross-checks nginx makes after reading the whole file, all reported, with positions.

nginx checks these once parsing is done (upstreams without servers, proxy_pass
hosts, unknown variables, the events section) and stops at the first; here each is
a Finding at the directive that causes it. Hosts are never looked up: a name that
is neither an upstream nor an IP literal is reported as a note (WS010), or as an
error (WS009) when it is a bare word without a port in a file that defines
upstreams -- then it is almost surely a misspelt upstream name, and nginx would fail
with `host not found in upstream`.
"""

from __future__ import annotations

import difflib
import re

from wsgate.check.findings import Finding
from wsgate.check.rules import finding
from wsgate.check.validate import CheckBuilder, position
from wsgate.config.build import is_ip
from wsgate.config.lexer import Statement

__all__ = ["cross_check", "MAP_IDIOM"]

MAP_IDIOM = "map $http_upgrade $connection_upgrade { default upgrade; '' close; }"
_VAR = re.compile(r"\$(?:\{(\w+)\}|(\w+))")
# Which words of a statement nginx compiles as templates (index from; None: none).
_TEMPLATE_ARGS = {"proxy_set_header": 1, "add_header": 1, "proxy_pass": 0, "return": -1,
                  "map": 0, "log_format": 1, "proxy_method": 0, "proxy_set_body": 0,
                  "hash": 0}


def cross_check(b: CheckBuilder, main_file: bool) -> list[Finding]:
    out: list[Finding] = []
    out += _empty_upstreams(b)
    out += _proxy_pass_hosts(b)
    out += _unknown_variables(b)
    if main_file and b.events is None:
        first = b.files[0] if b.files else ""
        out.append(finding("WS012", (first, 1, 1), 'no "events" section in configuration',
                           "events {}"))
    return out


def _empty_upstreams(b: CheckBuilder) -> list[Finding]:
    out = []
    for seen in b.seen:
        stmt = seen.stmt
        ups = b.upstreams.get(stmt.args[0]) if stmt.name == "upstream" and stmt.args else None
        if ups is not None and ups.file == stmt.file and ups.line == stmt.line \
                and not ups.extra["servers"]:
            out.append(finding("WS008", position(stmt),
                               f'no servers are inside upstream "{stmt.args[0]}"',
                               "server 127.0.0.1:3000;"))
    return out


def _proxy_pass_hosts(b: CheckBuilder) -> list[Finding]:
    out = []
    for host, port, stmt in b.upstream_refs:
        if host is None or is_ip(host) or host.lower() == "localhost":
            continue
        if host in b.upstreams:
            if port is not None:
                out.append(finding("WS006", position(stmt),
                                   f'upstream "{host}" may not have port {port}',
                                   f"proxy_pass {stmt.args[0].replace(f':{port}', '', 1)};"))
            continue
        out.append(_unknown_host(b, host, port, stmt))
    return out


def _unknown_host(b: CheckBuilder, host: str, port: int | None, stmt: Statement) -> Finding:
    url = stmt.args[0]
    if b.upstreams and port is None and "." not in host:
        names = list(b.upstreams)
        best = (difflib.get_close_matches(host, names, n=1, cutoff=0) or names)[0]
        return finding("WS009", position(stmt),
                       f'proxy_pass names no defined upstream: "{host}" is not an upstream '
                       f'here (defined: {", ".join(names)}); nginx would fail with '
                       f'host not found in upstream "{host}"',
                       f"proxy_pass {url.replace(host, best, 1)};")
    return finding("WS010", position(stmt),
                   f'"{host}" is not an upstream; nginx resolves it once, at startup '
                   f"(check does not look it up)",
                   f"make sure {host} resolves where nginx starts, or define "
                   f"`upstream {host} {{ server ADDRESS; }}`")


def _template_words(stmt: Statement) -> list[str]:
    start = _TEMPLATE_ARGS.get(stmt.name)
    if start is None or not stmt.args:
        return []
    if stmt.name == "map":
        values = [item.words[-1] for item in stmt.block or () if len(item.words) > 1]
        return [stmt.args[0], *values]
    return list(stmt.args[start:] if start >= 0 else stmt.args[start:])


def _unknown_variables(b: CheckBuilder) -> list[Finding]:
    mapped = {s.stmt.args[1].lstrip("$").lower() for s in b.seen
              if s.stmt.name == "map" and len(s.stmt.args) == 2}
    out = []
    for seen in b.seen:
        if not seen.ok:
            continue
        for word in _template_words(seen.stmt):
            for m in _VAR.finditer(word):
                name = (m.group(1) or m.group(2)).lower()
                if name.isdigit() or name in mapped or b.table is None or b.table.has(name):
                    continue
                out.append(_unknown_variable(seen.stmt, name))
    return out


def _unknown_variable(stmt: Statement, name: str) -> Finding:
    if name == "connection_upgrade":
        return finding("WS023", position(stmt),
                       'unknown "connection_upgrade" variable: $connection_upgrade is used '
                       "but no map defines it", f"in http {{}}: {MAP_IDIOM}")
    return finding("WS011", position(stmt), f'unknown "{name}" variable',
                   f"define ${name} with a `map` in http {{}}, or correct its spelling")
