"""Error texts and lines of wsgate's loader against real nginx 1.22 (`nginx -t`)."""

import os
import re
import shutil
import subprocess

import pytest

from wsgate.config.load import load_config
from wsgate.errors import ConfigError

NGINX = "/usr/sbin/nginx"
CASES = [
    "events{} }",
    "events{",
    "events{} http { server { listen 80 }",
    "events{} http { server { listen 80\n}}}",
    "{",
    ";",
    'events{} http { server { listen "80"x; } }',
    "events{} http { foo; }",
    "events{} map $a $b {}",
    "events{} http { proxy_pass\n a\n b\n ; }",
    "events{} http { proxy_read_timeout 1s; proxy_read_timeout 2s; }",
    "events{} http { proxy_buffering maybe; }",
    "events{} http { proxy_buffer_size 1q; }",
    "events{} http { proxy_read_timeout 1q; }",
    "events{} http { proxy_http_version 2.0; }",
    "events{} http { proxy_next_upstream error foo; }",
    "events{} http { keepalive_requests x; }",
    "events {} http {} events {}",
    "events {} http { server { location /a { location /b {} } } }",
    "events {} http { server { location = /a { location /a/b {} } } }",
    "events {} http { server { location @a { location /a/b {} } } }",
    "events {} http { server { location /a { location @b {} } } }",
    "events {} http { server { location ~ /a { proxy_pass http://127.0.0.1/x; } } }",
    "events{}\nhttp {\n server {\n  location /a\n  {}\n  location /a {\n  }\n }\n}",
    "events{}\nhttp {\n upstream a\n {\n }\n server { location / { proxy_pass http://a; } }\n}",
    "events {} http { upstream a { server 127.0.0.1; } upstream a { server 127.0.0.1; } }",
    "events {} http { server { location / { proxy_pass http://nonexist.invalid; } } }",
    "events{}\nhttp {\n server {\n  listen 80\n  default_server;\n }\n server {\n  listen\n"
    "  80\n  default_server\n  ;\n }\n}",
    "events {} http { sendfile on; events {} }",
    "events{} http { access_log logs/a.log nope; }",
    "events{} http { server { location /a { proxy_pass http://127.0.0.1; "
    "proxy_pass http://127.0.0.1; } } }",
    "events{} http { server foo { } }",
    "events{} http { server ; }",
    "events{} http { server_name a; }",
    'events{}\nhttp {\n "foo\n',
    'events{}\nhttp "a"b',
    "events{}\nhttp a\\",
    "events {} http { server { proxy_pass http://127.0.0.1; } }",
    "events{}\nhttp {\n include nothere.conf;\n}",
    "events{}\nhttp {\n include /nonexist/*.conf;\n}",
    "events{} daemon on;",
    "http {}",
    "events{} http { client_max_body_size 10g; large_client_header_buffers 4 8k; }",
    "events{} http { keepalive_timeout 75s 60s; send_timeout 1h30m; }",
    "events{} http { server { listen 127.0.0.1:8080; location ~* \\.php$ { } } }",
]
GLOBAL_CASES = ["daemon off", "daemon off; foo;", "events {}", "daemon maybe;", "daemon off;"]


def _resolve(host, port):
    if host == "localhost":
        return ["127.0.0.1"]
    raise LookupError(host)


def nginx_t(tmp_path, text, globals_=None):
    (tmp_path / "logs").mkdir(exist_ok=True)
    conf = tmp_path / "nginx.conf"
    conf.write_text(text)
    cmd = [NGINX, "-t", "-p", f"{tmp_path}/", "-c", str(conf), "-e", "stderr"]
    if globals_:
        cmd += ["-g", globals_]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=20).stderr
    m = re.search(r"\[emerg\] \d+#\d+: (.*)", out)
    return m.group(1) if m else None


def wsgate_t(tmp_path, globals_=None):
    try:
        load_config(str(tmp_path / "nginx.conf"), prefix=f"{tmp_path}/", globals_=globals_,
                    resolve=_resolve)
    except ConfigError as exc:
        return str(exc)
    return None


needs_nginx = pytest.mark.skipif(not shutil.which(NGINX) and not os.path.exists(NGINX),
                                 reason="nginx not installed")


@needs_nginx
@pytest.mark.parametrize("text", CASES)
def test_same_verdict_as_nginx(tmp_path, text):
    expected = nginx_t(tmp_path, text)
    assert wsgate_t(tmp_path) == expected


@needs_nginx
@pytest.mark.parametrize("globals_", GLOBAL_CASES)
def test_globals_same_as_nginx(tmp_path, globals_):
    expected = nginx_t(tmp_path, "events{} http{}", globals_)
    assert wsgate_t(tmp_path, globals_) == expected


SHARED = "/work/shared/configs"


@needs_nginx
@pytest.mark.skipif(not os.path.isdir(SHARED), reason="shared configs absent")
@pytest.mark.parametrize("name", sorted(n for n in os.listdir(SHARED) if n.endswith(".conf"))
                         if os.path.isdir(SHARED) else [])
def test_shared_configs_like_nginx(tmp_path, name):
    path = os.path.join(SHARED, name)
    out = subprocess.run([NGINX, "-t", "-p", f"{tmp_path}/", "-c", path, "-e", "stderr"],
                         capture_output=True, text=True, timeout=20).stderr
    m = re.search(r"\[emerg\] \d+#\d+: (.*)", out)
    try:
        load_config(path, prefix=f"{tmp_path}/", resolve=_resolve)
        got = None
    except ConfigError as exc:
        got = str(exc)
    assert got == (m.group(1) if m else None)
