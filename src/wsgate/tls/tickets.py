"""Session ticket keys every worker shares: nginx's SSL_CTX-before-fork, by derivation.

nginx builds its SSL_CTXs in the master; the workers inherit them, ticket keys
included, so a session ticket one worker issued resumes on any other. wsgate builds
each listener's context in the worker (and every worker loads a reload itself), so
OpenSSL's random keys per context would differ from worker to worker and a client
landing on another worker would fall back to a full handshake.

Instead a server's keys are derived: HMAC-SHA256, under a secret drawn once when this
module is imported -- in the master, before any fork, since the load-time check
(`wsgate.tls.check_config`) imports it -- over what identifies that server in a load:
its file:line and the paths and bytes of its certificate and key files. So every
worker of one master derives the same keys for the same server; a restart draws a new
secret; renewed certificate files (a reload) give new keys. A reload that changes
none of them keeps the keys, as nginx does with ssl_session_ticket_key files (nginx's
own random keys change at every reload). `ssl_session_tickets off` sets no keys.
The secret never leaves the process tree and is not derived from anything on disk.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import ssl
from typing import Any

from wsgate.tls import native
from wsgate.tls.certs import full_path

__all__ = ["ticket_keys", "share_ticket_keys", "KEY_LENGTH"]

KEY_LENGTH = native.TICKET_KEYS_LENGTH
_SECRET = os.urandom(32)        # once per master: inherited by every fork


def _identity(server: Any, conf_prefix: str) -> bytes:
    parts = [f"{server.file}:{server.line}".encode()]
    names = tuple(server.ssl_certificate or ()) + tuple(server.ssl_certificate_key or ())
    for name in names:
        path = full_path(name, conf_prefix)
        parts.append(path.encode())
        try:
            with open(path, "rb") as fh:
                parts.append(hashlib.sha256(fh.read()).digest())
        except OSError:        # a variable in the name, or unreadable: the name alone
            pass
    return b"\0".join(parts)


def ticket_keys(server: Any, conf_prefix: str, secret: bytes = _SECRET) -> bytes:
    """The 80 bytes of SSL_CTX_set_tlsext_ticket_keys for `server`: key name (16),
    HMAC secret (32), AES key (32)."""
    identity = _identity(server, conf_prefix)
    out = b""
    for block in range(3):                  # HKDF-expand style: 3 x 32 >= 80
        out += hmac.new(secret, identity + bytes([block + 1]), hashlib.sha256).digest()
    return out[:KEY_LENGTH]


def share_ticket_keys(ctx: ssl.SSLContext, server: Any, conf_prefix: str) -> bool:
    """Give `ctx` the server's derived keys; False when the native layer is missing
    (OpenSSL's own per-context keys then stay: resumption works per worker only)."""
    return native.set_ticket_keys(ctx, ticket_keys(server, conf_prefix))
