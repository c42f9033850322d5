"""Custom directive handlers (the rows with store="custom"), nginx's wording.

Each handler gets the builder, the statement, the current level and context; it
validates like nginx's ngx_http_*_module handler and stores into the level.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any

from wsgate.config import templates
from wsgate.config import expires, redirect, script
from wsgate.config.build import Builder, Entry, Handler, Level, handler
from wsgate.config.directives import EVENTS, HTTP, LIF, LOC, SIF, SRV, UPS
from wsgate.config.lexer import Statement
from wsgate.config.model import (AccessLog, Header, Listen, LogFormat, ProxyPass,
                                 TryFiles, UpstreamServer)
from wsgate.config.regex import NginxRegexError, compile_nginx_regex
from wsgate.config.slots import SlotError, bufs, parse_size, parse_time
from wsgate.errors import ConfigError
from wsgate.errors import ConfigError


@handler("include")
def _include(b: Builder, stmt: Statement, level: Level, ctx: str) -> None:
    b.include(stmt, ctx, level)


def _block(b: Builder, stmt: Statement, kind: str, ctx: str) -> Level:
    child = Level(kind, stmt.file, stmt.line)
    b.walk(stmt.block or (), ctx, child)
    return child


@handler("events")
def _events(b: Builder, stmt: Statement, level: Level, ctx: str) -> None:
    if b.events is not None:
        raise b.err(stmt, '"events" directive is duplicate')
    b.events = Level(EVENTS, stmt.file, stmt.line)
    b.walk(stmt.block or (), EVENTS, b.events)


@handler("http")
def _http(b: Builder, stmt: Statement, level: Level, ctx: str) -> None:
    if b.http is not None:
        raise b.err(stmt, '"http" directive is duplicate')
    b.http = Level(HTTP, stmt.file, stmt.line)
    b.walk(stmt.block or (), HTTP, b.http)


@handler("server", HTTP)
def _server(b: Builder, stmt: Statement, level: Level, ctx: str) -> None:
    srv = Level(SRV, stmt.file, stmt.line)
    srv.extra.update(listens=[], server_names=[], locations=[])
    level.children.append(srv)
    b.walk(stmt.block or (), SRV, srv)


# --- listen -----------------------------------------------------------------------
def parse_addr(text: str, default_port: int | None) -> tuple[str | None, int | None, str | None]:
    """host:port / port / [v6]:port / unix:/path -> (host, port, unix); ValueError."""
    if text.startswith("unix:"):
        return None, None, text[5:]
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else None
        if rest and not rest.startswith(":"):
            raise ValueError(text)
        return host, _port(port, default_port), None
    if text.isdigit():
        return "0.0.0.0", _port(text, default_port), None
    host, sep, port = text.rpartition(":")
    if not sep:
        host, port = text, ""
    if host == "*":
        host = "0.0.0.0"
    return host, _port(port or None, default_port), None


def _port(text: str | None, default: int | None) -> int | None:
    if text is None:
        return default
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ValueError(text)
    return int(text)


_LISTEN_FLAGS = {"default_server", "default", "ssl", "http2", "reuseport", "proxy_protocol",
                 "deferred", "bind", "quic"}


@handler("listen")
def _listen(b: Builder, stmt: Statement, level: Level, ctx: str) -> None:
    try:
        host, port, unix = parse_addr(stmt.args[0], 80)
    except ValueError:
        raise b.err(stmt, f'invalid port in "{stmt.args[0]}" of the "listen" directive') from None
    opts: dict[str, Any] = {}
    for arg in stmt.args[1:]:
        key, eq, val = arg.partition("=")
        if not eq and key in _LISTEN_FLAGS:
            opts["default_server" if key == "default" else key] = True
        elif eq and key in ("backlog", "rcvbuf", "sndbuf"):
            size = parse_size(val) if key != "backlog" else (int(val) if val.isdigit() else None)
            if size is None:
                raise b.err(stmt, f'invalid {key} "{val}"')
            opts[key] = size
        elif eq and key == "ipv6only" and val in ("on", "off"):
            opts["ipv6only"] = val == "on"
        elif eq and key in ("so_keepalive", "fastopen", "accept_filter", "setfib"):
            continue
        else:
            raise b.err(stmt, f'invalid parameter "{arg}"')
    opts.pop("deferred", None), opts.pop("bind", None), opts.pop("quic", None)
    level.extra["listens"].append(Listen(host, port, unix, file=stmt.file, line=stmt.line,
                                         **opts))


@handler("server_name")
def _server_name(b: Builder, stmt: Statement, level: Level, ctx: str) -> None:
    for name in stmt.args:
        if name.startswith("~"):   # a regex name: its captures become variables
            compile_regex(b, stmt, name[1:], True)
    level.extra["server_names"].extend(stmt.args)


# --- location ------------------------------------------------------------------------
_MODS = {"=": "exact", "^~": "prefix_nosearch", "~": "regex", "~*": "regex_caseless"}


def location_kind(args: tuple[str, ...]) -> tuple[str, str] | None:
    if len(args) == 2:
        kind = _MODS.get(args[0])
        return (kind, args[1]) if kind else None
    name = args[0]
    for mod in ("=", "^~", "~*", "~"):
        if name.startswith(mod) and len(name) > len(mod):
            return _MODS[mod], name[len(mod):]
    if name.startswith("@"):
        return "named", name
    return "prefix", name


@handler("location")
def _location(b: Builder, stmt: Statement, level: Level, ctx: str) -> None:
    parsed = location_kind(stmt.args)
    if parsed is None:
        raise b.err(stmt, f'invalid location modifier "{stmt.args[0]}"')
    kind, pattern = parsed
    if level.kind == LOC:
        _check_nesting(b, stmt, level, kind, pattern)
    loc = Level(LOC, stmt.file, stmt.line)
    loc.extra.update(kind=kind, pattern=pattern, locations=[],
                     regex=_compile(b, stmt, kind, pattern))
    level.extra["locations"].append(loc)
    b.walk(stmt.block or (), LOC, loc)


def _check_nesting(b: Builder, stmt: Statement, parent: Level, kind: str, pattern: str) -> None:
    pkind, ppat = parent.extra["kind"], parent.extra["pattern"]
    if pkind == "exact":
        raise b.err(stmt, f'location "{pattern}" cannot be inside the exact location "{ppat}"')
    if pkind == "named":
        raise b.err(stmt, f'location "{pattern}" cannot be inside the named location "{ppat}"')
    if kind == "named":
        raise b.err(stmt, f'named location "{pattern}" can be on the server level only')
    if not kind.startswith("regex") and not pattern.startswith(ppat):
        raise b.err(stmt, f'location "{pattern}" is outside location "{ppat}"')


def _compile(b: Builder, stmt: Statement, kind: str, pattern: str) -> Any:
    if not kind.startswith("regex"):
        return None
    return compile_regex(b, stmt, pattern, kind == "regex_caseless")


def compile_regex(b: Builder, stmt: Statement, pattern: str, caseless: bool) -> Any:
    """Compile a location/server_name regex as nginx (PCRE2) would, and declare its
    named captures as variables, as ngx_regex_compile does at load."""
    try:
        regex = compile_nginx_regex(pattern, caseless)
    except NginxRegexError as exc:
        raise b.err(stmt, str(exc)) from None
    for name in regex.groupindex:
        try:
            b.table.define_capture(name)
        except ConfigError as exc:
            raise b.err(stmt, exc.message) from None
    return regex


# --- upstream ------------------------------------------------------------------------
@handler("upstream")
def _upstream(b: Builder, stmt: Statement, level: Level, ctx: str) -> None:
    name = stmt.args[0]
    if name in b.upstreams:
        raise b.err(stmt, f'duplicate upstream "{name}"')
    ups = Level(UPS, stmt.file, stmt.line)
    ups.extra.update(name=name, servers=[], balancer=("round_robin", ()))
    b.upstreams[name] = ups
    b.walk(stmt.block or (), UPS, ups)
    ups.extra["end_line"] = stmt.end_line
    if not ups.extra["servers"]:   # checked at the block's end, as nginx does
        raise ConfigError("no servers are inside upstream", stmt.file,
                          stmt.end_line or stmt.line)


# Balancers that refuse `backup` (their NGX_HTTP_UPSTREAM_BACKUP flag is unset). The
# check runs when a `server` line is read, so `server ... backup; ip_hash;` passes.
_NO_BACKUP = frozenset({"ip_hash", "hash", "random"})


@handler("server", UPS)
def _upstream_server(b: Builder, stmt: Statement, level: Level, ctx: str) -> None:
    try:
        host, port, unix = parse_addr(stmt.args[0], 80)
    except ValueError:
        raise b.err(stmt, f'invalid port in upstream "{stmt.args[0]}"') from None
    opts: dict[str, Any] = {}
    for arg in stmt.args[1:]:
        key, value = _server_param(arg)
        if value is None:
            raise b.err(stmt, f'invalid parameter "{arg}"')
        if key == "backup" and level.extra["balancer"][0] in _NO_BACKUP:
            raise b.err(stmt, 'balancing method does not support parameter "backup"')
        opts[key] = value
    addrs = b.resolve_host(stmt, host, port, f'host not found in upstream "{stmt.args[0]}"')
    level.extra["servers"].append(UpstreamServer(host, port, unix, addresses=addrs,
                                                 file=stmt.file, line=stmt.line, **opts))


def _server_param(arg: str) -> tuple[str, Any]:
    """One `server` parameter -> (key, value); value None when nginx rejects it.

    `resolve` is an nginx Plus parameter: open-source 1.22 rejects it.
    """
    key, eq, val = arg.partition("=")
    if eq and key in ("weight", "max_fails", "max_conns") and val.isdigit():
        return key, (None if key == "weight" and int(val) == 0 else int(val))
    if eq and key == "fail_timeout":
        return key, parse_time(val, is_sec=True)
    if not eq and key in ("backup", "down"):
        return key, True
    return key, None


def _balancer(name: str, check: Any) -> None:
    @handler(name)
    def set_balancer(b: Builder, stmt: Statement, level: Level, ctx: str) -> None:
        check(b, stmt)
        if level.extra.get("balancer_line") is not None and b.warn is not None:
            b.warn(ConfigError("load balancing method redefined", stmt.file, stmt.line,
                               stmt.col, level="warn"))
        level.extra["balancer"] = (name, stmt.args)
        level.extra["balancer_line"] = stmt.line


def _no_check(b: Builder, stmt: Statement) -> None:
    return None


def _check_hash(b: Builder, stmt: Statement) -> None:
    templates.compile(stmt.args[0], b.table, stmt.file, stmt.line)
    if len(stmt.args) == 2 and stmt.args[1] != "consistent":
        raise b.err(stmt, f'invalid parameter "{stmt.args[1]}"')


def _check_random(b: Builder, stmt: Statement) -> None:
    """random [two [least_conn]] (least_time is nginx Plus)."""
    for i, arg in enumerate(stmt.args):
        if (i, arg) not in ((0, "two"), (1, "least_conn")):
            raise b.err(stmt, f'invalid parameter "{arg}"')


_balancer("ip_hash", _no_check)
_balancer("least_conn", _no_check)
_balancer("hash", _check_hash)
_balancer("random", _check_random)


# --- map, types ------------------------------------------------------------------------
@handler("map")
def _map(b: Builder, stmt: Statement, level: Level, ctx: str) -> None:
    src, dest = stmt.args
    if not dest.startswith("$") and not templates.available():
        raise b.err(stmt, f'invalid variable name "{dest}"')
    builder = templates.map_builder(templates.compile(src, b.table, stmt.file, stmt.line),
                                    dest, b.table, stmt.file, stmt.line)
    entries: list[tuple[tuple[str, ...], str, int]] = []
    for item in b.flatten_body(stmt):
        if builder is not None:
            builder.add([item.name, *item.args], item.file, item.line)
        entries.append(((item.name, *item.args), item.file, item.line))
    if builder is not None:
        builder.build()
    level.extra.setdefault("maps", []).append(
        {"source": src, "dest": dest, "entries": entries, "file": stmt.file,
         "line": stmt.line, "builder": builder})


@handler("types")
def _types(b: Builder, stmt: Statement, level: Level, ctx: str) -> None:
    mapping: dict[str, str] = {}
    for item in b.flatten_body(stmt):
        if not item.args:
            raise b.err(item, f'invalid number of arguments in "{item.name}" directive')
        for ext in item.args:
            mapping[ext.lower()] = item.name
    b.set_once(stmt, level, mapping)


# --- logging ------------------------------------------------------------------------
@handler("log_format")
def _log_format(b: Builder, stmt: Statement, level: Level, ctx: str) -> None:
    name, rest = stmt.args[0], list(stmt.args[1:])
    formats = level.extra.setdefault("log_formats", {})
    if name in formats or name == "combined":   # nginx predefines "combined"
        raise b.err(stmt, f'duplicate "log_format" name "{name}"')
    escape = "default"
    if rest[0].startswith("escape="):
        escape = rest.pop(0)[7:]
        if escape not in ("default", "json", "none"):
            raise b.err(stmt, f'unknown log format escaping "{escape}"')
    if not rest:
        raise b.err(stmt, f'invalid number of arguments in "{stmt.name}" directive')
    source = "".join(rest)
    formats[name] = LogFormat(name, escape, source,
                              templates.compile(source, b.table, stmt.file, stmt.line),
                              stmt.file, stmt.line)


@handler("access_log")
def _access_log(b: Builder, stmt: Statement, level: Level, ctx: str) -> None:
    path = stmt.args[0]
    if path == "off":
        if len(stmt.args) > 1:
            raise b.err(stmt, f'invalid parameter "{stmt.args[1]}"')
        b.append(stmt, level, AccessLog(None, file=stmt.file, line=stmt.line))
        return
    fmt = stmt.args[1] if len(stmt.args) > 1 else "combined"
    formats = b.http.extra.get("log_formats", {}) if b.http else {}
    if fmt != "combined" and fmt not in formats:
        raise b.err(stmt, f'unknown log format "{fmt}"')
    b.append(stmt, level, AccessLog(full_path(b, path), fmt, stmt.args[2:], stmt.file,
                                    stmt.line))


def full_path(b: Builder, path: str) -> str:
    from wsgate.config.build import full_name
    return full_name(path, b.prefix)


# --- proxy ----------------------------------------------------------------------------
_URL = re.compile(r"^(https?)://(unix:[^:]*:?|\[[^\]]*\](?::\d*)?|[^/:]*(?::[^/]*)?)(/.*)?$",
                  re.IGNORECASE | re.DOTALL)


@handler("proxy_pass")
def _proxy_pass(b: Builder, stmt: Statement, level: Level, ctx: str) -> None:
    if "proxy_pass" in level.values:
        raise b.err(stmt, '"proxy_pass" directive is duplicate')
    url = stmt.args[0]
    if "$" in url:
        tpl = templates.compile(url, b.table, stmt.file, stmt.line)
        b.set_once(stmt, level, ProxyPass(url, template=tpl, file=stmt.file, line=stmt.line))
        return
    m = _URL.match(url)
    if not m:
        raise b.err(stmt, "invalid URL prefix")
    scheme, authority, uri = m.group(1).lower(), m.group(2), m.group(3)
    if uri is not None and level.extra.get("kind") in ("regex", "regex_caseless", "named",
                                                       "if"):
        raise b.err(stmt, '"proxy_pass" cannot have URI part in location given by regular '
                    'expression, or inside named location, or inside "if" statement, '
                    'or inside "limit_except" block')
    if authority.startswith("unix:"):
        host, port, unix = None, None, authority[5:].rstrip(":")
    else:
        try:
            host, port, unix = parse_addr(authority, None)
        except ValueError:
            raise b.err(stmt, f'invalid port in upstream "{authority}"') from None
        if not host:
            raise b.err(stmt, f'no host in upstream "{authority}"')
    b.upstream_refs.append((host, port, stmt))
    b.set_once(stmt, level, ProxyPass(url, scheme, host, port, unix, uri,
                                      file=stmt.file, line=stmt.line))


def _header_slot(name: str, always_ok: bool) -> None:
    @handler(name)
    def header(b: Builder, stmt: Statement, level: Level, ctx: str) -> None:
        always = False
        if len(stmt.args) == 3:
            if not always_ok or stmt.args[2] != "always":
                raise b.err(stmt, f'invalid parameter "{stmt.args[2]}"')
            always = True
        value = templates.compile(stmt.args[1], b.table, stmt.file, stmt.line)
        b.append(stmt, level, Header(stmt.args[0], value, always, stmt.file, stmt.line))


_header_slot("proxy_set_header", False)
_header_slot("add_header", True)


def _template_slot(name: str) -> None:
    @handler(name)
    def template(b: Builder, stmt: Statement, level: Level, ctx: str) -> None:
        b.set_once(stmt, level, templates.compile(stmt.args[0], b.table, stmt.file,
                                                  stmt.line))


_template_slot("proxy_method")
_template_slot("proxy_set_body")


@handler("proxy_redirect")
def _proxy_redirect(b: Builder, stmt: Statement, level: Level, ctx: str) -> None:
    """ngx_http_proxy_redirect: compiled here; after `off` the level ignores the rest."""
    done = level.arrays.get("proxy_redirect", [])
    if any(e.value.kind == redirect.OFF for e in done):
        return
    args = stmt.args
    if len(args) == 1:
        if args[0] not in ("off", "false", "default"):
            raise b.err(stmt, f'invalid parameter "{args[0]}"')
        kind = redirect.DEFAULT if args[0] == "default" else redirect.OFF
        b.append(stmt, level, redirect.Redirect(kind, file=stmt.file, line=stmt.line))
        return
    first, second = args
    replacement = templates.compile(second, b.table, stmt.file, stmt.line)
    if first.startswith("~"):
        caseless = first.startswith("~*")
        pattern = compile_regex(b, stmt, first[2 if caseless else 1:], caseless)
        kind = redirect.REGEX
    else:
        pattern, kind = templates.compile(first, b.table, stmt.file, stmt.line), \
            redirect.STRING
    b.append(stmt, level, redirect.Redirect(kind, pattern, replacement, stmt.file,
                                            stmt.line))


@handler("return")
def _return(b: Builder, stmt: Statement, level: Level, ctx: str) -> None:
    first = stmt.args[0]
    if first.isdigit():
        code, text = int(first), (stmt.args[1] if len(stmt.args) > 1 else None)
        if code > 999:
            raise b.err(stmt, f'invalid return code "{first}"')
    elif len(stmt.args) == 1 and first.startswith(("http://", "https://", "$scheme")):
        code, text = 302, first
    else:
        raise b.err(stmt, f'invalid return code "{first}"')
    tpl = templates.compile(text, b.table, stmt.file, stmt.line) if text is not None else None
    if "return" not in level.values:      # the first return wins at run time
        b.set_once(stmt, level, (code, tpl))
    _script(level, stmt).append(script.Return(code, tpl, stmt.file, stmt.line))


@handler("expires")
def _expires(b: Builder, stmt: Statement, level: Level, ctx: str) -> None:
    try:
        modified, value = expires.parse_args(stmt.args)
        if "$" in value:
            tpl = templates.compile(value, b.table, stmt.file, stmt.line)
            parsed = expires.Expires("var", template=tpl, modified=modified)
        else:
            parsed = expires.parse_expires(value, modified)
    except expires.ExpiresError as exc:
        raise b.err(stmt, str(exc)) from None
    b.set_once(stmt, level, parsed)


# --- rewrite module: one ordered script per level (config/script.py) ---------------
def _script(level: Level, stmt: Statement) -> list[Any]:
    entry = level.values.get("rewrite")
    if entry is None:
        entry = level.values["rewrite"] = Entry([], stmt.file, stmt.line)
    ops: list[Any] = entry.value
    return ops


def _op(fn: Any) -> Handler:
    def handle(b: Builder, stmt: Statement, level: Level, ctx: str) -> None:
        try:
            op = fn(stmt.args, b.table, stmt.file, stmt.line)
        except ConfigError as exc:
            raise b.err(stmt, exc.message) from None
        _script(level, stmt).append(op)
    return handle


handler("rewrite")(_op(script.rewrite_op))
handler("set")(_op(script.set_op))
handler("break")(lambda b, stmt, level, ctx: _script(level, stmt).append(
    script.Break(stmt.file, stmt.line)))


@handler("if")
def _if(b: Builder, stmt: Statement, level: Level, ctx: str) -> None:
    try:
        cond = script.parse_condition(stmt.args, b.table, stmt.file, stmt.line)
    except ConfigError as exc:
        raise b.err(stmt, exc.message) from None
    inner = Level(LOC, stmt.file, stmt.line)
    inner.extra.update(kind="if", pattern=level.extra.get("pattern", ""), locations=[],
                       regex=None)
    ops = _script(level, stmt)        # the if op precedes the block's own ops
    ops.append(script.If(cond, inner, stmt.file, stmt.line))
    b.walk(stmt.block or (), SIF if ctx == SRV else LIF, inner)


@handler("try_files")
def _try_files(b: Builder, stmt: Statement, level: Level, ctx: str) -> None:
    """ngx_http_core_try_files: files as templates, then `=code` or a URI."""
    if "try_files" in level.values:
        raise b.err(stmt, '"try_files" directive is duplicate')
    *names, last = stmt.args
    files = tuple(templates.compile(n, b.table, stmt.file, stmt.line) for n in names)
    code, fallback = None, None
    if last.startswith("="):
        if not last[1:].isdigit() or not last[1:].isascii() or int(last[1:]) > 999:
            raise b.err(stmt, f'invalid code "{last}"')
        code = int(last[1:])
    else:
        fallback = templates.compile(last, b.table, stmt.file, stmt.line)
    b.set_once(stmt, level, TryFiles(files, fallback, code, stmt.file, stmt.line))


@handler("error_page")
def _error_page(b: Builder, stmt: Statement, level: Level, ctx: str) -> None:
    *codes, uri = stmt.args
    overwrite = None
    if codes and codes[-1].startswith("="):
        tail = codes.pop()[1:]
        overwrite = int(tail) if tail.isdigit() else 0
    for code in codes:
        if not code.isdigit() or not 300 <= int(code) <= 599:
            raise b.err(stmt, f'value "{code}" must be between 300 and 599')
    b.append(stmt, level, (tuple(int(c) for c in codes), overwrite, uri))


# --- number+size pairs, timeouts --------------------------------------------------------
def _num_size(name: str) -> None:
    @handler(name)
    def pair(b: Builder, stmt: Statement, level: Level, ctx: str) -> None:
        try:      # ngx_conf_set_bufs_slot
            value = bufs(stmt.args, stmt.name)
        except SlotError as exc:
            raise b.err(stmt, exc.message(stmt.name)) from None
        b.set_once(stmt, level, value)


_num_size("large_client_header_buffers")
_num_size("proxy_buffers")


@handler("keepalive_timeout", HTTP)
@handler("keepalive_timeout", SRV)
@handler("keepalive_timeout", LOC)
def _keepalive_timeout(b: Builder, stmt: Statement, level: Level, ctx: str) -> None:
    timeout = parse_time(stmt.args[0], is_sec=False)
    header = parse_time(stmt.args[1], is_sec=True) if len(stmt.args) > 1 else None
    if timeout is None or (len(stmt.args) > 1 and header is None):
        raise b.err(stmt, '"keepalive_timeout" directive invalid value')
    b.set_once(stmt, level, (timeout, header))


@handler("keepalive")
def _keepalive(b: Builder, stmt: Statement, level: Level, ctx: str) -> None:
    if not stmt.args[0].isdigit() or int(stmt.args[0]) == 0:
        raise b.err(stmt, f'invalid value "{stmt.args[0]}" in "keepalive" directive')
    b.set_once(stmt, level, int(stmt.args[0]))


@handler("websocket_max_message_size")
def _ws_max(b: Builder, stmt: Statement, level: Level, ctx: str) -> None:
    size = parse_size(stmt.args[0])
    if size is None:
        raise b.err(stmt, '"websocket_max_message_size" directive invalid value')
    side = stmt.args[1] if len(stmt.args) > 1 else "both"
    if side not in ("client", "upstream", "both"):
        raise b.err(stmt, f'invalid value "{side}"')
    b.set_once(stmt, level, (size, side))


@handler("stub_status")
@handler("metrics")
@handler("websocket_status")
def _on(b: Builder, stmt: Statement, level: Level, ctx: str) -> None:
    b.set_once(stmt, level, True)


def _ip(host: str | None) -> bool:
    try:
        ipaddress.ip_address(host or "")
        return True
    except ValueError:
        return False


__all__ = ["parse_addr", "location_kind", "Entry"]
