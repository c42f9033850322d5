"""`proxy_redirect`: rules compiled at config load and applied to an upstream's
`Location` and `Refresh` headers (ngx_http_proxy_module's rewrite handlers).

Forms (one level's lines, in order; the list is inherited whole when a level has
none):
  off / false         no rewriting here; later lines of the same level are ignored
  default             proxy_pass's URL -> the location's name (or url/ -> "/")
  STRING REPLACEMENT  both may hold variables; a prefix match of the value
  ~REGEX REPLACEMENT  (`~*` caseless) a match anywhere; the whole value is replaced
                      by REPLACEMENT, which may use the regex's captures
The first rule that matches wins. For Refresh, only the text after `url=` is seen.
Pure: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

__all__ = ["Redirect", "OFF", "DEFAULT", "rewrite_value", "effective_rules", "refresh_prefix"]

OFF, DEFAULT, STRING, REGEX = "off", "default", "string", "regex"


@dataclass(frozen=True, slots=True)
class Redirect:
    """One proxy_redirect line (see the module docstring)."""

    kind: str                   # off | default | string | regex
    pattern: Any = None         # Template (string) or compiled regex
    replacement: Any = None     # Template
    file: str = ""
    line: int = 0


def effective_rules(rules: tuple[Redirect, ...] | None, proxy_pass: Any,
                    location_name: str) -> list[tuple[Any, Any]]:
    """The (pattern, replacement) list for a location; `default` (explicit or
    implicit when the location has no rule) is made from proxy_pass."""
    if not rules:
        rules = (Redirect(DEFAULT),)
    out: list[tuple[Any, Any]] = []
    for rule in rules:
        if rule.kind == OFF:
            return []
        if rule.kind == DEFAULT:
            pair = _default_pair(proxy_pass, location_name)
            if pair is not None:
                out.append(pair)
        else:
            out.append((rule, None))
    return out


def _default_pair(pp: Any, location_name: str) -> tuple[Any, Any] | None:
    if pp is None or pp.template is not None:
        return None          # nginx rejects an explicit default with variables
    if pp.uri is not None:
        return str(pp.url), location_name
    return str(pp.url).rstrip("/") + "/", "/"


def rewrite_value(pairs: list[tuple[Any, Any]], value: str, prefix: int,
                  render: Callable[[Any], str], set_captures: Callable[[Any], None]) -> str:
    """Apply the first matching rule to value[prefix:] (prefix: after `url=`)."""
    head, text = value[:prefix], value[prefix:]
    for first, second in pairs:
        if isinstance(first, Redirect):
            new = _apply(first, text, render, set_captures)
        else:
            new = second + text[len(first):] if text.startswith(first) else None
        if new is not None:
            return head + new
    return value


def _apply(rule: Redirect, text: str, render: Callable[[Any], str],
           set_captures: Callable[[Any], None]) -> str | None:
    if rule.kind == REGEX:
        m = rule.pattern.search(text)
        if m is None:
            return None
        set_captures(m)
        return render(rule.replacement)
    pattern = render(rule.pattern)
    if not text.startswith(pattern):
        return None
    return render(rule.replacement) + text[len(pattern):]


def refresh_prefix(value: str) -> int | None:
    """Where the URL of a Refresh header starts (after `url=`), or None."""
    idx = value.lower().find("url=")
    return None if idx < 0 else idx + 4
