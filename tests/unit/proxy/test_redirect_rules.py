"""proxy_redirect rules (config/redirect.py): default pairs, string and regex rules,
Refresh's url= part, off."""

from __future__ import annotations

import re
from types import SimpleNamespace
from typing import Any

from wsgate.config.redirect import DEFAULT, OFF, REGEX, STRING, Redirect, \
    effective_rules, refresh_prefix, rewrite_value


class T:
    """A stand-in template: renders `text` with `{name}` from the context dict."""

    def __init__(self, text: str) -> None:
        self.text = text


def apply(rules: tuple[Redirect, ...] | None, value: str, *, pp: Any = None,
          name: str = "/loc/", refresh: bool = False,
          variables: dict[str, str] | None = None) -> str:
    variables = dict(variables or {})
    pairs = effective_rules(rules, pp, name)

    def render(t: T) -> str:
        return re.sub(r"\$(\d)", lambda m: variables.get(m.group(1), ""),
                      t.text.format(**variables))

    def captures(m: re.Match[str]) -> None:
        for i, g in enumerate(m.groups(), 1):
            variables[str(i)] = g or ""

    prefix = refresh_prefix(value) if refresh else 0
    assert prefix is not None
    return rewrite_value(pairs, value, prefix, render, captures)


PP = SimpleNamespace(template=None, url="http://b:81/x/", uri="/x/")
PP_NO_URI = SimpleNamespace(template=None, url="http://b:81", uri=None)


def test_implicit_default() -> None:
    assert apply(None, "http://b:81/x/a", pp=PP) == "/loc/a"
    assert apply(None, "http://b:81/a", pp=PP_NO_URI) == "/a"
    assert apply(None, "http://other/a", pp=PP) == "http://other/a"


def test_default_with_variables_in_proxy_pass_does_nothing() -> None:
    pp = SimpleNamespace(template=object(), url="http://$h", uri=None)
    assert apply((Redirect(DEFAULT),), "http://h/a", pp=pp) == "http://h/a"


def test_string_rule_with_variables_first_match_wins() -> None:
    rules = (Redirect(STRING, T("http://b/{v}/"), T("/new/")),
             Redirect(STRING, T("http://b/"), T("/other/")))
    assert apply(rules, "http://b/var/z", variables={"v": "var"}) == "/new/z"
    assert apply(rules, "http://b/q", variables={"v": "var"}) == "/other/q"


def test_regex_rule_replaces_whole_value_with_captures() -> None:
    rules = (Redirect(REGEX, re.compile(r"^(.+)/regex_w_([^/]+)"), T("$1/$2/t.html")),)
    assert apply(rules, "http://b/regex_w_cap/t.html") == "http://b/cap/t.html"
    caseless = (Redirect(REGEX, re.compile("re+gexp?", re.I), T("/r.html")),)
    assert apply(caseless, "http://b/ReeegEX/x") == "/r.html"


def test_refresh_rewrites_after_url() -> None:
    rules = (Redirect(STRING, T("http://b/"), T("/")),)
    assert apply(rules, "7; url=http://b/a", refresh=True) == "7; url=/a"
    assert refresh_prefix("7") is None


def test_off_disables_everything() -> None:
    rules = (Redirect(OFF),)
    assert apply(rules, "http://b:81/x/a", pp=PP) == "http://b:81/x/a"
