"""THE directive table: one row per directive, as nginx modules declare ngx_command_t.

A row says where a directive may appear (contexts), how many arguments it takes
(arity), whether it opens a block, how its value is parsed (a slots.py parser or a
named custom handler in build.py), how it is inherited (merge), its nginx default,
and whether wsgate implements, ignores or refuses it. `-t`, `check` and the runtime
all read this table; adding a directive is adding a row.

Some names have several forms in different contexts (`server` in http and in
upstream, `keepalive_timeout` in http and in upstream); nginx tries each module's
row in turn, and so does `find_form`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from wsgate.config import slots
from wsgate.config.slots import Slot

__all__ = ["Directive", "Form", "DIRECTIVES", "MAIN", "EVENTS", "HTTP", "SRV", "LOC",
           "UPS", "SIF", "LIF", "LMT", "arity_ok", "find_form", "UNSET"]


class _Unset:
    """nginx's NGX_CONF_UNSET: "not given at this level" (distinct from None/off)."""

    _instance: "_Unset | None" = None

    def __new__(cls) -> "_Unset":
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "UNSET"

    def __bool__(self) -> bool:
        return False


UNSET: Any = _Unset()

# Contexts (nginx's NGX_MAIN_CONF, NGX_EVENT_CONF, NGX_HTTP_*_CONF).
MAIN, EVENTS, HTTP, SRV, LOC, UPS = "main", "events", "http", "server", "location", "upstream"
SIF, LIF, LMT = "server_if", "location_if", "limit_except"
_HSL = frozenset({HTTP, SRV, LOC})
_HSLI = _HSL | {SIF, LIF}
_HS = frozenset({HTTP, SRV})
_H = frozenset({HTTP})
_L = frozenset({LOC})
_SL = frozenset({SRV, LOC})
_M = frozenset({MAIN})
_E = frozenset({EVENTS})
_U = frozenset({UPS})
_ANYWHERE = frozenset({MAIN, EVENTS, HTTP, SRV, LOC, UPS, SIF, LIF, LMT})

_ARITY = {
    "NOARGS": {0}, "TAKE1": {1}, "TAKE2": {2}, "TAKE3": {3}, "TAKE4": {4},
    "TAKE5": {5}, "TAKE6": {6}, "TAKE7": {7}, "TAKE12": {1, 2}, "TAKE13": {1, 3},
    "TAKE23": {2, 3}, "TAKE012": {0, 1, 2}, "TAKE123": {1, 2, 3}, "TAKE1234": {1, 2, 3, 4}, "FLAG": {1},
}
ARITIES = frozenset(_ARITY) | {"1MORE", "2MORE", "ANY"}
MAX_ARGS = 7   # NGX_CONF_MAX_ARGS is 8 words including the name


def arity_ok(arity: str, nargs: int) -> bool:
    """nginx's argument-count check for one row (nargs excludes the name)."""
    if arity == "ANY":
        return True
    if arity == "1MORE":
        return nargs >= 1
    if arity == "2MORE":
        return nargs >= 2
    return nargs <= MAX_ARGS and nargs in _ARITY[arity]


@dataclass(frozen=True, slots=True)
class Form:
    """One (module's) declaration of a directive name."""

    contexts: frozenset[str]
    arity: str
    block: bool = False
    parse: Slot | None = None        # slots parser; None: custom handler or no value
    store: str = "value"             # value | array | custom | none
    merge: str = "inherit"           # inherit | array | local (not inherited)
    default: Any = UNSET


@dataclass(frozen=True, slots=True)
class Directive:
    name: str
    forms: tuple[Form, ...]
    kind: str = "impl"               # impl | ignored | refused
    wsgate_only: bool = False

    @property
    def contexts(self) -> frozenset[str]:
        out: frozenset[str] = frozenset()
        for f in self.forms:
            out |= f.contexts
        return out

    @property
    def arity(self) -> str:
        return self.forms[0].arity

    def form_for(self, context: str) -> Form | None:
        return find_form(self, context)


def find_form(directive: Directive, context: str) -> Form | None:
    for form in directive.forms:
        if context in form.contexts:
            return form
    return None


DIRECTIVES: dict[str, Directive] = {}


