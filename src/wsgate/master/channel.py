"""The master -> worker control channel (nginx's `ngx_channel_t`).

One AF_UNIX SOCK_SEQPACKET socketpair per worker: message boundaries for free, and
file descriptors ride along with SCM_RIGHTS. A message is a small JSON object; a
reload carries the listening sockets as fds, named by `keys` in the same order:

    {"op": "reload", "keys": [["127.0.0.1", 8080, null], ...]}  + fds

Signals (QUIT, TERM, USR1) go to workers as real signals, as nginx's master falls
back to doing; the channel carries what a signal cannot: the new sockets.
"""

from __future__ import annotations

import json
import os
import socket
from typing import Any

__all__ = ["pair", "send", "receive", "MAX_FDS"]

MAX_FDS = 250           # under SCM_MAX_FD (253)
_MAX_MESSAGE = 64 * 1024


def pair() -> tuple[socket.socket, socket.socket]:
    """(master end, worker end), both close-on-exec."""
    return socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)


def send(sock: socket.socket, message: dict[str, Any], fds: list[int] = ()) -> bool:  # type: ignore[assignment]
    """Send one message (blocking; tiny); False when the worker end is gone."""
    data = json.dumps(message).encode()
    try:
        if fds:
            socket.send_fds(sock, [data], list(fds)[:MAX_FDS])
        else:
            sock.sendall(data)
        return True
    except OSError:
        return False


def receive(sock: socket.socket) -> tuple[dict[str, Any] | None, list[int]]:
    """Read one message; (None, []) at EOF (the master is gone)."""
    try:
        data, fds, _flags, _addr = socket.recv_fds(sock, _MAX_MESSAGE, MAX_FDS)
    except (BlockingIOError, InterruptedError):
        return {}, []
    except OSError:
        return None, []
    if not data:
        for fd in fds:
            os.close(fd)
        return None, []
    return json.loads(data), list(fds)
