"""One server-side WebSocket connection of the demo backend, over asyncio streams.

Bytes are parsed by wsgate's sans-IO `MessageReader` (client frames, masked); this
module only moves bytes and applies RFC 6455's closing rules:

- a Ping is answered with a Pong carrying its payload (5.5.2-5.5.3); Pongs are ignored;
- a Close from the client is answered with a Close echoing its status code (5.5.1),
  then the server closes TCP first (7.1.1);
- a protocol violation or an over-long message fails the connection with the error's
  close code (1002, 1007, 1009 ...).  The reader is dead after such an error, so the
  server sends its Close, half-closes, and discards input until the peer closes or a
  short grace period ends -- closing at once with unread input would make the kernel
  send a RST, which can destroy the Close frame before the client reads it.

Memory is bounded: a message is at most `max_message_size` bytes (1009 above it) and
a client that does not read is disconnected once `max_write_buffer` bytes wait for it.
"""

from __future__ import annotations

import asyncio
import collections

from wsgate.errors import WebSocketError
from wsgate.websocket.control import close_frame, parse_close, pong_frame
from wsgate.websocket.frames import ControlFrame, Opcode, build_frame
from wsgate.websocket.messages import Message, MessageReader

__all__ = ["WsConnection", "MAX_MESSAGE_SIZE", "MAX_WRITE_BUFFER", "CLOSE_GRACE"]

MAX_MESSAGE_SIZE = 64 * 1024     # the demo's chat messages are small; 1009 above this
MAX_WRITE_BUFFER = 1 << 20       # bytes queued for a client that does not read
CLOSE_GRACE = 2.0                # seconds to wait for the peer's side of a closing handshake
READ_CHUNK = 65536


class WsConnection:
    """Server side of an established WebSocket (after the 101 was written).

    `recv()` yields text (`str`) and binary (`bytes`) messages and returns None once the
    connection is over; afterwards `close_code` and `closed_by` ("client", "server" or
    None when TCP just went away) say how it ended.
    """

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *,
                 max_message_size: int = MAX_MESSAGE_SIZE,
                 max_write_buffer: int = MAX_WRITE_BUFFER) -> None:
        self._reader = reader
        self._writer = writer
        self._messages = MessageReader(client_side=True, max_message_size=max_message_size)
        self._pending: collections.deque[str | bytes] = collections.deque()
        self._max_write_buffer = max_write_buffer
        self.close_sent = False
        self.done = False
        self.close_code: int | None = None
        self.closed_by: str | None = None

    # -- receiving ------------------------------------------------------------------------

    async def recv(self) -> str | bytes | None:
        """The next data message, or None when the connection has ended."""
        while not self._pending:
            if self.done:
                return None
            data = await self._read()
            if not data:
                self._finish()
                return None
            try:
                self._feed(data)
            except WebSocketError as err:
                await self.fail(err.close_code, str(err))
        return self._pending.popleft()

    async def _read(self) -> bytes:
        try:
            return await self._reader.read(READ_CHUNK)
        except (ConnectionError, OSError):
            return b""

    def _feed(self, data: bytes) -> None:
        for event in self._messages.feed(data):
            if isinstance(event, Message):
                self._pending.append(event.text() if event.opcode == Opcode.TEXT else event.payload)
            else:
                self._on_control(event)
            if self.done:
                return

    def _on_control(self, frame: ControlFrame) -> None:
        op = frame.header.opcode
        if op == Opcode.PING and not self.close_sent:
            self._write(pong_frame(frame.payload, mask=False))
        elif op == Opcode.CLOSE:
            self._on_close(frame.payload)

    def _on_close(self, payload: bytes) -> None:
        code, _reason = parse_close(payload)        # raises 1002/1007 on a bad payload
        if not self.close_sent:                      # the client started the handshake
            self.close_code, self.closed_by = code, "client"
            self._write(close_frame(code, mask=False))   # echo its code (or none)
            self.close_sent = True
        self._finish()

    # -- sending --------------------------------------------------------------------------

    def send_text(self, text: str) -> bool:
        """Queue a text message; False when it was dropped (closing, or client too slow)."""
        return self._send(build_frame(Opcode.TEXT, text.encode("utf-8"), mask=False))

    def send_binary(self, data: bytes) -> bool:
        """Queue a binary message; False when it was dropped."""
        return self._send(build_frame(Opcode.BINARY, data, mask=False))

    def _send(self, frame: bytes) -> bool:
        if self.close_sent or self.done:
            return False
        if self._writer.transport.get_write_buffer_size() > self._max_write_buffer:
            # A client that stopped reading must not make the server buffer without end.
            self.close_code, self.closed_by = 1008, "server"
            self._writer.transport.abort()
            self.done = True
            return False
        return self._write(frame)

    def _write(self, data: bytes) -> bool:
        if self._writer.is_closing():
            return False
        self._writer.write(data)
        return True

    # -- closing --------------------------------------------------------------------------

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Start the closing handshake and wait (briefly) for the client's Close."""
        if self.close_sent or self.done:
            return
        self._send_close(code, reason)
        await self._await_peer_close(parser_alive=True)

    async def fail(self, code: int, reason: str = "") -> None:
        """Fail the connection (RFC 6455 7.1.7) after a protocol error with `code`."""
        if not self.close_sent:
            self._send_close(code, reason)
        await self._await_peer_close(parser_alive=False)

    def _send_close(self, code: int, reason: str) -> None:
        self.close_code, self.closed_by = code, "server"
        self._write(close_frame(code, reason[:100], mask=False))
        self.close_sent = True

    async def _await_peer_close(self, *, parser_alive: bool) -> None:
        if not parser_alive and self._writer.can_write_eof() and not self._writer.is_closing():
            self._writer.write_eof()     # the peer learns we are done even if we cannot parse
        try:
            await asyncio.wait_for(self._drain_input(parser_alive), CLOSE_GRACE)
        except (asyncio.TimeoutError, WebSocketError):
            pass
        self._finish()

    async def _drain_input(self, parser_alive: bool) -> None:
        while not self.done:
            data = await self._read()
            if not data:
                return
            if parser_alive:
                self._feed(data)         # stops at the client's Close (done is set)

    def _finish(self) -> None:
        self.done = True
        if not self._writer.is_closing():
            self._writer.close()
