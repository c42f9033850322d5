"""The opening handshake (RFC 6455 4): keys, the client's request, the checks a server
or proxy applies to an upgrade request, the checks a client applies to a 101, and the
Origin allow-list behind `websocket_allow_origin`.

Headers are `(name, value)` pairs of bytes as httptools delivers them; names compare
case-insensitively.  Token lists (Connection, Upgrade, Sec-WebSocket-Protocol,
Sec-WebSocket-Extensions) follow RFC 9110 5.6.1: comma-separated, optional whitespace,
empty elements ignored, and repeated fields are one list.  Checks return every problem
in words (empty list when valid) so `wsgate probe` and `wsgate check` can show them all.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import secrets
from collections.abc import Sequence

__all__ = [
    "GUID", "make_key", "accept_key", "client_request", "header_values", "header_tokens",
    "is_upgrade_request", "check_upgrade_request", "check_switching_response",
    "origin_allowed", "parse_origin",
]

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

Headers = Sequence[tuple[bytes, bytes]]

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")   # RFC 9110 5.6.2 tchar
_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}


def make_key() -> str:
    """A fresh Sec-WebSocket-Key: 16 random bytes, base64 (RFC 6455 4.1)."""
    return base64.b64encode(secrets.token_bytes(16)).decode("ascii")


def accept_key(key: str) -> str:
    """Sec-WebSocket-Accept for `key` (RFC 6455 4.2.2 step 5.4)."""
    digest = hashlib.sha1((key + GUID).encode("ascii")).digest()
    return base64.b64encode(digest).decode("ascii")


def _key_valid(key: str) -> bool:
    try:
        return len(base64.b64decode(key.encode("ascii"), validate=True)) == 16
    except (binascii.Error, UnicodeEncodeError):
        return False


# -- the client's request ---------------------------------------------------------------


def client_request(host: str, path: str, *, origin: str | None = None,
                   subprotocols: Sequence[str] = (),
                   extra_headers: Sequence[tuple[str, str]] = (),
                   key: str | None = None) -> tuple[bytes, str]:
    """(request head bytes, key) for an opening handshake (RFC 6455 4.1)."""
    key = key if key is not None else make_key()
    if not path or any(c in path for c in " \r\n\t"):
        raise ValueError(f"invalid request target {path!r}")
    fields = [("Host", host), ("Upgrade", "websocket"), ("Connection", "Upgrade"),
              ("Sec-WebSocket-Key", key), ("Sec-WebSocket-Version", "13")]
    if origin is not None:
        fields.append(("Origin", origin))
    if subprotocols:
        fields.append(("Sec-WebSocket-Protocol", ", ".join(subprotocols)))
    fields.extend(extra_headers)
    lines = [f"GET {path} HTTP/1.1"]
    for name, value in fields:
        if not _TOKEN.match(name) or any(c in value for c in "\r\n\0"):
            raise ValueError(f"invalid header {name!r}: {value!r}")
        lines.append(f"{name}: {value}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"), key


# -- header access --------------------------------------------------------------------


def header_values(headers: Headers, name: bytes) -> list[str]:
    """Every value of field `name` (any case), in order, decoded as latin-1."""
    name = name.lower()
    return [v.decode("latin-1").strip(" \t") for n, v in headers if n.lower() == name]


def header_tokens(headers: Headers, name: bytes) -> list[str]:
    """The elements of a comma-list field across all its lines (RFC 9110 5.6.1)."""
    out: list[str] = []
    for value in header_values(headers, name):
        out.extend(e for e in (p.strip(" \t") for p in value.split(",")) if e)
    return out


def _has_token(headers: Headers, name: bytes, token: str) -> bool:
    return any(t.lower() == token for t in header_tokens(headers, name))


def is_upgrade_request(headers: Headers) -> bool:
    """Does the request ask to switch to WebSocket?  `Upgrade` lists "websocket" and
    `Connection` lists the "upgrade" token, both case-insensitively (RFC 6455 4.2.1,
    RFC 9110 7.6.1 and 7.8)."""
    return _has_token(headers, b"upgrade", "websocket") and \
        _has_token(headers, b"connection", "upgrade")


# -- server-side checks ---------------------------------------------------------------


def check_upgrade_request(method: bytes, version: tuple[int, int], headers: Headers) -> list[str]:
    """Every way the request fails RFC 6455 4.2.1; [] when it is a valid handshake."""
    problems: list[str] = []
    if method != b"GET":
        problems.append(f'method is "{method.decode("latin-1")}", must be GET')
    if version < (1, 1):
        problems.append(f"HTTP version is {version[0]}.{version[1]}, must be 1.1 or later")
    if not header_values(headers, b"host"):
        problems.append("no Host header")
    problems += _check_upgrade_fields(headers)
    problems += _check_key(headers)
    problems += _check_version(headers)
    problems += _check_token_list(headers, b"sec-websocket-protocol", "Sec-WebSocket-Protocol")
    return problems


def _check_upgrade_fields(headers: Headers) -> list[str]:
    problems = []
    upgrade = header_values(headers, b"upgrade")
    if not upgrade:
        problems.append("no Upgrade header")
    elif not _has_token(headers, b"upgrade", "websocket"):
        problems.append(f'Upgrade is "{", ".join(upgrade)}", must include "websocket"')
    connection = header_values(headers, b"connection")
    if not connection:
        problems.append("no Connection header")
    elif not _has_token(headers, b"connection", "upgrade"):
        problems.append(f'Connection is "{", ".join(connection)}", must include the "upgrade" token')
    return problems


def _check_key(headers: Headers) -> list[str]:
    keys = header_values(headers, b"sec-websocket-key")
    if not keys:
        return ["no Sec-WebSocket-Key header"]
    if len(keys) > 1:
        return [f"{len(keys)} Sec-WebSocket-Key headers, must be exactly one"]
    if not _key_valid(keys[0]):
        return [f'Sec-WebSocket-Key "{keys[0]}" is not the base64 of 16 bytes']
    return []


def _check_version(headers: Headers) -> list[str]:
    versions = header_values(headers, b"sec-websocket-version")
    if not versions:
        return ["no Sec-WebSocket-Version header"]
    if versions != ["13"]:
        return [f"Sec-WebSocket-Version is {', '.join(versions)}, must be 13"]
    return []


def _check_token_list(headers: Headers, name: bytes, label: str) -> list[str]:
    bad = [t for t in header_tokens(headers, name) if not _TOKEN.match(t)]
    return [f'{label} element "{t}" is not a token' for t in bad]


# -- client-side checks of the 101 ------------------------------------------------------


def check_switching_response(status: int, headers: Headers, key: str, *,
                             subprotocols: Sequence[str] | None = None,
                             extensions: Sequence[str] | None = None) -> list[str]:
    """Every way a response fails RFC 6455 4.1 (client's checks, steps 1-6); [] when
    the handshake succeeded.  `subprotocols` / `extensions` are what the client
    offered (extension offers may carry parameters); None skips that check."""
    if status != 101:
        return [f"status is {status}, expected 101 Switching Protocols"]
    problems = _check_upgrade_fields(headers)
    problems += _check_accept(headers, key)
    if subprotocols is not None:
        problems += _check_subprotocol(headers, subprotocols)
    if extensions is not None:
        problems += _check_extensions(headers, extensions)
    return problems


def _check_accept(headers: Headers, key: str) -> list[str]:
    accepts = header_values(headers, b"sec-websocket-accept")
    expected = accept_key(key)
    if not accepts:
        return ["no Sec-WebSocket-Accept header"]
    if len(accepts) > 1:
        return [f"{len(accepts)} Sec-WebSocket-Accept headers, must be exactly one"]
    if accepts[0] != expected:
        return [f'Sec-WebSocket-Accept is "{accepts[0]}", expected "{expected}"']
    return []


def _check_subprotocol(headers: Headers, offered: Sequence[str]) -> list[str]:
    chosen = header_tokens(headers, b"sec-websocket-protocol")
    if not chosen:
        return []
    if len(chosen) > 1:
        return [f'Sec-WebSocket-Protocol is "{", ".join(chosen)}", the server must choose one']
    if chosen[0] not in offered:
        said = ", ".join(offered) if offered else "none"
        return [f'server chose subprotocol "{chosen[0]}", which the client did not offer '
                f"(offered: {said})"]
    return []


def _check_extensions(headers: Headers, offered: Sequence[str]) -> list[str]:
    names = {_extension_name(o) for o in offered}
    problems = []
    for ext in header_tokens(headers, b"sec-websocket-extensions"):
        name = _extension_name(ext)
        if name not in names:
            problems.append(f'server accepted extension "{name}", which the client did not offer')
    return problems


def _extension_name(offer: str) -> str:
    return offer.split(";", 1)[0].strip(" \t").lower()


# -- Origin allow-list ------------------------------------------------------------------


def parse_origin(origin: str) -> tuple[str, str, int] | None:
    """(scheme, host, port) of a serialized origin (RFC 6454 6.2), with the scheme's
    default port filled in, or None for "null" and anything malformed."""
    m = re.fullmatch(r"([a-zA-Z][a-zA-Z0-9+.\-]*)://(\[[0-9a-fA-F:.]+\]|[^:/\[\]]+)(?::(\d{1,5}))?/?",
                     origin.strip())
    if not m:
        return None
    scheme, host = m.group(1).lower(), m.group(2).lower()
    port = int(m.group(3)) if m.group(3) else _DEFAULT_PORTS.get(scheme)
    if port is None or port > 65535:
        return None
    return scheme, host, port


def origin_allowed(origin: str | None, allowed: Sequence[str], host: str | None, *,
                   allow_missing: bool = True) -> bool:
    """Is a handshake carrying `Origin: origin` allowed by `allowed`?

    Policy (cross-site WebSocket hijacking protection is about browsers, which always
    send Origin on a WebSocket handshake):

    - no Origin header (`None`): allowed unless `allow_missing=False` -- non-browser
      clients (CLI tools, server-to-server) send none and cannot be hijacked;
    - "*" allows every origin, including "null";
    - "null" allows the opaque origin of sandboxed frames and file: pages; nothing else does;
    - "$host" means same-origin: the origin's host and port equal the request's Host
      header (`host`), a Host without a port standing for the origin scheme's default;
    - otherwise an entry is `[scheme://]hostpattern[:port]`.  With a scheme it is
      scheme-exact ("https://app.example.com" rejects http://app.example.com); without
      one it accepts any scheme.  The host pattern is an exact name, "*.example.com"
      (any subdomain, not example.com itself) or ".example.com" (example.com and its
      subdomains), as in nginx's server_name.  With no port, the origin must use its
      scheme's default port; ":*" accepts any port ("localhost:*" for dev servers).
    """
    if origin is None:
        return allow_missing
    origin = origin.strip()
    if "*" in allowed:
        return True
    if origin == "null":
        return "null" in allowed
    parsed = parse_origin(origin)
    if parsed is None:
        return False
    return any(_entry_matches(entry, parsed, host) for entry in allowed)


def _entry_matches(entry: str, origin: tuple[str, str, int], host: str | None) -> bool:
    scheme, ohost, oport = origin
    if entry == "$host":
        return host is not None and _same_host(ohost, scheme, oport, host)
    escheme, _, rest = entry.rpartition("://")
    if escheme and escheme.lower() != scheme:
        return False
    pattern, port = _split_port(rest)
    if port == "*":
        pass
    elif port is None:
        if oport != _DEFAULT_PORTS.get(scheme):
            return False
    elif not port.isdigit() or int(port) != oport:
        return False
    return _host_matches(pattern.lower(), ohost)


def _split_port(hostport: str) -> tuple[str, str | None]:
    if hostport.startswith("["):                       # [v6]:port
        end = hostport.find("]")
        tail = hostport[end + 1:]
        return hostport[:end + 1], tail[1:] if tail.startswith(":") else None
    name, sep, port = hostport.rpartition(":")
    return (name, port) if sep else (hostport, None)


def _host_matches(pattern: str, host: str) -> bool:
    if pattern.startswith("*."):
        return host.endswith(pattern[1:])
    if pattern.startswith("."):
        return host == pattern[1:] or host.endswith(pattern)
    return host == pattern


def _same_host(ohost: str, scheme: str, oport: int, host: str) -> bool:
    hname, hport = _split_port(host.strip().lower())
    if hport is None:
        return hname == ohost and oport == _DEFAULT_PORTS.get(scheme)
    return hport.isdigit() and hname == ohost and int(hport) == oport
