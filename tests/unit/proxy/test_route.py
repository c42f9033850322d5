"""Server and location selection (wsgate.proxy.route) on configs loaded from text."""

from __future__ import annotations

import pytest

from wsgate.config.load import load_config_text
from wsgate.proxy import route
from wsgate.proxy.server import group_servers

CONF = r"""
events {}
http {
    server { listen 127.0.0.1:8000; server_name first.test; }
    server { listen 127.0.0.1:8000 default_server; server_name dflt.test;
             location = / { return 200 exact-root; }
             location / { return 200 root; }
             location /a/ { return 200 a;
                 location /a/b/ { return 200 ab; }
                 location ~ \.inner$ { return 200 inner-regex; } }
             location ^~ /img/ { return 200 img; }
             location ~ \.(gif|jpg)$ { return 200 gifjpg; }
             location ~* \.PNG$ { return 200 png; }
             location /dir/ { proxy_pass http://127.0.0.1:1; }
             location @named { return 200 named; } }
    server { listen 127.0.0.1:8000; server_name *.wild.test www.exact.test; }
    server { listen 127.0.0.1:8000; server_name www.*; }
    server { listen 127.0.0.1:8000; server_name ~^(?<sub>\w+)\.rx\.test$; }
}
"""


@pytest.fixture(scope="module")
def cfg():
    return load_config_text(CONF, prefix="/tmp/")


def _group(cfg):
    return group_servers(cfg.http.servers)[("127.0.0.1", 8000, None)]


@pytest.mark.parametrize("host,expected", [
    ("first.test", "first.test"), ("dflt.test", "dflt.test"), (None, "dflt.test"),
    ("unknown.test", "dflt.test"), ("a.wild.test", "*.wild.test"),
    ("www.exact.test", "*.wild.test"), ("www.other.test", "www.*"),
    ("abc.rx.test", "~^(?<sub>\\w+)\\.rx\\.test$"), ("FIRST.TEST", "first.test"),
])
def test_server_selection(cfg, host, expected) -> None:
    server, _ = route.find_server(_group(cfg), host)
    assert expected in server.server_names


def test_regex_server_name_captures(cfg) -> None:
    _, m = route.find_server(_group(cfg), "abc.rx.test")
    assert m is not None and m.group("sub") == "abc"


def _text(match) -> str:
    code, text = match.location.return_
    return text.source


@pytest.mark.parametrize("uri,expected", [
    ("/", "exact-root"), ("/x", "root"), ("/a/", "a"), ("/a/b/c", "ab"),
    ("/a/x.inner", "inner-regex"), ("/img/x.gif", "img"), ("/other/x.gif", "gifjpg"),
    ("/a/x.jpg", "gifjpg"), ("/q/X.png", "png"), ("/q/x.PnG", "png"),
])
def test_location_selection(cfg, uri, expected) -> None:
    server = _group(cfg).default
    assert _text(route.find_location(server, uri)) == expected


def test_slash_redirect_for_proxy_location(cfg) -> None:
    server = _group(cfg).default
    m = route.find_location(server, "/dir")
    assert m.redirect_slash and m.location.pattern == "/dir/"


def test_named_location(cfg) -> None:
    server = _group(cfg).default
    assert route.named_location(server, "@named") is not None
    assert route.named_location(server, "@nope") is None