def _row(name: str, contexts: frozenset[str], arity: str, parse: Slot | None = None, *,
         block: bool = False, store: str = "value", merge: str = "inherit",
         default: Any = UNSET, kind: str = "impl", wsgate: bool = False) -> None:
    form = Form(frozenset(contexts), arity, block, parse, store, merge, default)
    old = DIRECTIVES.get(name)
    forms = (old.forms + (form,)) if old else (form,)
    DIRECTIVES[name] = Directive(name, forms, kind if not old else old.kind,
                                 wsgate if not old else old.wsgate_only)


def _ignored(names: Sequence[str], contexts: frozenset[str], arity: str,
             parse: Slot | None = None, store: str = "", **kw: Any) -> None:
    """Rows nginx knows and wsgate ignores; a `parse` slot checks the arguments, and
    store="value" (the default with a slot) makes a repeat "is duplicate" as in nginx."""
    store = store or ("value" if parse is not None else "none")
    for name in names:
        _row(name, contexts, arity, parse, kind="ignored", store=store, **kw)


def _refused(names: Sequence[str], contexts: frozenset[str], arity: str, **kw: Any) -> None:
    for name in names:
        _row(name, contexts, arity, kind="refused", store="none", **kw)


S, F, N, T, MS, SZ = slots.string, slots.flag, slots.number, slots.sec, slots.msec, slots.size
C = "custom"

# --- core: main and events -------------------------------------------------
_row("user", _M, "TAKE12", slots.strings)
_row("worker_processes", _M, "TAKE1", slots.worker_processes, default=1)
_row("daemon", _M, "FLAG", F, default=True)
_row("master_process", _M, "FLAG", F, default=True)
_row("pid", _M, "TAKE1", S, default="logs/nginx.pid")
_row("error_log", _M | _HSL, "1MORE", slots.strings, store="array", merge="array")
_row("worker_rlimit_nofile", _M, "TAKE1", N)
_row("worker_shutdown_timeout", _M, "TAKE1", MS)
_row("env", _M, "TAKE1", S, store="array")
_row("include", _ANYWHERE, "TAKE1", store=C)
_row("events", _M, "NOARGS", block=True, store=C)
_row("http", _M, "NOARGS", block=True, store=C)
_row("worker_connections", _E, "TAKE1", slots.quoted_number, default=512)
_row("use", _E, "TAKE1", S)
_row("multi_accept", _E, "FLAG", F, default=False)
_row("accept_mutex", _E, "FLAG", F, default=False)
_ignored(["worker_priority"], _M, "TAKE1", slots.signed_number)
_ignored(["worker_cpu_affinity"], _M, "1MORE", slots.cpu_affinity)
_ignored(["worker_rlimit_core"], _M, "TAKE1", slots.offset)
_ignored(["working_directory", "lock_file", "ssl_engine", "load_module"], _M, "TAKE1")
_ignored(["timer_resolution"], _M, "TAKE1", MS)
_ignored(["pcre_jit"], _M, "FLAG", F)
_ignored(["thread_pool"], _M, "TAKE23", slots.thread_pool)
_ignored(["accept_mutex_delay"], _E, "TAKE1", MS)
_ignored(["worker_aio_requests"], _E, "TAKE1", N)
_ignored(["debug_connection"], _E, "TAKE1")

