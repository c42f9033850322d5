"""The model-level fixes that make `wsgate -t` agree with `nginx -t`.

Ignored directives still validate their arguments; balancers refuse `backup` in
nginx's order; named regex captures become variables; `try_files` is stored;
the default error log follows `-e`; post-parse errors are InitError; the http
level's own access_log is in the model; a directory as config is a crit pread().
"""

from __future__ import annotations

from pathlib import Path

import pytest

from wsgate.config.load import InitError, load_config, load_config_text
from wsgate.config.model import TryFiles
from wsgate.errors import ConfigError

P = "/tmp/p/"


def load(text: str, **kw: object):  # type: ignore[no-untyped-def]
    return load_config_text(text, name="nginx.conf", prefix=P, **kw)


def http(body: str, **kw: object):  # type: ignore[no-untyped-def]
    return load("events {}\nhttp {\n" + body + "\n}\n", **kw)


def error(text: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        http(text)
    return info.value


@pytest.mark.parametrize("body, message, line", [
    ("sendfile yes;", 'invalid value "yes" in "sendfile" directive, it must be "on" or "off"', 3),
    ("sendfile on;\nsendfile off;", '"sendfile" directive is duplicate', 4),
    ("sendfile on off;", 'invalid number of arguments in "sendfile" directive', 3),
    ("gzip_min_length lots;", '"gzip_min_length" directive invalid value', 3),
    ("gzip_comp_level 10;", "value must be between 1 and 9", 3),
    ("gzip_proxied any bogus;", 'invalid value "bogus"', 3),
    ("open_file_cache inactive=10s;", '"open_file_cache" must have the "max" parameter', 3),
    ("proxy_buffers 8 lots;", '"proxy_buffers" directive invalid value', 3),
])
def test_ignored_and_slot_values_are_checked(body: str, message: str, line: int) -> None:
    err = error(body)
    assert (err.message, err.line) == (message, line)


def test_ignored_directive_warns_after_validation() -> None:
    warnings: list[ConfigError] = []
    http("sendfile on;\nproxy_cache_bypass $http_upgrade;", warn=warnings.append)
    assert [w.message for w in warnings] == [
        '"sendfile" is not supported by wsgate and is ignored',
        '"proxy_cache_bypass" is not supported by wsgate and is ignored']
    assert all(w.level == "warn" for w in warnings)


def test_main_and_events_values() -> None:
    with pytest.raises(ConfigError, match='"worker_processes" directive invalid value'):
        load("worker_processes many;\nevents {}\n")
    with pytest.raises(ConfigError, match='^invalid number "lots"'):
        load("events { worker_connections lots; }\n")
    assert load("worker_processes auto;\nevents {}\n").worker_processes == "auto"


def ups(body: str) -> str:
    return "upstream u {\n" + body + "\n}"


@pytest.mark.parametrize("balancer", ["ip_hash;", "hash $remote_addr;", "random two;"])
def test_backup_refused_after_balancer(balancer: str) -> None:
    err = error(ups(f"{balancer}\nserver 127.0.0.1:1;\nserver 127.0.0.1:2 backup;"))
    assert (err.message, err.line) == ('balancing method does not support parameter "backup"', 6)


def test_backup_before_balancer_is_accepted_and_least_conn_allows_it() -> None:
    cfg = http(ups("server 127.0.0.1:1;\nserver 127.0.0.1:2 backup;\nip_hash;"))
    assert cfg.http.upstreams["u"].balancer == "ip_hash"
    http(ups("least_conn;\nserver 127.0.0.1:1;\nserver 127.0.0.1:2 backup;"))


def test_only_backup_servers_and_bad_balancer_params() -> None:
    err = error(ups("server 127.0.0.1:2 backup;"))
    assert (err.message, err.line) == ('no servers in upstream "u"', 3)
    assert error(ups("random least_conn;\nserver 127.0.0.1:1;")).message == \
        'invalid parameter "least_conn"'
    assert error(ups("server 127.0.0.1:1 resolve;")).message == 'invalid parameter "resolve"'


def test_balancer_redefined_warns() -> None:
    warnings: list[ConfigError] = []
    http(ups("ip_hash;\nleast_conn;\nserver 127.0.0.1:1;"), warn=warnings.append)
    assert [(w.message, w.line) for w in warnings] == [("load balancing method redefined", 5)]


def test_named_captures_become_variables() -> None:
    http("server {\nserver_name ~^(?<tenant>.+)\\.example$;\n"
         "location ~ ^/ws/(?<room>[a-z]+)$ { proxy_pass http://127.0.0.1:1;\n"
         "proxy_set_header X-Room $room; proxy_set_header X-T $tenant; }\n}")
    err = error("server {\nlocation ~ ^/(?<host>.+)$ { }\n}")
    assert (err.message, err.line) == ('the duplicate "host" variable', 4)


def test_try_files_model() -> None:
    cfg = http("server {\nlocation / { try_files $uri $uri/ /index.html; }\n"
               "location /a/ { try_files $uri =404; }\n}")
    first, second = cfg.http.servers[0].locations
    assert isinstance(first.try_files, TryFiles)
    assert [t.source for t in first.try_files.files] == ["$uri", "$uri/"]
    assert first.try_files.fallback.source == "/index.html" and first.try_files.code is None
    assert second.try_files.code == 404 and second.try_files.fallback is None
    assert error("server {\nlocation / { try_files $uri =4x; }\n}").message == \
        'invalid code "=4x"'


def test_try_files_is_not_inherited() -> None:
    cfg = http("server {\ntry_files $uri @app;\nlocation / { }\nlocation @app { }\n}")
    srv = cfg.http.servers[0]
    assert srv.root.try_files.fallback.source == "@app"
    assert srv.locations[0].try_files is None


def test_default_error_log_follows_e() -> None:
    cfg = http("")
    assert cfg.error_log_default and cfg.error_logs == ((P + "logs/error.log", "error"),)
    assert http("", default_error_log="stderr").error_logs == (("stderr", "error"),)
    assert http("", default_error_log="/x/e.log").error_logs == (("/x/e.log", "error"),)
    own = load("error_log logs/mine.log;\nevents {}\n", default_error_log="stderr")
    assert not own.error_log_default and own.error_logs == (("logs/mine.log",),)


def test_no_events_is_an_init_error() -> None:
    with pytest.raises(InitError, match='no "events" section'):
        load("http { }\n")


def test_http_level_access_log_in_model() -> None:
    cfg = http("access_log /x/a.log;")
    assert [a.path for a in cfg.http.access_log] == ["/x/a.log"]
    assert [a.path for a in http("").http.access_log] == [P + "logs/access.log"]


def test_log_format_combined_is_predefined() -> None:
    assert error("log_format combined '$remote_addr';").message == \
        'duplicate "log_format" name "combined"'


def test_proxy_pass_bad_prefix_has_no_url() -> None:
    err = error("server {\nlocation / { proxy_pass ws://127.0.0.1:1; }\n}")
    assert (err.message, err.line) == ("invalid URL prefix", 4)


def test_directory_as_config_is_crit_pread(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    with pytest.raises(ConfigError) as info:
        load_config(str(tmp_path / "d"), prefix=str(tmp_path))
    assert info.value.level == "crit" and info.value.file is None
    assert info.value.message == f'pread() "{tmp_path}/d" failed (21: Is a directory)'


def test_included_directory_is_crit_without_position(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "nginx.conf").write_text("events {}\nhttp {\n include sub;\n}\n")
    with pytest.raises(ConfigError) as info:
        load_config("nginx.conf", prefix=str(tmp_path))
    assert (info.value.level, info.value.file) == ("crit", None)
