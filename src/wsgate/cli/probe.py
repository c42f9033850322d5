"""`wsgate probe URL`: a diagnostic WebSocket client (what people use websocat for).

It performs the opening handshake step by step -- DNS, TCP, TLS, request, response,
accept key -- printing each with its timing, then one of:

    --count N --message TEXT   send N messages, check the echoes, report RTTs
    --idle SECONDS             stay idle (answering Pings) and report if, when and how
                               the connection was cut
    (interactive)              stdin lines are sent, messages printed; when stdin is
                               a TTY or the URL is followed by `-`

Every failure ends with an explanation in words and a fix (`probe_diagnose`).
Exit status: 0 when the session worked as asked, 1 when it did not, 2 for usage.
`--json` prints one JSON object per step instead of text.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import ssl
import statistics
import sys
from typing import IO, Any
from urllib.parse import urlsplit

from wsgate.cli import probe_conn as conn
from wsgate.cli.probe_diagnose import (Diagnosis, diagnose_bad_101, diagnose_cut,
                                       diagnose_exception, diagnose_garbage,
                                       diagnose_response)
from wsgate.websocket.handshake import check_switching_response, client_request, header_tokens

SCHEMES = {"ws": (False, 80), "http": (False, 80), "wss": (True, 443), "https": (True, 443)}


class Reporter:
    """Prints steps as text (`* step ...`) or as JSON lines."""

    def __init__(self, out: IO[str], as_json: bool, verbose: bool) -> None:
        self.out = out
        self.as_json = as_json
        self.verbose = verbose

    def step(self, name: str, text: str, **fields: Any) -> None:
        if self.as_json:
            print(json.dumps({"step": name, **fields}), file=self.out, flush=True)
        else:
            print(f"* {text}", file=self.out, flush=True)

    def lines(self, prefix: str, block: bytes | str) -> None:
        """Show a request/response head (text mode only, -v)."""
        if self.as_json or not self.verbose:
            return
        text = block.decode("latin-1") if isinstance(block, bytes) else block
        for line in text.rstrip("\r\n").split("\r\n"):
            print(f"{prefix} {line}", file=self.out)

    def message(self, data: str, opcode: str) -> None:
        if self.as_json:
            print(json.dumps({"step": "message", "type": opcode, "data": data}),
                  file=self.out, flush=True)
        else:
            print(f"< {data}", file=self.out, flush=True)

    def fail(self, diag: Diagnosis) -> int:
        if self.as_json:
            print(json.dumps({"step": "result", "ok": False, "problem": diag.problem,
                              "explanation": diag.explanation, "fix": diag.fix,
                              **diag.details}), file=self.out, flush=True)
        else:
            print(f"\nFAILED: {diag.explanation}\n\nFix: {diag.fix}", file=self.out, flush=True)
        return 1

    def success(self, text: str, **fields: Any) -> int:
        if self.as_json:
            print(json.dumps({"step": "result", "ok": True, **fields}), file=self.out, flush=True)
        else:
            print(f"\nOK: {text}", file=self.out, flush=True)
        return 0


# --- arguments ------------------------------------------------------------------------

def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="wsgate probe", description=__doc__.split("\n\n")[0])
    p.add_argument("url", help="ws://, wss://, http:// or https:// URL")
    p.add_argument("stdin", nargs="?", choices=["-"], help="interactive: send stdin lines")
    p.add_argument("-H", "--header", action="append", default=[], metavar="'Name: value'")
    p.add_argument("--origin")
    p.add_argument("--subprotocol", action="append", default=[])
    p.add_argument("--timeout", type=float, default=10.0, help="connect+handshake seconds")
    p.add_argument("--count", type=int, default=0)
    p.add_argument("--message", default="wsgate probe")
    p.add_argument("--idle", type=float, default=None, metavar="SECONDS")
    p.add_argument("--insecure", action="store_true", help="do not verify the certificate")
    p.add_argument("--ca", metavar="FILE", help="trust this CA bundle (PEM)")
    p.add_argument("--json", action="store_true")
    p.add_argument("-v", "--verbose", action="store_true")
    return p.parse_args(argv)


class Target:
    """What the URL means: host, port, TLS, request target, Host header value."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme not in SCHEMES or not parts.hostname:
            raise ValueError(f"not a ws://, wss://, http:// or https:// URL: {url!r}")
        self.url = url
        self.tls, default_port = SCHEMES[parts.scheme]
        self.host = parts.hostname
        self.port = parts.port or default_port
        self.path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        host = f"[{self.host}]" if ":" in self.host else self.host
        self.host_header = host if self.port == default_port else f"{host}:{self.port}"


