"""`wsgate probe`'s explanations: what a failed handshake or a cut tunnel means, in
words, and what to change. Pure functions: a response (or an exception, or a cut)
in, a `Diagnosis` out; no I/O, so every rule is testable on its own.

The rules encode what WebSocket proxies do wrong in practice: nginx's defaults
(`proxy_http_version 1.0`, Upgrade/Connection not passed) make node's `ws` answer
426 and Python's `websockets` answer 505; a proxy whose upstream is down says 502,
one whose upstream is slow says 504; an idle tunnel dies at `proxy_read_timeout`.
"""

from __future__ import annotations

import re
import ssl
from dataclasses import dataclass, field
from urllib.parse import urljoin, urlsplit

Headers = list[tuple[str, str]]

NGINX_UPGRADE_FIX = """\
in nginx, add to the location that proxies this URL (and the map to http {}):
    map $http_upgrade $connection_upgrade { default upgrade; '' close; }   # http {}
    proxy_http_version 1.1;
    proxy_set_header Upgrade $http_upgrade;
    proxy_set_header Connection $connection_upgrade;
(or, with wsgate, just `websocket on;`)"""

IDLE_FIX = """\
raise the proxy's idle timeout for this location, e.g. in nginx
    proxy_read_timeout 3600s;
    proxy_send_timeout 3600s;
or keep the tunnel busy: have the server (or client) send WebSocket pings more often
than the timeout (with wsgate: `websocket_ping_interval 30s;`)"""

_PROXY_SERVERS = re.compile(r"nginx|openresty|tengine|cloudflare|envoy|haproxy|apache|"
                            r"httpd|caddy|traefik|squid|varnish|awselb|akamai|wsgate|"
                            r"istio|kong|iis", re.IGNORECASE)
_PROXY_HEADERS = ("via", "x-cache", "cf-ray", "x-amz-cf-id", "x-served-by", "x-varnish")
CLOSE_NAMES = {1000: "normal closure", 1001: "going away", 1002: "protocol error",
               1003: "unsupported data", 1005: "no status received",
               1006: "abnormal closure", 1007: "invalid payload data",
               1008: "policy violation", 1009: "message too big",
               1010: "mandatory extension", 1011: "internal error",
               1012: "service restart", 1013: "try again later",
               1014: "bad gateway", 1015: "TLS handshake failure"}


@dataclass
class Diagnosis:
    """A failure, explained: `problem` is a stable id, `explanation` says what
    happened and why, `fix` what to change."""

    problem: str
    explanation: str
    fix: str
    details: dict[str, object] = field(default_factory=dict)


def header(headers: Headers, name: str) -> str | None:
    values = [v for n, v in headers if n.lower() == name]
    return ", ".join(values) if values else None


def proxy_evidence(headers: Headers, body: bytes) -> str | None:
    """Why we think a proxy produced or relayed this response, or None."""
    for name in _PROXY_HEADERS:
        value = header(headers, name)
        if value is not None:
            return f"a `{name}: {value}` header"
    server = header(headers, "server")
    if server and _PROXY_SERVERS.search(server):
        return f"`Server: {server}`"
    text = body[:4096].decode("latin-1").lower()
    if "<center>nginx" in text or "<hr><center>" in text:
        return "an nginx error page"
    return None


def first_line(body: bytes, limit: int = 200) -> str:
    """The body's first non-empty line, tags stripped, for quoting."""
    text = re.sub(r"<[^>]*>", " ", body[:8192].decode("utf-8", "replace"))
    for line in text.splitlines():
        if line.strip():
            return " ".join(line.split())[:limit]
    return ""


# --- non-101 responses ----------------------------------------------------------------

def diagnose_response(status: int, reason: str, headers: Headers, body: bytes,
                      url: str) -> Diagnosis:
    """Explain a handshake answered with something other than 101."""
    ctx = _Ctx(status, reason, headers, body, url)
    for rule in _RULES:
        found = rule(ctx)
        if found is not None:
            found.details.update(status=status, reason=reason, proxy=ctx.proxy,
                                 body_first_line=first_line(body))
            return found
    return Diagnosis("unexpected-status",
                     f"the server answered {status} {reason} instead of 101 Switching "
                     f"Protocols{ctx.via()}; body: \"{first_line(body)}\"",
                     "check that this URL is the WebSocket endpoint and what the server "
                     "logs for this request")


@dataclass
class _Ctx:
    status: int
    reason: str
    headers: Headers
    body: bytes
    url: str

    @property
    def proxy(self) -> str | None:
        return proxy_evidence(self.headers, self.body)

    def via(self) -> str:
        return f" (a proxy is in the path: {self.proxy})" if self.proxy else ""

    def body_says(self, *needles: str) -> bool:
        text = self.body[:8192].decode("latin-1").lower()
        return any(n.lower() in text for n in needles)


