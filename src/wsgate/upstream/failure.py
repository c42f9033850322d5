"""Why a try with an upstream failed, and whether nginx would try the next one.

`FailureKind` carries nginx's NGX_HTTP_UPSTREAM_FT_* bit values, so a
`proxy_next_upstream` mask parsed here is the same number nginx computes.
`should_retry` is ngx_http_upstream_next's decision; `peer_outcome` is the
state it hands to the balancer's free.
"""

from __future__ import annotations

import enum
from typing import Iterable

from wsgate.upstream.peers import Outcome

#: nginx's NGX_CONF_BITMASK_SET: marks a bitmask as explicitly configured.
BITMASK_SET = 0x1


class FailureKind(enum.IntFlag):
    """nginx's NGX_HTTP_UPSTREAM_FT_* bits (ngx_http_upstream.h)."""

    ERROR = 0x00000002
    TIMEOUT = 0x00000004
    INVALID_HEADER = 0x00000008
    HTTP_500 = 0x00000010
    HTTP_502 = 0x00000020
    HTTP_503 = 0x00000040
    HTTP_504 = 0x00000080
    HTTP_403 = 0x00000100
    HTTP_404 = 0x00000200
    HTTP_429 = 0x00000400
    UPDATING = 0x00000800
    NON_IDEMPOTENT = 0x00004000
    NOLIVE = 0x40000000
    OFF = 0x80000000


#: proxy_next_upstream's tokens, in nginx's table order.
NEXT_UPSTREAM_TOKENS: dict[str, FailureKind] = {
    "error": FailureKind.ERROR,
    "timeout": FailureKind.TIMEOUT,
    "invalid_header": FailureKind.INVALID_HEADER,
    "non_idempotent": FailureKind.NON_IDEMPOTENT,
    "http_500": FailureKind.HTTP_500,
    "http_502": FailureKind.HTTP_502,
    "http_503": FailureKind.HTTP_503,
    "http_504": FailureKind.HTTP_504,
    "http_403": FailureKind.HTTP_403,
    "http_404": FailureKind.HTTP_404,
    "http_429": FailureKind.HTTP_429,
    "updating": FailureKind.UPDATING,
    "off": FailureKind.OFF,
}

#: nginx's default when proxy_next_upstream is not set anywhere.
DEFAULT_NEXT_UPSTREAM = BITMASK_SET | FailureKind.ERROR | FailureKind.TIMEOUT

#: Status nginx answers with when it gives up after each kind of failure.
FAILURE_STATUS: dict[FailureKind, int] = {
    FailureKind.TIMEOUT: 504,
    FailureKind.HTTP_504: 504,
    FailureKind.HTTP_500: 500,
    FailureKind.HTTP_503: 503,
    FailureKind.HTTP_403: 403,
    FailureKind.HTTP_404: 404,
    FailureKind.HTTP_429: 429,
}

#: Methods nginx treats as non-idempotent (NGX_HTTP_POST|LOCK|PATCH).
NON_IDEMPOTENT_METHODS = frozenset({"POST", "LOCK", "PATCH"})


class NextUpstreamError(ValueError):
    """A bad proxy_next_upstream token; str() is nginx's message."""


def parse_next_upstream(tokens: Iterable[str]) -> tuple[int, list[str]]:
    """proxy_next_upstream's arguments to nginx's bitmask, plus warnings.

    As ngx_conf_set_bitmask_slot: tokens match case-insensitively, an unknown
    token is an error (`invalid value "x"`), a repeated one only a warning
    (`duplicate value "x"`). Apply `effective_next_upstream` after merging.
    """
    mask = BITMASK_SET
    warnings: list[str] = []
    for token in tokens:
        bit = NEXT_UPSTREAM_TOKENS.get(token.lower())
        if bit is None:
            raise NextUpstreamError(f'invalid value "{token}"')
        if mask & bit:
            warnings.append(f'duplicate value "{token}"')
        mask |= bit
    return mask, warnings


def effective_next_upstream(mask: int | None) -> int:
    """The proxy module's merge: default `error timeout`; `off` wins over all."""
    if mask is None:
        return int(DEFAULT_NEXT_UPSTREAM)
    if mask & FailureKind.OFF:
        return BITMASK_SET | int(FailureKind.OFF)
    return mask


def is_idempotent(method: str) -> bool:
    return method not in NON_IDEMPOTENT_METHODS


def peer_outcome(kind: FailureKind) -> Outcome:
    """403 and 404 move on without counting a failure against the peer."""
    if kind in (FailureKind.HTTP_403, FailureKind.HTTP_404):
        return Outcome.NEXT
    return Outcome.FAILED


def failure_status(kind: FailureKind) -> int:
    """The status of the response when nginx stops retrying after `kind`."""
    return FAILURE_STATUS.get(kind, 502)


def should_retry(kind: FailureKind, mask: int, request_sent: bool,
                 method_idempotent: bool, tries_done: int, max_tries: int,
                 elapsed: float = 0.0, max_time: float = 0.0,
                 body_unbuffered: bool = False) -> bool:
    """ngx_http_upstream_next: try the next peer after `kind`?

    `max_tries` is the request's try budget (`Pick.initial_tries`, already
    capped by proxy_next_upstream_tries); `tries_done` the tries released so
    far. `max_time` is proxy_next_upstream_timeout in seconds, 0 for none.
    """
    ft = int(kind)
    if request_sent and not method_idempotent:
        ft |= FailureKind.NON_IDEMPOTENT
    if max_tries - tries_done <= 0:
        return False
    if mask & ft != ft:
        return False
    if request_sent and body_unbuffered:
        return False
    return not (max_time and elapsed >= max_time)
