"""A minimal ngx_http_ssi_module: `ssi on;` for text/html responses.

Two halves:
  * pure: `parse(body)` splits a page into literal bytes and `Command`s
    (`<!--# name param="value" ... -->`), and the small expression and
    variable-interpolation rules of nginx's SSI (`$name`, `${name}`, `if expr`);
  * engine: `SsiPage.render()` walks the parts, running `include virtual` as a
    subrequest through the same routing (via the `Subrequests` hooks the
    downstream provides); a subrequest never upgrades: a 101 to it is nginx's
    "connection upgrade in subrequest" error, which ends the main response.

Commands: include (virtual|file, set), echo (var, default, encoding), set (var,
value), config (errmsg), if/elif/else/endif (expr). Anything else is an error:
the page gets `errmsg` (unless ssi_silent_errors) as in nginx.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field
from typing import Awaitable, Callable, Protocol
from urllib.parse import quote

__all__ = ["Command", "parse", "SsiPage", "Subrequests", "SubrequestUpgrade",
           "DEFAULT_ERRMSG", "MAX_DEPTH"]

DEFAULT_ERRMSG = b"[an error occurred while processing the directive]"
MAX_DEPTH = 50          # nginx's NGX_HTTP_MAX_SUBREQUESTS bounds nesting too

_COMMAND = re.compile(
    rb"<!--#\s*([A-Za-z]+)((?:\s+[A-Za-z_]+\s*=\s*(?:\"(?:[^\"\\]|\\.)*\"|'(?:[^'\\]|\\.)*'))*)"
    rb"\s*-->", re.S)
_PARAM = re.compile(rb"([A-Za-z_]+)\s*=\s*(?:\"((?:[^\"\\]|\\.)*)\"|'((?:[^'\\]|\\.)*)')", re.S)
_VAR = re.compile(r"\$(?:\{([A-Za-z0-9_]+)\}|([A-Za-z0-9_]+))")


@dataclass(frozen=True, slots=True)
class Command:
    """One `<!--# name params -->` element."""

    name: str
    params: dict[str, str] = field(default_factory=dict)


def parse(body: bytes) -> list[bytes | Command]:
    """Literal pieces and commands, in order (bad commands stay literal text)."""
    out: list[bytes | Command] = []
    pos = 0
    for m in _COMMAND.finditer(body):
        if m.start() > pos:
            out.append(body[pos:m.start()])
        params = {p.group(1).decode("latin-1").lower():
                  _unescape((p.group(2) if p.group(2) is not None else p.group(3)))
                  for p in _PARAM.finditer(m.group(2))}
        out.append(Command(m.group(1).decode("latin-1").lower(), params))
        pos = m.end()
    if pos < len(body):
        out.append(body[pos:])
    return out


def _unescape(raw: bytes) -> str:
    return re.sub(rb"\\(.)", rb"\1", raw).decode("latin-1")


class SubrequestUpgrade(Exception):
    """A subrequest's upstream answered 101 (nginx: connection upgrade in subrequest)."""


class Subrequests(Protocol):
    """What the downstream provides to a page being rendered."""

    def variable(self, name: str) -> str | None: ...
    def subrequest(self, uri: str) -> Awaitable[tuple[int, bytes]]: ...
    def log(self, level: str, message: str) -> None: ...


@dataclass
class _Cond:
    """One if/elif/else/endif block: is output on, was a branch taken."""

    active: bool
    taken: bool
    parent_active: bool