def _http10(c: _Ctx) -> Diagnosis | None:
    if c.status == 505 or (c.status == 400 and c.body_says("unsupported http version",
                                                          "http/1.0")):
        return Diagnosis(
            "proxy-http-1.0",
            f"{c.status} {c.reason}: the backend refused an HTTP/1.0 request "
            f"(\"{first_line(c.body)}\"). WebSocket needs HTTP/1.1; a proxy in front "
            f"spoke HTTP/1.0 to the backend -- nginx does unless told otherwise "
            f"(`proxy_http_version 1.1` is missing){c.via()}",
            NGINX_UPGRADE_FIX)
    return None


def _upgrade_required(c: _Ctx) -> Diagnosis | None:
    if c.status != 426:
        return None
    wanted = header(c.headers, "upgrade")
    if wanted and "websocket" not in wanted.lower():
        return Diagnosis("upgrade-other-protocol",
                         f"426 Upgrade Required asking for `{wanted}`, not websocket: "
                         "this endpoint speaks another protocol",
                         "use the URL of the WebSocket endpoint (or wss:// if it asks for TLS)")
    if c.proxy:
        return Diagnosis(
            "proxy-stripped-upgrade",
            f"426 Upgrade Required came from the backend, through a proxy ({c.proxy}): "
            "the proxy did not pass the Upgrade and Connection headers, so the backend "
            "saw a plain HTTP request and asked for an upgrade",
            NGINX_UPGRADE_FIX)
    return Diagnosis(
        "upgrade-headers-lost",
        "426 Upgrade Required: the server did not see the WebSocket upgrade headers we "
        "sent. No proxy shows in the response, but something between us and the server "
        "dropped Upgrade/Connection -- most likely a reverse proxy that does not pass them "
        "(and strips its own traces, or preserves the backend's response as is)",
        NGINX_UPGRADE_FIX)


def _plain_http_to_tls(c: _Ctx) -> Diagnosis | None:
    if c.status == 400 and c.body_says("plain http request was sent to https port"):
        return Diagnosis("plain-to-tls-port",
                         "400: the plain HTTP request was sent to an HTTPS port",
                         "use wss:// (https) for this port")
    return None


def _bad_request(c: _Ctx) -> Diagnosis | None:
    if c.status != 400:
        return None
    return Diagnosis(
        "handshake-refused",
        f"400 Bad Request without Sec-WebSocket-Accept: the server refused the handshake "
        f"headers{c.via()}. It says: \"{first_line(c.body)}\"",
        "read what it says; common causes: a proxy that dropped or rewrote Sec-WebSocket-* "
        "or Host, an Origin the server does not accept (try --origin), a subprotocol the "
        "server requires (--subprotocol), or an endpoint that is not WebSocket")


def _redirect(c: _Ctx) -> Diagnosis | None:
    if c.status not in (301, 302, 303, 307, 308):
        return None
    location = header(c.headers, "location") or ""
    target = urljoin(c.url.replace("ws://", "http://", 1).replace("wss://", "https://", 1),
                     location)
    parts = urlsplit(target)
    ws_url = parts._replace(scheme={"https": "wss", "http": "ws"}.get(parts.scheme,
                                                                    parts.scheme)).geturl()
    old = urlsplit(c.url)
    change = []
    if parts.scheme in ("https", "wss") and old.scheme in ("ws", "http"):
        change.append("to TLS (use wss://)")
    if parts.netloc != old.netloc:
        change.append(f"to another host ({parts.netloc})")
    if parts.path != old.path:
        change.append(f"to another path ({parts.path})")
    return Diagnosis(
        "redirect",
        f"{c.status} {c.reason} redirect {', '.join(change) or ''} -- Location: {location}. "
        "WebSocket clients (browsers included) do not follow redirects during the handshake",
        f"connect to the new URL directly: wsgate probe {ws_url}",
        {"location": location, "new_url": ws_url})


def _auth(c: _Ctx) -> Diagnosis | None:
    if c.status not in (401, 407):
        return None
    challenge = header(c.headers, "www-authenticate") or header(c.headers, "proxy-authenticate")
    return Diagnosis("auth-required",
                     f"{c.status} {c.reason}: authentication required ({challenge or 'no challenge'})",
                     "send credentials, e.g. -H 'Authorization: Bearer ...' or "
                     "-H 'Cookie: session=...' as the app's pages would")


