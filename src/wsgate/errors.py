"""wsgate's error hierarchy: one root, a few branches, each carrying the fields its
handler needs. Library code raises these; only the CLI turns them into `[emerg]` lines
and exit statuses, and only the proxy layer turns them into responses or close codes.

    WsgateError
     +-- ConfigError              file/line/col; str() is nginx's "msg in file:line"
     +-- ProtocolError            status_hint: the HTTP status (or None)
     |    +-- LocalProtocolError  we were asked to send something invalid
     |    +-- RemoteProtocolError the peer sent something invalid
     +-- WebSocketError           close_code: RFC 6455 status code to close with
     +-- UpstreamError            kind (FailureKind name), source, retryable
"""

from __future__ import annotations


class WsgateError(Exception):
    """Root of every error wsgate raises on purpose."""


class ConfigError(WsgateError):
    """A configuration problem at a known place.

    `message` is nginx's wording without the position (`unknown directive "x"`);
    `str(err)` adds nginx's suffix: `unknown directive "x" in /etc/nginx.conf:12`.
    `level` is the nginx error-log level the CLI prints it at (almost always emerg).
    """

    def __init__(self, message: str, file: str | None = None, line: int | None = None,
                 col: int | None = None, level: str = "emerg", fix: str | None = None):
        self.message = message
        self.file = file
        self.line = line
        self.col = col
        self.level = level
        self.fix = fix
        super().__init__(self.__str__())

    def __str__(self) -> str:
        if self.file is None:
            return self.message
        if self.line is None:
            return f"{self.message} in {self.file}"
        return f"{self.message} in {self.file}:{self.line}"


class ProtocolError(WsgateError):
    """A peer (or we) broke HTTP/1.1; `status_hint` is the response status to send."""

    def __init__(self, message: str, status_hint: int | None = 400):
        self.message = message
        self.status_hint = status_hint
        super().__init__(message)


class LocalProtocolError(ProtocolError):
    """We were asked to produce something that would break the protocol."""


class RemoteProtocolError(ProtocolError):
    """The peer sent something that breaks the protocol."""


class WebSocketError(WsgateError):
    """A WebSocket protocol violation; close the connection with `close_code`."""

    def __init__(self, message: str, close_code: int = 1002):
        self.message = message
        self.close_code = close_code
        super().__init__(message)


class UpstreamError(WsgateError):
    """Talking to an upstream failed.

    `kind` is a FailureKind name (error, timeout, invalid_header, http_502 ...),
    `source` is "upstream", "downstream" or "internal", `retryable` says whether
    proxy_next_upstream may try another peer.
    """

    def __init__(self, message: str, kind: str = "error", source: str = "upstream",
                 retryable: bool = True):
        self.message = message
        self.kind = kind
        self.source = source
        self.retryable = retryable
        super().__init__(message)
