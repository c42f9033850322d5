"""Loading PEM certificates, chains and keys into contexts, with nginx's messages.

nginx reports certificate problems while merging the config, in OpenSSL's words and
without `in file:line` (`cannot load certificate "/x.crt": BIO_new_file() failed (SSL:
error:80000002:system library::No such file or directory:...)`). Python's `ssl`
collapses OpenSSL's error queue into one reason, so the common failures are recognised
here first (the file cannot be opened: errno; no PEM block: no start line) and the
rest mapped from the reason Python gives (key values mismatch). The strings match
OpenSSL 3.0, which both nginx 1.22 and this Python link.

`TlsConfigError` is a ConfigError whose text is exactly nginx's, with the directive's
position kept apart in `where` for tools (`wsgate check`) that want it.
"""

from __future__ import annotations

import errno as errno_mod
import os
import ssl
import time
from collections.abc import Callable

from wsgate.errors import ConfigError

__all__ = ["TlsConfigError", "full_path", "load_pair", "load_verify", "not_after",
           "expired_warning", "read_passwords"]

_CERT_MARKERS = (b"-----BEGIN CERTIFICATE-----", b"-----BEGIN TRUSTED CERTIFICATE-----",
                 b"-----BEGIN X509 CERTIFICATE-----")
_NO_START_LINE = "error:0480006C:PEM routines::no start line:Expecting: TRUSTED CERTIFICATE"
_NO_KEY_DATA = ("error:1E08010C:DECODER routines::unsupported:No supported data to "
                "decode. Input type: PEM")
_BAD_DECRYPT = "error:1C800064:Provider routines::bad decrypt"
_MISMATCH = "error:05800074:x509 certificate routines::key values mismatch"


class TlsConfigError(ConfigError):
    """A TLS load failure; str() is nginx's text, `where` the (file, line) at fault."""

    def __init__(self, message: str, where: tuple[str, int] | None = None,
                 level: str = "emerg") -> None:
        super().__init__(message, level=level)
        self.where = where


def full_path(name: str, conf_prefix: str) -> str:
    """nginx's ngx_conf_full_name(..., conf_prefix=1): relative to the config's dir."""
    if name.startswith("/") or name.startswith("data:"):
        return name
    return os.path.join(conf_prefix, name)


def _fopen_error(path: str, exc: OSError) -> str:
    """OpenSSL 3.0's queue for a failed fopen(path, "r") inside BIO_new_file()."""
    code = exc.errno or errno_mod.EIO
    sys_text = os.strerror(code)
    bio = ("error:10000080:BIO routines::no such file"
           if code in (errno_mod.ENOENT, errno_mod.ENXIO)
           else "error:10080002:BIO routines::system lib")
    return (f"BIO_new_file() failed (SSL: error:{0x80000000 | code:08X}:system library::"
            f"{sys_text}:calling fopen({path}, r) {bio})")


def _read(path: str) -> bytes | OSError:
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except OSError as exc:
        return exc


def read_passwords(path: str | None) -> list[bytes]:
    """ssl_password_file: one pass phrase per line, tried in turn."""
    if path is None:
        return []
    data = _read(path)
    if isinstance(data, OSError):
        raise TlsConfigError(f'open() "{path}" failed ({data.errno}: {data.strerror})')
    return [line.rstrip(b"\r") for line in data.split(b"\n") if line.rstrip(b"\r")]


def _check_cert_file(path: str) -> None:
    data = _read(path)
    if isinstance(data, OSError):
        raise TlsConfigError(f'cannot load certificate "{path}": {_fopen_error(path, data)}')
    if not any(m in data for m in _CERT_MARKERS):
        raise TlsConfigError(f'cannot load certificate "{path}": PEM_read_bio_X509_AUX() '
                             f"failed (SSL: {_NO_START_LINE})")


