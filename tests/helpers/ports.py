"""Loopback ports for tests: pick a free one, wait until something listens on one.

`free_port()` uses the bind-to-port-0 trick: the kernel hands out an unused ephemeral
port, we close the socket and give the number to a subprocess. There is a small race
(another process could take the port in between); callers that start a server on it
should retry on "address in use" -- `procs.start_process` readiness failures say so.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable

LOOPBACK = "127.0.0.1"


def free_port(host: str = LOOPBACK) -> int:
    """Return a TCP port on `host` that nothing listens on right now."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def free_ports(count: int, host: str = LOOPBACK) -> list[int]:
    """Return `count` distinct free ports (all bound at once, so they differ)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    socks = [socket.socket(family, socket.SOCK_STREAM) for _ in range(count)]
    try:
        for sock in socks:
            sock.bind((host, 0))
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for sock in socks:
            sock.close()


def port_open(host: str, port: int, timeout: float = 0.2) -> bool:
    """True when a TCP connect to host:port succeeds now."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_port(host: str, port: int, timeout: float = 10.0,
              alive: Callable[[], bool] | None = None) -> None:
    """Block until host:port accepts TCP connections.

    `alive`, if given, is polled too: when it returns False (the server process died)
    we stop waiting at once instead of burning the whole timeout.
    Raises TimeoutError (or RuntimeError when `alive` says the server is gone).
    """
    deadline = time.monotonic() + timeout
    delay = 0.01
    while time.monotonic() < deadline:
        if port_open(host, port):
            return
        if alive is not None and not alive():
            raise RuntimeError(f"server for {host}:{port} exited before listening")
        time.sleep(delay)
        delay = min(delay * 2, 0.1)
    raise TimeoutError(f"nothing listening on {host}:{port} after {timeout}s")
