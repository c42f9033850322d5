"""The rewrite module's script (config/script.py + proxy/rewrite.py) without sockets:
configs loaded from text, ops run against an Exchange made from a literal request."""

from __future__ import annotations

import pytest

from wsgate.config import script
from wsgate.config.load import load_config_text
from wsgate.errors import ConfigError
from wsgate.http.events import Request
from wsgate.proxy import route
from wsgate.proxy.context import ConnInfo, make_exchange
from wsgate.proxy.rewrite import run_script

CONF = r"""
events {}
http {
    server {
        listen 127.0.0.1:8000;
        rewrite ^/srv/(.*)$ /s/$1 last;
        location / {
            set $who "v-$arg_a";
            if ($arg_a = 1) { return 201 "one $who"; }
            if ($http_x ~* ^(ab)(c)$) { set $cap $2; }
            if ($arg_f) { break; }
            rewrite ^/b/(.*) /bb/$1 break;
            rewrite ^/q/(.*) /qq?x=$1;
            rewrite ^/d/(.*) /dd?;
            rewrite ^/r/(.*) /rr/$1 redirect;
            rewrite ^/p/(.*) http://example.com/$1? permanent;
            rewrite ^/l/(.*) /ll/$1 last;
            rewrite ^/e/ "";
            return 200 "end";
        }
        location /ff { if (-f /etc/hostname) { return 200 file; } return 404; }
    }
}
"""


def _request(target: str, headers: tuple[tuple[bytes, bytes], ...] = ()) -> Request:
    path, _, args = target.partition("?")
    return Request(method=b"GET", target=target.encode(), version=(1, 1),
                   headers=((b"Host", b"x"),) + headers, keep_alive=True,
                   expect_continue=False, upgrade=None, content_length=None,
                   chunked=False, raw_head_len=0, path=path.encode(),
                   args=args.encode(), request_uri=target.encode(), host=b"x")


@pytest.fixture(scope="module")
def server() -> object:
    cfg = load_config_text(CONF, prefix="/tmp/")
    assert cfg.http is not None
    return cfg.http.servers[0]


def _run(server: object, target: str, *headers: tuple[bytes, bytes]):  # type: ignore[no-untyped-def]
    ex = make_exchange(_request(target, headers), ConnInfo(1, "127.0.0.1", 1, "127.0.0.1", 8000),
                       server, 0.0)
    logs: list[tuple[str, str]] = []
    srv_res = run_script(server.root.rewrite, ex, lambda lvl, msg: logs.append((lvl, msg)))  # type: ignore[attr-defined]
    if srv_res.respond:
        return ex, srv_res, logs
    ex.location = route.find_location(server, ex.uri).location
    res = run_script(ex.location.rewrite, ex, lambda lvl, msg: logs.append((lvl, msg)))
    res.uri_changed = res.uri_changed or srv_res.uri_changed
    return ex, res, logs


def test_script_is_one_ordered_list(server) -> None:  # type: ignore[no-untyped-def]
    loc = route.find_location(server, "/").location
    kinds = [type(op).__name__ for op in loc.rewrite]
    assert kinds[:4] == ["SetVar", "If", "If", "If"]
    assert kinds[-1] == "Return"


def test_return_inside_if_uses_set_variable(server) -> None:  # type: ignore[no-untyped-def]
    ex, res, _ = _run(server, "/x?a=1")
    assert res.status == 201 and res.text.render(ex.vars) == "one v-1"


def test_no_match_reaches_final_return(server) -> None:  # type: ignore[no-untyped-def]
    ex, res, _ = _run(server, "/x?a=2")
    assert res.status == 200 and res.text.render(ex.vars) == "end"


def test_if_regex_sets_captures(server) -> None:  # type: ignore[no-untyped-def]
    ex, res, _ = _run(server, "/x", (b"X", b"ABC"))
    assert ex.vars.cache[script.set_key("cap")] == "C"


