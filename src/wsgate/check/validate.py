"""Everything `nginx -t` rejects, all at once: the project's validator, recovering.

`CheckBuilder` is the loader's Builder (same table, same handlers, same wording)
with one difference: its walk does not stop at an error. Each statement is handled
on its own; an error becomes a Finding, and the walk recovers where it can do so
honestly:

* a block whose head was rejected still has its body checked (in a scratch level);
* an unknown directive that swallowed a real one (`... location /ws {`, because the
  placeholder has no `;`) is reported, then the real one is handled;
* a bare address in an `upstream` is reported, then handled as `server ADDR`;
* a bad `map` entry is reported, then the map is built without it.

It also records every statement it saw (with its context), which the cross-checks
(xref.py) and the WebSocket rules (websocket.py) read.
"""

from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass

from wsgate.check import messages
from wsgate.check.findings import Finding
from wsgate.check.rules import Position, finding
from wsgate.check.syntax import read_file
from wsgate.config import handlers  # noqa: F401  (registers the custom handlers)
from wsgate.config.build import Builder, Level
from wsgate.config.directives import (DIRECTIVES, EVENTS, HTTP, LOC, MAIN, SRV, UPS,
                                      find_form)
from wsgate.config.lexer import Statement
from wsgate.errors import ConfigError

__all__ = ["CheckBuilder", "Seen", "position"]

# The context a block directive's body is read in.
_BODY_CONTEXT = {"http": HTTP, "events": EVENTS, "server": SRV, "location": LOC,
                 "upstream": UPS}
_PLACEHOLDER = re.compile(r"^(?:\.{2,}|\u2026)$")
_ADDRESS = re.compile(r"^(?:unix:\S+|\[[0-9a-fA-F:.]+\](?::\d+)?|[\w.-]+:\d+|\d+\.\d+\.\d+\.\d+)$")


@dataclass(frozen=True, slots=True)
class Seen:
    """A statement the walk handled, with the context and level it was in."""

    stmt: Statement
    ctx: str
    level: Level
    ok: bool        # accepted by the validator (False: a finding was reported)


def position(stmt: Statement) -> Position:
    """Where a finding about `stmt` points: the start of its name."""
    return stmt.file, stmt.start_line or stmt.line, stmt.col


