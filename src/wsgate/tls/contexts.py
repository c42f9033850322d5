"""Server-side TLS: one SSLContext per `server` with certificates, SNI between them.

Built once per config load (`ServerContexts(cfg)`); a reload builds new contexts, so
renewed certificates apply to new handshakes while established connections keep the
SSLObject (and context) they were made with.

The directives map onto OpenSSL as in nginx's ngx_http_ssl_module:
  ssl_protocols                 -> minimum/maximum version (the enabled range)
  ssl_ciphers                   -> set_ciphers (TLS 1.3 suites are not affected)
  ssl_prefer_server_ciphers     -> OP_CIPHER_SERVER_PREFERENCE (Python sets it; off clears)
  ssl_ecdh_curve                -> SSL_CTX_set1_curves_list (`auto`: OpenSSL's list)
  ssl_session_cache/_timeout    -> OpenSSL's internal cache per context and worker;
                                   `shared:` zones are emulated by it (one per worker)
  ssl_session_tickets off       -> OP_NO_TICKET; on: ticket keys derived per server,
                                   equal in every worker (wsgate.tls.tickets)
  ssl_verify_client             -> SSL_VERIFY_PEER with an accept-all callback; the
                                   outcome is judged per request (`client_cert_status`)
  ssl_reject_handshake on       -> the SNI callback answers unrecognized_name
  ALPN                          -> advertises http/1.1
SNI: the listener's context is the default server's; `sni_callback` finds the server
for the name exactly as the Host lookup does and switches `ssl_object.context`.
"""

from __future__ import annotations

import os
import ssl
import warnings
from collections.abc import Callable
from typing import Any

from wsgate.tls import native, tickets
from wsgate.tls.certs import TlsConfigError, full_path, load_pair, load_verify, \
    read_passwords

__all__ = ["ServerContexts", "ListenerTLS", "build_server_context", "client_cert_status",
           "rejects", "VERSIONS"]

VERSIONS = {"TLSv1": ssl.TLSVersion.TLSv1, "TLSv1.1": ssl.TLSVersion.TLSv1_1,
            "TLSv1.2": ssl.TLSVersion.TLSv1_2, "TLSv1.3": ssl.TLSVersion.TLSv1_3}
_ORDER = ["TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3"]
# X509_V_ERR_* codes ssl_verify_client optional_no_ca lets through
# (ngx_ssl_verify_error_optional).
_OPTIONAL_ERRORS = frozenset({2, 18, 19, 20, 21})
_VERIFY_ERRORS = {"on": 1, "optional": 2, "optional_no_ca": 3}


def set_protocols(ctx: ssl.SSLContext, names: Any) -> None:
    """The enabled range of ssl_protocols / proxy_ssl_protocols (SSLv2/3: ignored)."""
    enabled = [n for n in _ORDER if n in set(names)]
    if not enabled:
        return
    with warnings.catch_warnings():   # TLSv1/TLSv1.1 are deprecated names in Python
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx.minimum_version = VERSIONS[enabled[0]]
        ctx.maximum_version = VERSIONS[enabled[-1]]


def set_ciphers(ctx: ssl.SSLContext, ciphers: str) -> None:
    try:
        ctx.set_ciphers(ciphers)
    except ssl.SSLError:
        raise TlsConfigError(f'SSL_CTX_set_cipher_list("{ciphers}") failed '
                             "(SSL: error:0A0000B9:SSL routines::no cipher match)") from None


def _set_curve(ctx: ssl.SSLContext, curve: str) -> None:
    if curve == "auto":
        return
    ok = native.set_groups(ctx, curve)
    if ok is None:                       # no native access: one named curve only
        try:
            ctx.set_ecdh_curve(curve)
            return
        except (ValueError, ssl.SSLError):
            ok = False
    if not ok:
        detail = native.error_text() or ("error:0A080106:SSL routines::passed invalid "
                                         f"argument:group '{curve}' cannot be set")
        raise TlsConfigError(f'SSL_CTX_set1_curves_list("{curve}") failed (SSL: {detail})')


