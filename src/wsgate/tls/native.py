"""The few OpenSSL knobs Python's `ssl` module does not expose, reached with ctypes.

nginx's semantics need them: a verify callback that accepts every client certificate
and a verify result read after the handshake (nginx's ngx_ssl_verify_callback +
SSL_get_verify_result, so that `ssl_verify_client` answers 400 pages instead of failing
handshakes and `optional_no_ca` works at all), the session-cache mode and timeout,
the verify depth, curve lists (`ssl_ecdh_curve a:b`), and session ticket keys
(shared by every worker: wsgate.tls.tickets).

This is the one module that knows CPython's object layout: an `SSLContext` holds its
`SSL_CTX *` right after the object header, an `_ssl._SSLSocket` holds its `SSL *` after
the header and one pointer. `available()` proves both on a live context and object
before anything is used; when the proof fails (another Python build), every function
here is a no-op returning None and callers fall back to what `ssl` offers. Nothing
here is cryptography: it only sets options OpenSSL itself applies.
"""

from __future__ import annotations

import ctypes
import ssl
from typing import Any

__all__ = ["available", "ctx_ptr", "ssl_ptr", "accept_any_peer_cert", "set_verify_on",
           "verify_result", "set_session_cache", "set_verify_depth", "set_groups",
           "set_client_ca_list", "set_ticket_keys", "TICKET_KEYS_LENGTH",
           "error_text"]

SSL_VERIFY_PEER = 0x01
SSL_SESS_CACHE_OFF = 0x0000
SSL_SESS_CACHE_SERVER = 0x0002
SSL_SESS_CACHE_NO_AUTO_CLEAR = 0x0080
SSL_SESS_CACHE_NO_INTERNAL_STORE = 0x0200
_CTRL_SET_SESS_CACHE_SIZE = 42
_CTRL_SET_SESS_CACHE_MODE = 44
_CTRL_SET_GROUPS_LIST = 92
_CTRL_SET_TLSEXT_TICKET_KEYS = 59
TICKET_KEYS_LENGTH = 80        # key name 16 + HMAC secret 32 + AES key 32 (OpenSSL 1.1+)
_ERR_TXT_STRING = 0x02

_VERIFY_CB = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int, ctypes.c_void_p)


def _accept(preverify_ok: int, store: Any) -> int:
    """nginx's ngx_ssl_verify_callback: never fail the handshake; judge later."""
    return 1


_ACCEPT_CB = _VERIFY_CB(_accept)   # module-level: must outlive every context


def _load_libs() -> tuple[Any, Any] | None:
    paths: dict[str, str] = {}
    try:
        with open("/proc/self/maps") as fh:
            for line in fh:
                path = line.rsplit(None, 1)[-1]
                for lib in ("libssl.so", "libcrypto.so"):
                    if lib in path and "/" in path:
                        paths.setdefault(lib, path)
        libssl = ctypes.CDLL(paths["libssl.so"])
        libcrypto = ctypes.CDLL(paths["libcrypto.so"])
    except (OSError, KeyError):
        return None
    _declare(libssl, libcrypto)
    return libssl, libcrypto