def test_if_variable_truthiness_and_break(server) -> None:  # type: ignore[no-untyped-def]
    ex, res, _ = _run(server, "/b/z?f=0")
    assert ex.uri == "/bb/z"              # "0" is false: the rewrite ran
    ex, res, _ = _run(server, "/b/z?f=yes")
    assert ex.uri == "/b/z" and not res.respond and res.stopped


def test_rewrite_break_keeps_location(server) -> None:  # type: ignore[no-untyped-def]
    ex, res, _ = _run(server, "/b/z?k=v")
    assert ex.uri == "/bb/z" and ex.vars.args == "k=v"
    assert not res.uri_changed and ex.extra["rewrite_break"]


def test_rewrite_new_args_append_old(server) -> None:  # type: ignore[no-untyped-def]
    ex, res, _ = _run(server, "/q/1?k=v")
    # no flag: the script goes on to `return`, the URI stays changed
    assert ex.uri == "/qq" and ex.vars.args == "x=1&k=v" and res.status == 200


def test_trailing_question_mark_drops_args(server) -> None:  # type: ignore[no-untyped-def]
    ex, _, _ = _run(server, "/d/1?k=v")
    assert ex.uri == "/dd" and ex.vars.args is None


def test_redirect_flag_keeps_args(server) -> None:  # type: ignore[no-untyped-def]
    _, res, _ = _run(server, "/r/1?k=v")
    assert (res.status, res.location) == (302, "/rr/1?k=v")


def test_permanent_absolute_without_args(server) -> None:  # type: ignore[no-untyped-def]
    _, res, _ = _run(server, "/p/1?k=v")
    assert (res.status, res.location) == (301, "http://example.com/1")


def test_last_asks_for_location_search(server) -> None:  # type: ignore[no-untyped-def]
    ex, res, _ = _run(server, "/l/1")
    assert ex.uri == "/ll/1" and res.uri_changed and res.stopped and not res.respond


def test_server_level_rewrite(server) -> None:  # type: ignore[no-untyped-def]
    ex, res, _ = _run(server, "/srv/abc")
    assert ex.uri == "/s/abc" and res.uri_changed


def test_empty_rewritten_uri_is_500(server) -> None:  # type: ignore[no-untyped-def]
    _, res, logs = _run(server, "/e/x")
    assert res.status == 500
    assert ("error", "the rewritten URI has a zero length") in logs


def test_file_test(server) -> None:  # type: ignore[no-untyped-def]
    _, res, _ = _run(server, "/ff")
    assert res.status == 200


@pytest.mark.parametrize("body, message", [
    ("rewrite ^/ /x bogus;", 'invalid parameter "bogus"'),
    ("set foo bar;", 'invalid variable name "foo"'),
    ("set $uri bar;", 'the duplicate "uri" variable'),
    ("if ($a == b) { }", 'unexpected "==" in condition'),
    ("if $a { }", 'invalid condition "$a"'),
    ("if (-q /x) { }", 'invalid condition "-q"'),
    ("if ($a) { if ($b) { } }", '"if" directive is not allowed here'),
    ("break x;", 'invalid number of arguments in "break" directive'),
    ("rewrite ^/(a /x;", "pcre2_compile() failed"),
])
def test_config_errors(body: str, message: str) -> None:
    text = "events {} http { server { listen 127.0.0.1:8000; set $a 1; set $b 2; location / { %s } } }" % body
    with pytest.raises(ConfigError) as info:
        load_config_text(text, prefix="/tmp/")
    assert message in info.value.message


def test_if_conf_inherits_proxy_pass() -> None:
    cfg = load_config_text("events {} http { server { listen 127.0.0.1:8000; "
                           "location /p/ { proxy_pass http://127.0.0.1:9/; "
                           "if ($arg_x) { add_header X y; } } } }", prefix="/tmp/")
    assert cfg.http is not None
    loc = cfg.http.servers[0].locations[0]
    if_op = loc.rewrite[0]
    assert if_op.conf.proxy_pass == loc.proxy_pass
    assert if_op.conf.pattern == "/p/" and if_op.conf.add_header[0].name == "X"
