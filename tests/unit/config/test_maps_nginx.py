"""Differential check of `map` matching: real nginx 1.22 vs MapBuilder.

One nginx (loopback port, temp prefix, daemon off, master_process off) serves
`return 200` with every map's result for the value of an `X-In` request header; the
same maps are built with MapBuilder and evaluated on a VarContext carrying that
header.  Every input of the table must give byte-identical answers.
"""

from __future__ import annotations

import pathlib
import shutil
import socket

import pytest

from helpers.ports import free_port
from helpers.procs import start_process
from wsgate.config.maps import MapBuilder
from wsgate.config.variables import VarContext, VariableTable, compile_template

NGINX = "/usr/sbin/nginx"
pytestmark = pytest.mark.skipif(shutil.which(NGINX) is None, reason="nginx not installed")

# (dest, body statements); the source of every map is $http_x_in.
MAPS: list[tuple[str, list[list[str]]]] = [
    ("m_exact", [["default", "dflt"], ["foo", "is-foo"], ["Bar", "is-bar"],
                 ["", "empty"], ["\\default", "literal-default"],
                 ["*.notwild.com", "exact-star"], ["~x", "regex-x"]]),
    ("m_host", [["hostnames"], ["default", "0"], ["example.com", "exact"],
                ["*.example.com", "star"], ["*.deep.example.com", "deep-star"],
                [".dot.example.com", "dot"], ["example.*", "tail"],
                ["www.example.*", "long-tail"], ["*.org", "star-org"],
                ["~^www\\.regex\\.(\\w+)$", "rx:$1"]]),
    ("m_rx", [["default", "none"], ["~^(?<word>[a-z]+)-(\\d+)$", "w=$word n=$2"],
              ["~*^UP(.*)", "up:$1"], ["~^up", "late-up"], ["~\\d{3}", "three"],
              ["~^a\\Q.*\\Eb$", "quoted"], ["~^[[:digit:]]+x$", "posix"]]),
    ("m_nodefault", [["known", "yes"]]),
    ("m_value", [["default", "src=$http_x_in!"], ["lit", "$http_x_other-tail"]]),
]

INPUTS = [
    "foo", "FOO", "Foo", "bar", "BAR", "", "default", "\\default", "x", "axb",
    "*.notwild.com", "a.notwild.com",
    "example.com", "EXAMPLE.COM", "example.com.", "a.example.com", "a.b.example.com",
    "deep.example.com", "x.deep.example.com", "dot.example.com", "w.dot.example.com",
    "example.org", "example.co.uk", "www.example.net", "www.example", "example",
    "foo.org", "org", "www.regex.com", "WWW.REGEX.COM", "www.regex.com.",
    "abc-42", "ABC-42", "up", "UPstream", "upX", "abc-4x2", "12345", "a.*b", "a..b",
    "123x", "known", "KNOWN", "lit", "dot.example.com..", ".example.com",
]


def _conf(port: int, prefix: pathlib.Path) -> str:
    blocks = []
    for dest, body in MAPS:
        lines = "\n".join("        " + " ".join(_quote(a) for a in stmt) + ";" for stmt in body)
        blocks.append(f"    map $http_x_in ${dest} {{\n{lines}\n    }}")
    result = "|".join(f"${dest}" for dest, _ in MAPS)
    return f"""daemon off; master_process off; error_log stderr; pid {prefix}/nginx.pid;
events {{ }}
http {{
    access_log off;
{chr(10).join(blocks)}
    server {{
        listen 127.0.0.1:{port};
        location / {{ return 200 "[{result}]"; }}
    }}
}}
"""


def _quote(arg: str) -> str:
    return "'" + arg.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _ours() -> tuple[VariableTable, object]:
    table = VariableTable()
    for dest, body in MAPS:
        builder = MapBuilder(compile_template("$http_x_in", table), "$" + dest, table,
                             file="t.conf", line=1)
        for stmt in body:
            builder.add(stmt, "t.conf", 2)
        builder.build()
    result = compile_template("[" + "|".join(f"${d}" for d, _ in MAPS) + "]", table)
    table.finalize()
    return table, result


def _ask(port: int, value: str, other: str) -> str:
    head = (f"GET / HTTP/1.0\r\nX-In: {value}\r\nX-Other: {other}\r\n\r\n").encode("latin-1")
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(head)
        data = b""
        for _ in range(1000):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    return data.split(b"\r\n\r\n", 1)[1].decode("latin-1")


@pytest.fixture(scope="module")
def nginx_port(tmp_path_factory: pytest.TempPathFactory):
    prefix = tmp_path_factory.mktemp("nginx-map")
    (prefix / "logs").mkdir()
    port = free_port()
    (prefix / "nginx.conf").write_text(_conf(port, prefix))
    proc = start_process([NGINX, "-p", f"{prefix}/", "-c", "nginx.conf", "-e", "stderr"],
                         name="nginx-map", log_dir=prefix, ready_port=("127.0.0.1", port))
    try:
        yield port
    finally:
        proc.stop()


@pytest.mark.parametrize("value", INPUTS)
def test_map_matches_real_nginx(nginx_port: int, value: str) -> None:
    _, result = _ours()
    ctx = VarContext(headers=[("X-In", value), ("X-Other", "oth")])
    assert result.render(ctx) == _ask(nginx_port, value, "oth")  # type: ignore[attr-defined]


def test_map_errors_match_real_nginx(tmp_path: pathlib.Path) -> None:
    """Load-time errors: same message as `nginx -t`, for a table of bad bodies."""
    bodies = [
        "a b c;", "close;", "default x; default y;", "A x; a y;", "hostnames; * x;",
        "hostnames; a..com x;", "hostnames; *.a.*.com x;", "hostnames; .a.com x; *.a.com y;",
        "hostnames; .a.com x; a.com y;", "hostnames; www.a.* x; WWW.A.* y;",
        "~^(foo x;", "a $;", "a ${x;",
    ]
    for body in bodies:
        conf = tmp_path / "t.conf"
        conf.write_text("events {}\nhttp {\nmap $args $a {\n" + body + "\n}\n}\n")
        out = _nginx_t(tmp_path, conf)
        ours = _our_error(body)
        assert f"{ours} in {conf}:4" in out, (body, out)


def _nginx_t(prefix: pathlib.Path, conf: pathlib.Path) -> str:
    import subprocess
    run = subprocess.run([NGINX, "-t", "-p", f"{prefix}/", "-c", str(conf), "-e", "stderr"],
                         capture_output=True, text=True, timeout=20)
    return run.stderr


def _our_error(body: str) -> str:
    from wsgate.errors import ConfigError
    table = VariableTable()
    builder = MapBuilder(compile_template("$args", table), "$a", table, file="t", line=3)
    stmts = [s.split() for s in body.split(";") if s.strip()]
    try:
        for stmt in stmts:
            builder.add(stmt, "t", 4)
        builder.build()
    except ConfigError as exc:
        return exc.message
    raise AssertionError(f"no error for {body!r}")
