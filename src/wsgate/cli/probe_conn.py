"""`wsgate probe`'s connection: DNS, TCP, TLS and the opening handshake step by step
(each timed), then a small WebSocket client over the established stream.

Messages are reassembled by wsgate's own sans-IO `MessageReader` (server frames:
unmasked; non-minimal length encodings rejected, as RFC 6455 5.2 requires of an
endpoint). Pings are answered with Pongs, like a browser.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
from dataclasses import dataclass

from wsgate.websocket.control import close_payload, parse_close
from wsgate.websocket.frames import ControlFrame, Opcode, build_frame
from wsgate.websocket.messages import Message, MessageReader

__all__ = ["StepFailed", "Response", "NotHTTP", "Message", "Ended", "WsClient",
           "resolve", "connect_tcp", "open_stream", "tls_info", "read_response_head",
           "read_body", "now", "ms"]

MAX_HEAD = 64 * 1024
MAX_BODY = 64 * 1024
MAX_MESSAGE = 16 * 1024 * 1024


class StepFailed(Exception):
    """A connection step failed; `stage` names it, `__cause__` is the real error."""

    def __init__(self, stage: str, cause: BaseException) -> None:
        super().__init__(f"{stage}: {cause}")
        self.stage = stage
        self.cause = cause


@dataclass
class Response:
    """The handshake response as received."""

    status: int
    reason: str
    version: str
    headers: list[tuple[str, str]]
    raw_head: bytes
    body: bytes = b""

    def header_bytes(self) -> list[tuple[bytes, bytes]]:
        return [(n.encode("latin-1"), v.encode("latin-1")) for n, v in self.headers]

    def header(self, name: str) -> str | None:
        values = [v for n, v in self.headers if n.lower() == name]
        return ", ".join(values) if values else None


class NotHTTP(Exception):
    """The peer's answer does not start with an HTTP status line."""

    def __init__(self, data: bytes) -> None:
        super().__init__(repr(data[:60]))
        self.data = data


def now() -> float:
    return time.perf_counter()


def ms(start: float) -> float:
    return round((time.perf_counter() - start) * 1000, 3)


async def resolve(host: str, port: int, timeout: float) -> list[tuple[int, tuple[object, ...]]]:
    """(family, sockaddr) for host:port, in the resolver's order."""
    loop = asyncio.get_running_loop()
    try:
        infos = await asyncio.wait_for(
            loop.getaddrinfo(host, port, type=socket.SOCK_STREAM), timeout)
    except (OSError, asyncio.TimeoutError) as exc:
        raise StepFailed("dns", exc) from exc
    return [(info[0], info[4]) for info in infos]


async def connect_tcp(addrs: list[tuple[int, tuple[object, ...]]],
                      timeout: float) -> socket.socket:
    """Connect to the first address that accepts; raise the last error otherwise."""
    loop = asyncio.get_running_loop()
    last: BaseException = OSError("no address")
    for family, addr in addrs:
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            await asyncio.wait_for(loop.sock_connect(sock, addr), timeout)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return sock
        except asyncio.TimeoutError:
            sock.close()
            last = TimeoutError("connect timed out")
        except OSError as exc:
            sock.close()
            last = exc
    raise StepFailed("tcp", last)


async def open_stream(sock: socket.socket, tls: ssl.SSLContext | None, server_name: str,
                      timeout: float) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Wrap the socket in streams, doing the TLS handshake if asked."""
    try:
        return await asyncio.wait_for(asyncio.open_connection(
            sock=sock, ssl=tls, server_hostname=server_name if tls else None,
            limit=MAX_HEAD), timeout)
    except asyncio.TimeoutError as exc:
        raise StepFailed("tls", TimeoutError("TLS handshake timed out")) from exc
    except (ssl.SSLError, OSError) as exc:
        raise StepFailed("tls", exc) from exc


def tls_info(writer: asyncio.StreamWriter) -> dict[str, object]:
    obj = writer.get_extra_info("ssl_object")
    if obj is None:
        return {}
    cert = obj.getpeercert() or {}
    subject = ", ".join("=".join(pair) for rdn in cert.get("subject", ()) for pair in rdn)
    cipher = obj.cipher()
    return {"version": obj.version(), "cipher": cipher[0] if cipher else None,
            "subject": subject or "(not verified: --insecure)"}


def parse_head(head: bytes) -> Response:
    text = head.decode("latin-1")
    lines = text[:-4].split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
        raise NotHTTP(head)
    headers = []
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers.append((name.strip(), value.strip(" \t")))
    return Response(int(parts[1]), parts[2] if len(parts) > 2 else "", parts[0], headers, head)


async def read_response_head(reader: asyncio.StreamReader, timeout: float) -> Response:
    try:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
    except asyncio.TimeoutError as exc:
        raise StepFailed("response", TimeoutError("no response")) from exc
    except asyncio.IncompleteReadError as exc:
        if exc.partial and not exc.partial.startswith(b"HTTP/"):
            raise NotHTTP(exc.partial) from None
        raise StepFailed("response", EOFError("closed without a response")) from exc
    except asyncio.LimitOverrunError as exc:
        raise NotHTTP(await reader.read(200)) from exc
    except OSError as exc:
        raise StepFailed("response", exc) from exc
    if not head.startswith(b"HTTP/"):
        raise NotHTTP(head)
    return parse_head(head)


async def read_body(reader: asyncio.StreamReader, resp: Response, timeout: float) -> bytes:
    """The error response's body (bounded; best effort: a short read is fine)."""
    try:
        length = resp.header("content-length")
        if length is not None and length.isdigit():
            return await asyncio.wait_for(reader.readexactly(min(int(length), MAX_BODY)), timeout)
        data = b""
        deadline = now() + timeout
        while len(data) < MAX_BODY and now() < deadline:
            chunk = await asyncio.wait_for(reader.read(MAX_BODY), deadline - now())
            if not chunk:
                break
            data += chunk
            if "chunked" in (resp.header("transfer-encoding") or "") and data.endswith(b"0\r\n\r\n"):
                break
        return _dechunk(data) if "chunked" in (resp.header("transfer-encoding") or "") else data
    except (asyncio.TimeoutError, asyncio.IncompleteReadError, OSError):
        return b""


