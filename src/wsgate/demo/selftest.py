"""`wsgate demo --check`: exercise the demo through the proxy and report each step.

A tiny client over asyncio streams (HTTP GETs and WebSocket sessions built on wsgate's
sans-IO handshake and frame code, so it needs nothing outside the package).  Steps:
the page, /api/stats, a WebSocket handshake, ping->pong, a chat message broadcast to a
second client, a Ping frame answered by a Pong, and a Close echoed with its code.
Every wait is bounded by STEP_TIMEOUT.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Awaitable, Callable

from wsgate.errors import WsgateError
from wsgate.websocket.control import close_frame, parse_close, ping_frame
from wsgate.websocket.frames import ControlFrame, Opcode, build_frame
from wsgate.websocket.handshake import check_switching_response, client_request
from wsgate.websocket.messages import Message, MessageReader

__all__ = ["run_checks", "CheckFailed", "WsClient", "http_get"]

STEP_TIMEOUT = 5.0
MAX_RESPONSE = 1 << 20


class CheckFailed(Exception):
    """A step did not behave as expected; the message says what was seen."""


async def http_get(host: str, port: int, path: str) -> tuple[int, bytes]:
    """(status, body) of a GET sent with `Connection: close`."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
                     f"Connection: close\r\n\r\n".encode())
        data = await reader.read(MAX_RESPONSE)
        while len(data) < MAX_RESPONSE and (more := await reader.read(MAX_RESPONSE)):
            data += more
    finally:
        writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    parts = head.split(b" ", 2)
    if len(parts) < 2 or not parts[1].isdigit():
        raise CheckFailed(f"not an HTTP response: {data[:80]!r}")
    return int(parts[1]), body


