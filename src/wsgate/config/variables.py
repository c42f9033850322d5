"""nginx variables and templates ("complex values"), compiled once per config load.

Owns three things:

* `VarContext` -- the per-request values the proxy fills in and the getters read.
* `VariableTable` -- the variables one config knows: nginx's builtins, the prefix
  families (`$http_*`, `$arg_*`, `$cookie_*`, `$sent_http_*`, `$upstream_http_*`,
  `$upstream_cookie_*`), variables defined by `map`, and named regex captures.
* `compile_template` / `Template` -- a string with `$var`, `${var}` and `$1`..`$9`,
  parsed the way nginx's script compiler does, bound to getters at `finalize()`.

Binding is late because nginx lets a `map` defined further down the file be used
earlier; `finalize()` reports the first unknown variable in order of first use, as
`unknown "foo" variable` without a position (nginx logs it with cf->log).  Variable
names are case-insensitive (nginx lowercases them).

A getter returns a str, or None for nginx's "not found": templates render it as "",
access logs as "-" (escape=default) or "" (escape=json|none).  Strings carry bytes as
latin-1 characters; `$binary_remote_addr` is therefore 4 or 16 latin-1 characters.
Map results are cached per request in `VarContext.cache` unless the map is volatile;
builtins read the context directly each time (they are field reads).
"""

from __future__ import annotations

import enum
import ipaddress
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Final

from wsgate.errors import ConfigError
from wsgate.version import NGINX_COMPAT

Getter = Callable[["VarContext"], "str | None"]


class _Missing(enum.Enum):
    """Sentinel type for "not cached yet" (None is a cacheable value: not found)."""

    TOKEN = 0


_MISSING: Final = _Missing.TOKEN


@dataclass(slots=True)
class UpstreamAttempt:
    """One try of one upstream peer (nginx's ngx_http_upstream_state_t).

    Times are seconds (float) or None for nginx's -1 ("-" in the variable).
    """

    addr: str
    status: int = 0
    connect_time: float | None = None
    header_time: float | None = None
    response_time: float | None = None
    bytes_sent: int = 0
    bytes_received: int = 0
    response_length: int = 0


class VarContext:
    """Everything a variable getter may read for one request; the proxy fills it.

    Headers are lists of (name, value) in arrival order with the names as received.
    `upstream_groups` is a list of groups (one per upstream pass; internal redirects
    start a new group) of attempts.  `captures` is the last successful regex match.
    `now` and `start_time` are epoch seconds; `now` None means "read the clock".
    """

    __slots__ = (
        "ssl", "method", "request_uri", "uri", "args", "server_protocol", "request_line",
        "headers", "host", "remote_addr", "remote_port", "server_addr", "server_port",
        "server_name", "scheme", "https", "status", "start_time", "now",
        "bytes_sent", "body_bytes_sent", "request_length", "connection",
        "connection_requests", "response_headers", "upstream_headers",
        "upstream_groups", "proxy_host", "proxy_port", "proxy_internal_body_length",
        "document_root", "realpath_root", "request_body", "captures",
        "named_captures", "cache", "ws_messages_in", "ws_messages_out", "ws_bytes_in",
        "ws_bytes_out", "ws_close_code", "ws_close_reason", "ws_closed_by",
        "ws_duration", "connection_start", "pipelined", "request_body_file",
        "_hindex", "_hsource",
    )

    def __init__(self, **values: Any) -> None:
        self.method = "GET"
        self.request_uri = "/"
        self.uri = "/"
        self.args: str | None = None
        self.server_protocol = "HTTP/1.1"
        self.request_line = ""
        self.headers: list[tuple[str, str]] = []
        self.host: str | None = None
        self.remote_addr = ""
        self.remote_port: int | None = None
        self.server_addr = ""
        self.server_port: int | None = None
        self.server_name = ""
        self.scheme = "http"
        self.https = False
        self.status = 0
        self.start_time = 0.0
        self.now: float | None = None
        self.bytes_sent = 0
        self.body_bytes_sent = 0
        self.request_length = 0
        self.connection = 0
        self.connection_requests = 0
        # iterables of (name, value): the proxy may give lazily decoded views
        self.response_headers: Iterable[tuple[str, str]] = []
        self.upstream_headers: Iterable[tuple[str, str]] = []
        self.upstream_groups: list[list[UpstreamAttempt]] = []
        self.proxy_host: str | None = None
        self.proxy_port: str | None = None
        self.proxy_internal_body_length: str | None = None
        self.document_root: str | None = None
        self.realpath_root: str | None = None
        self.request_body: str | None = None
        self.captures: Any = None          # re.Match of the last successful regex
        self.named_captures: dict[str, str] = {}
        self.cache: dict[str, str | None] = {}
        self.ws_messages_in: int | None = None
        self.ws_messages_out: int | None = None
        self.ws_bytes_in: int | None = None
        self.ws_bytes_out: int | None = None
        self.ws_close_code: int | None = None
        self.ws_close_reason: str | None = None
        self.ws_closed_by: str | None = None
        self.ws_duration: float | None = None
        self.ssl: dict[str, str | None] = {}   # $ssl_* of a TLS connection
        self.connection_start: float | None = None   # epoch seconds of the accept
        self.pipelined = False                        # head read from a pipeline
        self.request_body_file: str | None = None
        # $http_* index: built on first use from `headers` (the list it was built
        # from is kept to notice a replaced list)
        self._hindex: dict[str, list[str]] | None = None
        self._hsource: list[tuple[str, str]] | None = None
        for name, value in values.items():
            setattr(self, name, value)

    def header_values(self, key: str) -> list[str] | None:
        """The request header lines named `key` (lowercased, "-" as "_"), in order.

        The index is built once per request, on the first lookup: a request's
        templates and maps read $http_* several times, and each scan lowercased
        every header name again."""
        index = self._hindex
        if index is None or self._hsource is not self.headers:
            index = self._hindex = _index_headers(self.headers)
            self._hsource = self.headers
        return index.get(key)

    def set_captures(self, match: Any) -> None:
        """Record a successful regex match: `$1`..`$9` and its named captures.

        As nginx, a regex without groups leaves the previous captures in place.
        """
        if match.re.groups == 0:
            return
        self.captures = match
        for name, value in match.groupdict().items():
            self.named_captures[name] = value or ""