def _dechunk(data: bytes) -> bytes:
    out, pos = bytearray(), 0
    while pos < len(data):
        end = data.find(b"\r\n", pos)
        if end < 0:
            break
        try:
            size = int(data[pos:end].split(b";")[0], 16)
        except ValueError:
            break
        if size == 0:
            break
        out += data[end + 2:end + 2 + size]
        pos = end + 2 + size + 2
    return bytes(out)


# --- the WebSocket session ------------------------------------------------------------

@dataclass
class Ended:
    """The connection ended: how is "close", "eof" or "reset"."""

    how: str
    code: int | None = None
    reason: str = ""
    error: str = ""


class WsClient:
    """A client WebSocket over asyncio streams: send masked frames, receive messages."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.frames = MessageReader(client_side=False, max_message_size=MAX_MESSAGE,
                                    strict_length=True)
        self.pending: list[Message | Ended] = []
        self.ended: Ended | None = None
        self.sent_close = False
        self.pings_answered = 0

    def send(self, opcode: Opcode, payload: bytes) -> None:
        self.writer.write(build_frame(opcode, payload, mask=True))

    def send_text(self, text: str) -> None:
        self.send(Opcode.TEXT, text.encode("utf-8"))

    async def close(self, code: int = 1000, timeout: float = 2.0) -> Ended:
        """Send Close and wait (bounded) for the server's Close or EOF."""
        if self.ended is None and not self.sent_close:
            self.sent_close = True
            self.send(Opcode.CLOSE, close_payload(code))
        deadline = now() + timeout
        while self.ended is None and now() < deadline:
            await self._read(deadline - now())   # messages stay in `pending` for the caller
        self.writer.close()
        return self.ended or Ended("timeout")

    async def recv(self, timeout: float) -> Message | Ended | None:
        """Next message, or the end of the connection; None on timeout."""
        deadline = now() + timeout
        while not self.pending:
            if self.ended is not None:
                return self.ended
            left = deadline - now()
            if left <= 0:
                return None
            await self._read(left)
        return self.pending.pop(0)

    async def _read(self, timeout: float) -> None:
        try:
            data = await asyncio.wait_for(self.reader.read(65536), timeout)
        except asyncio.TimeoutError:
            return
        except ConnectionResetError as exc:
            self._end(Ended("reset", error=str(exc)))
            return
        if not data:
            self._end(Ended("eof"))
            return
        try:
            events = self.frames.feed(data)
        except Exception as exc:   # FrameError (a WebSocketError): the server broke framing
            self._end(Ended("protocol-error", error=str(exc)))
            return
        for event in events:
            self._dispatch(event)

    def _dispatch(self, event: Message | ControlFrame) -> None:
        if isinstance(event, Message):
            self.pending.append(event)
            return
        opcode = event.header.opcode
        if opcode == Opcode.PING:
            self.send(Opcode.PONG, event.payload)
            self.pings_answered += 1
        elif opcode == Opcode.CLOSE:
            try:
                code, reason = parse_close(event.payload)
            except Exception as exc:   # WebSocketError: invalid close payload
                code, reason = None, f"(invalid close payload: {exc})"
            if not self.sent_close:
                self.sent_close = True
                self.send(Opcode.CLOSE, event.payload[:2] if code is not None else b"")
            self._end(Ended("close", code, reason))

    def _end(self, ended: Ended) -> None:
        if self.ended is None:
            self.ended = ended
            self.pending.append(ended)
