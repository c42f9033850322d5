"""One file in, every Finding out: the order in which `check` runs its layers."""

from __future__ import annotations

import os
import tempfile

from wsgate.check.breakers import check_breakers
from wsgate.check.findings import ERROR, Finding, sort_findings
from wsgate.check.rules import finding
from wsgate.check.scope import sites
from wsgate.check.syntax import parse_recovering, read_file
from wsgate.check.validate import CheckBuilder, context_of
from wsgate.check.weakeners import check_weakeners
from wsgate.check.xref import cross_check
from wsgate.config.build import Level
from wsgate.config.directives import EVENTS, HTTP, LOC, MAIN, SRV
from wsgate.config.lexer import Statement
from wsgate.config.merge import build_config
from wsgate.errors import ConfigError

__all__ = ["check_file", "check_paths", "check_text"]



def check_paths(paths: list[str]) -> tuple[list[Finding], list[str]]:
    """Findings of every file (each checked on its own) and the files read, in order."""
    findings: list[Finding] = []
    files: list[str] = []
    for path in paths:
        found, read = _check(os.path.abspath(path), None)
        findings += found
        files += [f for f in read if f not in files]
    return sort_findings(findings, files), files


def check_file(path: str) -> list[Finding]:
    return check_paths([path])[0]


def check_text(text: str, name: str | None = None) -> list[Finding]:
    """Check config text as if it were the file `name` (default: a temporary name)."""
    path = os.path.abspath(name or os.path.join(tempfile.gettempdir(), "wsgate-check.conf"))
    found, read = _check(path, text)
    return sort_findings(found, read)


def _check(path: str, text: str | None) -> tuple[list[Finding], list[str]]:
    try:
        stmts = read_file(path) if text is None else parse_recovering(text, path)
    except ConfigError as exc:
        return [finding("WS013", (path, 0, 0), exc.message, "check the path")], [path]
    b = CheckBuilder(path)
    b.files.append(path)
    b.include_stack.append(os.path.realpath(path))
    ctx = context_of(stmts)
    _walk(b, stmts, ctx, path)
    found = b.findings + cross_check(b, ctx == MAIN)
    proxies = sites(b)
    found += check_breakers(b, proxies) + check_weakeners(b, proxies)
    if not any(f.severity == ERROR for f in found):
        found += _final_test(b, path)
    return found, list(b.files)


def _walk(b: CheckBuilder, stmts: list[Statement], ctx: str, path: str) -> None:
    """Walk a main file, or a fragment inside the blocks it belongs in."""
    if ctx == MAIN:
        b.walk(stmts, MAIN, b.main)
        return
    b.http = Level(HTTP, path, 0)
    b.events = Level(EVENTS, path, 0)
    level = b.http
    if ctx in (SRV, LOC):
        level = Level(SRV, path, 0)
        level.extra.update(listens=[], server_names=[], locations=[])
        b.http.children.append(level)
    if ctx == LOC:
        loc = Level(LOC, path, 0)
        loc.extra.update(kind="prefix", pattern="", locations=[], regex=None)
        level.extra["locations"].append(loc)
        level = loc
    b.walk(stmts, ctx, level)


def _final_test(b: CheckBuilder, path: str) -> list[Finding]:
    """Whatever else nginx's post-parse checks reject (merge, default servers ...)."""
    try:
        build_config(b, path)
    except ConfigError as exc:
        pos = (exc.file or path, exc.line or 0, exc.col or 0)
        return [finding("WS006", pos, exc.message, "see nginx -t")]
    return []