def _session_cache(ctx: ssl.SSLContext, values: tuple[str, ...], timeout: float) -> None:
    """nginx's ngx_ssl_session_cache modes (off / none / builtin[:n] / shared:z:size)."""
    if "off" in values:
        native.set_session_cache(ctx, native.SSL_SESS_CACHE_OFF, None, None)
        return
    if values == ("none",):
        native.set_session_cache(ctx, native.SSL_SESS_CACHE_SERVER
                                 | native.SSL_SESS_CACHE_NO_AUTO_CLEAR
                                 | native.SSL_SESS_CACHE_NO_INTERNAL_STORE, 1, None)
        return
    size: int | None = None
    for value in values:
        if value.startswith("builtin:"):
            size = int(value.split(":", 1)[1])
    native.set_session_cache(ctx, native.SSL_SESS_CACHE_SERVER, size, timeout)


def _verify_client(ctx: ssl.SSLContext, server: Any, prefix: str) -> None:
    mode = server.ssl_verify_client
    if mode in ("on", "optional") and not server.ssl_client_certificate:
        raise TlsConfigError("no ssl_client_certificate for ssl_verify_client")
    for name in (server.ssl_client_certificate, server.ssl_trusted_certificate):
        if name:
            load_verify(ctx, full_path(name, prefix))
    if server.ssl_client_certificate and mode != "off":
        native.set_client_ca_list(ctx, full_path(server.ssl_client_certificate, prefix))
    if mode == "off":
        return
    if not native.accept_any_peer_cert(ctx):
        # Without native access a bad certificate fails the handshake instead.
        ctx.verify_mode = ssl.CERT_OPTIONAL
    native.set_verify_depth(ctx, server.ssl_verify_depth)


def _certificates(ctx: ssl.SSLContext, server: Any, prefix: str) -> None:
    certs, keys = server.ssl_certificate or (), server.ssl_certificate_key or ()
    if len(keys) < len(certs):
        raise TlsConfigError(f'no "ssl_certificate_key" is defined for certificate '
                             f'"{certs[len(keys)]}"', where=(server.file, server.line))
    passwords = read_passwords(full_path(server.ssl_password_file, prefix)
                               if server.ssl_password_file else None)
    for cert, key in zip(certs, keys):
        load_pair(ctx, full_path(cert, prefix), full_path(key, prefix), passwords)


def build_server_context(server: Any, conf_prefix: str) -> ssl.SSLContext:
    """The SSLContext of one `server` block (TlsConfigError with nginx's text)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    _certificates(ctx, server, conf_prefix)
    set_protocols(ctx, server.ssl_protocols)
    set_ciphers(ctx, server.ssl_ciphers)
    if not server.ssl_prefer_server_ciphers:
        ctx.options &= ~ssl.OP_CIPHER_SERVER_PREFERENCE
    if not server.ssl_session_tickets:
        ctx.options |= ssl.OP_NO_TICKET
    else:            # the same keys in every worker, as nginx's master-built SSL_CTX
        tickets.share_ticket_keys(ctx, server, conf_prefix)
    _set_curve(ctx, server.ssl_ecdh_curve)
    if server.ssl_dhparam:
        _dhparam(ctx, full_path(server.ssl_dhparam, conf_prefix))
    _verify_client(ctx, server, conf_prefix)
    _session_cache(ctx, tuple(server.ssl_session_cache), server.ssl_session_timeout)
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


def _dhparam(ctx: ssl.SSLContext, path: str) -> None:
    try:
        ctx.load_dh_params(path)
    except OSError as exc:
        raise TlsConfigError(f'BIO_new_file("{path}") failed (SSL: error:'
                             f"{0x80000000 | (exc.errno or 5):08X}:system library::"
                             f"{exc.strerror}:calling fopen({path}, r))") from None
    except ssl.SSLError as exc:
        raise TlsConfigError(f'PEM_read_bio_DHparams("{path}") failed (SSL: {exc})') from None


class ServerContexts:
    """Every server's context for one config generation, keyed by the server object."""

    def __init__(self, cfg: Any) -> None:
        self.conf_prefix = _conf_prefix(cfg)
        self.by_server: dict[int, ssl.SSLContext] = {}
        servers = cfg.servers
        for server in servers:
            if server.ssl_certificate or rejects(server):
                self.by_server[id(server)] = build_server_context(server, self.conf_prefix)

    def _check_ssl_listens(self, servers: tuple[Any, ...]) -> None:
        """Each `listen ... ssl` address's default server needs a certificate."""
        ssl_keys = {_key(lst) for s in servers for lst in s.listens if lst.ssl}
        for key in sorted(ssl_keys, key=str):
            default = _default_server(servers, key)
            if default is not None and id(default) not in self.by_server \
                    and not rejects(default):
                raise TlsConfigError(
                    'no "ssl_certificate" is defined for the "listen ... ssl" directive '
                    f"in {default.file}:{default.line}", where=(default.file, default.line))

    def context_for(self, server: Any) -> ssl.SSLContext | None:
        return self.by_server.get(id(server))

    def listener(self, servers: tuple[Any, ...], default: Any,
                 find_server: Callable[[str | None], Any]) -> "ListenerTLS | None":
        """TLS for one listen address, or None when it has no certificate at all."""
        if self.context_for(default) is None:
            return None
        members = {id(s): self.by_server[id(s)] for s in servers if id(s) in self.by_server}
        rejecting = frozenset(id(s) for s in servers if rejects(s))
        return ListenerTLS(build_server_context(default, self.conf_prefix), members,
                           find_server, id(default), rejecting)