def tls_context(args: argparse.Namespace) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=args.ca)
    if args.insecure:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def offered_extensions(raw: list[str]) -> list[str]:
    """The extension offers the request carries: only those given with -H (the probe
    itself offers none)."""
    fields = [(n.encode("latin-1"), v.encode("latin-1")) for n, v in parse_headers(raw)]
    return header_tokens(fields, b"sec-websocket-extensions")


def parse_headers(raw: list[str]) -> list[tuple[str, str]]:
    out = []
    for item in raw:
        name, sep, value = item.partition(":")
        if not sep or not name.strip():
            raise ValueError(f"-H wants 'Name: value', got {item!r}")
        out.append((name.strip(), value.strip()))
    return out


# --- the run --------------------------------------------------------------------------

class Probe:
    def __init__(self, args: argparse.Namespace, target: Target, report: Reporter,
                 stdin: IO[str]) -> None:
        self.args = args
        self.target = target
        self.report = report
        self.stdin = stdin

    async def run(self) -> int:
        try:
            ws = await self.handshake()
        except conn.StepFailed as exc:
            t = self.target
            return self.report.fail(diagnose_exception(exc.cause, exc.stage, t.host, t.port,
                                                       self.args.timeout))
        except conn.NotHTTP as exc:
            return self.report.fail(diagnose_garbage(exc.data))
        except _Refused as exc:
            return self.report.fail(exc.diagnosis)
        if self.args.count:
            return await self.echo(ws)
        if self.args.idle is not None:
            return await self.idle(ws)
        if self.args.stdin == "-" or self.stdin.isatty():
            return await self.interactive(ws)
        await ws.close()
        return self.report.success("WebSocket handshake succeeded", handshake=True)

    async def handshake(self) -> conn.WsClient:
        start = conn.now()
        reader, writer = await self.connect()
        resp, key = await self.exchange(reader, writer)
        self.check_101(resp, key, writer)
        await self.reject_if_not_101(resp, reader, writer)
        self.report.step("accept", f"101 Switching Protocols, Sec-WebSocket-Accept ok; "
                         f"time to 101: {conn.ms(start)} ms", time_to_101_ms=conn.ms(start),
                         subprotocol=resp.header("sec-websocket-protocol"))
        return conn.WsClient(reader, writer)

    async def connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """DNS, TCP and TLS, each reported with its time."""
        t, args, rep = self.target, self.args, self.report
        step = conn.now()
        addrs = await conn.resolve(t.host, t.port, args.timeout)
        rep.step("dns", f"DNS {t.host} -> {', '.join(str(a[1][0]) for a in addrs)} "
                 f"({conn.ms(step)} ms)", host=t.host,
                 addresses=[str(a[1][0]) for a in addrs], ms=conn.ms(step))
        step = conn.now()
        sock = await conn.connect_tcp(addrs, args.timeout)
        peer = sock.getpeername()
        rep.step("tcp", f"TCP connected to {peer[0]}:{peer[1]} ({conn.ms(step)} ms)",
                 peer=f"{peer[0]}:{peer[1]}", ms=conn.ms(step))
        step = conn.now()
        reader, writer = await conn.open_stream(sock, tls_context(args) if t.tls else None,
                                                t.host, args.timeout)
        if t.tls:
            info = conn.tls_info(writer)
            rep.step("tls", f"TLS {info['version']} {info['cipher']}, certificate subject: "
                     f"{info['subject']} ({conn.ms(step)} ms)", ms=conn.ms(step), **info)
        return reader, writer

    async def exchange(self, reader: asyncio.StreamReader,
                       writer: asyncio.StreamWriter) -> tuple[conn.Response, str]:
        """Send the handshake request, read the response head."""
        t, args, rep = self.target, self.args, self.report
        head, key = client_request(t.host_header, t.path, origin=args.origin,
                                   subprotocols=args.subprotocol,
                                   extra_headers=parse_headers(args.header))
        step = conn.now()
        writer.write(head)
        rep.step("request", f"request sent: GET {t.path} HTTP/1.1 (Host: {t.host_header})",
                 head=head.decode("latin-1"))
        rep.lines(">", head)
        resp = await conn.read_response_head(reader, args.timeout)
        rep.step("response", f"response: {resp.version} {resp.status} {resp.reason} "
                 f"({conn.ms(step)} ms after the request)", status=resp.status,
                 reason=resp.reason, headers=resp.headers, ms=conn.ms(step))
        rep.lines("<", resp.raw_head)
        return resp, key

    def check_101(self, resp: conn.Response, key: str, writer: asyncio.StreamWriter) -> None:
        if resp.status != 101:
            return
        # What we offered, possibly nothing: a server choosing a subprotocol or an
        # extension the client did not offer fails the handshake (RFC 6455 4.1).
        problems = check_switching_response(101, resp.header_bytes(), key,
                                            subprotocols=self.args.subprotocol or [],
                                            extensions=offered_extensions(self.args.header))
        if problems:
            writer.close()
            raise _Refused(diagnose_bad_101(problems, resp.headers))

    async def reject_if_not_101(self, resp: conn.Response, reader: asyncio.StreamReader,
                                writer: asyncio.StreamWriter) -> None:
        if resp.status == 101:
            return
        body = await conn.read_body(reader, resp, min(self.args.timeout, 3.0))
        writer.close()
        if body:
            self.report.lines("<", body.decode("utf-8", "replace"))
        raise _Refused(diagnose_response(resp.status, resp.reason, resp.headers, body,
                                         self.target.url))

    async def echo(self, ws: conn.WsClient) -> int:
        rtts: list[float] = []
        text = self.args.message
        for i in range(self.args.count):
            start = conn.now()
            ws.send_text(text)
            got = await ws.recv(self.args.timeout)
            if not isinstance(got, conn.Message):
                return self.report.fail(self._no_echo(i, got))
            if got.payload != text.encode():
                return self.report.fail(Diagnosis(
                    "echo-mismatch", f"message {i + 1}: sent {text!r}, received "
                    f"{got.payload[:80]!r}: the endpoint does not echo", "probe an echo "
                    "endpoint with --count, or use --idle / interactive mode here"))
            rtts.append(conn.ms(start))
        await ws.close()
        stats = rtt_stats(rtts)
        self.report.step("echo", f"{len(rtts)}/{self.args.count} echoes ok; RTT ms " +
                         " ".join(f"{k} {v}" for k, v in stats.items()),
                         count=len(rtts), rtt_ms=stats)
        return self.report.success(f"{len(rtts)} messages echoed", echoed=len(rtts),
                                   rtt_ms=stats)

    def _no_echo(self, i: int, got: conn.Ended | None) -> Diagnosis:
        if got is None:
            return Diagnosis("no-echo", f"message {i + 1}: no echo within "
                             f"{self.args.timeout:g} s", "probe an echo endpoint, or use --idle")
        return Diagnosis("closed-during-echo", f"the connection ended while waiting for "
                         f"echo {i + 1}: {describe_end(got)}", "check the server's logs")

    async def idle(self, ws: conn.WsClient) -> int:
        wanted = float(self.args.idle)
        self.report.step("idle", f"idle for {wanted:g} s (answering Pings)", seconds=wanted)
        start = conn.now()
        while (left := wanted - (conn.now() - start)) > 0:
            got = await ws.recv(left)
            if isinstance(got, conn.Ended):
                after = conn.now() - start
                self.report.step("cut", f"connection ended after {after:.2f} s: "
                                 f"{describe_end(got)}", how=got.how, after_s=round(after, 3),
                                 code=got.code, reason=got.reason)
                return self.report.fail(diagnose_cut(got.how, after, got.code, got.reason))
            if isinstance(got, conn.Message):
                self.report.message(got.payload.decode("utf-8", "replace"), got.opcode.name.lower())
        await ws.close()
        return self.report.success(f"connection stayed open for {wanted:g} s idle "
                                   f"({ws.pings_answered} pings answered)", idle_s=wanted,
                                   pings_answered=ws.pings_answered)

    async def interactive(self, ws: conn.WsClient) -> int:
        lines = await read_stdin_lines(self.stdin)
        async for line in lines:
            ws.send_text(line)
            await self.drain(ws, 0.05)
            if ws.ended is not None:
                return self.report.fail(Diagnosis("closed", describe_end(ws.ended),
                                                  "check the server's logs"))
        end = await ws.close(timeout=self.args.timeout)
        for msg in ws.pending:
            if isinstance(msg, conn.Message):
                self.report.message(msg.payload.decode("utf-8", "replace"), msg.opcode.name.lower())
        return self.report.success(f"session ended: {describe_end(end)}")

    async def drain(self, ws: conn.WsClient, wait: float) -> None:
        while isinstance(got := await ws.recv(wait), conn.Message):
            self.report.message(got.payload.decode("utf-8", "replace"), got.opcode.name.lower())


