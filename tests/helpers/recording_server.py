"""The recording HTTP/1.1 backend: answers every request with a JSON description of
exactly what it received, so tests can compare what nginx and wsgate send upstream.

    python tests/helpers/recording_server.py PORT [--host H] [--spec FILE] [--records FILE]

Per request it records (and, by default, answers with as `application/json`):

    {"conn": 3, "seq": 0, "peer": ["127.0.0.1", 51234],
     "request_line": "GET /x HTTP/1.1", "method": "GET", "target": "/x",
     "version": "HTTP/1.1", "header_lines": ["Host: a", ...],   # raw, in order
     "headers": [["Host", "a"], ...], "body_b64": "...",         # decoded body
     "raw_body_b64": "...", "chunked": false, "trailer_lines": [], "upgraded": false}

`conn` numbers connections from 1, `seq` numbers requests on one connection from 0, so
keep-alive reuse is visible. With `--records FILE` every record is also appended to
FILE as one JSON line (the only way to see what an upgraded request looked like).

Keep-alive follows HTTP/1.1 (1.0 only with `Connection: keep-alive`); bodies may be
Content-Length or chunked. A request with `Upgrade` and `Connection: upgrade` gets a
101 (with the right Sec-WebSocket-Accept when a key was sent) and from then on every
byte received is echoed back verbatim.

`--spec FILE` scripts misbehaviour. JSON: {"routes": [ROUTE...], "default": RESPONSE}.
A ROUTE is {"path": "/prefix", "method": "GET"?, "times": N?, "response": RESPONSE}; the
first route whose path is a prefix of the target (and method matches) is used, at most
`times` times. A RESPONSE may hold:

    status, reason, version ("HTTP/1.1"), headers [[name, value]...],
    body (text) | body_b64        -- default: the JSON record
    framing: "length" (default) | "chunked" | "close" (no length; close after body)
             | "none" (write exactly the given headers, no framing header added)
    delay (s before the head), body_delay (s between head and body),
    close_after_head (send the head, then close), no_response (close at once),
    reset (abort with RST), raw / raw_b64 (send these bytes verbatim, then close),
    keep_alive: false (add Connection: close and close after the response),
    upgrade: true (force 101 + echo), accept: "value" (wrong accept key on purpose),
    ignore (stay silent forever; the client must time out)

An upgrade request gets the 101 unless its RESPONSE has status, ignore, no_response,
reset or raw/raw_b64 (then that is what it gets).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import itertools
import json
import signal
import socket
import struct
from http import HTTPStatus
from typing import Any

MAX_HEAD = 64 * 1024
WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_conn_ids = itertools.count(1)
# A scripted response with any of these keys replaces the default 101 for upgrades.
_NOT_101 = {"status", "ignore", "no_response", "reset", "raw", "raw_b64"}


class BadRequest(Exception):
    """The client sent something this backend cannot parse; answer 400 and close."""


# --- parsing --------------------------------------------------------------------------

async def read_head(reader: asyncio.StreamReader) -> bytes | None:
    """Read up to and including the blank line; None on a clean EOF before any byte."""
    try:
        return await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        if not exc.partial:
            return None
        raise BadRequest("truncated head") from None
    except asyncio.LimitOverrunError:
        raise BadRequest("head too large") from None


def parse_head(head: bytes) -> dict[str, Any]:
    lines = head[:-4].decode("latin-1").split("\r\n")
    request_line, header_lines = lines[0], lines[1:]
    parts = request_line.split(" ")
    if len(parts) != 3:
        raise BadRequest(f"bad request line {request_line!r}")
    headers = []
    for line in header_lines:
        name, sep, value = line.partition(":")
        if not sep:
            raise BadRequest(f"bad header line {line!r}")
        headers.append([name, value.strip(" \t")])
    return {"request_line": request_line, "method": parts[0], "target": parts[1],
            "version": parts[2], "header_lines": header_lines, "headers": headers}


def header(record: dict[str, Any], name: str) -> str | None:
    """The values of `name` joined with ", " (None when absent)."""
    values = [v for n, v in record["headers"] if n.lower() == name.lower()]
    return ", ".join(values) if values else None


def tokens(value: str | None) -> set[str]:
    return {t.strip().lower() for t in (value or "").split(",") if t.strip()}


async def read_chunked(reader: asyncio.StreamReader) -> tuple[bytes, bytes, list[str]]:
    """Return (decoded body, raw bytes as received, trailer lines)."""
    raw, body = bytearray(), bytearray()
    while True:
        size_line = await reader.readuntil(b"\r\n")
        raw += size_line
        size = int(size_line.split(b";", 1)[0].strip(), 16)
        if size == 0:
            break
        chunk = await reader.readexactly(size + 2)
        raw += chunk
        body += chunk[:-2]
    trailers = []
    while True:
        line = await reader.readuntil(b"\r\n")
        raw += line
        if line == b"\r\n":
            return bytes(body), bytes(raw), trailers
        trailers.append(line[:-2].decode("latin-1"))


async def read_body(reader: asyncio.StreamReader, record: dict[str, Any]) -> None:
    te, cl = header(record, "Transfer-Encoding"), header(record, "Content-Length")
    body, raw, trailers = b"", b"", []
    if te is not None and "chunked" in tokens(te):
        body, raw, trailers = await read_chunked(reader)
    elif cl is not None:
        body = raw = await reader.readexactly(int(cl.split(",")[0]))
    record.update(body_b64=base64.b64encode(body).decode(),
                  raw_body_b64=base64.b64encode(raw).decode(),
                  chunked=te is not None, trailer_lines=trailers)


# --- responses ------------------------------------------------------------------------

def wants_upgrade(record: dict[str, Any]) -> bool:
    return header(record, "Upgrade") is not None and "upgrade" in tokens(
        header(record, "Connection"))


def keeps_alive(record: dict[str, Any]) -> bool:
    conn = tokens(header(record, "Connection"))
    if record["version"] == "HTTP/1.0":
        return "keep-alive" in conn
    return "close" not in conn


def format_head(version: str, status: int, reason: str | None,
                headers: list[list[str]]) -> bytes:
    if reason is None:
        try:
            reason = HTTPStatus(status).phrase
        except ValueError:
            reason = "Unknown"
    lines = [f"{version} {status} {reason}"] + [f"{n}: {v}" for n, v in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def response_body(spec: dict[str, Any], record: dict[str, Any]) -> bytes:
    if "body_b64" in spec:
        return base64.b64decode(spec["body_b64"])
    if "body" in spec:
        return str(spec["body"]).encode()
    return (json.dumps(record) + "\n").encode()


def frame_body(spec: dict[str, Any], headers: list[list[str]], body: bytes,
               method: str) -> bytes:
    """Add the framing header for `spec["framing"]`; return the bytes to write."""
    framing = spec.get("framing", "length")
    if framing == "length":
        headers.append(["Content-Length", str(len(body))])
    elif framing == "chunked":
        headers.append(["Transfer-Encoding", "chunked"])
        body = (f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n\r\n") if body else b"0\r\n\r\n"
    if method == "HEAD":
        return b""
    return body


def abort(writer: asyncio.StreamWriter) -> None:
    """Close with RST: SO_LINGER on, timeout 0."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