class WsClient:
    """A minimal client-side WebSocket for the checks."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.frames = MessageReader(client_side=False, max_message_size=MAX_RESPONSE)
        self.events: list[Message | ControlFrame] = []

    @classmethod
    async def connect(cls, host: str, port: int, path: str = "/ws") -> "WsClient":
        reader, writer = await asyncio.open_connection(host, port)
        request, key = client_request(f"{host}:{port}", path)
        writer.write(request)
        head = await reader.readuntil(b"\r\n\r\n")
        status, headers = _parse_response_head(head)
        problems = check_switching_response(status, headers, key)
        if problems:
            writer.close()
            raise CheckFailed("handshake: " + "; ".join(problems))
        return cls(reader, writer)

    def send_text(self, text: str) -> None:
        self.writer.write(build_frame(Opcode.TEXT, text.encode(), mask=True))

    def send_frame(self, frame: bytes) -> None:
        self.writer.write(frame)

    async def next_event(self) -> Message | ControlFrame:
        """The next message or control frame; CheckFailed on EOF."""
        while not self.events:
            data = await self.reader.read(65536)
            if not data:
                raise CheckFailed("connection closed unexpectedly")
            self.events.extend(self.frames.feed(data))
        return self.events.pop(0)

    async def next_text(self) -> str:
        """The next text message (control frames in between are skipped)."""
        while True:
            event = await self.next_event()
            if isinstance(event, Message):
                return event.text()

    async def next_json(self, kind: str) -> dict[str, object]:
        """The next JSON message of type `kind` (others, e.g. joins, are skipped)."""
        while True:
            text = await self.next_text()
            if text.startswith("{"):
                body = json.loads(text)
                if body.get("type") == kind:
                    return dict(body)

    def close(self) -> None:
        self.writer.close()


def _parse_response_head(head: bytes) -> tuple[int, list[tuple[bytes, bytes]]]:
    lines = head[:-4].split(b"\r\n")
    parts = lines[0].split(b" ", 2)
    if len(parts) < 2 or not parts[1].isdigit():
        raise CheckFailed(f"not an HTTP response: {lines[0][:80]!r}")
    headers = [(n.strip(), v.strip()) for n, _, v in (ln.partition(b":") for ln in lines[1:])]
    return int(parts[1]), headers


# -- the steps ----------------------------------------------------------------------------


async def check_page(host: str, port: int) -> str:
    status, body = await http_get(host, port, "/")
    if status != 200 or b"<title>wsgate demo" not in body:
        raise CheckFailed(f"GET / answered {status} with {len(body)} bytes, not the demo page")
    return f"GET / -> 200, {len(body)} bytes"


async def check_stats(host: str, port: int) -> str:
    status, body = await http_get(host, port, "/api/stats")
    if status != 200:
        raise CheckFailed(f"GET /api/stats answered {status}")
    stats = json.loads(body)
    return f"GET /api/stats -> 200, {stats['sessions_total']} sessions so far"


async def check_websocket(host: str, port: int) -> str:
    a = await WsClient.connect(host, port)
    b = await WsClient.connect(host, port)
    try:
        return await _converse(a, b)
    finally:
        a.close()
        b.close()


async def _converse(a: WsClient, b: WsClient) -> str:
    me = (await a.next_json("welcome"))["id"]
    await b.next_json("welcome")
    a.send_text("ping")
    if (reply := await _next_reply(a)) != "pong":
        raise CheckFailed(f'sent "ping", got {reply!r} instead of "pong"')
    text = f"hello from wsgate demo --check {os.getpid()}"
    a.send_text(text)
    for client, who in ((a, "sender"), (b, "other client")):
        got = await client.next_json("chat")
        if got.get("text") != text or got.get("from") != me:
            raise CheckFailed(f"{who} got {got!r}, expected the broadcast of {text!r}")
    await _ping_pong(a)
    await _close_echo(a)
    return "handshake 101, ping->pong, broadcast to 2 clients, Ping->Pong, Close 1000 echoed"


async def _next_reply(client: WsClient) -> str:
    """The next text that is not a join/leave announcement."""
    while True:
        text = await client.next_text()
        if not text.startswith('{"type":"join"') and not text.startswith('{"type":"leave"'):
            return text


async def _ping_pong(client: WsClient) -> None:
    client.send_frame(ping_frame(b"demo-check", mask=True))
    while True:
        event = await client.next_event()
        if isinstance(event, ControlFrame) and event.header.opcode == Opcode.PONG:
            if event.payload != b"demo-check":
                raise CheckFailed(f"Pong carried {event.payload!r}, not the Ping's payload")
            return


async def _close_echo(client: WsClient) -> None:
    client.send_frame(close_frame(1000, "bye", mask=True))
    while True:
        event = await client.next_event()
        if isinstance(event, ControlFrame) and event.header.opcode == Opcode.CLOSE:
            code, _ = parse_close(event.payload)
            if code != 1000:
                raise CheckFailed(f"sent Close 1000, the echo carried {code}")
            return


STEPS: list[tuple[str, Callable[[str, int], Awaitable[str]]]] = [
    ("page", check_page), ("stats", check_stats), ("websocket", check_websocket),
]


async def run_checks(host: str, port: int, report: Callable[[str], None]) -> bool:
    """Run every step against host:port; `report` gets one line per step."""
    ok = True
    for name, step in STEPS:
        try:
            detail = await asyncio.wait_for(step(host, port), STEP_TIMEOUT)
            report(f"  ok    {name}: {detail}")
        except (CheckFailed, WsgateError, OSError, ValueError, KeyError, asyncio.IncompleteReadError,
                asyncio.LimitOverrunError, asyncio.TimeoutError) as exc:
            report(f"  FAIL  {name}: {_describe(exc)}")
            ok = False
    return ok


def _describe(exc: BaseException) -> str:
    if isinstance(exc, asyncio.TimeoutError):
        return f"no answer within {STEP_TIMEOUT:g}s"
    if isinstance(exc, asyncio.IncompleteReadError):
        return f"connection closed after {len(exc.partial)} bytes"
    return str(exc) or type(exc).__name__
