"""Raw-socket clients for byte-exact checks: split writes, reads until a predicate,
half-close, and a tiny WebSocket client whose every byte the test controls.

    c = RawClient.connect("127.0.0.1", port)
    c.send(b"GET / HTTP/1.1\\r\\nHost: a\\r\\n\\r\\n", split=[3, 10])  # 3 writes
    status, headers, rest = c.read_head()
    body = c.read_exactly(int(headers["content-length"]))
    c.shutdown_write(); c.read_until_eof()

    ws = RawWebSocket.connect("127.0.0.1", port, "/chat")   # handshake checked
    ws.send_text("hi"); assert ws.recv_message() == (Opcode.TEXT, b"hi")

Deliberately independent of wsgate's own WebSocket code: the helpers are the oracle
the proxy is checked against, so they must not share its bugs. Sockets are blocking
with timeouts; every read is bounded by a deadline.
"""

from __future__ import annotations

import base64
import hashlib
import os
import socket
import struct
import time
from collections.abc import Callable, Sequence

WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
TEXT, BINARY, CLOSE, PING, PONG, CONT = 0x1, 0x2, 0x8, 0x9, 0xA, 0x0


class ReadTimeout(TimeoutError):
    """A read did not complete in time; `.data` holds what had arrived."""

    def __init__(self, message: str, data: bytes) -> None:
        super().__init__(f"{message}; got {len(data)} bytes: {data[:400]!r}")
        self.data = data


