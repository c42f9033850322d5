"""Differential check of request variables: real nginx 1.22 vs VariableTable.

nginx answers `return 200` with a template of header, cookie, argument and host
variables; the same template renders over a VarContext holding the same request.
This pins the 1.22 rules: $http_* takes the first line except Cookie ("; ") and
X-Forwarded-For (", "), $cookie_*/$arg_* match names caselessly, $host is validated.
"""

from __future__ import annotations

import pathlib
import shutil
import socket

import pytest

from helpers.ports import free_port
from helpers.procs import start_process
from wsgate.config.variables import VarContext, VariableTable, compile_template

NGINX = "/usr/sbin/nginx"
pytestmark = pytest.mark.skipif(shutil.which(NGINX) is None, reason="nginx not installed")

TEMPLATE = ("[$http_x_a][$http_cookie][$http_x_forwarded_for][$cookie_ab][$cookie_x]"
            "[$arg_foo][$arg_b][$host][$args][$is_args][$request_uri][$request_method]"
            "[$server_protocol][$proxy_add_x_forwarded_for][$remote_addr][$http_x_b_c]"
            "[$content_type][$request]")

REQUESTS: list[tuple[str, list[tuple[str, str]]]] = [
    ("/p?Foo=1&foo=2&b=", [("Host", "EXample.COM.:80"), ("X-A", "one"), ("x-a", "two"),
                          ("Cookie", "x=1; AB = 2"), ("Cookie", "ab=3"),
                          ("X-Forwarded-For", "1.1.1.1"), ("X-Forwarded-For", "2.2.2.2")]),
    ("/q?", [("Host", "h"), ("X-B-C", "dash"), ("Content-Type", "text/x"),
             ("Cookie", "abc=1,ab=4")]),
    ("/r?xfoo=1&bfoo=2&foo", [("Host", "[::1]:8080"), ("Cookie", "ab")]),
    ("/s", []),
]


@pytest.fixture(scope="module")
def nginx_port(tmp_path_factory: pytest.TempPathFactory):
    prefix = tmp_path_factory.mktemp("nginx-vars")
    (prefix / "logs").mkdir()
    port = free_port()
    (prefix / "nginx.conf").write_text(
        f"daemon off; master_process off; error_log stderr; pid {prefix}/nginx.pid;\n"
        f"events {{ }}\nhttp {{ access_log off; server {{ listen 127.0.0.1:{port};\n"
        f"server_name srv; location / {{ return 200 \"{TEMPLATE}\"; }} }} }}\n")
    proc = start_process([NGINX, "-p", f"{prefix}/", "-c", "nginx.conf", "-e", "stderr"],
                         name="nginx-vars", log_dir=prefix, ready_port=("127.0.0.1", port))
    try:
        yield port
    finally:
        proc.stop()


def _ask(port: int, head: str) -> str:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(head.encode("latin-1"))
        data = b""
        for _ in range(1000):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    return data.split(b"\r\n\r\n", 1)[1].decode("latin-1")


@pytest.mark.parametrize("target, headers", REQUESTS, ids=[r[0] for r in REQUESTS])
def test_request_variables_match_real_nginx(nginx_port: int, target: str,
                                            headers: list[tuple[str, str]]) -> None:
    line = f"GET {target} HTTP/1.0"
    head = line + "\r\n" + "".join(f"{n}: {v}\r\n" for n, v in headers) + "\r\n"
    path, sep, query = target.partition("?")
    ctx = VarContext(method="GET", request_uri=target, uri=path,
                     args=query if sep else None, server_protocol="HTTP/1.0",
                     request_line=line, headers=headers, remote_addr="127.0.0.1",
                     server_name="srv")
    table = VariableTable()
    template = compile_template(TEMPLATE, table)
    table.finalize()
    assert template.render(ctx) == _ask(nginx_port, head)
