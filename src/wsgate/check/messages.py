"""Words for the findings of validate.py: nginx's message, plus what to write instead.

Each function takes the statement (and nginx's message where there is one) and
returns (message, fix). Messages keep nginx's wording where nginx has one, so a
user can match them with `nginx -t` output; fixes are text to write, or a short
instruction when the fix is to delete or move something.
"""

from __future__ import annotations

import difflib

from wsgate.config.directives import (DIRECTIVES, EVENTS, HTTP, LOC, MAIN, SRV, UPS,
                                      find_form)
from wsgate.config.lexer import Statement

__all__ = ["syntax_fix", "wsgate_only", "placeholder", "unknown", "classify",
           "map_entry", "CONTEXT_NAMES"]

CONTEXT_NAMES = {MAIN: "the main context", EVENTS: "events {}", HTTP: "http {}",
                 SRV: "server {}", LOC: "location {}", UPS: "upstream {}",
                 "server_if": "if {} in server", "location_if": "if {} in location",
                 "limit_except": "limit_except {}"}

# What an article's "..." stands for, by the block it is in.
_PLACEHOLDER_FIX = {
    SRV: "listen 80; server_name example.com;",
    LOC: "proxy_pass http://127.0.0.1:3000;",
    UPS: "server 127.0.0.1:3000;",
    HTTP: "delete it, or write the server {} blocks it stands for",
}

_WEBSOCKET_ON_FOR_NGINX = ("proxy_http_version 1.1; proxy_set_header Upgrade $http_upgrade; "
                           "proxy_set_header Connection $connection_upgrade;")


def syntax_fix(message: str) -> str:
    if message.startswith("unexpected end of file"):
        return "close every block with `}` and end every directive with `;`"
    if message == 'unexpected "}"':
        return "delete this `}`, or end the directive before it with `;`"
    if "terminating" in message:
        return "close the quoted string"
    if message in ('unexpected ";"', 'unexpected "{"'):
        return "a directive name is missing before it, or delete it"
    return "separate words with spaces and end the directive with `;`"


def wsgate_only(stmt: Statement) -> tuple[str, str]:
    msg = (f'"{stmt.name}" is a wsgate directive: real nginx refuses this line '
           f'(unknown directive "{stmt.name}")')
    if stmt.name == "websocket":
        return msg, f"for nginx, write instead: {_WEBSOCKET_ON_FOR_NGINX}"
    return msg, "delete this line before using the file with nginx"


def placeholder(stmt: Statement, ctx: str, swallowed: Statement | None) -> tuple[str, str]:
    msg = f'"{stmt.name}" is a placeholder from an article, not a directive'
    if swallowed is not None:
        msg += (f'; with no ";" after it, nginx reads "{stmt.name} {swallowed.name} '
                f'{" ".join(swallowed.args)}" as one unknown directive')
    else:
        msg += f' (nginx: unknown directive "{stmt.name}")'
    fix = _PLACEHOLDER_FIX.get(ctx, "delete it")
    if swallowed is not None and not fix.startswith("delete"):
        fix += f" (each on its own line, before `{swallowed.name}`)"
    return msg, fix


def unknown(stmt: Statement, ctx: str, swallowed: Statement | None) -> tuple[str, str]:
    msg = f'unknown directive "{stmt.name}"'
    allowed = [n for n, d in DIRECTIVES.items() if find_form(d, ctx) is not None]
    close = difflib.get_close_matches(stmt.name, allowed, n=1, cutoff=0.75)
    if close:
        return msg, f"{close[0]} {' '.join(stmt.args)};".replace(" ;", ";")
    if swallowed is not None:
        return msg, f'end the line before "{swallowed.name}" with `;`, or delete it'
    return msg, "delete it, or check the spelling"


def _arity_words(arity: str) -> str:
    words = {"NOARGS": "no arguments", "FLAG": "`on` or `off`", "1MORE": "1 or more",
             "2MORE": "2 or more", "ANY": "any number of"}
    if arity in words:
        return words[arity]
    counts = arity[4:] if arity.startswith("TAKE") else arity
    return " or ".join(counts) + " argument" + ("" if counts == "1" else "s")


def _contexts(name: str) -> str:
    order = (MAIN, EVENTS, HTTP, SRV, LOC, UPS)
    found = DIRECTIVES[name].contexts
    return ", ".join(CONTEXT_NAMES[c] for c in order if c in found)


def classify(stmt: Statement, ctx: str, message: str) -> tuple[str, str, str]:
    """(rule, message, fix) for an error nginx's generic validator reports."""
    name = stmt.name
    if message.endswith("is not allowed here"):
        return ("WS005", f"{message} (in {CONTEXT_NAMES.get(ctx, ctx)})",
                f"move it into {_contexts(name)}")
    if message.endswith("is not supported by wsgate"):
        return "WS042", message, "remove it to run this file under wsgate"
    if message.startswith("invalid number of arguments"):
        form = find_form(DIRECTIVES[name], ctx)
        arity = form.arity if form else DIRECTIVES[name].arity
        return "WS006", message, f'"{name}" takes {_arity_words(arity)}'
    if "is not terminated by" in message:
        return "WS006", message, f"{' '.join(stmt.words)};"
    if "has no opening" in message:
        return "WS006", message, f"{' '.join(stmt.words)} {{ ... }}"
    if "is duplicate" in message or message.startswith("duplicate"):
        return "WS006", message, "keep one of them"
    return "WS006", message, f"correct the value of `{name}`"


def map_entry(stmt: Statement, item: Statement, message: str) -> tuple[str, str]:
    words = " ".join(item.words) if item.name else "''"
    msg = f'{message}: the entry "{words};" in "map {" ".join(stmt.args)}"'
    if len(item.words) == 1:
        msg += " has a key but no value"
        has_empty = any(i.name == "" and len(i.args) == 1 for i in stmt.block or ())
        if stmt.args and stmt.args[0].lower() == "$http_upgrade" and not has_empty:
            return msg, "'' close;"
        return msg, f"delete the stray `{words};` (every entry is `KEY VALUE;`)"
    return msg, "write each entry as `KEY VALUE;`"
