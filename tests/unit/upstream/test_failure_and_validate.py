"""proxy_next_upstream masks, the retry decision, and server-parameter checks."""

from __future__ import annotations

import pytest

from wsgate.upstream import (
    BalancerParams, FailureKind, Outcome, ServerSpec, check_args,
    effective_next_upstream, failure_status, parse_next_upstream, peer_outcome,
    should_retry, validate)
from wsgate.upstream.failure import NextUpstreamError


def test_mask_values_are_nginx_bits() -> None:
    mask, warnings = parse_next_upstream(["error", "timeout", "http_502"])
    assert mask == 0x1 | 0x2 | 0x4 | 0x20 and warnings == []
    assert effective_next_upstream(None) == 0x7
    off, _ = parse_next_upstream(["error", "off"])
    assert effective_next_upstream(off) == 0x80000001


def test_mask_errors_and_warnings_in_nginx_words() -> None:
    with pytest.raises(NextUpstreamError, match='invalid value "http_418"'):
        parse_next_upstream(["http_418"])
    mask, warnings = parse_next_upstream(["ERROR", "error"])
    assert mask == 0x3 and warnings == ['duplicate value "error"']


def retry(kind: FailureKind, tokens: list[str], sent: bool = False,
          idempotent: bool = True, done: int = 0, budget: int = 3,
          elapsed: float = 0.0, max_time: float = 0.0) -> bool:
    mask = effective_next_upstream(parse_next_upstream(tokens)[0] if tokens else None)
    return should_retry(kind, mask, sent, idempotent, done, budget, elapsed, max_time)


def test_default_retries_error_and_timeout_only() -> None:
    assert retry(FailureKind.ERROR, [])
    assert retry(FailureKind.TIMEOUT, [])
    assert not retry(FailureKind.HTTP_502, [])
    assert retry(FailureKind.HTTP_502, ["http_502"])
    assert not retry(FailureKind.ERROR, ["off"])


def test_sent_non_idempotent_needs_the_token() -> None:
    assert not retry(FailureKind.ERROR, [], sent=True, idempotent=False)
    assert retry(FailureKind.ERROR, ["error", "non_idempotent"], sent=True,
                 idempotent=False)
    assert retry(FailureKind.ERROR, [], sent=True, idempotent=True)
    assert retry(FailureKind.ERROR, [], sent=False, idempotent=False)


def test_tries_and_time_limits() -> None:
    assert not retry(FailureKind.ERROR, [], done=3, budget=3)
    assert retry(FailureKind.ERROR, [], done=2, budget=3)
    assert not retry(FailureKind.ERROR, [], elapsed=5.0, max_time=5.0)
    assert retry(FailureKind.ERROR, [], elapsed=4.9, max_time=5.0)


def test_outcome_and_status() -> None:
    assert peer_outcome(FailureKind.HTTP_404) is Outcome.NEXT
    assert peer_outcome(FailureKind.HTTP_403) is Outcome.NEXT
    assert peer_outcome(FailureKind.HTTP_500) is Outcome.FAILED
    assert failure_status(FailureKind.TIMEOUT) == 504
    assert failure_status(FailureKind.ERROR) == 502
    assert failure_status(FailureKind.NOLIVE) == 502


def spec(name: str, **kw: object) -> ServerSpec:
    return ServerSpec(name=name, addrs=[(name, (name, 80))], **kw)  # type: ignore[arg-type]


BACKUP = spec("b", backup=True, params=frozenset({"backup"}))


@pytest.mark.parametrize("method,args", [
    ("ip_hash", ()), ("hash", ("$x",)), ("hash", ("$x", "consistent")),
    ("random", ()), ("random", ("two",))])
def test_methods_reject_backup_written_after_them(method: str, args: tuple[str, ...]) -> None:
    params = BalancerParams(method, args)
    assert validate(params, [spec("a"), BACKUP], method_index=0) == [
        ('balancing method does not support parameter "backup"', 1)]
    assert validate(params, [spec("a"), BACKUP], method_index=2) == []


def test_round_robin_and_least_conn_accept_backup() -> None:
    for params in (BalancerParams(), BalancerParams("least_conn")):
        assert validate(params, [spec("a"), BACKUP]) == []


def test_no_primary_servers() -> None:
    assert validate(BalancerParams(), [BACKUP], upstream="u") == [
        ('no servers in upstream "u"', None)]


def test_directive_arguments() -> None:
    assert check_args(BalancerParams("hash", ("$x", "ketama"))) == 'invalid parameter "ketama"'
    assert check_args(BalancerParams("random", ("three",))) == 'invalid parameter "three"'
    assert check_args(BalancerParams("random", ("two", "rr"))) == 'invalid parameter "rr"'
    assert check_args(BalancerParams("random", ("two", "least_conn"))) is None
