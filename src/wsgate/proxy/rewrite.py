"""ngx_http_rewrite_module at run time: run one level's script (config/script.py).

The downstream connection calls `run_script` in the server-rewrite phase with the
server's script and in the location-rewrite phase with the location's; the result
says whether a response must be sent (`return`, a redirecting `rewrite`, an empty
rewritten URI -> 500) or whether the URI changed so that nginx's "find the location
again" loop must run (at most 10 times, then 500 "rewrite or internal redirection
cycle"). `if` switches the request to the block's conf (`ex.location`), as nginx's
`r->loc_conf = if_code->loc_conf`. File tests (-f, -d, -e, -x) stat the disk, so
this module lives in the proxy layer, not in the sans-IO config package.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from typing import Any, Callable

from wsgate.config import script
from wsgate.proxy.context import Exchange

__all__ = ["ScriptResult", "run_script", "MAX_URI_CHANGES"]

MAX_URI_CHANGES = 10          # NGX_HTTP_MAX_URI_CHANGES

Log = Callable[[str, str], None]


@dataclass(slots=True)
class ScriptResult:
    """What a script run decided."""

    status: int = 0              # non-zero: answer with this status now
    text: Any = None             # `return`'s Template (body or URL)
    location: str | None = None  # a redirecting rewrite's target
    uri_changed: bool = False    # find the location again
    stopped: bool = False        # break / last / return ended the script

    @property
    def respond(self) -> bool:
        return self.status != 0


def run_script(ops: Any, ex: Exchange, log: Log) -> ScriptResult:
    """Run `ops` in order against the request (see the module docstring)."""
    result = ScriptResult()
    _run(ops or (), ex, log, result)
    return result


def _run(ops: Any, ex: Exchange, log: Log, result: ScriptResult) -> None:
    for op in ops:
        if isinstance(op, script.Rewrite):
            _rewrite(op, ex, log, result)
        elif isinstance(op, script.Return):
            result.status, result.text, result.stopped = op.code, op.text, True
        elif isinstance(op, script.SetVar):
            _set(op, ex)
        elif isinstance(op, script.Break):
            result.stopped = True
        elif isinstance(op, script.If):
            if test(op.condition, ex):
                ex.location = op.conf
                _run(getattr(op.conf, "rewrite", None) or (), ex, log, result)
        if result.stopped:
            return


def _set(op: script.SetVar, ex: Exchange) -> None:
    value = op.value.render(ex.vars)
    if op.name == "args":
        ex.vars.args = value or None
    else:
        ex.vars.cache[script.set_key(op.name)] = value


def _rewrite(op: script.Rewrite, ex: Exchange, log: Log, result: ScriptResult) -> None:
    uri = ex.uri
    m = op.regex.search(uri)
    verbose = bool(getattr(ex.location, "rewrite_log", False))
    if m is None:
        if verbose:
            log("notice", f'"{op.source}" does not match "{uri}"')
        return
    if verbose:
        log("notice", f'"{op.source}" matches "{uri}"')
    ex.vars.set_captures(m)
    new_uri = op.uri.render(ex.vars)
    new_args = op.args.render(ex.vars) if op.args is not None else None
    old_args = ex.vars.args
    if op.redirect:
        _redirect(op, new_uri, new_args, old_args, result)
        return
    if new_args is not None:
        if op.add_args and old_args:
            new_args = f"{new_args}&{old_args}"
        ex.vars.args = new_args
    elif not op.add_args:
        ex.vars.args = None
    if verbose:
        log("notice", f'rewritten data: "{new_uri}", args: "{ex.vars.args or ""}"')
    if not new_uri:
        log("error", "the rewritten URI has a zero length")
        result.status, result.stopped = 500, True
        return
    ex.uri = ex.vars.uri = new_uri
    ex.extra["uri_changed"] = True
    if op.flag == "break":
        ex.extra["rewrite_break"] = True
        result.stopped = True
        return
    result.uri_changed = True
    result.stopped = op.flag == "last"


def _redirect(op: script.Rewrite, uri: str, args: str | None, old: str | None,
              result: ScriptResult) -> None:
    target = uri if args is None else f"{uri}?{args}"
    if op.add_args and old:
        target += ("&" if args is not None else "?") + old
    result.status, result.location, result.stopped = op.status, target, True


def test(cond: script.Condition, ex: Exchange) -> bool:
    """Evaluate an `if` condition (regex matches set the captures)."""
    value = cond.subject.render(ex.vars)
    if cond.kind == "var":
        return value not in ("", "0")
    if cond.kind == "eq":
        return (value == cond.operand.render(ex.vars)) != cond.negate
    if cond.kind == "regex":
        m = cond.operand.search(value)
        if m is not None:
            ex.vars.set_captures(m)
        return (m is not None) != cond.negate
    return _file_test(cond.operand, value) != cond.negate


def _file_test(kind: str, path: str) -> bool:
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return False
    if kind == "-f":
        return stat.S_ISREG(st.st_mode)
    if kind == "-d":
        return stat.S_ISDIR(st.st_mode)
    if kind == "-x":
        return bool(st.st_mode & stat.S_IXUSR)
    return True                       # -e: file, directory or link