class SsiPage:
    """Renders parsed parts; `write` gets each output piece as it is ready."""

    def __init__(self, hooks: Subrequests, write: Callable[[bytes], None], *,
                 silent: bool = False) -> None:
        self.hooks = hooks
        self.write = write
        self.silent = silent
        self.errmsg = DEFAULT_ERRMSG
        self.vars: dict[str, str] = {}
        self.conds: list[_Cond] = []

    @property
    def output_on(self) -> bool:
        return not self.conds or self.conds[-1].active

    async def render(self, parts: list[bytes | Command]) -> None:
        for part in parts:
            if isinstance(part, bytes):
                if self.output_on:
                    self.write(part)
            elif part.name in ("if", "elif", "else", "endif"):
                self._conditional(part)
            elif self.output_on:
                await self._command(part)

    async def _command(self, cmd: Command) -> None:
        try:
            if cmd.name == "include":
                await self._include(cmd.params)
            elif cmd.name == "echo":
                self._echo(cmd.params)
            elif cmd.name == "set":
                self._set(cmd.params)
            elif cmd.name == "config":
                if "errmsg" in cmd.params:
                    self.errmsg = cmd.params["errmsg"].encode("latin-1")
            else:
                raise ValueError(f'unknown SSI command "{cmd.name}"')
        except (ValueError, KeyError) as exc:
            self.hooks.log("error", str(exc))
            self._error()

    def _error(self) -> None:
        if not self.silent:
            self.write(self.errmsg)

    # -- commands ------------------------------------------------------------------

    async def _include(self, params: dict[str, str]) -> None:
        target = params.get("virtual") or params.get("file")
        if not target:
            raise ValueError('no parameter "virtual" or "file" in "include" SSI command')
        uri = self.interpolate(target)
        if "file" in params and "virtual" not in params and not uri.startswith("/"):
            uri = "/" + uri
        status, body = await self.hooks.subrequest(uri)
        if status >= 300 and status != 304 and not body:
            self._error()
            return
        if "set" in params:
            self.vars[params["set"]] = body.decode("latin-1")
        else:
            self.write(body)

    def _echo(self, params: dict[str, str]) -> None:
        if "var" not in params:
            raise ValueError('no parameter "var" in "echo" SSI command')
        value = self.lookup(params["var"])
        if value is None:
            value = self.interpolate(params["default"]) if "default" in params \
                else "(none)"
        encoding = params.get("encoding", "entity")
        if encoding == "url":
            value = quote(value, safe="/:@&=+$,;~!*'()")
        elif encoding == "entity":
            value = html.escape(value, quote=True).replace("&#x27;", "'")
        elif encoding != "none":
            raise ValueError(f'unknown encoding "{encoding}" in the "echo" command')
        self.write(value.encode("latin-1", "replace"))

    def _set(self, params: dict[str, str]) -> None:
        if "var" not in params or "value" not in params:
            raise ValueError('no parameter "var" or "value" in "set" SSI command')
        self.vars[params["var"]] = self.interpolate(params["value"])

    # -- conditionals --------------------------------------------------------------

    def _conditional(self, cmd: Command) -> None:
        if cmd.name == "if":
            outer = self.output_on
            ok = outer and self.evaluate(cmd.params.get("expr", ""))
            self.conds.append(_Cond(active=ok, taken=ok, parent_active=outer))
            return
        if not self.conds:
            self.hooks.log("error", f'unexpected "{cmd.name}" SSI command')
            self._error()
            return
        cond = self.conds[-1]
        if cmd.name == "endif":
            self.conds.pop()
        elif cmd.name == "else":
            cond.active = cond.parent_active and not cond.taken
            cond.taken = True
        else:   # elif
            ok = cond.parent_active and not cond.taken and \
                self.evaluate(cmd.params.get("expr", ""))
            cond.active, cond.taken = ok, cond.taken or ok

    def evaluate(self, expr: str) -> bool:
        """nginx's SSI expressions: `text`, `!text`, `a = b`, `a != b`, `a = /re/`."""
        expr = expr.strip()
        m = re.fullmatch(r"(.*?)\s*(!?=)\s*(.*)", expr, re.S)
        if m is None:
            negate = expr.startswith("!")
            value = self.interpolate(expr[1:].strip() if negate else expr)
            return bool(value) != negate
        left = self.interpolate(m.group(1))
        right = m.group(3)
        if len(right) >= 2 and right.startswith("/") and right.endswith("/"):
            try:
                found = re.search(right[1:-1], left) is not None
            except re.error as exc:
                raise ValueError(f"invalid regex in SSI expression: {exc}") from None
        else:
            found = left == self.interpolate(right)
        return found if m.group(2) == "=" else not found

    # -- variables -----------------------------------------------------------------

    def lookup(self, name: str) -> str | None:
        if name in self.vars:
            return self.vars[name]
        return self.hooks.variable(name)

    def interpolate(self, text: str) -> str:
        def value(m: re.Match[str]) -> str:
            return self.lookup(m.group(1) or m.group(2)) or ""
        return _VAR.sub(value, text)