async def send_response(writer: asyncio.StreamWriter, spec: dict[str, Any],
                        record: dict[str, Any], keep: bool) -> bool:
    """Write the scripted (or default) response; return True to keep the connection."""
    if spec.get("delay"):
        await asyncio.sleep(float(spec["delay"]))
    if spec.get("ignore"):
        await asyncio.sleep(3600)
    if spec.get("no_response"):
        return False
    if spec.get("reset"):
        abort(writer)
        return False
    if "raw" in spec or "raw_b64" in spec:
        raw = base64.b64decode(spec["raw_b64"]) if "raw_b64" in spec else spec["raw"].encode()
        writer.write(raw)
        await writer.drain()
        return bool(spec.get("keep_open", False))
    headers = [list(h) for h in spec.get("headers", [["Content-Type", "application/json"]])]
    keep = keep and spec.get("keep_alive", True) and spec.get("framing") != "close"
    if not keep and spec.get("framing") != "none":
        headers.append(["Connection", "close"])
    body = frame_body(spec, headers, response_body(spec, record), record["method"])
    writer.write(format_head(spec.get("version", "HTTP/1.1"), int(spec.get("status", 200)),
                             spec.get("reason"), headers))
    await writer.drain()
    if spec.get("close_after_head"):
        return False
    if spec.get("body_delay"):
        await asyncio.sleep(float(spec["body_delay"]))
    writer.write(body)
    await writer.drain()
    return keep


