"""Python `websockets` echo server, run as a subprocess by helpers.backends.

    python tests/helpers/ws_echo_server.py PORT [--host H] [--ping-interval S]
                                           [--certfile PEM --keyfile PEM]   # wss://

WebSocket messages on any path are echoed back (text stays text, bytes stay bytes).
A plain GET to /http answers 200 with a short body. Everything else is left to the
library, so its refusals are the real ones: a non-upgrade GET gets 426 and an
HTTP/1.0 request (what nginx sends without `proxy_http_version 1.1`) gets
`505 HTTP Version Not Supported` with "unsupported HTTP version: HTTP/1.0" in the body.
"""

from __future__ import annotations

import argparse
import asyncio
import http
import signal
import ssl

from websockets.asyncio.server import ServerConnection, serve
from websockets.http11 import Request, Response

HTTP_BODY = "hello from websockets /http\n"


async def echo(ws: ServerConnection) -> None:
    async for message in ws:
        await ws.send(message)


def plain_http(conn: ServerConnection, request: Request) -> Response | None:
    if request.path.split("?", 1)[0] == "/http":
        return conn.respond(http.HTTPStatus.OK, HTTP_BODY)
    return None


async def run(host: str, port: int, ping_interval: float | None,
              tls: ssl.SSLContext | None) -> None:
    stop = asyncio.get_running_loop().create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set_result, None)
    async with serve(echo, host, port, process_request=plain_http,
                     ping_interval=ping_interval, ssl=tls):
        print(f"websockets echo listening on {host}:{port}", flush=True)
        await stop


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("port", type=int)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--ping-interval", type=float, default=None,
                        help="server pings (default: none, so idle tests stay idle)")
    parser.add_argument("--certfile", help="serve wss:// with this PEM certificate chain")
    parser.add_argument("--keyfile")
    args = parser.parse_args()
    tls = None
    if args.certfile:
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.load_cert_chain(args.certfile, args.keyfile)
    asyncio.run(run(args.host, args.port, args.ping_interval, tls))


if __name__ == "__main__":
    main()
