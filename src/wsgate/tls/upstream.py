"""Client-side TLS toward upstreams: `proxy_pass https://` (and wss:// backends).

One `UpstreamTLS` per distinct proxy_ssl_* setting set, built with the config
(`UpstreamContexts(cfg)`), as nginx's ngx_http_proxy_set_ssl does per location.
nginx's defaults hold: no SNI (`proxy_ssl_server_name off`), no verification
(`proxy_ssl_verify off`), session reuse on.

Connecting (the proxy's upstream code does the I/O):

    tls = contexts.get(location)                      # None: plain http
    ssl_ctx = tls.context_for(peer.addr)              # carries the peer's last session
    name = tls.ssl_name(proxy_host)                   # proxy_ssl_name or the host
    transport, proto = await loop.create_connection(factory, host, port, ssl=ssl_ctx,
        server_hostname=tls.server_hostname(name), ssl_handshake_timeout=connect_timeout)
    problem = tls.check_peer(transport.get_extra_info("ssl_object"), name)
    if problem: log [error] problem + " while SSL handshaking to upstream"; close; next peer
    tls.save_session(peer.addr, sslobj)               # its session is read at the next
                                                      # connect (TLS 1.3 tickets arrive late)
Verification follows nginx: the handshake accepts any chain (native accept-all
callback), then the verify result and the name (X509_check_host rules: DNS
subjectAltNames, else the CN; IP names match only a DNS entry spelled the same) are
checked, giving nginx's two messages. Without native access, a bad chain already
fails inside the handshake; `handshake_error()` words that failure the same way.
"""

from __future__ import annotations

import ipaddress
import ssl
from typing import Any

from wsgate.config.variables import compile_template
from wsgate.tls import native
from wsgate.tls.certs import TlsConfigError, full_path, load_pair, load_verify, \
    read_passwords
from wsgate.tls.contexts import _conf_prefix, set_ciphers, set_protocols

__all__ = ["UpstreamTLS", "UpstreamContexts", "host_matches", "handshake_error"]

_FIELDS = ("proxy_ssl_server_name", "proxy_ssl_name", "proxy_ssl_verify",
           "proxy_ssl_verify_depth", "proxy_ssl_trusted_certificate",
           "proxy_ssl_certificate", "proxy_ssl_certificate_key", "proxy_ssl_protocols",
           "proxy_ssl_ciphers", "proxy_ssl_session_reuse", "proxy_ssl_password_file")


class _SessionContext(ssl.SSLContext):
    """A per-peer face of a shared context: wrap_bio() offers the peer's last session.

    asyncio and uvloop call only `wrap_bio` on the context they are given, so this
    empty context delegates the handshake to the real one (same SSL_CTX, so the
    session is acceptable to it).
    """

    real: ssl.SSLContext
    store: dict[str, ssl.SSLObject]
    key: str

    def wrap_bio(self, incoming: ssl.MemoryBIO, outgoing: ssl.MemoryBIO,
                 server_side: bool = False, server_hostname: str | bytes | None = None,
                 session: ssl.SSLSession | None = None) -> ssl.SSLObject:
        last = self.store.get(self.key)
        return self.real.wrap_bio(incoming, outgoing, server_side=server_side,
                                  server_hostname=server_hostname,
                                  session=session or (last.session if last else None))


class UpstreamTLS:
    """TLS settings of the locations sharing one proxy_ssl_* configuration."""

    def __init__(self, loc: Any, conf_prefix: str, variables: Any = None) -> None:
        self.sni = bool(loc.proxy_ssl_server_name)
        self.name = loc.proxy_ssl_name
        # proxy_ssl_name is a complex value in nginx (`proxy_ssl_name $host;`).
        self.name_template = _name_template(self.name, variables) \
            if self.name and "$" in self.name and variables is not None else None
        self.verify = bool(loc.proxy_ssl_verify)
        self.reuse = bool(loc.proxy_ssl_session_reuse)
        self.context = _client_context(loc, conf_prefix)
        # The last connection's SSLObject per peer: its `.session` is read at the next
        # connect, so TLS 1.3 tickets that arrived after the handshake are included.
        self.sessions: dict[str, ssl.SSLObject] = {}
        self._faces: dict[str, ssl.SSLContext] = {}

    def context_for(self, peer_key: str) -> ssl.SSLContext:
        """The context to connect `peer_key` with (offering its saved session)."""
        if not self.reuse:
            return self.context
        face = self._faces.get(peer_key)
        if face is None:
            face = _SessionContext(ssl.PROTOCOL_TLS_CLIENT)
            face.real, face.store, face.key = self.context, self.sessions, peer_key
            self._faces[peer_key] = face
        return face

    def ssl_name(self, proxy_host: str, variables: Any = None) -> str:
        """proxy_ssl_name (default: the proxy_pass host), without a port;
        `variables` (the request's VarContext) renders a name with variables."""
        if self.name_template is not None and variables is not None:
            name = str(self.name_template.render(variables))
        else:
            name = str(self.name or proxy_host)
        if name.startswith("["):
            return name[1:].partition("]")[0]
        return name.rpartition(":")[0] if name.count(":") == 1 else name

    def server_hostname(self, name: str) -> str:
        """The SNI to send ("" sends none, as asyncio understands it)."""
        if not self.sni or not name or _is_ip(name):
            return ""
        return name

    def check_peer(self, sslobj: ssl.SSLObject | None, name: str) -> str | None:
        """nginx's post-handshake checks; the error-log text when they fail."""
        if not self.verify or sslobj is None:
            return None
        result = native.verify_result(sslobj)
        if result is not None and result[0] != 0:
            return f"upstream SSL certificate verify error: ({result[0]}:{result[1]})"
        if not host_matches(sslobj.getpeercert() or {}, name):
            return f'upstream SSL certificate does not match "{name}"'
        return None

    def save_session(self, peer_key: str, sslobj: ssl.SSLObject | None) -> None:
        """Remember the peer's newest connection (nginx: the peer's saved session)."""
        if self.reuse and sslobj is not None:
            self.sessions[peer_key] = sslobj

    def forget_session(self, peer_key: str) -> None:
        self.sessions.pop(peer_key, None)