class _Refused(Exception):
    def __init__(self, diagnosis: Diagnosis) -> None:
        super().__init__(diagnosis.explanation)
        self.diagnosis = diagnosis


def describe_end(end: conn.Ended) -> str:
    if end.how == "close":
        return f"WebSocket Close, code {end.code}" + (f" \"{end.reason}\"" if end.reason else "")
    return {"eof": "TCP EOF without a Close frame", "reset": "connection reset (RST)",
            "timeout": "no Close reply in time"}.get(end.how, f"{end.how} {end.error}")


def rtt_stats(rtts: list[float]) -> dict[str, float]:
    ordered = sorted(rtts)
    p99 = ordered[min(len(ordered) - 1, int(round(0.99 * (len(ordered) - 1))))]
    return {"min": ordered[0], "median": round(statistics.median(ordered), 3),
            "p99": p99, "max": ordered[-1]}


async def read_stdin_lines(stdin: IO[str]) -> Any:
    """An async iterator of stdin lines (pipes and TTYs read without blocking the loop)."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    try:
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), stdin)
    except (ValueError, OSError, AttributeError):     # a regular file: read it at once
        text = stdin.read()

        async def from_text() -> Any:
            for line in text.splitlines():
                yield line
        return from_text()

    async def from_pipe() -> Any:
        while raw := await reader.readline():
            yield raw.decode("utf-8", "replace").rstrip("\r\n")
    return from_pipe()


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    report = Reporter(sys.stdout, args.json, args.verbose)
    try:
        target = Target(args.url)
        parse_headers(args.header)
    except ValueError as exc:
        print(f"wsgate probe: {exc}", file=sys.stderr)
        return 2
    if args.count < 0 or (args.idle is not None and args.idle < 0):
        print("wsgate probe: --count and --idle must not be negative", file=sys.stderr)
        return 2
    return asyncio.run(Probe(args, target, report, sys.stdin).run())