def _forbidden(c: _Ctx) -> Diagnosis | None:
    if c.status != 403:
        return None
    return Diagnosis(
        "forbidden",
        f"403 Forbidden{c.via()}: most often the server's Origin check (protection against "
        "cross-site WebSocket hijacking) refused the handshake; it may also be an access "
        f"rule. Body: \"{first_line(c.body)}\"",
        "send the Origin the app's own pages have, e.g. --origin https://app.example.com, "
        "or allow that origin on the server")


def _not_found(c: _Ctx) -> Diagnosis | None:
    if c.status != 404:
        return None
    return Diagnosis(
        "not-found",
        f"404 Not Found{c.via()}: nothing serves WebSockets at this path",
        "check the path; behind a proxy, check that a location matches it "
        "(`location /ws/` does not match `/ws`) and how proxy_pass rewrites the URI")


def _gateway(c: _Ctx) -> Diagnosis | None:
    who = f"the proxy ({c.proxy})" if c.proxy else "a proxy"
    if c.status == 502:
        return Diagnosis(
            "upstream-down",
            f"502 Bad Gateway from {who}: it could not get a valid answer from its "
            "upstream -- the backend is down, refused the connection, is at a wrong "
            "address/port in proxy_pass or upstream {}, or sent an invalid response",
            "start the backend or fix its address; the proxy's error log names the "
            "upstream and the error (\"connect() failed (111: Connection refused)\")")
    if c.status == 504:
        return Diagnosis(
            "upstream-timeout",
            f"504 Gateway Timeout from {who}: its upstream accepted the request but did "
            "not answer the handshake in time (nginx: proxy_connect_timeout / "
            "proxy_read_timeout)",
            "find out why the backend is slow or stuck; raise proxy_read_timeout only if "
            "the backend is legitimately slow to accept")
    if c.status == 503:
        return Diagnosis(
            "unavailable",
            f"503 Service Unavailable{c.via()}: the server or its upstreams are "
            "unavailable (overloaded, in maintenance, all upstream peers marked down, or "
            "a connection limit)",
            "check the backend's health and the proxy's limits (limit_conn, max_conns)")
    return None


def _ok(c: _Ctx) -> Diagnosis | None:
    if not 200 <= c.status < 300:
        return None
    html = c.body_says("<!doctype html", "<html")
    spa = (" -- it is HTML: probably a single-page app's fallback route (index.html for "
           "every path), so the WebSocket path never reaches the WebSocket server") if html else ""
    return Diagnosis(
        "not-websocket",
        f"{c.status} {c.reason}: this URL serves an ordinary HTTP response, not a WebSocket "
        f"endpoint{spa}. Body starts: \"{first_line(c.body)}\"",
        "use the WebSocket endpoint's path; behind a proxy, route it to the WebSocket "
        "server before any catch-all/try_files fallback")


_RULES = (_http10, _upgrade_required, _plain_http_to_tls, _bad_request, _redirect, _auth,
          _forbidden, _not_found, _gateway, _ok)


# --- a 101 that is wrong ---------------------------------------------------------------

def diagnose_bad_101(problems: list[str], headers: Headers) -> Diagnosis:
    accept = [p for p in problems if "Sec-WebSocket-Accept" in p]
    proxy = proxy_evidence(headers, b"")
    where = f" ({proxy})" if proxy else ""
    if accept:
        return Diagnosis(
            "bad-accept",
            f"101 Switching Protocols with a wrong Sec-WebSocket-Accept: {accept[0]}. "
            f"The answer was not computed from our key: a broken proxy or middlebox{where} "
            "rewrote or cached the handshake, or the server is not a real WebSocket server",
            "probe the backend directly, bypassing proxies, to find the one that rewrites "
            "Sec-WebSocket-Key/Accept; never cache or replay 101 responses",
            {"problems": problems})
    return Diagnosis(
        "bad-101",
        f"101 Switching Protocols, but not a valid WebSocket handshake: {'; '.join(problems)}",
        "the server (or a proxy in between) must answer with Upgrade: websocket, "
        "Connection: Upgrade and the Sec-WebSocket-Accept computed from our key",
        {"problems": problems})


def diagnose_garbage(data: bytes) -> Diagnosis:
    """The bytes after our request do not start an HTTP response."""
    if data[:1] == b"\x15" and data[1:2] == b"\x03":
        return Diagnosis("tls-port", "the server answered with a TLS alert: this port "
                         "speaks TLS", "use wss:// for this port")
    return Diagnosis("not-http", f"the server did not answer in HTTP: {data[:60]!r}",
                     "check the port: it does not serve HTTP/WebSocket (use wss:// if it is TLS)")