class CheckBuilder(Builder):
    """The validator, recovering after each error and collecting Findings."""

    def __init__(self, conf_file: str) -> None:
        conf_prefix = os.path.dirname(os.path.abspath(conf_file)) + "/"
        super().__init__(prefix=conf_prefix, conf_prefix=conf_prefix, warn=self._ignored)
        self.findings: list[Finding] = []
        self.seen: list[Seen] = []
        self._warned: list[ConfigError] = []

    def add(self, f: Finding) -> None:
        self.findings.append(f)

    # --- the walk -------------------------------------------------------------------
    def walk(self, stmts: tuple[Statement, ...] | list[Statement], ctx: str,
             level: Level) -> None:
        for stmt in stmts:
            self.check_one(stmt, ctx, level)

    def check_one(self, stmt: Statement, ctx: str, level: Level) -> None:
        if stmt.error is not None:
            self.add(finding("WS001", position(stmt), stmt.error.message,
                             messages.syntax_fix(stmt.error.message)))
            return
        self._wsgate_only(stmt)
        try:
            self.handle(stmt, ctx, level)
        except ConfigError as exc:
            self.seen.append(Seen(stmt, ctx, level, False))
            self.recover(stmt, ctx, level, exc)
        else:
            self.seen.append(Seen(stmt, ctx, level, True))
        self._flush_ignored(stmt)

    def _wsgate_only(self, stmt: Statement) -> None:
        directive = DIRECTIVES.get(stmt.name)
        if directive is not None and directive.wsgate_only:
            msg, fix = messages.wsgate_only(stmt)
            self.add(finding("WS040", position(stmt), msg, fix))

    def _ignored(self, err: ConfigError) -> None:
        self._warned.append(err)

    def _flush_ignored(self, stmt: Statement) -> None:
        for err in self._warned:
            self.add(finding("WS041", position(stmt), err.message,
                             f"delete `{stmt.name}` if you rely on it: wsgate does not do it"))
        self._warned.clear()

    # --- recovery ---------------------------------------------------------------------
    def recover(self, stmt: Statement, ctx: str, level: Level, exc: ConfigError) -> None:
        if exc.message.startswith("unknown directive"):
            self._unknown(stmt, ctx, level)
        elif stmt.name in ("map", "types") and stmt.block and exc.line != stmt.line:
            self._bad_entry(stmt, ctx, level, exc)
        else:
            self.add(self._generic(stmt, ctx, exc))
            self._body(stmt)

    def _generic(self, stmt: Statement, ctx: str, exc: ConfigError) -> Finding:
        pos = position(stmt)
        if exc.file not in (None, stmt.file) or exc.line not in (None, stmt.line):
            pos = (exc.file or stmt.file, exc.line or stmt.line, exc.col or 1)
        rule, msg, fix = messages.classify(stmt, ctx, exc.message)
        return finding(rule, pos, msg, fix)

    def _body(self, stmt: Statement) -> None:
        """Check the body of a block whose head was rejected, in a scratch level."""
        body_ctx = _BODY_CONTEXT.get(stmt.name)
        if body_ctx is None or not stmt.block:
            return
        scratch = Level(body_ctx, stmt.file, stmt.line)
        scratch.extra.update(listens=[], server_names=[], locations=[], servers=[],
                             kind="prefix", pattern="", name="", balancer=("round_robin", ()))
        self.walk(stmt.block, body_ctx, scratch)

    def _unknown(self, stmt: Statement, ctx: str, level: Level) -> None:
        swallowed = _swallowed(stmt, ctx)
        if _PLACEHOLDER.match(stmt.name):
            msg, fix = messages.placeholder(stmt, ctx, swallowed)
            self.add(finding("WS003", position(stmt), msg, fix))
        elif ctx == UPS and _ADDRESS.match(stmt.name):
            self.add(finding("WS004", position(stmt),
                             f'upstream entry "{stmt.name}" has no "server" in front of it',
                             f"server {' '.join(stmt.words)};"))
            swallowed = dataclasses.replace(stmt, name="server", args=stmt.words,
                                            arg_pos=((stmt.start_line, stmt.col),)
                                            + stmt.arg_pos)
        else:
            msg, fix = messages.unknown(stmt, ctx, swallowed)
            self.add(finding("WS002", position(stmt), msg, fix))
        if swallowed is not None:
            self.check_one(swallowed, ctx, level)

    def _bad_entry(self, stmt: Statement, ctx: str, level: Level, exc: ConfigError) -> None:
        """Report the entry nginx rejected, then build the map without it."""
        block = list(stmt.block or ())
        bad = next((i for i, item in enumerate(block) if item.line == exc.line
                    and item.file == (exc.file or stmt.file)), None)
        if bad is None:
            self.add(self._generic(stmt, ctx, exc))
            return
        rule = "WS007" if stmt.name == "map" else "WS006"
        msg, fix = messages.map_entry(stmt, block[bad], exc.message)
        self.add(finding(rule, position(block[bad]), msg, fix))
        del block[bad]
        self.check_one(dataclasses.replace(stmt, block=tuple(block)), ctx, level)

    # --- includes: read with recovery too ------------------------------------------------
    def walk_file(self, stmt: Statement, path: str, ctx: str, level: Level) -> None:
        real = os.path.realpath(path)
        if real in self.include_stack or len(self.include_stack) >= 64:
            raise self.err(stmt, f'include loop: "{path}" is already being included')
        try:
            stmts = read_file(path)
        except ConfigError as exc:
            self.add(finding("WS013", position(stmt), exc.message,
                             "fix the path, or create the file"))
            return
        self.files.append(path)
        self.include_stack.append(real)
        try:
            self.walk(stmts, ctx, level)
        finally:
            self.include_stack.pop()


def _swallowed(stmt: Statement, ctx: str) -> Statement | None:
    """The real directive hidden in an unknown one's words (`... location /ws {`)."""
    for i, word in enumerate(stmt.args):
        directive = DIRECTIVES.get(word)
        if directive is None or stmt.quoted[i + 1]:
            continue
        form = find_form(directive, ctx)
        if form is not None and form.block == stmt.block_start:
            line, col = stmt.arg_pos[i]
            return dataclasses.replace(stmt, name=word, args=stmt.args[i + 1:],
                                       arg_pos=stmt.arg_pos[i + 1:],
                                       quoted=stmt.quoted[i + 1:], start_line=line, col=col)
    return None


def context_of(stmts: list[Statement]) -> str:
    """The context a file is meant to be read in: main, or a fragment's block.

    The first of main, http, server, location in which every known top-level
    directive is allowed; failing that, the one allowing most (main on a tie).
    """
    names = [s.name for s in stmts if s.error is None and s.name in DIRECTIVES]
    best, best_score = MAIN, -1
    for ctx in (MAIN, HTTP, SRV, LOC):
        score = sum(1 for n in names if find_form(DIRECTIVES[n], ctx) is not None)
        if score == len(names):
            return ctx
        if score > best_score:
            best, best_score = ctx, score
    return best