# --------------------------------------------------------------------------- helpers

def _lower_ascii(text: str) -> str:
    """nginx lowercases with ngx_tolower: ASCII letters only."""
    return text.translate(_ASCII_LOWER) if not text.isascii() else text.lower()


_ASCII_LOWER = {c: c + 32 for c in range(ord("A"), ord("Z") + 1)}


def _header_key(name: str) -> str:
    return _lower_ascii(name).replace("-", "_")


def _index_headers(headers: list[tuple[str, str]]) -> dict[str, list[str]]:
    index: dict[str, list[str]] = {}
    raw = getattr(headers, "fields", None)
    keyed: Iterable[tuple[str, str]]
    if raw is not None:
        # the proxy's lazily decoded view of the head's fields (bytes), keyed
        # before decoding: bytes.lower() is ngx_tolower (ASCII letters only)
        keyed = ((n.lower().replace(b"-", b"_").decode("latin-1"), v.decode("latin-1"))
                 for n, v in raw)
    else:
        keyed = ((_header_key(n), v) for n, v in headers)
    for key, value in keyed:
        values = index.get(key)
        if values is None:
            index[key] = [value]
        else:
            values.append(value)
    return index


def _request_header(ctx: VarContext, key: str) -> str | None:
    values = ctx.header_values(key)
    return values[0] if values else None


def _first_header(headers: Iterable[tuple[str, str]], key: str) -> str | None:
    for name, value in headers:
        if _header_key(name) == key:
            return value
    return None


def _joined_headers(headers: Iterable[tuple[str, str]], key: str, sep: str) -> str | None:
    values = [value for name, value in headers if _header_key(name) == key]
    return sep.join(values) if values else None


def validate_host(host: str) -> str | None:
    """nginx's ngx_http_validate_host: lowercase, drop port and one trailing dot.

    Returns None for a host nginx rejects with 400.
    """
    dot_pos, host_len, state = -2, len(host), "usual"
    for i, ch in enumerate(host):
        if ch == ".":
            if dot_pos == i - 1:
                return None
            dot_pos = i
        elif ch == ":" and state == "usual":
            host_len, state = i, "rest"
        elif ch == "[" and i == 0:
            state = "literal"
        elif ch == "]" and state == "literal":
            host_len, state = i + 1, "rest"
        elif ch in "/\0" or ord(ch) <= 0x20 or ch == "\x7f":
            return None
    if dot_pos == host_len - 1:
        host_len -= 1
    if host_len <= 0:
        return None
    return _lower_ascii(host[:host_len])