# --- http core --------------------------------------------------------------
_row("server", _H, "NOARGS", block=True, store=C)
_row("server", _U, "1MORE", store=C)
_row("listen", frozenset({SRV}), "1MORE", store=C)
_row("server_name", frozenset({SRV}), "1MORE", store=C)
_row("location", _SL, "TAKE12", block=True, store=C)
_row("root", _HSLI, "TAKE1", S, default="html")
_row("alias", _L, "TAKE1", S, merge="local")
_row("index", _HSL, "1MORE", slots.strings, store="array", merge="array")
_row("return", frozenset({SRV, LOC, SIF, LIF}), "TAKE12", store=C, merge="local")
_row("try_files", _SL, "2MORE", store=C, merge="local")
# ngx_http_rewrite_module: rewrite/return/set/break/if of one level append, in order,
# to that level's script, stored in the `rewrite` slot (config/script.py).
_SLI = frozenset({SRV, LOC, SIF, LIF})
_row("rewrite", _SLI, "TAKE23", store=C, merge="local")
_row("set", _SLI, "TAKE2", store=C, merge="local")
_row("break", _SLI, "NOARGS", store=C, merge="local")
_row("if", _SL, "1MORE", block=True, store=C, merge="local")
_row("rewrite_log", _HSLI, "FLAG", F, default=False)
_row("uninitialized_variable_warn", _HSLI, "FLAG", F, default=True)
_row("error_page", _HSLI, "2MORE", store=C, merge="array")
_row("add_header", _HSLI, "TAKE23", store=C, merge="array")
_row("types", _HSL, "NOARGS", block=True, store=C)
_row("default_type", _HSL, "TAKE1", S, default="text/plain")
_row("keepalive_timeout", _HSL, "TAKE12", store=C, default=(75.0, None))
_row("keepalive_timeout", _U, "TAKE1", MS, default=60.0)
_row("keepalive_requests", _HSL, "TAKE1", N, default=1000)
_row("keepalive_requests", _U, "TAKE1", N, default=1000)
_row("keepalive_time", _HSL, "TAKE1", MS, default=3600.0)
_row("keepalive_time", _U, "TAKE1", MS, default=3600.0)
_row("client_max_body_size", _HSL, "TAKE1", slots.offset, default=1 << 20)
_row("client_body_timeout", _HSL, "TAKE1", MS, default=60.0)
_row("client_header_timeout", _HS, "TAKE1", MS, default=60.0)
_row("client_header_buffer_size", _HS, "TAKE1", SZ, default=1024)
_row("large_client_header_buffers", _HS, "TAKE2", store=C, default=(4, 8192))
_row("client_body_buffer_size", _HSL, "TAKE1", SZ, default=16384)
_row("ignore_invalid_headers", _HS, "FLAG", F, default=True)
_row("underscores_in_headers", _HS, "FLAG", F, default=False)
_row("send_timeout", _HSL, "TAKE1", MS, default=60.0)
_row("server_tokens", _HSL, "TAKE1", slots.enum("on", "off", "build"), default="on")
_row("expires", _HSLI, "TAKE12", store=C)
_row("etag", _HSL, "FLAG", F, default=True)
_row("if_modified_since", _HSL, "TAKE1", slots.enum("off", "exact", "before"),
     default="exact")
_row("log_not_found", _HSL, "FLAG", F, default=True)
_row("access_log", _HSLI | {LMT}, "1MORE", store=C, merge="array")
_row("log_format", _H, "2MORE", store=C)
_row("open_log_file_cache", _HSL, "TAKE1234", slots.strings)
_row("resolver", _HSL, "1MORE", slots.strings)
_row("resolver_timeout", _HSL, "TAKE1", MS, default=30.0)
_row("map", _H, "TAKE2", block=True, store=C)
for _p in ("variables", "map", "types"):
    _row(f"{_p}_hash_max_size", _H if _p != "types" else _HSL, "TAKE1", SZ)
    _row(f"{_p}_hash_bucket_size", _H if _p != "types" else _HSL, "TAKE1", SZ)
_ignored(["server_names_hash_max_size", "server_names_hash_bucket_size"], _H, "TAKE1", N)

# --- proxy ------------------------------------------------------------------
_HDR = "custom"
_row("proxy_pass", frozenset({LOC, LIF, LMT}), "TAKE1", store=C, merge="local")
_row("proxy_http_version", _HSL, "TAKE1", slots.enum("1.0", "1.1"), default="1.0")
_row("proxy_set_header", _HSL, "TAKE2", store=C, merge="array")
_row("proxy_hide_header", _HSL, "TAKE1", S, store="array", merge="array")
_row("proxy_pass_header", _HSL, "TAKE1", S, store="array", merge="array")
_row("proxy_pass_request_headers", _HSL, "FLAG", F, default=True)
_row("proxy_pass_request_body", _HSL, "FLAG", F, default=True)
_row("proxy_method", _HSL, "TAKE1", store=C)
_row("proxy_set_body", _HSL, "TAKE1", store=C)
_row("proxy_redirect", _HSL, "TAKE12", store=C, merge="array")
_row("proxy_intercept_errors", _HSL, "FLAG", F, default=False)
_row("proxy_buffering", _HSL, "FLAG", F, default=True)
_row("proxy_request_buffering", _HSL, "FLAG", F, default=True)
_row("proxy_buffer_size", _HSL, "TAKE1", SZ, default=8192)
_row("proxy_buffers", _HSL, "TAKE2", store=C, default=(8, 8192))
_row("proxy_busy_buffers_size", _HSL, "TAKE1", SZ, default=16384)
_row("proxy_connect_timeout", _HSL, "TAKE1", MS, default=60.0)
_row("proxy_read_timeout", _HSL, "TAKE1", MS, default=60.0)
_row("proxy_send_timeout", _HSL, "TAKE1", MS, default=60.0)
_NEXT = ("error", "timeout", "invalid_header", "http_500", "http_502", "http_503",
         "http_504", "http_403", "http_404", "http_429", "updating", "non_idempotent",
         "off")
