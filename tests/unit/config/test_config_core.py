"""Lexer positions, the directive table, merge rules, model, include and bad input."""

import os

import pytest

from wsgate.config.directives import ARITIES, DIRECTIVES
from wsgate.config.lexer import MAX_TOKEN, parse_text
from wsgate.config.load import config_files, load_config, load_config_text
from wsgate.errors import ConfigError


def test_lexer_positions_and_escapes():
    stmts = parse_text('a "x\\"y" \'q\' ${v}z\n  b;\nc {\n d\n ;\n}', "/f")
    a, c = stmts
    assert a.args == ('x"y', "q", "${v}z", "b") and a.line == 2 and a.start_line == 1
    assert a.arg_pos[0] == (1, 3) and a.arg_pos[3] == (2, 3)
    assert c.block[0].name == "d" and c.block[0].line == 5 and c.block[0].col == 2
    assert c.end_line == 6


def test_lexer_error_is_a_statement_in_order():
    stmts = parse_text("a;\nb \"x\"y;", "/f")
    assert stmts[0].name == "a" and str(stmts[1].error) == 'unexpected "y" in /f:2'


def test_too_long_parameter():
    err = parse_text('a "' + "x" * (MAX_TOKEN + 5), "/f")[0].error
    assert "too long parameter" in err.message


def test_every_row_is_well_formed():
    for name, d in DIRECTIVES.items():
        assert d.name == name and d.kind in ("impl", "ignored", "refused")
        for form in d.forms:
            assert form.arity in ARITIES and form.contexts
            assert form.merge in ("inherit", "array", "local")


def test_warn_for_ignored_and_refusal():
    warnings = []
    load_config_text("events{} http { sendfile on; }", prefix="/tmp/", warn=warnings.append)
    assert [w.message for w in warnings] == ['"sendfile" is not supported by wsgate and is ignored']
    assert warnings[0].level == "warn"
    with pytest.raises(ConfigError, match='"allow" directive is not supported by wsgate in'):
        load_config_text("events{} http { server { allow all; } }", prefix="/tmp/")
    with pytest.raises(ConfigError, match="invalid number of arguments"):
        load_config_text("events{} http { sendfile; }", prefix="/tmp/")


def _loc(text):
    cfg = load_config_text("events{} http {" + text + "}", prefix="/tmp/p/")
    return cfg, cfg.http.servers[0]


def test_merge_inheritance_and_array_trap():
    cfg, srv = _loc("proxy_read_timeout 5s; proxy_set_header X-A 1; add_header H v;"
                    "server { location / { proxy_set_header X-B 2; location /n {} }"
                    " location /o { proxy_read_timeout 1m; } }")
    loc, other = srv.locations
    assert loc.proxy_read_timeout == 5.0 and other.proxy_read_timeout == 60.0
    names = [h.name for h in loc.proxy_set_header]
    assert names == ["Host", "Connection", "X-B"]          # X-A not inherited
    assert [h.name for h in other.proxy_set_header][-1] == "X-A"
    assert [h.name for h in loc.locations[0].proxy_set_header][-1] == "X-B"
    assert [h.name for h in loc.add_header] == ["H"]


def test_defaults():
    cfg, srv = _loc("server { location / { proxy_pass http://127.0.0.1:3000/x; } }")
    loc = srv.locations[0]
    assert loc.proxy_http_version == "1.0" and loc.proxy_connect_timeout == 60.0
    assert loc.client_max_body_size == 1 << 20 and loc.keepalive_timeout == (75.0, None)
    assert loc.proxy_buffering is True and loc.keepalive_requests == 1000
    assert loc.access_log[0].path == "/tmp/p/logs/access.log"
    assert loc.proxy_pass.host == "127.0.0.1" and loc.proxy_pass.port == 3000
    assert loc.proxy_pass.uri == "/x"
    assert srv.client_header_buffer_size == 1024 and srv.large_client_header_buffers == (4, 8192)
    assert cfg.pid == "/tmp/p/logs/nginx.pid" and cfg.worker_connections == 512
    assert srv.listens[0].port == 80


def test_upstream_and_listen_model():
    cfg, srv = _loc("upstream b { least_conn; keepalive 8; server 127.0.0.1:1 weight=3 "
                    "max_fails=2 fail_timeout=5s backup; server unix:/s down; }"
                    "server { listen [::1]:8080 default_server reuseport backlog=10; "
                    "server_name a b; location /ws { proxy_pass http://b; websocket on;"
                    " websocket_allow_origin https://x; } }")
    ups = cfg.http.upstreams["b"]
    assert ups.balancer == "least_conn" and ups.keepalive == 8
    s1, s2 = ups.servers
    assert (s1.weight, s1.max_fails, s1.fail_timeout, s1.backup) == (3, 2, 5.0, True)
    assert s2.unix_path == "/s" and s2.down
    ls = srv.listens[0]
    assert (ls.host, ls.port, ls.default_server, ls.reuseport, ls.backlog) == \
        ("::1", 8080, True, True, 10)
    loc = srv.locations[0]
    assert loc.websocket is True and loc.websocket_allow_origin == ("https://x",)
    assert srv.server_names == ("a", "b")


def test_include_glob_relative_and_loop(tmp_path):
    (tmp_path / "conf.d").mkdir()
    (tmp_path / "conf.d" / "b.conf").write_text("server { listen 2; }")
    (tmp_path / "conf.d" / "a.conf").write_text("server { listen 1; }")
    (tmp_path / "nginx.conf").write_text("events{} http { include conf.d/*.conf; }")
    cfg = load_config("nginx.conf", prefix=str(tmp_path))
    assert [s.listens[0].port for s in cfg.http.servers] == [1, 2]
    files = [p for p, _ in config_files("nginx.conf", prefix=str(tmp_path))]
    assert [os.path.basename(p) for p in files] == ["nginx.conf", "a.conf", "b.conf"]
    (tmp_path / "loop.conf").write_text("include loop.conf;")
    (tmp_path / "nginx.conf").write_text("events{} include loop.conf;")
    with pytest.raises(ConfigError, match="include loop"):
        load_config(str(tmp_path / "nginx.conf"), prefix=str(tmp_path))


def test_bad_input(tmp_path):
    (tmp_path / "bin.conf").write_bytes(bytes(range(256)) * 4)
    with pytest.raises(ConfigError):
        load_config(str(tmp_path / "bin.conf"), prefix=str(tmp_path))
    big = tmp_path / "big.conf"
    big.write_text("events{} http {" + "server_tokens on;\n" * 600_000 + "}")
    assert big.stat().st_size > 10_000_000
    with pytest.raises(ConfigError, match="is duplicate"):
        load_config(str(big), prefix=str(tmp_path))
    unreadable = tmp_path / "nope.conf"
    with pytest.raises(ConfigError, match=r'open\(\) ".*nope.conf" failed \(2: No such file'):
        load_config(str(unreadable), prefix=str(tmp_path))