def _multi_header_value(values: list[str], name: str) -> str | None:
    """ngx_http_parse_multi_header_lines: a cookie's value from Cookie lines."""
    low = _lower_ascii(name)
    for line in values:
        pos, end = 0, len(line)
        while pos < end:
            if _lower_ascii(line[pos:pos + len(name)]) == low:
                start = pos + len(name)
                while start < end and line[start] == " ":
                    start += 1
                if start < end and line[start] == "=":
                    start += 1
                    while start < end and line[start] == " ":
                        start += 1
                    semi = line.find(";", start)
                    return line[start:] if semi < 0 else line[start:semi]
            pos = _skip_item(line, pos)
    return None


def _skip_item(line: str, pos: int) -> int:
    while pos < len(line):
        ch = line[pos]
        pos += 1
        if ch in ";,":
            break
    while pos < len(line) and line[pos] == " ":
        pos += 1
    return pos


def _set_cookie_value(values: list[str], name: str) -> str | None:
    """ngx_http_parse_set_cookie_lines: a cookie's value from Set-Cookie lines."""
    low = _lower_ascii(name)
    for line in values:
        if _lower_ascii(line[:len(name)]) != low:
            continue
        start = len(name)
        while start < len(line) and line[start] == " ":
            start += 1
        if start >= len(line) or line[start] != "=":
            continue
        start += 1
        while start < len(line) and line[start] == " ":
            start += 1
        semi = line.find(";", start)
        return line[start:] if semi < 0 else line[start:semi]
    return None


def _arg(args: str | None, name: str) -> str | None:
    """ngx_http_arg: first `name=value` in the query, name matched caselessly."""
    if not args or not name:
        return None
    low_args, pos = _lower_ascii(args), 0
    while True:
        # the match must leave room for the "=" after it (nginx drops one char)
        pos = low_args.find(name, pos, len(args) - 1)
        if pos < 0:
            return None
        after = pos + len(name)
        if (pos == 0 or args[pos - 1] == "&") and after < len(args) and args[after] == "=":
            amp = args.find("&", after)
            return args[after + 1:] if amp < 0 else args[after + 1:amp]
        pos += 1


def _msec(seconds: float) -> str:
    """nginx's "%T.%03M": whole seconds and truncated milliseconds."""
    ms = max(int(seconds * 1000), 0)
    return f"{ms // 1000}.{ms % 1000:03d}"


def _now(ctx: VarContext) -> float:
    return ctx.now if ctx.now is not None else time.time()


_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct",
           "Nov", "Dec")