def _name_template(text: str, table: Any) -> Any:
    """Compile a proxy_ssl_name with variables against the finished variable table."""
    template = compile_template(text, table)
    for name in template.variables:
        if not (len(name) == 1 and name in "123456789") and table.resolve(name) is None:
            raise TlsConfigError(f'unknown "{name}" variable')
    template.bind(table)
    return template


def handshake_error(exc: BaseException) -> str:
    """nginx's words for a failed upstream handshake (before " while SSL handshaking")."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"upstream SSL certificate verify error: ({exc.verify_code}:{exc.verify_message})"
    if isinstance(exc, ssl.SSLError):
        return f"SSL_do_handshake() failed (SSL: {exc.reason or exc})"
    return f"SSL_do_handshake() failed ({type(exc).__name__}: {exc})"


def _client_context(loc: Any, prefix: str) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    set_protocols(ctx, loc.proxy_ssl_protocols)
    set_ciphers(ctx, loc.proxy_ssl_ciphers)
    cert, key = loc.proxy_ssl_certificate, loc.proxy_ssl_certificate_key
    if cert:
        if not key:
            raise TlsConfigError(f'no "proxy_ssl_certificate_key" is defined for '
                                 f'certificate "{cert}"')
        passwords = read_passwords(full_path(loc.proxy_ssl_password_file, prefix)
                                   if loc.proxy_ssl_password_file else None)
        load_pair(ctx, full_path(cert, prefix), full_path(key, prefix), passwords)
    if loc.proxy_ssl_verify:
        _verify(ctx, loc, prefix)
    return ctx


def _verify(ctx: ssl.SSLContext, loc: Any, prefix: str) -> None:
    if not loc.proxy_ssl_trusted_certificate:
        raise TlsConfigError("no proxy_ssl_trusted_certificate for proxy_ssl_verify")
    load_verify(ctx, full_path(loc.proxy_ssl_trusted_certificate, prefix))
    ctx.verify_mode = ssl.CERT_REQUIRED
    native.accept_any_peer_cert(ctx)        # judge after the handshake, as nginx
    native.set_verify_depth(ctx, loc.proxy_ssl_verify_depth)


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
        return True
    except ValueError:
        return False


def _label_match(pattern: str, host: str) -> bool:
    """One DNS name against one certificate name (X509_check_host, flags 0)."""
    pattern, host = pattern.lower().rstrip("."), host.lower().rstrip(".")
    if "*" not in pattern:
        return pattern == host
    first, dot, rest = pattern.partition(".")
    hfirst, hdot, hrest = host.partition(".")
    if not dot or "*" in rest or rest.count(".") < 1 or rest != hrest or not hdot:
        return False
    head, _, tail = first.partition("*")
    return (len(hfirst) >= len(head) + len(tail) and hfirst.startswith(head)
            and hfirst.endswith(tail) and (first == "*" or not hfirst.startswith("xn--")))


def host_matches(cert: dict[str, Any], name: str) -> bool:
    """Does a getpeercert() dict match `name` under X509_check_host's rules?"""
    dns = [v for k, v in cert.get("subjectAltName", ()) if k == "DNS"]
    if dns:
        return any(_label_match(p, name) for p in dns)
    for rdn in cert.get("subject", ()):
        for key, value in rdn:
            if key == "commonName" and _label_match(value, name):
                return True
    return False


class UpstreamContexts:
    """The UpstreamTLS of every `proxy_pass https://` location of one config."""

    def __init__(self, cfg: Any) -> None:
        prefix = _conf_prefix(cfg)
        table = cfg.http.variables if cfg.http is not None else None
        self._by_loc: dict[int, UpstreamTLS] = {}
        shared: dict[tuple[Any, ...], UpstreamTLS] = {}
        for loc in _locations(cfg):
            pp = getattr(loc, "proxy_pass", None)
            if pp is None or not _is_tls(pp):
                continue
            key = tuple(_hashable(getattr(loc, f)) for f in _FIELDS)
            if key not in shared:
                shared[key] = UpstreamTLS(loc, prefix, table)
            self._by_loc[id(loc)] = shared[key]

    def get(self, loc: Any) -> UpstreamTLS | None:
        return self._by_loc.get(id(loc))


def _is_tls(pp: Any) -> bool:
    if pp.template is not None:    # a variable URL: TLS when it starts with https
        return str(pp.url).startswith("https")
    return bool(pp.scheme == "https")


def _hashable(value: Any) -> Any:
    if isinstance(value, (frozenset, set)):
        return tuple(sorted(value))
    return tuple(value) if isinstance(value, list) else value


def _locations(cfg: Any) -> list[Any]:
    out: list[Any] = []

    def walk(locs: tuple[Any, ...]) -> None:
        for loc in locs:
            out.append(loc)
            walk(loc.locations)
    for srv in cfg.servers:
        out.append(srv.root)
        walk(srv.locations)
    return out