def _declare(s: Any, c: Any) -> None:
    vp, i, lg = ctypes.c_void_p, ctypes.c_int, ctypes.c_long
    s.SSL_CTX_set_verify.argtypes = [vp, i, _VERIFY_CB]
    s.SSL_CTX_get_verify_mode.argtypes = [vp]
    s.SSL_CTX_get_verify_mode.restype = i
    s.SSL_set_verify.argtypes = [vp, i, _VERIFY_CB]
    s.SSL_get_SSL_CTX.argtypes = [vp]
    s.SSL_get_SSL_CTX.restype = vp
    s.SSL_get_verify_result.argtypes = [vp]
    s.SSL_get_verify_result.restype = lg
    s.SSL_CTX_ctrl.argtypes = [vp, i, lg, vp]
    s.SSL_CTX_ctrl.restype = lg
    s.SSL_CTX_set_timeout.argtypes = [vp, lg]
    s.SSL_CTX_set_verify_depth.argtypes = [vp, i]
    s.SSL_set_verify_depth.argtypes = [vp, i]
    s.SSL_CTX_get_verify_depth.argtypes = [vp]
    s.SSL_CTX_get_verify_depth.restype = i
    s.SSL_load_client_CA_file.argtypes = [ctypes.c_char_p]
    s.SSL_load_client_CA_file.restype = vp
    s.SSL_CTX_set_client_CA_list.argtypes = [vp, vp]
    c.X509_verify_cert_error_string.argtypes = [lg]
    c.X509_verify_cert_error_string.restype = ctypes.c_char_p
    cp = ctypes.POINTER(ctypes.c_char_p)
    c.ERR_get_error_all.argtypes = [cp, ctypes.POINTER(i), cp, cp, ctypes.POINTER(i)]
    c.ERR_get_error_all.restype = ctypes.c_ulong
    c.ERR_error_string_n.argtypes = [ctypes.c_ulong, ctypes.c_char_p, ctypes.c_size_t]


_HEAD = object.__basicsize__
_LIBS = _load_libs()


def _raw_ctx(ctx: ssl.SSLContext) -> int:
    return ctypes.c_void_p.from_address(id(ctx) + _HEAD).value or 0


def _raw_ssl(obj: ssl.SSLObject) -> int:
    inner = obj._sslobj  # type: ignore[attr-defined]
    return ctypes.c_void_p.from_address(id(inner) + _HEAD + ctypes.sizeof(ctypes.c_void_p)
                                        ).value or 0


def _prove() -> bool:
    """Check the layout guesses against OpenSSL's own answers on live objects."""
    if _LIBS is None:
        return False
    libssl = _LIBS[0]
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    for mode in (ssl.CERT_NONE, ssl.CERT_REQUIRED):
        ctx.verify_mode = mode
        if libssl.SSL_CTX_get_verify_mode(_raw_ctx(ctx)) != (0 if mode == ssl.CERT_NONE else 3):
            return False
    obj = ctx.wrap_bio(ssl.MemoryBIO(), ssl.MemoryBIO())
    return bool(libssl.SSL_get_SSL_CTX(_raw_ssl(obj)) == _raw_ctx(ctx))


_OK = _prove()


def available() -> bool:
    return _OK


def ctx_ptr(ctx: ssl.SSLContext) -> int | None:
    return _raw_ctx(ctx) if _OK else None


def ssl_ptr(obj: ssl.SSLObject) -> int | None:
    return _raw_ssl(obj) if _OK else None


def accept_any_peer_cert(ctx: ssl.SSLContext) -> bool:
    """Ask for a client certificate (SSL_VERIFY_PEER) but let every one through."""
    if not _OK:
        return False
    _LIBS[0].SSL_CTX_set_verify(_raw_ctx(ctx), SSL_VERIFY_PEER, _ACCEPT_CB)  # type: ignore[index]
    return True


def set_verify_on(obj: ssl.SSLObject, ctx: ssl.SSLContext) -> None:
    """After an SNI switch: copy the chosen server's verify mode and depth (as nginx
    does in ngx_http_ssl_servername; SSL_set_SSL_CTX copies neither)."""
    if not _OK:
        return
    libssl, raw = _LIBS[0], _raw_ctx(ctx)  # type: ignore[index]
    sp = _raw_ssl(obj)
    mode = libssl.SSL_CTX_get_verify_mode(raw)
    libssl.SSL_set_verify(sp, mode, _ACCEPT_CB if mode else _VERIFY_CB(0))
    libssl.SSL_set_verify_depth(sp, libssl.SSL_CTX_get_verify_depth(raw))


