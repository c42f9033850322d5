"""The $ssl_* variables of one TLS connection, read from its SSLObject.

`tls_variables(sslobj)` returns nginx's values (None: "not found", `-` in logs; as
in nginx an empty value is "not found"), computed once per connection, after the
handshake. Names and
formats are ngx_http_ssl_module's in 1.22:
  $ssl_protocol        TLSv1.3            $ssl_cipher        TLS_AES_256_GCM_SHA384
  $ssl_server_name     SNI name or None   $ssl_session_reused  r | .
  $ssl_session_id      hex, upper case    $ssl_alpn_protocol   http/1.1
  $ssl_client_verify   SUCCESS | FAILED:reason | NONE
  $ssl_client_s_dn / $ssl_client_i_dn     RFC 2253 (X509_NAME_print_ex, XN_FLAG_RFC2253)
  $ssl_client_cert     PEM, every line but the first prefixed by a tab
  $ssl_client_raw_cert PEM             $ssl_client_serial  hex, upper case
  $ssl_client_s_dn_legacy / _i_dn_legacy  /CN=x/O=y (X509_NAME_oneline)
  $ssl_client_v_start / _v_end            "Nov 22 04:57:13 2026 GMT"; _v_remain: days
  $ssl_client_escaped_cert                PEM, URI-component escaped
  $ssl_ciphers         the client's ciphers this server shares, ":"-separated
`$https` is "on" and `$scheme` "https" on such a connection.
"""

from __future__ import annotations

import hashlib
import ssl
import time
from typing import Any

from wsgate.config.variables import SSL_VARIABLES  # one list: the config layer knows the names
from wsgate.tls import native

__all__ = ["tls_variables", "SSL_VARIABLES", "rfc2253", "oneline", "server_name_of"]

# OpenSSL's short names for the attributes Python reports by long name.
_SHORT = {"commonName": "CN", "countryName": "C", "localityName": "L",
          "stateOrProvinceName": "ST", "organizationName": "O",
          "organizationalUnitName": "OU", "streetAddress": "street",
          "domainComponent": "DC", "userId": "UID", "emailAddress": "emailAddress",
          "serialNumber": "serialNumber", "surname": "SN", "givenName": "GN",
          "title": "title", "initials": "initials", "pseudonym": "pseudonym",
          "generationQualifier": "generationQualifier", "dnQualifier": "dnQualifier",
          "name": "name", "postalCode": "postalCode", "businessCategory":
          "businessCategory", "jurisdictionC": "jurisdictionC"}
_SPECIAL = set(',+"\\<>;')


def _escape(value: str) -> str:
    """ASN1_STRFLGS_RFC2253 escaping (ESC_2253 | ESC_CTRL | ESC_MSB)."""
    out = []
    last = len(value) - 1
    for i, ch in enumerate(value):
        if ch in _SPECIAL or (i == 0 and ch in "# ") or (i == last and ch == " "):
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\{ord(ch):02X}")
        elif ord(ch) > 0x7F:
            out.extend(f"\\{b:02X}" for b in ch.encode("utf-8"))
        else:
            out.append(ch)
    return "".join(out)


def rfc2253(name: Any) -> str:
    """A getpeercert() subject/issuer (tuple of RDNs) in RFC 2253 order and syntax."""
    rdns = []
    for rdn in reversed(tuple(name or ())):
        rdns.append("+".join(f"{_SHORT.get(k, k)}={_escape(v)}" for k, v in rdn))
    return ",".join(rdns)


def oneline(name: Any) -> str:
    """X509_NAME_oneline: /C=US/O=x/CN=y in certificate order, unescaped."""
    return "".join("/" + "+".join(f"{_SHORT.get(k, k)}={v}" for k, v in rdn)
                   for rdn in tuple(name or ()))


# NGX_ESCAPE_URI_COMPONENT: everything but unreserved characters.
_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")


def _escape_component(text: str) -> str:
    return "".join(chr(b) if b in _UNRESERVED else f"%{b:02X}" for b in text.encode())


def _remain(not_after: str | None, now: float | None = None) -> str | None:
    if not not_after:
        return None
    left = ssl.cert_time_to_seconds(not_after) - (time.time() if now is None else now)
    return str(max(0, int(left // 86400)))


def server_name_of(sslobj: ssl.SSLObject) -> str | None:
    """The SNI name the client sent (recorded by the listener's sni_callback)."""
    return getattr(sslobj, "wsgate_server_name", None) or None


def _client_verify(sslobj: ssl.SSLObject, der: bytes | None) -> str:
    result = native.verify_result(sslobj)
    if result is not None and result[0] != 0:
        return f"FAILED:{result[1]}"
    return "SUCCESS" if der else "NONE"


def _session_id(sslobj: ssl.SSLObject) -> str:
    session = sslobj.session
    return session.id.hex().upper() if session is not None else ""


def _client_cert(der: bytes | None, info: dict[str, Any], out: dict[str, str | None]) -> None:
    if not der:
        out.update(dict.fromkeys(n for n in SSL_VARIABLES if n.startswith("ssl_client_")
                                 and n != "ssl_client_verify"))
        return
    pem = ssl.DER_cert_to_PEM_cert(der)
    out["ssl_client_raw_cert"] = pem
    out["ssl_client_cert"] = pem.rstrip("\n").replace("\n", "\n\t") + "\n"
    out["ssl_client_escaped_cert"] = _escape_component(pem)
    out["ssl_client_s_dn"] = rfc2253(info.get("subject"))
    out["ssl_client_i_dn"] = rfc2253(info.get("issuer"))
    out["ssl_client_s_dn_legacy"] = oneline(info.get("subject"))
    out["ssl_client_i_dn_legacy"] = oneline(info.get("issuer"))
    out["ssl_client_v_remain"] = _remain(info.get("notAfter"))
    out["ssl_client_serial"] = info.get("serialNumber")
    out["ssl_client_v_start"] = info.get("notBefore")
    out["ssl_client_v_end"] = info.get("notAfter")
    out["ssl_client_fingerprint"] = hashlib.sha1(der).hexdigest()


def tls_variables(sslobj: ssl.SSLObject | None) -> dict[str, str | None]:
    """Every $ssl_* value of a finished handshake; {} for a plain connection."""
    if sslobj is None:
        return {}
    cipher = sslobj.cipher()
    der = sslobj.getpeercert(binary_form=True)
    out: dict[str, str | None] = {
        "ssl_protocol": sslobj.version(),
        "ssl_cipher": cipher[0] if cipher else None,
        "ssl_server_name": server_name_of(sslobj),
        "ssl_session_reused": "r" if sslobj.session_reused else ".",
        "ssl_session_id": _session_id(sslobj),
        "ssl_alpn_protocol": sslobj.selected_alpn_protocol() or "",
        "ssl_client_verify": _client_verify(sslobj, der),
        "ssl_ciphers": ":".join(c[0] for c in sslobj.shared_ciphers() or ()) or None,
    }
    info = sslobj.getpeercert() if der else {}
    _client_cert(der, info or {}, out)
    # ngx_http_ssl_variable: an empty value is "not found" (logged as "-").
    return {k: (v or None) for k, v in out.items()}
