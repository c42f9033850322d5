"""Name resolution at load time: nginx resolves `server` and `proxy_pass` hosts when
it reads the configuration, with the system resolver. The config package is sans-IO,
so the loader takes this as its `resolve=` callable (CLI, master, library API), and
the balancer adapter uses it for hosts the model did not resolve."""

from __future__ import annotations

import socket


def resolve(host: str, port: int | str | None) -> list[str]:
    """IP address strings of `host`, in getaddrinfo order, without duplicates;
    LookupError when the name does not resolve (the loader's `host not found`)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise LookupError(str(exc)) from exc
    seen: list[str] = []
    for info in infos:
        addr = str(info[4][0])
        if addr not in seen:
            seen.append(addr)
    return seen
