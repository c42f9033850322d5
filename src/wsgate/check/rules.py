"""The rule registry: every id `wsgate check` can report, with its usual severity.

docs/check-rules.md documents each row (what, why, example, fix); a unit test keeps
the two in step. A few rules raise or lower the severity of one finding (for
example WS020-WS022 are warnings on locations that do not look like WebSocket
endpoints); the severity here is the usual one.
"""

from __future__ import annotations

from dataclasses import dataclass

from wsgate.check.findings import ERROR, NOTE, WARNING, Finding

__all__ = ["Rule", "RULES", "finding", "Position"]


@dataclass(frozen=True, slots=True)
class Rule:
    id: str
    severity: str
    title: str


_ROWS = (
    # --- what nginx -t rejects (all of them, not only the first) ---------------------
    ("WS001", ERROR, "syntax error"),
    ("WS002", ERROR, "unknown directive"),
    ("WS003", ERROR, "placeholder left from an article (`...`)"),
    ("WS004", ERROR, "upstream entry without `server`"),
    ("WS005", ERROR, "directive not allowed in this context"),
    ("WS006", ERROR, "invalid directive (arguments, value, duplicate, terminator)"),
    ("WS007", ERROR, "malformed `map` entry"),
    ("WS008", ERROR, "upstream with no servers"),
    ("WS009", ERROR, "`proxy_pass` names no defined upstream"),
    ("WS010", NOTE, "`proxy_pass` host resolved only at startup"),
    ("WS011", ERROR, "unknown variable"),
    ("WS012", ERROR, "no `events` section"),
    ("WS013", ERROR, "included file cannot be read"),
    # --- WebSocket breakers -------------------------------------------------------------
    ("WS020", ERROR, "`Upgrade` not passed to the upstream"),
    ("WS021", ERROR, "`Connection` not passed to the upstream"),
    ("WS022", ERROR, "`proxy_http_version` below 1.1"),
    ("WS023", ERROR, "`$connection_upgrade` used but never mapped"),
    ("WS024", WARNING, "`map $http_upgrade` without a `''` entry"),
    ("WS025", WARNING, "`proxy_set_header` discarded by inheritance"),
    # --- weakeners ----------------------------------------------------------------------
    ("WS030", NOTE, "`Connection \"upgrade\"` forced on every request"),
    ("WS031", WARNING, "`proxy_read_timeout` shorter than common heartbeats"),
    ("WS032", WARNING, "`proxy_buffering` on in front of a streaming endpoint"),
    ("WS033", NOTE, "Socket.IO kept sticky by client address (`ip_hash`)"),
    ("WS034", NOTE, "long-lived WebSocket backends balanced round robin"),
    ("WS035", NOTE, "`Host` not forwarded to a WebSocket backend"),
    ("WS036", ERROR, "Socket.IO long-polling without sticky sessions"),
    # --- wsgate and nginx differ --------------------------------------------------------
    ("WS040", NOTE, "wsgate-only directive (real nginx refuses it)"),
    ("WS041", WARNING, "directive ignored by wsgate"),
    ("WS042", ERROR, "directive not supported by wsgate"),
)

RULES: dict[str, Rule] = {r[0]: Rule(*r) for r in _ROWS}

# (file, line, col): where a finding points.
Position = tuple[str, int, int]


def finding(rule: str, pos: Position, message: str, fix: str | None = None,
            severity: str | None = None) -> Finding:
    """A Finding of `rule` at `pos` (severity defaults to the rule's)."""
    file, line, col = pos
    return Finding(file, line, col, severity or RULES[rule].severity, rule, message, fix)
