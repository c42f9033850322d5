"""TLS for wsgate: contexts from nginx's ssl_* / proxy_ssl_* directives, built per load.

The config package is sans-IO and never imports ssl; this package is the TLS
post-check and runtime for a loaded `Config`:

    check_config(cfg, warn=...)         # at load (-t, start, reload): TlsConfigError
    tls = tls_for(cfg)                  # the same TlsRuntime, built once per Config
    tls.listener(servers, default, find_server) -> ListenerTLS | None  (SNI, per address)
    tls.upstream(location) -> UpstreamTLS | None                       (proxy_pass https)
    tls.is_ssl(listen_key) -> bool                                     (listen ... ssl)

Modules: certs (PEM loading, nginx's messages), contexts (server side, SNI, client
certificates), upstream (client side, sessions per peer), variables ($ssl_*),
accept (peek-then-TLS listener), native (the OpenSSL knobs ssl lacks).
"""

from __future__ import annotations

import ssl
from collections.abc import Callable
from typing import Any

from wsgate.errors import ConfigError
from wsgate.tls.certs import TlsConfigError, expired_warning, full_path
from wsgate.tls.contexts import ListenerTLS, ServerContexts, client_cert_status
from wsgate.tls.upstream import UpstreamContexts, UpstreamTLS
from wsgate.tls.variables import SSL_VARIABLES, tls_variables

__all__ = ["TlsRuntime", "check_config", "tls_for", "TlsConfigError", "ListenerTLS", "UpstreamTLS",
           "client_cert_status", "tls_variables", "SSL_VARIABLES", "openssl_version"]


def openssl_version() -> str:
    """For `-V`: "built with OpenSSL 3.0.x ..." as nginx prints it."""
    return f"built with {ssl.OPENSSL_VERSION}"


def _listen_key(listen: Any) -> tuple[Any, ...]:
    if listen.unix_path is not None:
        return ("unix", None, listen.unix_path)
    return (listen.host or "0.0.0.0", listen.port, None)


class TlsRuntime:
    """Every TLS context of one config generation (see the module docstring)."""

    def __init__(self, cfg: Any, warn: Callable[[ConfigError], None] | None = None) -> None:
        self.servers = ServerContexts(cfg)
        self.upstreams = UpstreamContexts(cfg)
        servers = cfg.servers
        self.ssl_keys = frozenset(_listen_key(lst) for s in servers
                                  for lst in s.listens if lst.ssl)
        self.servers._check_ssl_listens(servers)
        if warn is not None:
            _warn_expired(servers, self.servers.conf_prefix, warn)

    def is_ssl(self, key: tuple[Any, ...]) -> bool:
        """Is `listen ... ssl` set on any listen of this address (nginx ORs them)?"""
        return key in self.ssl_keys

    def listener(self, servers: tuple[Any, ...], default: Any,
                 find_server: Callable[[str | None], Any]) -> ListenerTLS | None:
        return self.servers.listener(servers, default, find_server)

    def upstream(self, location: Any) -> UpstreamTLS | None:
        return self.upstreams.get(location)


def _warn_expired(servers: tuple[Any, ...], prefix: str,
                  warn: Callable[[ConfigError], None]) -> None:
    seen: set[str] = set()
    for server in servers:
        for cert in server.ssl_certificate or ():
            path = full_path(cert, prefix)
            text = None if path in seen else expired_warning(path)
            seen.add(path)
            if text is not None:
                warn(TlsConfigError(text, where=(server.file, server.line), level="warn"))


# The last runtime built, with its config: `-t`/load builds it once and the worker
# that serves the same Config object (also after fork) reuses it. A strong reference
# to the config keeps id() from being reused.
_LAST: tuple[Any, TlsRuntime] | None = None


def tls_for(cfg: Any, warn: Callable[[ConfigError], None] | None = None) -> TlsRuntime:
    """The TlsRuntime of `cfg`, built on first use (TlsConfigError as nginx words it)."""
    global _LAST
    if _LAST is not None and _LAST[0] is cfg:
        return _LAST[1]
    runtime = TlsRuntime(cfg, warn=warn)
    _LAST = (cfg, runtime)
    return runtime


def check_config(cfg: Any, warn: Callable[[ConfigError], None] | None = None) -> None:
    """The load-time post-check (`-t`, start, reload): load every certificate and key
    as the runtime will, raising TlsConfigError; expired certificates go to `warn`."""
    tls_for(cfg, warn=warn)
