"""What `wsgate check` reports: one Finding per problem, and their order.

A Finding is a position (file, line, col: where the offending directive's name
starts, or where the reader stopped for a syntax error), a severity, the rule id
(documented in docs/check-rules.md), the message and the text to write instead.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["Finding", "ERROR", "WARNING", "NOTE", "SEVERITIES", "sort_findings",
           "summary", "counts"]

ERROR, WARNING, NOTE = "error", "warning", "note"
SEVERITIES = (ERROR, WARNING, NOTE)


@dataclass(frozen=True, slots=True)
class Finding:
    file: str
    line: int
    col: int
    severity: str
    rule: str
    message: str
    fix: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def sort_findings(findings: Iterable[Finding], file_order: list[str]) -> list[Finding]:
    """Deduplicated, by file (in the order files were read), line, column, rule."""
    rank = {f: i for i, f in enumerate(file_order)}
    unique = {(f.file, f.line, f.col, f.rule, f.message): f for f in findings}
    return sorted(unique.values(),
                  key=lambda f: (rank.get(f.file, len(rank)), f.file, f.line, f.col, f.rule))


def counts(findings: Iterable[Finding]) -> dict[str, int]:
    out = {s: 0 for s in SEVERITIES}
    for f in findings:
        out[f.severity] += 1
    return out


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def summary(findings: Iterable[Finding]) -> str:
    """`N errors, M warnings, K notes` (singular when 1)."""
    c = counts(findings)
    return ", ".join(_plural(c[s], s) for s in SEVERITIES)
