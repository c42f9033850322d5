"""Templates (nginx's script compiler) and every builtin variable's value."""

from __future__ import annotations

import re
import time

import pytest

from wsgate.config.variables import (UpstreamAttempt, VarContext, VariableTable,
                                     compile_template, time_iso8601, time_local,
                                     validate_host)
from wsgate.errors import ConfigError


def render(text: str, ctx: VarContext | None = None, table: VariableTable | None = None) -> str:
    table = table or VariableTable(hostname="Box")
    template = compile_template(text, table)
    table.finalize()
    return template.render(ctx or VarContext())


# ------------------------------------------------------------------ compile

@pytest.mark.parametrize("text, parts", [
    ("plain", "plain"),
    ("$uri", "/p"),
    ("${uri}x", "/px"),
    ("$uri-x", "/p-x"),
    ("a${uri}b$uri", "a/pb/p"),
    ("$URI", "/p"),           # names are case-insensitive
    ("$1", ""),               # capture without a match: empty
    ("$10", "0"),             # $1 then "0"
])
def test_compile_and_render(text: str, parts: str) -> None:
    assert render(text, VarContext(uri="/p")) == parts


def test_static_template_is_returned_as_is() -> None:
    table = VariableTable()
    template = compile_template("no vars here", table)
    assert template.is_static and template.variables == ()
    assert template.render(VarContext()) == "no vars here"


def test_variables_listed_in_order() -> None:
    template = compile_template("$a${B}$1", VariableTable())
    assert template.variables == ("a", "b", "1")
    assert not template.is_static