class ListenerTLS:
    """The handshake side of one listen address: default context + SNI switch.

    The listener's context is a fresh one (the default server's settings, loaded
    again) carrying the SNI callback, so that two addresses sharing a default server
    keep their own callback; a name that selects the default server keeps it.
    """

    def __init__(self, default_ctx: ssl.SSLContext, members: dict[int, ssl.SSLContext],
                 find_server: Callable[[str | None], Any], default_id: int = 0,
                 rejecting: frozenset[int] = frozenset()) -> None:
        self.default_ctx = default_ctx
        self.members = members
        self.find_server = find_server
        self.context = default_ctx
        self.default_id = default_id
        self.rejecting = rejecting
        default_ctx.sni_callback = self._sni

    def _sni(self, sslobj: ssl.SSLObject, name: str | None, ctx: ssl.SSLContext
             ) -> int | None:
        try:
            sslobj.wsgate_server_name = name  # type: ignore[attr-defined]
        except AttributeError:                # an SSLSocket: names kept elsewhere
            pass
        if not name:
            # ssl_reject_handshake on the default server: no SNI, no handshake.
            return _UNRECOGNIZED if self.default_id in self.rejecting else None
        server = self.find_server(name)
        if id(server) in self.rejecting:        # ngx_http_ssl_servername's refusal
            return _UNRECOGNIZED
        chosen = self.members.get(id(server))
        if chosen is not None and id(server) != self.default_id:
            sslobj.context = chosen
            native.set_verify_on(sslobj, chosen)
        return None


_UNRECOGNIZED = ssl.ALERT_DESCRIPTION_UNRECOGNIZED_NAME


def rejects(server: Any) -> bool:
    """`ssl_reject_handshake on` (read when the config model carries it)."""
    return getattr(server, "ssl_reject_handshake", False) is True


def client_cert_status(server: Any, sslobj: ssl.SSLObject | None) -> tuple[int, str] | None:
    """nginx's per-request ssl_verify_client judgement for the server the Host chose.

    None: serve the request. (495, log) / (496, log): nginx's 400 pages "The SSL
    certificate error" / "No required SSL certificate was sent", and the [info] line.
    """
    mode = getattr(server, "ssl_verify_client", "off")
    if sslobj is None or mode == "off":
        return None
    result = native.verify_result(sslobj)
    if result is not None and result[0] != 0:
        code, text = result
        if mode != "optional_no_ca" or code not in _OPTIONAL_ERRORS:
            return 495, f"client SSL certificate verify error: ({code}:{text})"
    if mode == "on" and sslobj.getpeercert(binary_form=True) is None:
        return 496, "client sent no required SSL certificate"
    return None


def _conf_prefix(cfg: Any) -> str:
    return os.path.dirname(str(cfg.conf_file)) + "/"


def _key(listen: Any) -> tuple[Any, ...]:
    if listen.unix_path is not None:
        return ("unix", None, listen.unix_path)
    return (listen.host or "0.0.0.0", listen.port, None)


def _default_server(servers: tuple[Any, ...], key: tuple[Any, ...]) -> Any:
    first = None
    for server in servers:
        for lst in server.listens:
            if _key(lst) == key:
                if lst.default_server:
                    return server
                first = first or server
    return first