def verify_result(obj: ssl.SSLObject) -> tuple[int, str] | None:
    """(X509 verify code, OpenSSL's text for it), or None when unknown."""
    if not _OK:
        return None
    code = int(_LIBS[0].SSL_get_verify_result(_raw_ssl(obj)))  # type: ignore[index]
    text = _LIBS[1].X509_verify_cert_error_string(code)  # type: ignore[index]
    return code, text.decode("ascii", "replace") if text else ""


def set_session_cache(ctx: ssl.SSLContext, mode: int, size: int | None,
                      timeout: float | None) -> bool:
    if not _OK:
        return False
    libssl, raw = _LIBS[0], _raw_ctx(ctx)  # type: ignore[index]
    libssl.SSL_CTX_ctrl(raw, _CTRL_SET_SESS_CACHE_MODE, mode, None)
    if size is not None:
        libssl.SSL_CTX_ctrl(raw, _CTRL_SET_SESS_CACHE_SIZE, size, None)
    if timeout is not None:
        libssl.SSL_CTX_set_timeout(raw, int(timeout))
    return True


def set_verify_depth(ctx: ssl.SSLContext, depth: int) -> bool:
    if not _OK:
        return False
    _LIBS[0].SSL_CTX_set_verify_depth(_raw_ctx(ctx), depth)  # type: ignore[index]
    return True


def set_client_ca_list(ctx: ssl.SSLContext, path: str) -> bool:
    """SSL_CTX_set_client_CA_list(SSL_load_client_CA_file(path)): the CA names a
    CertificateRequest lists (ssl_client_certificate's, not ssl_trusted_certificate's);
    OpenSSL loads each name once."""
    if not _OK:
        return False
    libssl, raw = _LIBS[0], _raw_ctx(ctx)  # type: ignore[index]
    names = libssl.SSL_load_client_CA_file(path.encode())
    if not names:
        error_text()                  # leave OpenSSL's queue empty
        return False
    libssl.SSL_CTX_set_client_CA_list(raw, names)   # the context owns the list now
    return True


def set_groups(ctx: ssl.SSLContext, groups: str) -> bool | None:
    """SSL_CTX_set1_curves_list; None when unavailable, False when OpenSSL refused."""
    if not _OK:
        return None
    raw = _raw_ctx(ctx)
    buf = ctypes.create_string_buffer(groups.encode())
    ok = _LIBS[0].SSL_CTX_ctrl(raw, _CTRL_SET_GROUPS_LIST, 0,  # type: ignore[index]
                               ctypes.cast(buf, ctypes.c_void_p))
    return bool(ok)


def set_ticket_keys(ctx: ssl.SSLContext, keys: bytes) -> bool:
    """SSL_CTX_set_tlsext_ticket_keys: OpenSSL copies the 80 bytes into the context."""
    if not _OK or len(keys) != TICKET_KEYS_LENGTH:
        return False
    buf = ctypes.create_string_buffer(keys, len(keys))
    ok = _LIBS[0].SSL_CTX_ctrl(_raw_ctx(ctx), _CTRL_SET_TLSEXT_TICKET_KEYS,  # type: ignore[index]
                               len(keys), ctypes.cast(buf, ctypes.c_void_p))
    if not ok:
        error_text()                  # leave OpenSSL's queue empty
    return bool(ok)


def error_text() -> str:
    """Drain OpenSSL's error queue into nginx's `error:XXXXXXXX:lib::reason` words."""
    if not _OK:
        return ""
    out = []
    libcrypto = _LIBS[1]  # type: ignore[index]
    for _ in range(16):
        data, flags = ctypes.c_char_p(), ctypes.c_int()
        code = libcrypto.ERR_get_error_all(None, None, None, ctypes.byref(data),
                                           ctypes.byref(flags))
        if not code:
            break
        buf = ctypes.create_string_buffer(256)
        libcrypto.ERR_error_string_n(code, buf, 256)
        text = buf.value.decode("ascii", "replace")
        if data.value and flags.value & _ERR_TXT_STRING:
            text += ":" + data.value.decode("utf-8", "replace")
        out.append(text)
    return " ".join(out)
