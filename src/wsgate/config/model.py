"""The immutable runtime model: frozen, slotted dataclasses built once per load.

`LocationConf` and `ServerConf` get one attribute per directive of their level,
named exactly like the directive (`loc.proxy_read_timeout`); those classes are
generated from the directive table so that adding a row adds the attribute.
Every object keeps the `file` and `line` of the directive that created it.
"""

from __future__ import annotations

import keyword
from dataclasses import dataclass, field, make_dataclass
from typing import Any

from wsgate.config.directives import DIRECTIVES, LOC, MAIN, SRV, HTTP

__all__ = ["Listen", "ProxyPass", "UpstreamServer", "UpstreamConf", "LogFormat",
           "AccessLog", "Header", "TryFiles", "LocationConf", "ServerConf", "HttpConf", "Config",
           "LOCATION_FIELDS", "SERVER_FIELDS", "HTTP_FIELDS", "MAIN_FIELDS"]


@dataclass(frozen=True, slots=True)
class Listen:
    host: str | None          # None: unix socket; "*"-style wildcard is "0.0.0.0"/"::"
    port: int | None
    unix_path: str | None = None
    default_server: bool = False
    ssl: bool = False
    backlog: int = 511
    reuseport: bool = False
    ipv6only: bool = True
    rcvbuf: int | None = None
    sndbuf: int | None = None
    http2: bool = False
    proxy_protocol: bool = False
    file: str = ""
    line: int = 0

    @property
    def addr(self) -> str:
        if self.unix_path is not None:
            return f"unix:{self.unix_path}"
        host = f"[{self.host}]" if self.host and ":" in self.host else self.host
        return f"{host}:{self.port}"


@dataclass(frozen=True, slots=True)
class ProxyPass:
    url: str
    scheme: str = "http"
    host: str | None = None
    port: int | None = None
    unix_path: str | None = None
    uri: str | None = None            # None: pass the request URI unchanged
    upstream: str | None = None       # name of an `upstream` block, when it names one
    template: Any = None              # a Template when the URL contains variables
    file: str = ""
    line: int = 0


@dataclass(frozen=True, slots=True)
class UpstreamServer:
    host: str | None
    port: int | None
    unix_path: str | None = None
    weight: int = 1
    max_fails: int = 1
    fail_timeout: float = 10.0
    backup: bool = False
    down: bool = False
    max_conns: int = 0
    resolve: bool = False
    addresses: tuple[str, ...] = ()
    file: str = ""
    line: int = 0


@dataclass(frozen=True, slots=True)
class UpstreamConf:
    name: str
    servers: tuple[UpstreamServer, ...]
    balancer: str = "round_robin"     # round_robin | ip_hash | hash | least_conn | random
    balancer_args: tuple[str, ...] = ()
    keepalive: int = 0                # idle connections cached per worker; 0: off
    keepalive_requests: int = 1000
    keepalive_time: float = 3600.0
    keepalive_timeout: float = 60.0
    zone: tuple[str, ...] = ()
    implicit: bool = False            # made by proxy_pass http://host:port
    file: str = ""
    line: int = 0


@dataclass(frozen=True, slots=True)
class Header:
    name: str
    value: Any                        # Template
    always: bool = False
    file: str = ""
    line: int = 0


@dataclass(frozen=True, slots=True)
class TryFiles:
    """`try_files file ... fallback`: test each `files` template (a trailing "/"
    means a directory) under root/alias; when none exists, either return `code`
    (`=404`) or internally redirect to `fallback` (a URI or `@named` location)."""

    files: tuple[Any, ...]            # Templates
    fallback: Any = None              # Template, or None when `code` is set
    code: int | None = None
    file: str = ""
    line: int = 0


@dataclass(frozen=True, slots=True)
class LogFormat:
    name: str
    escape: str                       # default | json | none
    source: str
    template: Any = None
    file: str = ""
    line: int = 0


@dataclass(frozen=True, slots=True)
class AccessLog:
    path: str | None                  # None: `access_log off`
    format: str = "combined"
    params: tuple[str, ...] = ()
    file: str = ""
    line: int = 0


