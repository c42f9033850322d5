"""The hooks the proxy engine calls: one object per config generation, one check per
request, one function per upstream TLS connection. They keep the engine's TLS
edits to a few lines (see the module docstrings of accept.py and upstream.py).

    serving = ServingTLS(cfg, groups)         # with the Runtime; groups: key -> group
    serving.is_ssl(key)                       # bind with start_tls_serving(...) if so
    serving.context(key) / header_timeout(key)  # the accept loop's callables
    check = request_check(ssl_port, server, sslobj, host)  # once Host picked `server`
    if check: log [info] check.log; answer check.status (421; 497/495/496: nginx's 400s)
    transport, proto = await open_tls_peer(factory, sockaddr, timeout, tls, peer_key,
                                           proxy_host, ex.vars)  # UpstreamHandshakeError
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from wsgate.errors import UpstreamError
from wsgate.tls import tls_for
from wsgate.tls.contexts import ListenerTLS, client_cert_status
from wsgate.tls.upstream import UpstreamTLS, handshake_error
from wsgate.tls.variables import server_name_of

__all__ = ["ServingTLS", "RequestCheck", "request_check", "UpstreamHandshakeError",
           "open_tls_peer"]


class ServingTLS:
    """The TLS side of one Runtime: which listeners are ssl, and their contexts."""

    def __init__(self, cfg: Any, groups: dict[Any, Any]) -> None:
        self.tls = tls_for(cfg)
        self.groups = groups
        self._listeners: dict[Any, ListenerTLS | None] = {}

    def is_ssl(self, key: Any) -> bool:
        """`listen ... ssl` on the address, or the deprecated `ssl on;` in its default
        server (ngx_http_init_connection: sscf->enable || addr_conf->ssl)."""
        group = self.groups.get(key)
        return self.tls.is_ssl(key) or (group is not None and
                                        getattr(group.default, "ssl", False) is True)

    def listener(self, key: Any) -> ListenerTLS | None:
        if key not in self._listeners:
            group = self.groups.get(key)
            self._listeners[key] = None if group is None else self.tls.listener(
                group.servers, group.default, _finder(group))
        return self._listeners[key]

    def context(self, key: Any) -> ssl.SSLContext | None:
        lt = self.listener(key)
        return lt.context if lt is not None else None

    def header_timeout(self, key: Any) -> float:
        group = self.groups.get(key)
        return float(group.default.client_header_timeout) if group is not None else 60.0

    def upstream(self, location: Any) -> UpstreamTLS | None:
        return self.tls.upstream(location)


def _finder(group: Any) -> Callable[[str | None], Any]:
    from wsgate.proxy.route import find_server
    return lambda name: find_server(group, name)[0]


@dataclass(frozen=True, slots=True)
class RequestCheck:
    """A request nginx refuses for TLS reasons: the status page and the [info] line."""

    status: int          # 497 plain HTTP on an ssl port, 495 bad cert, 496 no cert
    log: str


_MISDIRECTED = ("client attempted to request the server name different from the one "
                "that was negotiated")


def request_check(ssl_port: bool, server: Any, sslobj: ssl.SSLObject | None,
                  host: str | None = None) -> RequestCheck | None:
    """nginx's TLS checks of a request, in its order: a Host other than the SNI name
    on a server verifying client certificates (421, ngx_http_set_virtual_server),
    then plain HTTP (497) and the client certificate (495/496) in
    ngx_http_process_request. `host` is the request's validated $host."""
    if not ssl_port:
        return None
    if sslobj is None:
        return RequestCheck(497, "client sent plain HTTP request to HTTPS port")
    sni = server_name_of(sslobj)
    if sni and host is not None and getattr(server, "ssl_verify_client", "off") != "off" \
            and sni.lower() != host.lower():
        return RequestCheck(421, _MISDIRECTED)
    verdict = client_cert_status(server, sslobj)
    return RequestCheck(*verdict) if verdict is not None else None


class UpstreamHandshakeError(UpstreamError):
    """TLS toward an upstream failed; `message` is nginx's text for the error log
    (append " while SSL handshaking to upstream"); the peer counts as failed."""

    def __init__(self, message: str) -> None:
        super().__init__(message, kind="error", source="upstream", retryable=True)


async def open_tls_peer(factory: Callable[[], asyncio.Protocol],
                        sockaddr: tuple[str, int] | str,
                        timeout: float | None, tls: UpstreamTLS, peer_key: str,
                        proxy_host: str, variables: Any = None
                        ) -> tuple[asyncio.Transport, Any]:
    """Connect and handshake (both within proxy_connect_timeout, as nginx), verify.

    OSError / asyncio.TimeoutError for the TCP connect as usual; a TLS failure is an
    UpstreamHandshakeError carrying nginx's words. `variables` (the request's
    VarContext) renders a proxy_ssl_name with variables.
    """
    loop = asyncio.get_running_loop()
    name = tls.ssl_name(proxy_host, variables)
    tls_args: dict[str, Any] = dict(ssl=tls.context_for(peer_key),
                                    server_hostname=tls.server_hostname(name),
                                    ssl_handshake_timeout=timeout)
    if isinstance(sockaddr, str):        # proxy_pass https://unix:/path
        connecting = loop.create_unix_connection(factory, sockaddr, **tls_args)
    else:
        connecting = loop.create_connection(factory, sockaddr[0], sockaddr[1], **tls_args)
    try:
        transport, proto = await asyncio.wait_for(connecting, timeout)
    except ssl.SSLError as exc:
        tls.forget_session(peer_key)
        raise UpstreamHandshakeError(handshake_error(exc)) from None
    sslobj = transport.get_extra_info("ssl_object")
    problem = tls.check_peer(sslobj, name)
    if problem is not None:
        transport.abort()
        tls.forget_session(peer_key)
        raise UpstreamHandshakeError(problem)
    tls.save_session(peer_key, sslobj)
    return transport, proto