_row("proxy_next_upstream", _HSL, "1MORE", slots.bitmask(*_NEXT),
     default=frozenset({"error", "timeout"}))
_row("proxy_next_upstream_tries", _HSL, "TAKE1", N, default=0)
_row("proxy_next_upstream_timeout", _HSL, "TAKE1", MS, default=0.0)
_IGN = ("X-Accel-Redirect", "X-Accel-Expires", "X-Accel-Limit-Rate", "X-Accel-Buffering",
        "X-Accel-Charset", "Expires", "Cache-Control", "Set-Cookie", "Vary")
_row("proxy_ignore_headers", _HSL, "1MORE", slots.bitmask(*_IGN), default=frozenset())
_row("proxy_cookie_domain", _HSL, "TAKE12", slots.strings, store="array", merge="array")
_row("proxy_cookie_path", _HSL, "TAKE12", slots.strings, store="array", merge="array")
_row("proxy_bind", _HSL, "TAKE12", slots.strings)
_row("proxy_ssl_server_name", _HSL, "FLAG", F, default=False)
_row("proxy_ssl_name", _HSL, "TAKE1", S)
_row("proxy_ssl_verify", _HSL, "FLAG", F, default=False)
_row("proxy_ssl_verify_depth", _HSL, "TAKE1", N, default=1)
_row("proxy_ssl_trusted_certificate", _HSL, "TAKE1", S)
_row("proxy_ssl_certificate", _HSL, "TAKE1", S)
_row("proxy_ssl_certificate_key", _HSL, "TAKE1", S)
_row("proxy_ssl_protocols", _HSL, "1MORE", slots.strings, default=("TLSv1.2", "TLSv1.3"))
_row("proxy_ssl_ciphers", _HSL, "TAKE1", S, default="DEFAULT")
_row("proxy_ssl_session_reuse", _HSL, "FLAG", F, default=True)
_row("proxy_ssl_crl", _HSL, "TAKE1", S)
_row("proxy_ssl_password_file", _HSL, "TAKE1", S)
_row("proxy_ssl_conf_command", _HSL, "TAKE2", slots.strings, store="array", merge="array")
_ignored(["proxy_temp_path"], _HSL, "TAKE1234", slots.path)
_ignored(["proxy_max_temp_file_size", "proxy_temp_file_write_size", "proxy_limit_rate"],
         _HSL, "TAKE1", SZ)
_ignored(["proxy_headers_hash_max_size", "proxy_headers_hash_bucket_size"], _HSL, "TAKE1", N)
_ignored(["proxy_socket_keepalive", "proxy_force_ranges"], _HSL, "FLAG", F)
# Harmless when there is no cache (nginx evaluates them only for a cached location).
_ignored(["proxy_cache_bypass", "proxy_no_cache"], _HSL, "1MORE")
_refused(["proxy_cache", "proxy_cache_key", "proxy_cache_valid", "proxy_cache_methods", "proxy_cache_min_uses",
          "proxy_cache_use_stale", "proxy_cache_lock", "proxy_cache_revalidate",
          "proxy_cache_background_update", "proxy_store", "proxy_cache_convert_head"],
         _HSL, "1MORE")
_refused(["proxy_cache_path"], _H, "2MORE")

# --- upstream ---------------------------------------------------------------
_row("upstream", _H, "TAKE1", block=True, store=C)
for _b, _a in (("ip_hash", "NOARGS"), ("least_conn", "NOARGS"), ("hash", "TAKE12"),
               ("random", "TAKE012")):
    _row(_b, _U, _a, store=C)
_row("zone", _U, "TAKE12", slots.strings)
_row("keepalive", _U, "TAKE1", store=C)