# --- exceptions ------------------------------------------------------------------------

def diagnose_exception(exc: BaseException, stage: str, host: str, port: int,
                       timeout: float) -> Diagnosis:
    """Explain a failure at `stage` (dns, tcp, tls, response)."""
    where = f"{host}:{port}"
    if stage == "dns":
        return Diagnosis("dns-failed", f"DNS lookup of {host!r} failed: {exc}",
                         "check the host name (typo? /etc/hosts? the resolver); try the IP")
    tls = _tls_exception(exc, stage, where)
    if tls is not None:
        return tls
    if isinstance(exc, ConnectionRefusedError):
        return Diagnosis("connection-refused",
                         f"connection refused: nothing is listening on {where}",
                         "start the server, or fix the host/port (in containers, is the "
                         "port published and the server bound to 0.0.0.0 inside?)")
    if isinstance(exc, (TimeoutError,)):
        what = {"tcp": f"no answer to the TCP connect to {where} within {timeout:g} s: a "
                       "firewall drops the packets or the host is down",
                "tls": f"the TLS handshake with {where} did not finish within {timeout:g} s",
                "response": f"no response within {timeout:g} s after the handshake request: "
                            "the server (or a proxy's upstream) is stuck; a proxy would "
                            "answer 504 after its proxy_read_timeout"}.get(stage, str(exc))
        return Diagnosis(f"{stage}-timeout", what,
                         "check the server is up and reachable; raise --timeout if it is slow")
    if isinstance(exc, ConnectionResetError):
        return Diagnosis("connection-reset",
                         f"the connection to {where} was reset during {stage}: the server "
                         "or a middlebox aborted it",
                         "check the server's and proxy's logs for this connection; if the "
                         "port speaks TLS, use wss://")
    if isinstance(exc, EOFError):
        return Diagnosis("closed-without-response",
                         f"{where} closed the connection without answering the handshake",
                         "check the server's logs; if this port speaks TLS, use wss://")
    return Diagnosis(f"{stage}-error", f"{stage} failed: {type(exc).__name__}: {exc}",
                     "check the URL and that the server is reachable")


def _tls_exception(exc: BaseException, stage: str, where: str) -> Diagnosis | None:
    if isinstance(exc, ssl.SSLCertVerificationError):
        return Diagnosis(
            "tls-verify-failed",
            f"TLS certificate verify failed for {where}: {exc.verify_message}",
            "if the server uses a private or self-signed CA, pass it with --ca FILE; to "
            "look past it for this test only, use --insecure; if the certificate is "
            "expired or names another host, fix the certificate")
    if isinstance(exc, ssl.SSLError):
        wrong = "WRONG_VERSION_NUMBER" in str(exc) or "wrong version number" in str(exc)
        return Diagnosis(
            "tls-failed", f"TLS handshake with {where} failed: {exc}"
            + (" -- the port does not speak TLS" if wrong else ""),
            "use ws:// for a plain port" if wrong else
            "check the server's TLS configuration (protocols, ciphers, certificate)")
    if stage == "tls" and isinstance(exc, (ConnectionResetError, EOFError)):
        return Diagnosis("tls-failed",
                         f"{where} aborted the TLS handshake ({type(exc).__name__}): the "
                         "port most likely does not speak TLS",
                         "use ws:// (http://) for a plain port, or the server's TLS port")
    return None


# --- a tunnel cut ----------------------------------------------------------------------

def diagnose_cut(how: str, after: float, code: int | None = None, reason: str = "") -> Diagnosis:
    """Explain an idle connection that ended early: `how` is close, eof or reset."""
    secs = f"{after:.1f} s"
    if how == "close":
        name = CLOSE_NAMES.get(code or 0, "application-defined" if code and code >= 3000 else "")
        text = (f"the server closed the WebSocket after {secs} idle with code "
                f"{code if code is not None else 'none'} ({name})"
                + (f", reason \"{reason}\"" if reason else ""))
        if code == 1001:
            text += ": the server (or a proxy) is going away, e.g. shutting down or restarting"
        return Diagnosis("closed-by-server", text, IDLE_FIX,
                         {"code": code, "reason": reason, "after": round(after, 3)})
    kind = "reset (RST)" if how == "reset" else "closed (TCP FIN)"
    return Diagnosis(
        "idle-cut",
        f"the connection was {kind} after {secs} idle, without a WebSocket Close frame: "
        "a proxy or load balancer cut the idle tunnel at its timeout (nginx: "
        "proxy_read_timeout, 60 s by default; AWS ALB 60 s; Cloudflare 100 s)",
        IDLE_FIX, {"how": how, "after": round(after, 3)})