class RawClient:
    """A TCP (or unix) client with a receive buffer and bounded reads."""

    def __init__(self, sock: socket.socket, timeout: float = 10.0) -> None:
        self.sock = sock
        self.timeout = timeout
        self.buffer = bytearray()
        self.eof = False

    @classmethod
    def connect(cls, host: str, port: int, timeout: float = 10.0) -> "RawClient":
        return cls(socket.create_connection((host, port), timeout=timeout), timeout)

    @classmethod
    def connect_unix(cls, path: str, timeout: float = 10.0) -> "RawClient":
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        sock.connect(path)
        return cls(sock, timeout)

    # -- writing ------------------------------------------------------------------------

    def send(self, data: bytes, split: Sequence[int] = (), delay: float = 0.01) -> None:
        """Send `data`, cut at the offsets in `split` into separate writes (TCP_NODELAY
        on, `delay` seconds between them) so the peer sees them as separate reads."""
        if not split:
            self.sock.sendall(data)
            return
        if self.sock.family != socket.AF_UNIX:
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        cuts = [0, *sorted(split), len(data)]
        for start, end in zip(cuts, cuts[1:]):
            if end > start:
                self.sock.sendall(data[start:end])
                time.sleep(delay)

    def send_bytewise(self, data: bytes, delay: float = 0.002) -> None:
        """One write per byte: the harshest split."""
        self.send(data, split=range(1, len(data)), delay=delay)

    def shutdown_write(self) -> None:
        """Half-close: send FIN, keep reading."""
        self.sock.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self.sock.close()

    def reset(self) -> None:
        """Close with RST instead of FIN."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()

    # -- reading ------------------------------------------------------------------------

    def _fill(self, deadline: float) -> bool:
        """Read once into the buffer; False on EOF. Raises socket.timeout at deadline."""
        left = deadline - time.monotonic()
        if left <= 0:
            raise socket.timeout("deadline passed")
        self.sock.settimeout(left)
        chunk = self.sock.recv(65536)
        if not chunk:
            self.eof = True
            return False
        self.buffer += chunk
        return True

    def read_until(self, predicate: Callable[[bytes], int | None],
                   timeout: float | None = None) -> bytes:
        """Read until `predicate(buffer)` returns an end index; consume and return
        buffer[:index]. Raises ReadTimeout (or EOFError at EOF) otherwise."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            end = predicate(bytes(self.buffer))
            if end is not None:
                out = bytes(self.buffer[:end])
                del self.buffer[:end]
                return out
            if self.eof:
                raise EOFError(f"EOF before predicate matched; buffer={bytes(self.buffer)[:400]!r}")
            try:
                self._fill(deadline)
            except socket.timeout:
                raise ReadTimeout("read_until timed out", bytes(self.buffer)) from None

    def read_exactly(self, n: int, timeout: float | None = None) -> bytes:
        return self.read_until(lambda b: n if len(b) >= n else None, timeout)

    def read_until_marker(self, marker: bytes, timeout: float | None = None) -> bytes:
        """Everything up to and including `marker`."""
        def pred(b: bytes) -> int | None:
            i = b.find(marker)
            return i + len(marker) if i >= 0 else None
        return self.read_until(pred, timeout)

    def read_until_eof(self, timeout: float | None = None) -> bytes:
        """Everything until the peer closes (a RST ends it too: ConnectionResetError)."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        try:
            while not self.eof and self._fill(deadline):
                pass
        except socket.timeout:
            raise ReadTimeout("no EOF in time", bytes(self.buffer)) from None
        out = bytes(self.buffer)
        self.buffer.clear()
        return out

    def read_head(self, timeout: float | None = None) -> tuple[str, dict[str, str], list[tuple[str, str]]]:
        """Read one HTTP response head: (status line, lower-cased dict, raw pairs)."""
        head = self.read_until_marker(b"\r\n\r\n", timeout).decode("latin-1")
        lines = head[:-4].split("\r\n")
        pairs = [(n, v.strip()) for n, _, v in (line.partition(":") for line in lines[1:])]
        return lines[0], {n.lower(): v for n, v in pairs}, pairs

    def read_response(self, timeout: float | None = None) -> tuple[str, dict[str, str], bytes]:
        """One whole response (Content-Length, chunked, or until EOF)."""
        status, headers, _ = self.read_head(timeout)
        if "chunked" in headers.get("transfer-encoding", "").lower():
            return status, headers, self._read_chunked(timeout)
        if "content-length" in headers:
            return status, headers, self.read_exactly(int(headers["content-length"]), timeout)
        if status.split(" ")[1] in ("101", "204", "304"):
            return status, headers, b""
        return status, headers, self.read_until_eof(timeout)

    def _read_chunked(self, timeout: float | None) -> bytes:
        body = bytearray()
        while True:
            size = int(self.read_until_marker(b"\r\n", timeout).split(b";")[0], 16)
            if size == 0:
                while self.read_until_marker(b"\r\n", timeout) != b"\r\n":
                    pass            # trailer fields, discarded
                return bytes(body)
            body += self.read_exactly(size + 2, timeout)[:-2]

    def __enter__(self) -> "RawClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --- a tiny WebSocket client -----------------------------------------------------------

def ws_accept(key: str) -> str:
    return base64.b64encode(hashlib.sha1(key.encode() + WS_GUID).digest()).decode()


def encode_frame(opcode: int, payload: bytes, *, mask: bool = True, fin: bool = True,
                 rsv: int = 0) -> bytes:
    """One frame; client frames are masked (RFC 6455 5.3)."""
    head = bytes([(0x80 if fin else 0) | rsv << 4 | opcode])
    mbit = 0x80 if mask else 0
    n = len(payload)
    if n < 126:
        head += bytes([mbit | n])
    elif n < 65536:
        head += bytes([mbit | 126]) + struct.pack("!H", n)
    else:
        head += bytes([mbit | 127]) + struct.pack("!Q", n)
    if not mask:
        return head + payload
    key = os.urandom(4)
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def decode_frame(buf: bytes) -> tuple[int, tuple[bool, int, bytes]] | None:
    """(bytes used, (fin, opcode, unmasked payload)) of the first frame, or None."""
    if len(buf) < 2:
        return None
    fin, opcode, masked, n = buf[0] & 0x80, buf[0] & 0x0F, buf[1] & 0x80, buf[1] & 0x7F
    pos = 2
    if n == 126:
        if len(buf) < 4:
            return None
        n, pos = struct.unpack("!H", buf[2:4])[0], 4
    elif n == 127:
        if len(buf) < 10:
            return None
        n, pos = struct.unpack("!Q", buf[2:10])[0], 10
    key = b""
    if masked:
        key, pos = buf[pos:pos + 4], pos + 4
    if len(buf) < pos + n or len(key) < (4 if masked else 0):
        return None
    payload = buf[pos:pos + n]
    if masked:
        payload = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return pos + n, (bool(fin), opcode, payload)


class RawWebSocket:
    """A minimal WebSocket client over RawClient, for byte-exact tunnel checks."""

    def __init__(self, client: RawClient, response_head: tuple[str, dict[str, str]]) -> None:
        self.client = client
        self.status_line, self.headers = response_head

    @classmethod
    def connect(cls, host: str, port: int, path: str = "/", *,
                headers: Sequence[tuple[str, str]] = (), host_header: str | None = None,
                timeout: float = 10.0, check: bool = True) -> "RawWebSocket":
        """Handshake; with `check`, assert a 101 with the right accept key."""
        client = RawClient.connect(host, port, timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        lines = [f"GET {path} HTTP/1.1", f"Host: {host_header or f'{host}:{port}'}",
                 "Upgrade: websocket", "Connection: Upgrade", f"Sec-WebSocket-Key: {key}",
                 "Sec-WebSocket-Version: 13", *(f"{n}: {v}" for n, v in headers)]
        client.send(("\r\n".join(lines) + "\r\n\r\n").encode())
        status, hdrs, _ = client.read_head()
        if check:
            assert status.startswith("HTTP/1.1 101"), f"handshake failed: {status} {hdrs}"
            assert hdrs.get("sec-websocket-accept") == ws_accept(key), hdrs
        return cls(client, (status, hdrs))

    def send_frame(self, opcode: int, payload: bytes, **kw: object) -> None:
        self.client.send(encode_frame(opcode, payload, **kw))  # type: ignore[arg-type]

    def send_text(self, text: str) -> None:
        self.send_frame(TEXT, text.encode())

    def send_binary(self, data: bytes) -> None:
        self.send_frame(BINARY, data)

    def recv_frame(self, timeout: float | None = None) -> tuple[bool, int, bytes]:
        holder: list[tuple[bool, int, bytes]] = []

        def pred(buf: bytes) -> int | None:
            got = decode_frame(buf)
            if got is None:
                return None
            holder.append(got[1])
            return got[0]
        self.client.read_until(pred, timeout)
        return holder[-1]

    def recv_message(self, timeout: float | None = None) -> tuple[int, bytes]:
        """Next data message (fragments joined); Pings are answered on the way."""
        opcode, parts = None, []
        while True:
            fin, op, payload = self.recv_frame(timeout)
            if op == PING:
                self.send_frame(PONG, payload)
                continue
            if op in (PONG,):
                continue
            if op == CLOSE:
                return CLOSE, payload
            opcode = op if opcode is None else opcode
            parts.append(payload)
            if fin:
                return opcode, b"".join(parts)

    def close(self, code: int = 1000, reason: str = "") -> bytes:
        """Send Close, return the peer's Close payload (b'' if it just hung up)."""
        self.send_frame(CLOSE, struct.pack("!H", code) + reason.encode())
        try:
            while True:
                _, op, payload = self.recv_frame()
                if op == CLOSE:
                    return payload
        except EOFError:
            return b""
        finally:
            self.client.close()