def _check_key_file(path: str) -> bytes:
    data = _read(path)
    if isinstance(data, OSError):
        raise TlsConfigError(f'cannot load certificate key "{path}": '
                             f"{_fopen_error(path, data)}")
    if b"-----BEGIN " not in data or b"PRIVATE KEY-----" not in data:
        raise TlsConfigError(f'cannot load certificate key "{path}": '
                             f"PEM_read_bio_PrivateKey() failed (SSL: {_NO_KEY_DATA})")
    return data


def load_pair(ctx: ssl.SSLContext, cert: str, key: str,
              passwords: list[bytes] | None = None) -> None:
    """Add one certificate chain + key to `ctx` (call again for an ECDSA pair)."""
    _check_cert_file(cert)
    key_data = _check_key_file(key)
    candidates: list[bytes | None] = list(passwords or [])
    if b"ENCRYPTED" not in key_data:
        candidates = [None]
    elif not candidates:
        candidates = [b""]
    last: ssl.SSLError | None = None
    for password in candidates:
        try:
            ctx.load_cert_chain(cert, key, password=_password(password))
            return
        except ssl.SSLError as exc:
            last = exc
    raise _map_load_error(cert, key, last, encrypted=b"ENCRYPTED" in key_data)


def _password(value: bytes | None) -> Callable[[], bytes] | None:
    # A callable (never None with an encrypted key): OpenSSL must not prompt on a tty.
    return None if value is None else (lambda: value)


def _map_load_error(cert: str, key: str, exc: ssl.SSLError | None,
                    encrypted: bool) -> TlsConfigError:
    reason = f"{exc.reason or ''} {exc}" if exc is not None else ""
    if "KEY_VALUES_MISMATCH" in reason or "key values mismatch" in reason:
        return TlsConfigError(f'SSL_CTX_use_PrivateKey("{key}") failed (SSL: {_MISMATCH})')
    if encrypted or "decrypt" in reason.lower():
        # No pass phrase (nginx would prompt on a terminal) or none of them fits.
        return TlsConfigError(f'cannot load certificate key "{key}": '
                              f"PEM_read_bio_PrivateKey() failed (SSL: {_BAD_DECRYPT})")
    return TlsConfigError(f'cannot load certificate "{cert}": PEM_read_bio_X509_AUX() '
                          f"failed (SSL: {exc})")


def load_verify(ctx: ssl.SSLContext, path: str) -> None:
    """SSL_CTX_load_verify_locations with nginx's message on failure."""
    data = _read(path)
    if isinstance(data, OSError):
        raise TlsConfigError(
            f'SSL_CTX_load_verify_locations("{path}") failed ('
            + _fopen_error(path, data)[len("BIO_new_file() failed ("):-1]
            + " error:05880002:x509 certificate routines::system lib)")
    try:
        ctx.load_verify_locations(cafile=path)
    except ssl.SSLError as exc:
        raise TlsConfigError(f'SSL_CTX_load_verify_locations("{path}") failed '
                             f"(SSL: {exc})") from None


def not_after(path: str) -> float | None:
    """Expiry (epoch seconds) of the first certificate in a PEM file, if readable.

    Uses CPython's certificate decoder (`_ssl._test_decode_cert`); None when this
    Python lacks it or the file does not decode.
    """
    decode = getattr(getattr(ssl, "_ssl", None), "_test_decode_cert", None)
    if decode is None:
        return None
    try:
        return float(ssl.cert_time_to_seconds(decode(path)["notAfter"]))
    except (OSError, ssl.SSLError, KeyError, ValueError):
        return None


def expired_warning(path: str, now: float | None = None) -> str | None:
    """The `-t` warning for an expired certificate (nginx 1.22 itself is silent)."""
    expiry = not_after(path)
    if expiry is None or expiry > (time.time() if now is None else now):
        return None
    stamp = time.strftime("%Y-%m-%d %H:%M:%S GMT", time.gmtime(expiry))
    return f'certificate "{path}" has expired (notAfter {stamp})'