def _tz(tm: time.struct_time, colon: bool) -> str:
    off = tm.tm_gmtoff or 0
    sign = "-" if off < 0 else "+"
    hours, minutes = divmod(abs(off) // 60, 60)
    return f"{sign}{hours:02d}{':' if colon else ''}{minutes:02d}"


def time_local(now: float) -> str:
    """$time_local: `22/Nov/2026:04:17:00 +0000` in the local time zone."""
    tm = time.localtime(now)
    return (f"{tm.tm_mday:02d}/{_MONTHS[tm.tm_mon - 1]}/{tm.tm_year}:"
            f"{tm.tm_hour:02d}:{tm.tm_min:02d}:{tm.tm_sec:02d} {_tz(tm, False)}")


def time_iso8601(now: float) -> str:
    """$time_iso8601: `2026-11-22T04:17:00+00:00` in the local time zone."""
    tm = time.localtime(now)
    return (f"{tm.tm_year}-{tm.tm_mon:02d}-{tm.tm_mday:02d}T{tm.tm_hour:02d}:"
            f"{tm.tm_min:02d}:{tm.tm_sec:02d}{_tz(tm, True)}")


def _binary_addr(addr: str) -> str | None:
    if not addr:
        return None
    if addr.startswith("unix:"):
        return addr
    try:
        return ipaddress.ip_address(addr).packed.decode("latin-1")
    except ValueError:
        return None


def _opt(value: object) -> str | None:
    return None if value is None else str(value)


# ---------------------------------------------------------------- upstream lists

def _upstream_list(ctx: VarContext, fmt: Callable[[UpstreamAttempt], str]) -> str | None:
    """Attempts joined with ", ", groups with " : " (nginx's upstream_states walk)."""
    groups = [g for g in ctx.upstream_groups if g]
    if not groups:
        return None
    return " : ".join(", ".join(fmt(a) for a in group) for group in groups)


def _time_or_dash(value: float | None) -> str:
    return "-" if value is None else _msec(value)


_UPSTREAM_FORMATS: dict[str, Callable[[UpstreamAttempt], str]] = {
    "upstream_addr": lambda a: a.addr,
    "upstream_status": lambda a: str(a.status) if a.status else "-",
    "upstream_response_time": lambda a: _time_or_dash(a.response_time),
    "upstream_connect_time": lambda a: _time_or_dash(a.connect_time),
    "upstream_header_time": lambda a: _time_or_dash(a.header_time),
    "upstream_bytes_sent": lambda a: str(a.bytes_sent),
    "upstream_bytes_received": lambda a: str(a.bytes_received),
    "upstream_response_length": lambda a: str(a.response_length),
}


# ------------------------------------------------------------------------ builtins

def _host(ctx: VarContext) -> str | None:
    if ctx.host is not None:
        return ctx.host
    header = _request_header(ctx, "host")
    host = validate_host(header) if header else None
    return host if host else ctx.server_name


def _proxy_add_xff(ctx: VarContext) -> str | None:
    values = ctx.header_values("x_forwarded_for")
    xff = ", ".join(values) if values else None
    return f"{xff}, {ctx.remote_addr}" if xff else ctx.remote_addr


def _status(ctx: VarContext) -> str:
    return f"{ctx.status:03d}"


def _request_time(ctx: VarContext) -> str:
    ms = int(_now(ctx) * 1000) - int(ctx.start_time * 1000)
    return _msec(max(ms, 0) / 1000)


# ngx_http_ssl_module's variables (their values: wsgate.tls.variables, which imports
# this list).
SSL_VARIABLES = ("ssl_protocol", "ssl_cipher", "ssl_server_name", "ssl_session_reused",
                 "ssl_session_id", "ssl_alpn_protocol", "ssl_client_verify",
                 "ssl_client_s_dn", "ssl_client_i_dn", "ssl_client_cert",
                 "ssl_client_raw_cert", "ssl_client_serial", "ssl_client_fingerprint",
                 "ssl_client_v_start", "ssl_client_v_end", "ssl_client_v_remain",
                 "ssl_client_s_dn_legacy", "ssl_client_i_dn_legacy",
                 "ssl_client_escaped_cert", "ssl_ciphers")


def _builtins() -> dict[str, Getter]:
    table: dict[str, Getter] = {
        "host": _host,
        "remote_addr": lambda c: c.remote_addr or None,
        "remote_port": lambda c: _opt(c.remote_port),
        "binary_remote_addr": lambda c: _binary_addr(c.remote_addr),
        "server_addr": lambda c: c.server_addr or None,
        "server_port": lambda c: _opt(c.server_port),
        "server_name": lambda c: c.server_name,
        "server_protocol": lambda c: c.server_protocol,
        "scheme": lambda c: c.scheme,
        "https": lambda c: "on" if c.https else "",
        "request_method": lambda c: c.method,
        "request_uri": lambda c: c.request_uri,
        "uri": lambda c: c.uri,
        "document_uri": lambda c: c.uri,
        "args": lambda c: c.args,
        "query_string": lambda c: c.args,
        "is_args": lambda c: "?" if c.args else "",
        "request": lambda c: c.request_line,
        "status": _status,
        "time_local": lambda c: time_local(_now(c)),
        "time_iso8601": lambda c: time_iso8601(_now(c)),
        "msec": lambda c: _msec(_now(c)),
        "request_time": _request_time,
        "bytes_sent": lambda c: str(c.bytes_sent),
        "body_bytes_sent": lambda c: str(max(c.body_bytes_sent, 0)),
        "request_length": lambda c: str(c.request_length),
        "connection": lambda c: str(c.connection),
        "connection_requests": lambda c: str(c.connection_requests),
        "pid": lambda c: str(os.getpid()),
        "nginx_version": lambda c: NGINX_COMPAT,
        "content_length": lambda c: _request_header(c, "content_length"),
        "content_type": lambda c: _request_header(c, "content_type"),
        "proxy_host": lambda c: c.proxy_host,
        "proxy_port": lambda c: c.proxy_port,
        "proxy_add_x_forwarded_for": _proxy_add_xff,
        "proxy_internal_body_length": lambda c: c.proxy_internal_body_length,
        "document_root": lambda c: c.document_root,
        "realpath_root": lambda c: c.realpath_root,
        "request_body": lambda c: c.request_body,
        "request_body_file": lambda c: c.request_body_file,
        "pipe": lambda c: "p" if c.pipelined else ".",
        "connection_time": lambda c: None if c.connection_start is None
        else _msec(max(_now(c) - c.connection_start, 0.0)),
        "remote_user": lambda c: None,
        "ws_messages_in": lambda c: _opt(c.ws_messages_in),
        "ws_messages_out": lambda c: _opt(c.ws_messages_out),
        "ws_bytes_in": lambda c: _opt(c.ws_bytes_in),
        "ws_bytes_out": lambda c: _opt(c.ws_bytes_out),
        "ws_close_code": lambda c: _opt(c.ws_close_code),
        "ws_close_reason": lambda c: c.ws_close_reason,
        "ws_closed_by": lambda c: c.ws_closed_by,
        "ws_duration": lambda c: None if c.ws_duration is None else _msec(c.ws_duration),
    }
    for name in SSL_VARIABLES:         # filled by wsgate.tls.variables.tls_variables
        table[name] = (lambda n: lambda c: c.ssl.get(n))(name)
    for name, fmt in _UPSTREAM_FORMATS.items():
        table[name] = (lambda f: lambda c: _upstream_list(c, f))(fmt)
    return table


# Builtins a `map` (or `set`) may redefine: nginx's NGX_HTTP_VAR_CHANGEABLE ones.
CHANGEABLE_BUILTINS = frozenset({"args"})
# Request headers nginx 1.22 joins (all others: the first line only).
_JOINED_REQUEST = {"cookie": "; ", "x_forwarded_for": ", "}
_JOINED_RESPONSE = {"cache_control": ", ", "link": ", "}


def _http_getter(key: str) -> Getter:
    sep = _JOINED_REQUEST.get(key)
    if sep is not None:
        def joined(c: VarContext) -> str | None:
            values = c.header_values(key)
            return sep.join(values) if values else None
        return joined

    def first(c: VarContext) -> str | None:
        values = c.header_values(key)
        return values[0] if values else None
    return first


def _sent_http_getter(key: str) -> Getter:
    sep = _JOINED_RESPONSE.get(key)
    if sep is not None:
        return lambda c: _joined_headers(c.response_headers, key, sep)
    return lambda c: _first_header(c.response_headers, key)


def _cookie_getter(name: str) -> Getter:
    def get(c: VarContext) -> str | None:
        lines = c.header_values("cookie")
        return _multi_header_value(lines, name) if name and lines else None
    return get


def _upstream_cookie_getter(name: str) -> Getter:
    def get(c: VarContext) -> str | None:
        lines = [v for n, v in c.upstream_headers if _header_key(n) == "set_cookie"]
        return _set_cookie_value(lines, name) if name else None
    return get


# In nginx's registration order: the first prefix that matches wins.
PREFIXES: tuple[tuple[str, Callable[[str], Getter]], ...] = (
    ("http_", _http_getter),
    ("sent_http_", _sent_http_getter),
    ("cookie_", _cookie_getter),
    ("arg_", lambda name: lambda c: _arg(c.args, name)),
    ("upstream_http_", lambda key: lambda c: _first_header(c.upstream_headers, key)),
    ("upstream_cookie_", _upstream_cookie_getter),
)


def _capture_getter(n: int) -> Getter:
    def get(c: VarContext) -> str:
        m = c.captures
        if m is None or n > m.re.groups:
            return ""
        return m.group(n) or ""
    return get


# --------------------------------------------------------------------- the table

class VariableTable:
    """Variables of one config load; templates register here and bind at finalize."""

    def __init__(self, *, hostname: str | None = None) -> None:
        self.hostname = _lower_ascii(hostname if hostname is not None
                                     else os.uname().nodename)
        self._builtins = _builtins()
        self._builtins["hostname"] = lambda c: self.hostname
        self._defined: dict[str, Getter] = {}
        self._captures: set[str] = set()
        self._used: dict[str, None] = {}
        self._templates: list[Template] = []
        self.finalized = False

    def define(self, name: str, getter: Getter, *, cacheable: bool = True) -> None:
        """Define (or, for a changeable variable, redefine) `$name`.

        Raises ConfigError('the duplicate "name" variable') (no position: the
        caller adds its own) for a builtin nginx does not let configs redefine.
        """
        key = self.check_definable(name)
        self._defined[key] = _cached(key, getter) if cacheable else getter

    def check_definable(self, name: str) -> str:
        """The lowercased name, or ConfigError if `$name` cannot be (re)defined."""
        key = name.lower()
        if key in self._builtins and key not in CHANGEABLE_BUILTINS:
            raise ConfigError(f'the duplicate "{key}" variable')
        return key

    def define_capture(self, name: str) -> None:
        """Declare a named regex capture `(?<name>...)` as a variable."""
        self._captures.add(self.check_definable(name))

    def has(self, name: str) -> bool:
        return self.resolve(name) is not None

    def resolve(self, name: str) -> Getter | None:
        """The getter for `$name` now, or None if it is unknown."""
        key = name.lower()
        if key in self._defined:
            return self._defined[key]
        if key in self._captures:
            return lambda c: c.named_captures.get(key)
        if key in self._builtins:
            return self._builtins[key]
        if key.isdigit() and len(key) == 1 and key != "0":
            return _capture_getter(int(key))
        for prefix, factory in PREFIXES:
            if key.startswith(prefix):
                return factory(key[len(prefix):])
        return None

    def use(self, name: str) -> None:
        """Record a reference (order of first use decides which error is reported)."""
        self._used.setdefault(name.lower(), None)

    def register(self, template: Template) -> None:
        """Record a template's references; it is bound at `finalize()`."""
        for name in template.variables:
            self.use(name)
        if not template.is_static:
            self._templates.append(template)

    def finalize(self) -> None:
        """Check every referenced variable exists, then bind every template."""
        for name in self._used:
            if not (len(name) == 1 and name in "123456789") and self.resolve(name) is None:
                raise ConfigError(f'unknown "{name}" variable')
        for template in self._templates:
            template.bind(self)
        self.finalized = True


def _cached(key: str, getter: Getter) -> Getter:
    def get(ctx: VarContext) -> str | None:
        value = ctx.cache.get(key, _MISSING)
        if value is _MISSING:
            value = ctx.cache[key] = getter(ctx)
        return value
    return get


# ------------------------------------------------------------------------ templates

class Template:
    """A compiled nginx complex value: literal strings and variable getters.

    `parts` holds str literals and (name,) tuples before binding; after `bind()` the
    tuples are replaced by getters and the parts compiled into one render function
    (see `_compile`), so `render` does no lookups and no per-part tests per request.
    """

    __slots__ = ("source", "is_static", "variables", "_parts", "_bound", "_table",
                 "_fn")

    def __init__(self, source: str, parts: list[str | tuple[str]],
                 table: VariableTable) -> None:
        self.source = source
        self.is_static = all(isinstance(p, str) for p in parts)
        self.variables: tuple[str, ...] = tuple(p[0] for p in parts if isinstance(p, tuple))
        self._parts = tuple(parts)
        self._bound: tuple[str | Getter, ...] | None = None
        self._table = table
        self._fn: Callable[[VarContext], str] | None = \
            _constant(source) if self.is_static else None

    def bind(self, table: VariableTable) -> tuple[str | Getter, ...]:
        """Replace each variable reference by its getter; returns the bound parts."""
        bound: list[str | Getter] = []
        for part in self._parts:
            if isinstance(part, str):
                bound.append(part)
                continue
            getter = table.resolve(part[0])
            if getter is None:
                raise ConfigError(f'unknown "{part[0]}" variable')
            bound.append(getter)
        self._bound = tuple(bound)
        if not self.is_static:
            self._fn = _compile(self._bound)
        return self._bound

    def _getters(self) -> tuple[str | Getter, ...]:
        bound = self._bound
        return bound if bound is not None else self.bind(self._table)

    def renderer(self) -> Callable[[VarContext], str]:
        """The render function itself (binding now if needed), for a caller that
        keeps it: one call per value instead of two."""
        fn = self._fn
        if fn is None:
            self.bind(self._table)
            fn = self._fn
            assert fn is not None
        return fn

    def render(self, ctx: VarContext) -> str:
        """The value; not-found variables render as ""."""
        fn = self._fn
        if fn is None:
            fn = self.renderer()
        return fn(ctx)

    def render_log(self, ctx: VarContext, escape: str = "default") -> str:
        """The value as access_log writes it: escape applies to variable values only.

        escape=default: not found -> "-", `"` `\\` and bytes <0x20 or >=0x7f as \\xHH;
        escape=json: not found -> "", JSON string escaping; escape=none: as is.
        """
        out = []
        for part in self._getters():
            if isinstance(part, str):
                out.append(part)
                continue
            value = part(ctx)
            out.append(_ESCAPERS[escape](value))
        return "".join(out)


def _constant(text: str) -> Callable[[VarContext], str]:
    return lambda ctx: text


def _compile(bound: tuple[str | Getter, ...]) -> Callable[[VarContext], str]:
    """The cheapest render function for bound parts: most templates are one
    variable (`$host`, `$http_upgrade`) or a literal and one variable."""
    parts = [p for p in bound if not isinstance(p, str) or p]     # no empty literals
    if all(isinstance(p, str) for p in parts):
        return _constant("".join(p for p in parts if isinstance(p, str)))
    if len(parts) == 1:
        getter = parts[0]
        assert not isinstance(getter, str)
        return lambda ctx: getter(ctx) or ""
    if len(parts) == 2:
        first, second = parts
        if isinstance(first, str):
            assert not isinstance(second, str)
            return lambda ctx: first + (second(ctx) or "")
        if isinstance(second, str):
            return lambda ctx: (first(ctx) or "") + second
    template = ["" if not isinstance(p, str) else p for p in parts]
    slots = tuple((i, p) for i, p in enumerate(parts) if not isinstance(p, str))

    def render(ctx: VarContext) -> str:
        out = template.copy()
        for i, getter in slots:
            out[i] = getter(ctx) or ""
        return "".join(out)
    return render


def _escape_default(value: str | None) -> str:
    if value is None:
        return "-"
    return value.translate(_DEFAULT_ESCAPES)


def _escape_json(value: str | None) -> str:
    if value is None:
        return ""
    return value.translate(_JSON_ESCAPES)


_DEFAULT_ESCAPES = {c: f"\\x{c:02X}" for c in [*range(0x20), 0x22, 0x5C, *range(0x7F, 0x100)]}
_JSON_ESCAPES: dict[int, str] = {c: f"\\u{c:04x}" for c in range(0x20)}
_JSON_ESCAPES.update({0x0A: "\\n", 0x0D: "\\r", 0x09: "\\t", 0x08: "\\b", 0x0C: "\\f",
                      0x22: '\\"', 0x5C: "\\\\"})
_ESCAPERS: dict[str, Callable[[str | None], str]] = {
    "default": _escape_default,
    "json": _escape_json,
    "none": lambda v: v or "",
}

_NAME_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_")


def compile_template(text: str, table: VariableTable, *, file: str | None = None,
                     line: int | None = None) -> Template:
    """Parse `text` as nginx's script compiler does (ngx_http_script_compile).

    `$name` takes [A-Za-z0-9_]*; `${name}` ends at `}`; `$1`..`$9` are captures (so
    `$10` is `$1` then "0").  A `$` with no name after it is `invalid variable name`.
    """
    parts: list[str | tuple[str]] = []
    i, n = 0, len(text)
    while i < n:
        if text[i] != "$":
            j = text.find("$", i)
            j = n if j < 0 else j
            parts.append(text[i:j])
            i = j
            continue
        i += 1
        if i == n:
            raise ConfigError("invalid variable name", file, line)
        if "1" <= text[i] <= "9":
            parts.append((text[i],))
            i += 1
            continue
        name, i = _scan_name(text, i, file, line)
        parts.append((name.lower(),))
    template = Template(text, parts, table)
    table.register(template)
    return template


def _scan_name(text: str, i: int, file: str | None, line: int | None) -> tuple[str, int]:
    bracket = text[i] == "{"
    if bracket:
        i += 1
        if i == len(text):
            raise ConfigError("invalid variable name", file, line)
    start = i
    while i < len(text):
        ch = text[i]
        if ch == "}" and bracket:
            name = text[start:i]
            if not name:
                raise ConfigError("invalid variable name", file, line)
            return name, i + 1
        if ch not in _NAME_CHARS:
            break
        i += 1
    if bracket:
        raise ConfigError(f'the closing bracket in "{text[start:i]}" variable is missing',
                          file, line)
    if i == start:
        raise ConfigError("invalid variable name", file, line)
    return text[start:i], i
