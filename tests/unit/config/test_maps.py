"""`map` semantics: matching order, hostnames masks, captures, default, volatile,
and nginx's load-time errors (the differential twin is test_maps_nginx.py)."""

from __future__ import annotations

import pytest

from wsgate.config.maps import MapBuilder
from wsgate.config.variables import VarContext, VariableTable, compile_template
from wsgate.errors import ConfigError


def build(body: list[list[str]], source: str = "$http_x",
          table: VariableTable | None = None, dest: str = "$out") -> VariableTable:
    table = table or VariableTable()
    builder = MapBuilder(compile_template(source, table), dest, table, file="m.conf", line=1)
    for n, stmt in enumerate(body, start=2):
        builder.add(stmt, "m.conf", n)
    builder.build()
    return table


def lookup(table: VariableTable, value: str | None, name: str = "out") -> str:
    template = compile_template("$" + name, table)
    table.finalize()
    headers = [] if value is None else [("X", value)]
    return template.render(VarContext(headers=headers))


HOSTS = [["hostnames"], ["default", "dflt"], ["example.com", "exact"],
         ["*.example.com", "star"], ["*.a.example.com", "deeper-star"],
         [".b.example.com", "dot"], ["www.*", "tail"], ["www.example.*", "longer-tail"],
         ["~^www$", "regex"]]


@pytest.mark.parametrize("value, result", [
    ("example.com", "exact"), ("EXAMPLE.com.", "exact"),          # case, trailing dot
    ("x.example.com", "star"), ("x.y.example.com", "star"),
    ("x.a.example.com", "deeper-star"), ("a.example.com", "star"),  # longest suffix
    ("b.example.com", "dot"), ("x.b.example.com", "dot"),
    ("www.example.org", "longer-tail"), ("www.other.org", "tail"),  # longest prefix
    ("www.example.com", "star"),          # head wildcard beats tail wildcard
    ("www", "regex"), ("wwwx", "dflt"),  # tail needs a dot; regexes after masks
    ("", "dflt"),
])
def test_hostnames_order(value: str, result: str) -> None:
    assert lookup(build(HOSTS), value) == result


def test_exact_keys_are_caseless_and_first() -> None:
    table = build([["default", "d"], ["~^Foo$", "regex"], ["FOO", "exact"]])
    assert lookup(table, "foo") == "exact"


def test_without_hostnames_masks_are_plain_keys() -> None:
    body = [["*.example.com", "literal"], ["default", "d"]]
    assert lookup(build(body), "*.EXAMPLE.com") == "literal"
    assert lookup(build(body), "a.example.com") == "d"


def test_regexes_in_order_with_captures_in_value() -> None:
    body = [["~^(?<user>\\w+)@(\\w+)", "$user at $2"], ["~*^ADMIN", "admin"],
            ["~.", "any"]]
    assert lookup(build(body), "bob@host") == "bob at host"
    assert lookup(build(body), "ADMIN!") == "admin"
    assert lookup(build(body), "x") == "any"


def test_regex_never_tried_on_empty_value_and_no_default_is_empty() -> None:
    table = build([["~^$", "matched-empty"], ["a", "b"]])
    assert lookup(table, "") == ""
    assert lookup(build([["a", "b"]]), None) == ""


def test_escaped_keys() -> None:
    body = [["\\default", "key"], ["\\~x", "tilde"], ["default", "d"]]
    assert lookup(build(body), "default") == "key"
    assert lookup(build(body), "~x") == "tilde"


def test_values_are_templates_and_source_is_complex() -> None:
    table = VariableTable()
    build([["a/p", "$http_y-$uri"], ["default", "none"]], source="$http_x$uri", table=table)
    template = compile_template("$out", table)
    table.finalize()
    ctx = VarContext(uri="/p", headers=[("X", "a"), ("Y", "yy")])
    assert template.render(ctx) == "yy-/p"


def test_cached_per_request_unless_volatile() -> None:
    for volatile, expected in ((False, "1:1"), (True, "1:2")):
        table = VariableTable()
        body = [["volatile"]] if volatile else []
        build(body + [["default", "$counter"]], table=table)
        counter = iter(range(1, 10))
        table.define("counter", lambda ctx: str(next(counter)), cacheable=False)
        template = compile_template("$out:$out", table)
        table.finalize()
        assert template.render(VarContext()) == expected


def test_map_used_before_it_is_defined() -> None:
    table = VariableTable()
    template = compile_template("<$out>", table)
    build([["default", "later"]], table=table)
    table.finalize()
    assert template.render(VarContext()) == "<later>"


def test_article_config_error_line() -> None:
    """shared/configs/article-multi-backend.conf: `close; }` on line 9."""
    table = VariableTable()
    builder = MapBuilder(compile_template("$http_upgrade", table), "$connection_upgrade",
                         table, file="/c/article.conf", line=6)
    builder.add(["default", "upgrade"], "/c/article.conf", 7)
    builder.add(["", "close"], "/c/article.conf", 8)
    with pytest.raises(ConfigError) as info:
        builder.add(["close"], "/c/article.conf", 9)
    assert str(info.value) == "invalid number of the map parameters in /c/article.conf:9"


@pytest.mark.parametrize("body, message", [
    ([["a", "b", "c"]], "invalid number of the map parameters"),
    ([["hostnames", "x", "y"]], "invalid number of the map parameters"),
    ([["default", "x"], ["default", "y"]], "duplicate default map parameter"),
    ([["Key", "x"], ["kEY", "y"]], 'conflicting parameter "key"'),
    ([["hostnames"], ["*", "x"]], 'invalid hostname or wildcard "*"'),
    ([["hostnames"], ["a.*.com", "x"]], 'invalid hostname or wildcard "a.*.com"'),
    ([["hostnames"], ["*.A.com", "x"], [".a.com", "y"]], 'conflicting parameter ".a.com"'),
    ([["hostnames"], ["www.A.*", "x"], ["www.a.*", "y"]], 'conflicting parameter "www.a.*"'),
    ([["~(a", "x"]], 'pcre2_compile() failed: missing closing parenthesis in "(a"'),
    ([["~(?<host>a)", "x"]], 'the duplicate "host" variable'),
    ([["a", "${x"]], 'the closing bracket in "x" variable is missing'),
])
def test_load_errors(body: list[list[str]], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        build(body)
    assert info.value.message == message
    assert (info.value.file, info.value.line) == ("m.conf", 1 + len(body))


def test_destination_errors() -> None:
    table = VariableTable()
    source = compile_template("$args", table)
    with pytest.raises(ConfigError, match='invalid variable name "out" in m.conf:3'):
        MapBuilder(source, "out", table, file="m.conf", line=3)
    with pytest.raises(ConfigError, match='the duplicate "uri" variable in m.conf:4'):
        MapBuilder(source, "$uri", table, file="m.conf", line=4)