# --- ssl --------------------------------------------------------------------
_row("ssl", _HS, "FLAG", F, default=False)
_row("ssl_certificate", _HS, "TAKE1", S, store="array", merge="array")
_row("ssl_certificate_key", _HS, "TAKE1", S, store="array", merge="array")
_row("ssl_protocols", _HS, "1MORE", slots.bitmask("SSLv2", "SSLv3", "TLSv1", "TLSv1.1",
                                                  "TLSv1.2", "TLSv1.3"),
     default=frozenset({"TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3"}))
_row("ssl_ciphers", _HS, "TAKE1", S, default="HIGH:!aNULL:!MD5")
_row("ssl_prefer_server_ciphers", _HS, "FLAG", F, default=False)
_row("ssl_ecdh_curve", _HS, "TAKE1", S, default="auto")
_row("ssl_session_cache", _HS, "TAKE12", slots.strings, default=("none",))
_row("ssl_session_timeout", _HS, "TAKE1", T, default=300.0)
_row("ssl_session_tickets", _HS, "FLAG", F, default=True)
_row("ssl_verify_client", _HS, "TAKE1", slots.enum("on", "off", "optional",
                                                   "optional_no_ca"), default="off")
_row("ssl_client_certificate", _HS, "TAKE1", S)
_row("ssl_trusted_certificate", _HS, "TAKE1", S)
_row("ssl_verify_depth", _HS, "TAKE1", N, default=1)
_row("ssl_dhparam", _HS, "TAKE1", S)
_row("ssl_password_file", _HS, "TAKE1", S)
_ignored(["ssl_buffer_size"], _HS, "TAKE1", SZ)
_ignored(["ssl_early_data", "ssl_reject_handshake"], _HS, "FLAG", F)
_ignored(["ssl_session_ticket_key", "ssl_crl"], _HS, "TAKE1")
_ignored(["ssl_conf_command"], _HS, "TAKE2")
_refused(["ssl_stapling", "ssl_stapling_file", "ssl_stapling_responder",
          "ssl_stapling_verify", "ssl_ocsp", "ssl_ocsp_cache", "ssl_ocsp_responder"],
         _HS, "TAKE12")

# --- status -------------------------------------------------------------------
_row("stub_status", frozenset({SRV, LOC}), "ANY", store=C, merge="local", default=False)

# --- wsgate's own (inherited like proxy_*) --------------------------------------
_row("websocket", _HSL, "FLAG", F, default=False, wsgate=True)
_row("websocket_ping_interval", _HSL, "TAKE1", MS, default=0.0, wsgate=True)
_row("websocket_ping_timeout", _HSL, "TAKE1", MS, default=30.0, wsgate=True)
_row("websocket_max_message_size", _HSL, "TAKE12", store=C, default=(0, "both"),
     wsgate=True)
_row("websocket_max_frame_size", _HSL, "TAKE1", SZ, default=0, wsgate=True)
_row("websocket_allow_origin", _HSL, "1MORE", slots.strings, default=(), wsgate=True)
_row("websocket_close_timeout", _HSL, "TAKE1", MS, default=5.0, wsgate=True)
_row("websocket_drain_spread", _HSL, "TAKE1", MS, default=2.0, wsgate=True)
_row("websocket_log_open", _HSL, "FLAG", F, default=False, wsgate=True)
_row("metrics", _L, "NOARGS", store=C, merge="local", default=False, wsgate=True)
_row("websocket_status", _L, "NOARGS", store=C, merge="local", default=False,
     wsgate=True)

# --- nginx directives wsgate accepts and ignores (harmless tuning) -----------------
# Their arguments are still checked with nginx's slot, contexts and arity, so a
# config nginx rejects is rejected here too; only then is the warning given.
_HSLF = _HSLI - {SIF}           # http, server, location, if in location
_ignored(["sendfile", "gzip", "override_charset"], _HSLF, "FLAG", F)
_row("ssi", _HSLF, "FLAG", F, default=False)     # proxy/ssi.py: a minimal SSI
_row("ssi_silent_errors", _HSL, "FLAG", F, default=False)
_ignored(["charset", "source_charset"], _HSLF, "TAKE1")
_ignored(["tcp_nopush", "tcp_nodelay", "gzip_vary", "gunzip", "reset_timedout_connection",
          "msie_padding", "msie_refresh", "absolute_redirect", "port_in_redirect",
          "server_name_in_redirect", "chunked_transfer_encoding", "log_subrequest",
          "recursive_error_pages", "open_file_cache_errors", "client_body_in_single_buffer",
          "autoindex", "autoindex_exact_size", "autoindex_localtime",
          "aio_write"], _HSL, "FLAG", F)
