"""The demo backend: a small asyncio HTTP/1.1 server with three routes.

    GET /            the chat page (static/index.html, shipped as package data)
    GET /api/stats   JSON counters of the room
    GET /ws          the WebSocket chat/echo endpoint (see room.py for the rules)

One request per connection (`Connection: close`), which is all a page load needs and
keeps this server tiny; a request head is bounded by MAX_HEAD and HEAD_TIMEOUT.  The
handshake is checked with wsgate's sans-IO `check_upgrade_request`; a plain GET on /ws
gets 426, which is what a browser sees when a proxy in front strips `Upgrade`.
"""

from __future__ import annotations

import asyncio
import importlib.resources
import json
from dataclasses import dataclass

from wsgate.demo.room import Room
from wsgate.demo.wsconn import WsConnection
from wsgate.websocket.handshake import (accept_key, check_upgrade_request, header_values,
                                        is_upgrade_request)

__all__ = ["DemoApp", "Request", "parse_head", "load_page"]

MAX_HEAD = 16 * 1024
HEAD_TIMEOUT = 10.0
REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
           426: "Upgrade Required", 431: "Request Header Fields Too Large"}


@dataclass(frozen=True)
class Request:
    method: bytes
    path: str
    version: tuple[int, int]
    headers: list[tuple[bytes, bytes]]


def parse_head(head: bytes) -> Request | None:
    """The request line and fields of a head ending in CRLFCRLF; None when malformed."""
    lines = head[:-4].split(b"\r\n")
    parts = lines[0].split(b" ")
    if len(parts) != 3 or not parts[2].startswith(b"HTTP/1."):
        return None
    headers = []
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if not sep or not name or name != name.strip() or line[:1] in b" \t":
            return None
        headers.append((name, value.strip(b" \t")))
    minor = parts[2][7:]
    if not minor.isdigit() or len(minor) != 1:
        return None
    target = parts[1].decode("latin-1")
    return Request(parts[0], target.split("?", 1)[0], (1, int(minor)), headers)


def load_page() -> bytes:
    """The chat page, from the package's static files."""
    return (importlib.resources.files("wsgate.demo") / "static" / "index.html").read_bytes()


class DemoApp:
    """The backend server; `start()` binds, `stop()` closes sessions with 1001."""

    def __init__(self, room: Room | None = None, host: str = "127.0.0.1", port: int = 0) -> None:
        self.room = room if room is not None else Room()
        self.host, self.port = host, port
        self._page = load_page()
        self._server: asyncio.AbstractServer | None = None
        self._sessions: set[WsConnection] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> tuple[str, int]:
        """Listen; returns the bound (host, port) (port 0 picks a free one)."""
        self._server = await asyncio.start_server(self._on_connect, self.host, self.port,
                                                  limit=MAX_HEAD)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.host, self.port

    async def stop(self) -> None:
        """Stop listening, say 1001 "going away" to every session, wait for them."""
        if self._server is not None:
            self._server.close()
        await asyncio.gather(*(s.close(1001, "server shutting down") for s in list(self._sessions)),
                             return_exceptions=True)
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=3.0)

    # -- connections ----------------------------------------------------------------------

    async def _on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            await self._serve(reader, writer)
        except (ConnectionError, OSError):
            pass
        finally:
            if task is not None:
                self._tasks.discard(task)
            writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), HEAD_TIMEOUT)
        except asyncio.LimitOverrunError:
            return self._respond(writer, 431, b"request head too large\n")
        except (asyncio.IncompleteReadError, asyncio.TimeoutError):
            return
        request = parse_head(head)
        self.room.counters.http_requests += 1
        if request is None:
            return self._respond(writer, 400, b"malformed request\n")
        await self._route(request, reader, writer)

    async def _route(self, req: Request, reader: asyncio.StreamReader,
                     writer: asyncio.StreamWriter) -> None:
        if req.method not in (b"GET", b"HEAD"):
            return self._respond(writer, 405, b"only GET\n", extra=[("Allow", "GET, HEAD")])
        head_only = req.method == b"HEAD"
        if req.path in ("/", "/index.html"):
            return self._respond(writer, 200, self._page, "text/html; charset=utf-8", head_only)
        if req.path == "/api/stats":
            body = json.dumps(self.room.stats(), indent=1).encode() + b"\n"
            return self._respond(writer, 200, body, "application/json", head_only)
        if req.path == "/ws":
            return await self._websocket(req, reader, writer)
        self._respond(writer, 404, b"not found\n", head_only=head_only)

    async def _websocket(self, req: Request, reader: asyncio.StreamReader,
                         writer: asyncio.StreamWriter) -> None:
        if not is_upgrade_request(req.headers):
            body = b"this is a WebSocket endpoint: send Upgrade: websocket\n"
            return self._respond(writer, 426, body, extra=[("Upgrade", "websocket")])
        problems = check_upgrade_request(req.method, req.version, req.headers)
        if problems:
            return self._respond(writer, 400, ("\n".join(problems) + "\n").encode())
        key = header_values(req.headers, b"sec-websocket-key")[0]
        writer.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                     b"Connection: Upgrade\r\nSec-WebSocket-Accept: "
                     + accept_key(key).encode() + b"\r\n\r\n")
        await self._session(WsConnection(reader, writer), client_addr(req, writer))

    async def _session(self, conn: WsConnection, addr: str) -> None:
        self._sessions.add(conn)
        member = self.room.join(addr, conn.send_text, conn.send_binary)
        try:
            while (message := await conn.recv()) is not None:
                self.room.receive(member, message)
        finally:
            self._sessions.discard(conn)
            self.room.leave(member, conn.close_code, conn.closed_by)

    @staticmethod
    def _respond(writer: asyncio.StreamWriter, status: int, body: bytes,
                 ctype: str = "text/plain; charset=utf-8", head_only: bool = False,
                 extra: list[tuple[str, str]] | None = None) -> None:
        fields = [("Content-Type", ctype), ("Content-Length", str(len(body))),
                  ("Cache-Control", "no-store"), ("X-Content-Type-Options", "nosniff"),
                  ("Connection", "close"), *(extra or [])]
        head = f"HTTP/1.1 {status} {REASONS[status]}\r\n" + \
            "".join(f"{n}: {v}\r\n" for n, v in fields) + "\r\n"
        writer.write(head.encode("latin-1") + (b"" if head_only else body))


def client_addr(req: Request, writer: asyncio.StreamWriter) -> str:
    """The browser's address: X-Real-IP set by the proxy config, else the TCP peer."""
    real = header_values(req.headers, b"x-real-ip")
    if real and real[0]:
        return real[0]
    peer = writer.get_extra_info("peername")
    return str(peer[0]) if peer else "?"
