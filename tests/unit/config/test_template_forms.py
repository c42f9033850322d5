"""The compiled forms of a template (constant, one variable, literal + variable,
general) and the per-request $http_* index give the same values as the parts."""

from __future__ import annotations

import pytest

from wsgate.config.variables import VarContext, VariableTable, compile_template

HEADERS = [("Host", "h.example"), ("X-Forwarded-For", "1.1.1.1"), ("Upgrade", "websocket"),
           ("x-forwarded-for", "2.2.2.2"), ("Cookie", "a=1"), ("COOKIE", "b=2"),
           ("Dash-Name", "d"), ("dash_name", "u")]


@pytest.mark.parametrize("text, expected", [
    ("plain", "plain"),
    ("", ""),
    ("$http_upgrade", "websocket"),
    ("$http_missing", ""),
    ("pre-$http_upgrade", "pre-websocket"),
    ("$http_upgrade-post", "websocket-post"),
    ("$http_missing-post", "-post"),
    ("${uri}${args}", "/p"),
    ("a${uri}b$http_upgrade", "a/pbwebsocket"),
    ("$http_x_forwarded_for", "1.1.1.1, 2.2.2.2"),
    ("$http_cookie", "a=1; b=2"),
    ("$cookie_b", "2"),
    ("$http_dash_name", "d"),
    ("$proxy_add_x_forwarded_for", "1.1.1.1, 2.2.2.2, 10.0.0.1"),
])
def test_forms_render_as_their_parts(text: str, expected: str) -> None:
    table = VariableTable(hostname="box")
    template = compile_template(text, table)
    table.finalize()
    ctx = VarContext(uri="/p", headers=HEADERS, remote_addr="10.0.0.1")
    assert template.render(ctx) == expected
    assert template.renderer()(ctx) == expected


def test_header_index_follows_a_replaced_header_list() -> None:
    table = VariableTable(hostname="box")
    template = compile_template("$http_upgrade", table)
    table.finalize()
    ctx = VarContext(headers=[("Upgrade", "a")])
    assert template.render(ctx) == "a"
    ctx.headers = [("upgrade", "b")]
    assert template.render(ctx) == "b"
    ctx.headers = []
    assert template.render(ctx) == ""


def test_renderer_before_finalize_binds() -> None:
    table = VariableTable(hostname="box")
    template = compile_template("x$uri", table)
    assert template.renderer()(VarContext(uri="/u")) == "x/u"