_ignored(["merge_slashes"], _HS, "FLAG", F)
_row("keepalive_disable", _HSL, "1MORE", slots.bitmask("none", "msie6", "safari"),
     default=frozenset(("msie6",)))
_ignored(["gzip_types", "gzip_disable", "ssi_types", "charset_types"], _HSL, "1MORE")
_ignored(["gzip_proxied"], _HSL, "1MORE", slots.bitmask(
    "off", "expired", "no-cache", "no-store", "private", "no_last_modified", "no_etag",
    "auth", "any"), store="array")
_ignored(["gzip_static"], _HSL, "TAKE1", slots.enum("off", "on", "always"))
_ignored(["gzip_http_version"], _HSL, "TAKE1", slots.enum("1.0", "1.1"))
_ignored(["lingering_close"], _HSL, "TAKE1", slots.enum("off", "on", "always"))
_row("client_body_in_file_only", _HSL, "TAKE1", slots.enum("off", "on", "clean"),
     default="off")
_ignored(["gzip_comp_level"], _HSL, "TAKE1", slots.number_between(1, 9))
_ignored(["gzip_min_length", "postpone_output", "read_ahead", "send_lowat",
          "sendfile_max_chunk", "subrequest_output_buffer_size"], _HSL, "TAKE1", SZ)
_ignored(["directio_alignment"], _HSL, "TAKE1", slots.offset)
_ignored(["directio"], _HSL, "TAKE1", slots.off_or(slots.offset))
_ignored(["lingering_time", "lingering_timeout"], _HSL, "TAKE1", MS)
_ignored(["open_file_cache_valid"], _HSL, "TAKE1", T)
_ignored(["open_file_cache_min_uses", "max_ranges"], _HSL, "TAKE1", N)
_ignored(["gzip_buffers", "output_buffers", "gunzip_buffers"], _HSL, "TAKE2", slots.bufs)
_ignored(["connection_pool_size", "request_pool_size"], _HS, "TAKE1",
         slots.size_at_least(112, "the pool size must be no less than 112"))
_ignored(["aio"], _HSL, "TAKE1", slots.aio)
_ignored(["disable_symlinks"], _HSL, "TAKE12", slots.disable_symlinks)
_ignored(["open_file_cache"], _HSL, "TAKE12", slots.open_file_cache)
_row("client_body_temp_path", _HSL, "TAKE1234", slots.path, default=("client_body_temp",))
_ignored(["fastcgi_temp_path", "uwsgi_temp_path", "scgi_temp_path"], _HSL, "TAKE1234",
         slots.path)

# --- nginx directives wsgate refuses (they change who gets what) ------------------
_refused(["allow", "deny", "auth_basic", "auth_basic_user_file", "auth_request",
          "limit_req", "limit_conn", "sub_filter", "sub_filter_once",
          "sub_filter_types", "sub_filter_last_modified", "satisfy", "internal",
          "limit_rate", "limit_rate_after",
          "limit_req_status", "limit_conn_status", "limit_req_log_level",
          "limit_conn_log_level", "set_real_ip_from", "real_ip_header",
          "real_ip_recursive", "dav_methods", "mirror", "secure_link",
          "add_before_body", "add_after_body", "random_index", "flv", "mp4"],
         _HSLI, "ANY")
_refused(["auth_request_set"], _HSLI, "ANY")
_refused(["limit_except"], _L, "1MORE", block=True)
_refused(["limit_req_zone", "limit_conn_zone"], _H, "ANY")
_refused(["geo"], _H, "TAKE12", block=True)
_refused(["split_clients"], _H, "TAKE2", block=True)
for _m in ("fastcgi", "uwsgi", "scgi", "grpc"):
    _refused([f"{_m}_pass", f"{_m}_param", f"{_m}_read_timeout", f"{_m}_index",
              f"{_m}_buffering", f"{_m}_connect_timeout", f"{_m}_send_timeout",
              f"{_m}_set_header", f"{_m}_hide_header", f"{_m}_intercept_errors",
              f"{_m}_split_path_info", f"{_m}_buffers", f"{_m}_buffer_size"],
             _HSLI, "ANY")