def accept_for(key: str | None) -> str | None:
    if key is None:
        return None
    return base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()


async def upgrade_and_echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                           spec: dict[str, Any], record: dict[str, Any]) -> None:
    """101, then echo every byte until EOF (half-closing our side in turn)."""
    if spec.get("delay"):
        await asyncio.sleep(float(spec["delay"]))
    headers = [["Upgrade", header(record, "Upgrade") or "websocket"], ["Connection", "Upgrade"]]
    accept = spec.get("accept", accept_for(header(record, "Sec-WebSocket-Key")))
    if accept is not None:
        headers.append(["Sec-WebSocket-Accept", accept])
    headers += [list(h) for h in spec.get("headers", [])]
    writer.write(format_head("HTTP/1.1", 101, None, headers))
    await writer.drain()
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()
    if writer.can_write_eof():
        writer.write_eof()


# --- the server -----------------------------------------------------------------------

class Recorder:
    def __init__(self, spec: dict[str, Any], records_path: str | None) -> None:
        self.routes = spec.get("routes", [])
        self.default = spec.get("default", {})
        self.uses = [0] * len(self.routes)
        self.records_path = records_path

    def pick(self, record: dict[str, Any]) -> dict[str, Any]:
        for i, route in enumerate(self.routes):
            if not record["target"].startswith(route.get("path", "/")):
                continue
            if route.get("method") not in (None, record["method"]):
                continue
            if "times" in route and self.uses[i] >= route["times"]:
                continue
            self.uses[i] += 1
            return dict(route.get("response", {}))
        return dict(self.default)

    def save(self, record: dict[str, Any]) -> None:
        if self.records_path:
            with open(self.records_path, "a") as out:
                out.write(json.dumps(record) + "\n")

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn, peer = next(_conn_ids), list(writer.get_extra_info("peername") or ())[:2]
        try:
            await self.serve_connection(reader, writer, conn, peer)
        except (BadRequest, ValueError) as exc:
            writer.write(format_head("HTTP/1.1", 400, None, [["Connection", "close"],
                                     ["Content-Length", str(len(str(exc)))]]) + str(exc).encode())
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()

    async def serve_connection(self, reader: asyncio.StreamReader,
                               writer: asyncio.StreamWriter, conn: int, peer: list[Any]) -> None:
        for seq in itertools.count():
            head = await read_head(reader)
            if head is None:
                return
            record = {"conn": conn, "seq": seq, "peer": peer, **parse_head(head)}
            await read_body(reader, record)
            spec = self.pick(record)
            record["upgraded"] = bool(spec.get("upgrade", wants_upgrade(record)
                                               and not _NOT_101.intersection(spec)))
            self.save(record)
            if record["upgraded"]:
                await upgrade_and_echo(reader, writer, spec, record)
                return
            if not await send_response(writer, spec, record, keeps_alive(record)):
                return


async def run(host: str, port: int, spec: dict[str, Any], records: str | None) -> None:
    recorder = Recorder(spec, records)
    server = await asyncio.start_server(recorder.handle, host, port, limit=MAX_HEAD)
    stop = asyncio.get_running_loop().create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set_result, None)
    print(f"recording backend listening on {host}:{port}", flush=True)
    async with server:
        await stop


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("port", type=int)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--spec", help="JSON file scripting the responses")
    parser.add_argument("--records", help="append one JSON line per request here")
    args = parser.parse_args()
    spec = {}
    if args.spec:
        with open(args.spec) as f:
            spec = json.load(f)
    asyncio.run(run(args.host, args.port, spec, args.records))


if __name__ == "__main__":
    main()