@pytest.mark.parametrize("text, message", [
    ("$", "invalid variable name"),
    ("a$", "invalid variable name"),
    ("$-x", "invalid variable name"),
    ("${}", "invalid variable name"),
    ("${", "invalid variable name"),
    ("${foo", 'the closing bracket in "foo" variable is missing'),
    ("${fo-o}", 'the closing bracket in "fo" variable is missing'),
])
def test_bad_syntax(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        compile_template(text, VariableTable(), file="/etc/n.conf", line=7)
    assert info.value.message == message
    assert str(info.value) == f"{message} in /etc/n.conf:7"


def test_unknown_variable_reported_at_finalize_in_order_of_first_use() -> None:
    table = VariableTable()
    compile_template("$uri $nope_one", table)
    compile_template("$nope_two $NOPE_ONE", table)
    with pytest.raises(ConfigError) as info:
        table.finalize()
    assert str(info.value) == 'unknown "nope_one" variable'


def test_late_definition_is_bound_at_finalize() -> None:
    table = VariableTable()
    template = compile_template("<$later>", table)
    table.define("later", lambda ctx: "defined after use")
    table.finalize()
    assert template.render(VarContext()) == "<defined after use>"


def test_redefining_builtin_is_refused_but_changeable_allowed() -> None:
    table = VariableTable()
    with pytest.raises(ConfigError, match='the duplicate "host" variable'):
        table.define("Host", lambda c: "x")
    table.define("args", lambda c: "mapped")
    assert render("$args", table=table) == "mapped"


def test_has() -> None:
    table = VariableTable()
    assert table.has("http_x_anything") and table.has("remote_addr")
    assert table.has("upstream_cookie_sid") and table.has("3")
    assert not table.has("connection_upgrade") and not table.has("0")


def test_defined_variables_cached_unless_not_cacheable() -> None:
    table = VariableTable()
    calls: list[int] = []
    table.define("c", lambda ctx: str(calls.append(1) or len(calls)))
    table.define("v", lambda ctx: str(calls.append(1) or len(calls)), cacheable=False)
    template = compile_template("$c$c$v$v", table)
    table.finalize()
    assert template.render(VarContext()) == "1123"


# ------------------------------------------------------------- builtin values

def full_ctx() -> VarContext:
    return VarContext(
        method="POST", request_uri="/a%20b?x=1&Y=2", uri="/a b", args="x=1&Y=2",
        server_protocol="HTTP/1.1", request_line="POST /a%20b?x=1&Y=2 HTTP/1.1",
        headers=[("Host", "WWW.Example.COM.:8080"), ("X-Multi", "one"),
                 ("x-multi", "two"), ("Cookie", "a=1; SID = s1"), ("Cookie", "b=2"),
                 ("X-Forwarded-For", "10.0.0.1"), ("X-Forwarded-For", "10.0.0.2"),
                 ("Content-Length", "12"), ("Content-Type", "text/plain"),
                 ("Upgrade", "websocket")],
        remote_addr="192.0.2.7", remote_port=51234, server_addr="127.0.0.1",
        server_port=8080, server_name="srv", scheme="https", https=True, status=101,
        start_time=1000.250, now=1003.5, bytes_sent=345, body_bytes_sent=200,
        request_length=210, connection=17, connection_requests=3,
        response_headers=[("Cache-Control", "private"), ("Cache-Control", "no-store"),
                          ("X-Out", "o1"), ("X-Out", "o2")],
        upstream_headers=[("X-Up", "u1"), ("Set-Cookie", "other=0; Path=/"),
                          ("Set-Cookie", "sid = abc; HttpOnly")],
        upstream_groups=[[UpstreamAttempt("10.0.0.1:80", 502, 0.001, None, 0.002, 100, 50, 0),
                          UpstreamAttempt("10.0.0.2:80", 101, 0.0, 0.0105, 1.5, 120, 90, 30)],
                         [UpstreamAttempt("unix:/s", 0, None, None, None)]],
        proxy_host="backend", proxy_port="80", document_root="/srv/www",
        realpath_root="/srv/real", ws_messages_in=5, ws_messages_out=7, ws_bytes_in=50,
        ws_bytes_out=70, ws_close_code=1000, ws_close_reason="bye", ws_closed_by="client",
        ws_duration=12.3456)


@pytest.mark.parametrize("name, value", [
    ("host", "www.example.com"), ("hostname", "box"), ("remote_addr", "192.0.2.7"),
    ("remote_port", "51234"), ("binary_remote_addr", "\xc0\x00\x02\x07"),
    ("server_addr", "127.0.0.1"), ("server_port", "8080"), ("server_name", "srv"),
    ("server_protocol", "HTTP/1.1"), ("scheme", "https"), ("https", "on"),
    ("request_method", "POST"), ("request_uri", "/a%20b?x=1&Y=2"), ("uri", "/a b"),
    ("document_uri", "/a b"), ("args", "x=1&Y=2"), ("query_string", "x=1&Y=2"),
    ("is_args", "?"), ("request", "POST /a%20b?x=1&Y=2 HTTP/1.1"), ("status", "101"),
    ("msec", "1003.500"), ("request_time", "3.250"), ("bytes_sent", "345"),
    ("body_bytes_sent", "200"), ("request_length", "210"), ("connection", "17"),
    ("connection_requests", "3"), ("nginx_version", "1.22.1"), ("content_length", "12"),
    ("content_type", "text/plain"), ("proxy_host", "backend"), ("proxy_port", "80"),
    ("proxy_add_x_forwarded_for", "10.0.0.1, 10.0.0.2, 192.0.2.7"),
    ("document_root", "/srv/www"), ("realpath_root", "/srv/real"),
    ("http_x_multi", "one"), ("HTTP_X_MULTI", "one"), ("http_upgrade", "websocket"),
    ("http_cookie", "a=1; SID = s1; b=2"), ("http_x_forwarded_for", "10.0.0.1, 10.0.0.2"),
    ("cookie_sid", "s1"), ("cookie_b", "2"), ("arg_x", "1"), ("arg_y", "2"),
    ("sent_http_cache_control", "private, no-store"), ("sent_http_x_out", "o1"),
    ("upstream_http_x_up", "u1"), ("upstream_cookie_sid", "abc"),
    ("upstream_addr", "10.0.0.1:80, 10.0.0.2:80 : unix:/s"),
    ("upstream_status", "502, 101 : -"),
    ("upstream_response_time", "0.002, 1.500 : -"),
    ("upstream_connect_time", "0.001, 0.000 : -"),
    ("upstream_header_time", "-, 0.010 : -"),
    ("upstream_bytes_sent", "100, 120 : 0"),
    ("upstream_bytes_received", "50, 90 : 0"),
    ("upstream_response_length", "0, 30 : 0"),
    ("ws_messages_in", "5"), ("ws_messages_out", "7"), ("ws_bytes_in", "50"),
    ("ws_bytes_out", "70"), ("ws_close_code", "1000"), ("ws_close_reason", "bye"),
    ("ws_closed_by", "client"), ("ws_duration", "12.345"),
])
def test_builtin_value(name: str, value: str) -> None:
    assert render("$" + name, full_ctx()) == value


@pytest.mark.parametrize("name", [
    "http_absent", "cookie_absent", "arg_absent", "sent_http_absent", "upstream_addr",
    "upstream_http_x", "upstream_cookie_x", "args", "remote_port", "proxy_host",
    "request_body", "ws_close_code", "ws_duration", "content_length",
    "proxy_internal_body_length",
])
def test_not_found_renders_empty_and_dash_in_logs(name: str) -> None:
    table = VariableTable()
    template = compile_template(f"<${name}>", table)
    table.finalize()
    ctx = VarContext()
    assert template.render(ctx) == "<>"
    assert template.render_log(ctx, "default") == "<->"
    assert template.render_log(ctx, "json") == "<>"
    assert template.render_log(ctx, "none") == "<>"


def test_empty_values_are_not_not_found() -> None:
    ctx = VarContext(args="", headers=[("X-E", "")])
    table = VariableTable()
    template = compile_template("[$args|$is_args|$http_x_e|$https]", table)
    table.finalize()
    assert template.render_log(ctx) == "[|||]"


def test_host_falls_back_to_server_name_and_prefers_ctx_host() -> None:
    assert render("$host", VarContext(server_name="main")) == "main"
    assert render("$host", VarContext(host="given", headers=[("Host", "other")])) == "given"
    assert render("$host", VarContext(headers=[("Host", "[::1]:80")])) == "[::1]"


@pytest.mark.parametrize("raw, host", [
    ("Example.COM", "example.com"), ("example.com.", "example.com"),
    ("example.com:8080", "example.com"), ("[::1]:443", "[::1]"), ("a..b", None),
    ("a/b", None), ("", None), (".", None), ("a b", None), ("x.y.:1", "x.y"),
])
def test_validate_host(raw: str, host: str | None) -> None:
    assert validate_host(raw) == host


@pytest.mark.parametrize("args, name, value", [
    ("a=1&b=2", "b", "2"), ("ab=1&b=2", "b", "2"), ("B=3", "b", "3"),
    ("b", "b", None), ("xb=1", "b", None), ("b=", "b", ""), ("a=1&b=2&b=3", "b", "2"),
    ("b=1&", "b", "1"), ("", "b", None),
])
def test_arg_lookup(args: str, name: str, value: str | None) -> None:
    table = VariableTable()
    getter = table.resolve("arg_" + name)
    assert getter is not None and getter(VarContext(args=args)) == value


def test_binary_remote_addr_ipv6_and_unix() -> None:
    assert render("$binary_remote_addr", VarContext(remote_addr="::1")) == "\0" * 15 + "\1"
    assert render("$binary_remote_addr", VarContext(remote_addr="unix:")) == "unix:"


def test_captures_numbered_and_named() -> None:
    table = VariableTable()
    table.define_capture("word")
    template = compile_template("$1|$2|$3|$word", table)
    table.finalize()
    ctx = VarContext()
    assert template.render_log(ctx) == "|||-"
    ctx.set_captures(re.search(r"(?P<word>[a-z]+)-(\d+)?", "abc-"))
    assert template.render(ctx) == "abc|||abc"
    ctx.set_captures(re.search(r"nogroups", "nogroups"))   # keeps the previous ones
    assert template.render(ctx) == "abc|||abc"


def test_time_formats() -> None:
    now = 1_700_000_000.987
    tm = time.localtime(now)
    local = time_local(now)
    assert re.fullmatch(r"\d\d/[A-Z][a-z]{2}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}", local)
    assert local.startswith(f"{tm.tm_mday:02d}/{time.strftime('%b', tm)}/{tm.tm_year}:")
    iso = time_iso8601(now)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d", iso)
    assert iso.startswith(time.strftime("%Y-%m-%dT%H:%M:%S", tm))
    assert render("$msec", VarContext(now=now)) == "1700000000.987"
    assert render("$status", VarContext(status=0)) == "000"


def test_render_log_escaping_applies_to_values_only() -> None:
    table = VariableTable()
    template = compile_template('"$http_x" \\ $http_x', table)
    table.finalize()
    ctx = VarContext(headers=[("X", 'a"\x01\xe9\\\n\x7f')])
    assert template.render_log(ctx, "default") == r'"a\x22\x01\xE9\x5C\x0A\x7F" \ a\x22\x01\xE9\x5C\x0A\x7F'
    assert template.render_log(ctx, "json") == '"a\\"\\u0001\xe9\\\\\\n\x7f" \\ a\\"\\u0001\xe9\\\\\\n\x7f'
    assert template.render_log(ctx, "none") == '"a"\x01\xe9\\\n\x7f" \\ a"\x01\xe9\\\n\x7f'