def _level_fields(level: str) -> list[str]:
    """Directive names whose values live at `level` (loc, srv, http, main)."""
    out = []
    for d in DIRECTIVES.values():
        if d.kind != "impl" or d.name in _STRUCTURAL:
            continue
        ctx = set().union(*(f.contexts for f in d.forms if HTTP in f.contexts
                            or SRV in f.contexts or LOC in f.contexts or MAIN in f.contexts
                            or "events" in f.contexts))
        if level == "loc" and LOC in ctx:
            out.append(d.name)
        elif level == "srv" and SRV in ctx and LOC not in ctx:
            out.append(d.name)
        elif level == "http" and HTTP in ctx and SRV not in ctx and LOC not in ctx:
            out.append(d.name)
        elif level == "main" and (MAIN in ctx or "events" in ctx) and HTTP not in ctx:
            out.append(d.name)
    return out


_STRUCTURAL = {"include", "events", "http", "server", "location", "listen", "server_name",
               "upstream", "map", "log_format", "ip_hash", "least_conn", "hash", "random",
               "zone", "env", "set", "break", "if"}   # rewrite ops live in `rewrite`
def attr(name: str) -> str:
    """Attribute name of a directive: itself, `return_` for Python keywords."""
    return name + "_" if keyword.iskeyword(name) else name


LOCATION_FIELDS = tuple(_level_fields("loc"))
SERVER_FIELDS = tuple(_level_fields("srv"))
HTTP_FIELDS = tuple(_level_fields("http"))
MAIN_FIELDS = tuple(_level_fields("main"))

LocationConf: Any = make_dataclass(
    "LocationConf",
    [("kind", str), ("pattern", str), ("regex", Any), ("locations", tuple),
     ("file", str), ("line", int)] + [(attr(n), Any) for n in LOCATION_FIELDS],
    frozen=True, slots=True, namespace={"__module__": __name__})
LocationConf.__doc__ = ("A location: kind is exact|prefix|prefix_nosearch|regex|"
                        "regex_caseless|named|server (the server's own level).")

ServerConf: Any = make_dataclass(
    "ServerConf",
    [("listens", tuple), ("server_names", tuple), ("locations", tuple),
     ("root", Any), ("file", str), ("line", int)]
    + [(attr(n), Any) for n in SERVER_FIELDS],
    frozen=True, slots=True, namespace={"__module__": __name__})
ServerConf.__doc__ = ("A server block; `root` is the LocationConf of the server level "
                      "(requests matching no location use it).")


@dataclass(frozen=True, slots=True)
class HttpConf:
    servers: tuple[Any, ...]
    upstreams: dict[str, UpstreamConf]
    log_formats: dict[str, LogFormat]
    maps: tuple[Any, ...]
    variables: Any
    settings: dict[str, Any] = field(default_factory=dict)   # http-only directives
    file: str = ""
    line: int = 0
    access_log: tuple[AccessLog, ...] = ()   # the http level's own (opened even with no server)


@dataclass(frozen=True, slots=True)
class Config:
    prefix: str
    conf_file: str
    user: tuple[str, ...] | None
    worker_processes: int | str
    daemon: bool
    master_process: bool
    pid: str
    error_logs: tuple[tuple[str, ...], ...]
    worker_connections: int
    worker_rlimit_nofile: int | None
    worker_shutdown_timeout: float | None
    env: tuple[str, ...]
    events: dict[str, Any]
    http: HttpConf | None
    files: tuple[str, ...] = ()
    # True when no main-level `error_log` was given and `error_logs` holds nginx's
    # default one: the `-e` path (load_config's default_error_log), as nginx does.
    error_log_default: bool = False

    @property
    def servers(self) -> tuple[Any, ...]:
        """Every `server` block of the http section (none without one)."""
        return self.http.servers if self.http is not None else ()

    @property
    def listens(self) -> list[Any]:
        """Every `listen` of every server, in order (addresses may repeat)."""
        return [lst for srv in self.servers for lst in srv.listens]
