"""Findings -> text (compiler style, optional colour) or JSON.

Text: `path:line:col: severity: message [WSnnn]`, then `    fix: TEXT` when there is
a fix, then one summary line. A finding about a whole file (line 0) prints as
`path: severity: ...`. JSON: an array of objects with file, line, col, severity,
rule, message, fix.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from wsgate.check.findings import Finding, summary

__all__ = ["render_text", "render_json"]

_COLOURS = {"error": "\033[1;31m", "warning": "\033[1;35m", "note": "\033[1;36m"}
_BOLD, _RESET, _GREEN = "\033[1m", "\033[0m", "\033[32m"


def _where(f: Finding) -> str:
    return f"{f.file}:{f.line}:{f.col}" if f.line else f.file


def _line(f: Finding, colour: bool) -> str:
    if not colour:
        return f"{_where(f)}: {f.severity}: {f.message} [{f.rule}]"
    sev = f"{_COLOURS[f.severity]}{f.severity}:{_RESET}"
    return f"{_BOLD}{_where(f)}:{_RESET} {sev} {f.message} [{f.rule}]"


def render_text(findings: Sequence[Finding], colour: bool = False) -> str:
    out = []
    for f in findings:
        out.append(_line(f, colour))
        if f.fix:
            fix = f"{_GREEN}fix:{_RESET}" if colour else "fix:"
            out.append(f"    {fix} {f.fix}")
    out.append(summary(findings))
    return "\n".join(out) + "\n"


def render_json(findings: Sequence[Finding]) -> str:
    return json.dumps([f.as_dict() for f in findings], indent=2) + "\n"
