"""SSI: parsing pages into literals and commands, and rendering them with fake
hooks (variables from a dict, subrequests from a table)."""

from __future__ import annotations

import asyncio

import pytest

from wsgate.proxy.ssi import DEFAULT_ERRMSG, Command, SsiPage, SubrequestUpgrade, parse


@pytest.mark.parametrize("page, parts", [
    (b"plain", [b"plain"]),
    (b'a<!--# echo var="x" -->b', [b"a", Command("echo", {"var": "x"}), b"b"]),
    (b'<!--#include virtual="/u?a=1" -->', [Command("include", {"virtual": "/u?a=1"})]),
    (b"<!--# set var='v' value='it\\'s' -->", [Command("set", {"var": "v", "value": "it's"})]),
    (b'<!--# ECHO VAR="x" default="" -->', [Command("echo", {"var": "x", "default": ""})]),
    (b"<!--# echo var=x -->", [b"<!--# echo var=x -->"]),       # unquoted: left as text
    (b"<!-- not ssi -->", [b"<!-- not ssi -->"]),
    (b'<!--# endif --><!--# else -->', [Command("endif"), Command("else")]),
])
def test_parse(page: bytes, parts: list[object]) -> None:
    assert parse(page) == parts


class Hooks:
    def __init__(self, variables: dict[str, str], pages: dict[str, tuple[int, bytes]]):
        self.variables, self.pages = variables, pages
        self.logged: list[tuple[str, str]] = []
        self.requested: list[str] = []

    def variable(self, name: str) -> str | None:
        return self.variables.get(name)

    async def subrequest(self, uri: str) -> tuple[int, bytes]:
        self.requested.append(uri)
        if uri == "/upgrade":
            raise SubrequestUpgrade()
        return self.pages.get(uri, (404, b""))

    def log(self, level: str, message: str) -> None:
        self.logged.append((level, message))


def render(page: bytes, variables: dict[str, str] | None = None,
           pages: dict[str, tuple[int, bytes]] | None = None,
           silent: bool = False) -> tuple[bytes, Hooks]:
    hooks = Hooks(variables or {}, pages or {})
    out: list[bytes] = []
    asyncio.run(SsiPage(hooks, out.append, silent=silent).render(parse(page)))
    return b"".join(out), hooks


def test_include_echo_set() -> None:
    page = (b'[<!--# include virtual="/i$x" -->]<!--# set var="v" value="<$x>" -->'
            b'<!--# echo var="v" --><!--# echo var="v" encoding="none" -->'
            b'<!--# echo var="none" --><!--# echo var="none" default="d$x" -->')
    out, hooks = render(page, {"x": "1"}, {"/i1": (200, b"inc")})
    assert out == b"[inc]&lt;1&gt;<1>(none)d1"
    assert hooks.requested == ["/i1"]


def test_include_into_variable_and_errors() -> None:
    page = (b'<!--# include virtual="/a" set="got" -->{<!--# echo var="got" -->}'
            b'<!--# include virtual="/missing" --><!--# frobnicate -->')
    out, hooks = render(page, pages={"/a": (200, b"A")})
    assert out == b"{A}" + DEFAULT_ERRMSG * 2
    assert [level for level, _ in hooks.logged] == ["error"]


def test_errmsg_and_silent() -> None:
    out, _ = render(b'<!--# config errmsg="E" --><!--# include virtual="/x" -->')
    assert out == b"E"
    out, _ = render(b'<!--# include virtual="/x" -->', silent=True)
    assert out == b""


@pytest.mark.parametrize("expr, variables, taken", [
    ("$a", {"a": "1"}, "if"),
    ("$a", {}, "elif"),
    ("!$a", {}, "if"),
    ("$a = x", {"a": "x"}, "if"),
    ("$a != x", {"a": "x"}, "elif"),
    ("$a = /^ab+$/", {"a": "abbb"}, "if"),
    ("$a != /^ab+$/", {"a": "abbb"}, "elif"),
    ("${a}b = xb", {"a": "x"}, "if"),
])
def test_conditionals(expr: str, variables: dict[str, str], taken: str) -> None:
    page = (f'<!--# if expr="{expr}" -->if<!--# elif expr="1" -->elif'
            f'<!--# else -->else<!--# endif -->').encode()
    out, _ = render(page, variables)
    assert out == taken.encode()


def test_nested_conditionals_skip_commands() -> None:
    page = (b'<!--# if expr="" --><!--# if expr="1" -->no<!--# endif -->'
            b'<!--# include virtual="/never" --><!--# else -->yes<!--# endif -->')
    out, hooks = render(page)
    assert out == b"yes"
    assert hooks.requested == []


def test_subrequest_upgrade_propagates() -> None:
    with pytest.raises(SubrequestUpgrade):
        render(b'a<!--# include virtual="/upgrade" -->b')
