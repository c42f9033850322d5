"""nginx's command line over the real `wsgate` executable, message for message.

Where nginx's exact output is checkable here, the test runs /usr/sbin/nginx with the
same arguments and compares after swapping `nginx:` for `wsgate:`; the rest are
nginx 1.22's messages written out. Every run is a subprocess with a timeout; no test
may see a Python traceback.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

WSGATE = Path(sys.executable).parent / "wsgate"
NGINX = Path("/usr/sbin/nginx")
TIMEOUT = 60
GOOD = "events {}\nhttp {\n    server {\n        listen 127.0.0.1:8080;\n    }\n}\n"
LOG_LINE = re.compile(r"^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d \[(?P<level>\w+)\] \d+#\d+: (?P<msg>.*)$")
CONSOLE_LINE = re.compile(r"^(?:nginx|wsgate): \[(?P<level>\w+)\] (?P<msg>.*)$")


def run(program: Path, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([str(program), *args], capture_output=True, timeout=TIMEOUT, cwd=cwd,
                          check=False, text=True, errors="replace")
    if program == WSGATE:
        assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def wsgate(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return run(WSGATE, *args, cwd=cwd)


def first_error(stderr: str) -> tuple[str, str] | None:
    """(level, message) of the first emerg/alert/crit line, log or console form."""
    for line in stderr.splitlines():
        match = LOG_LINE.match(line) or CONSOLE_LINE.match(line)
        if match and match["level"] in ("emerg", "alert", "crit"):
            return match["level"], match["msg"]
    return None


def write_conf(tmp: Path, text: str | bytes, name: str = "nginx.conf") -> Path:
    path = tmp / name
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    (tmp / "logs").mkdir(exist_ok=True)
    return path


def test_executable_exists() -> None:
    assert WSGATE.is_file(), f"{WSGATE} is missing"


# ---------------------------------------------------------------- version and help

def test_v_prints_version_on_stderr() -> None:
    proc = wsgate("-v")
    assert proc.returncode == 0
    assert proc.stdout == ""
    assert proc.stderr == "nginx version: nginx/1.22.1 (wsgate/0.1.0)\n"


def test_capital_v_is_parseable_like_nginx_tests_does() -> None:
    proc = wsgate("-V")
    assert proc.returncode == 0
    out = proc.stderr
    # nginx-tests' has_version() and has_module() regexes, applied as that harness does.
    assert re.search(r"nginx version: nginx/([0-9.]+)", out)[1] == "1.22.1"
    assert "wsgate/0.1.0" in out.splitlines()[0]
    assert re.search(r"^configure arguments: ", out, re.MULTILINE)
    has = {name: re.search(rx, out) is not None for name, rx in {
        "http": r"(?s)^(?!.*--without-http(?!\S))",
        "proxy": r"(?s)^(?!.*--without-http_proxy_module)",
        "map": r"(?s)^(?!.*--without-http_map_module)",
        "upstream_keepalive": r"(?s)^(?!.*--without-http_upstream_keepalive_modu)",
        "upstream_least_conn": r"(?s)^(?!.*--without-http_upstream_least_conn_mod)",
        "rewrite": r"(?s)^(?!.*--without-http_rewrite_module)",
        "gzip": r"(?s)^(?!.*--without-http_gzip_module)",
        "ssi": r"(?s)^(?!.*--without-http_ssi_module)",
        "access": r"(?s)^(?!.*--without-http_access_module)",
        "cache": r"(?s)^(?!.*--without-http-cache)",
        "stream": r"--with-stream((?!\S)|=dynamic)",
        "sni": r"TLS SNI support enabled",
        "stub_status": r"http_stub_status",
        "http_ssl": r"http_ssl",
    }.items()}
    assert has == {"http": True, "proxy": True, "map": True, "upstream_keepalive": True,
                   "upstream_least_conn": True, "rewrite": True, "gzip": False,
                   "ssi": True, "access": False, "cache": False, "stream": False, "sni": True,
                   "stub_status": True, "http_ssl": True}


@pytest.mark.parametrize("flag", ["-h", "-?"])
def test_help(flag: str) -> None:
    proc = wsgate(flag)
    assert proc.returncode == 0
    lines = proc.stderr.splitlines()
    assert lines[0] == "nginx version: nginx/1.22.1 (wsgate/0.1.0)"
    assert lines[1] == "Usage: wsgate [-?hvVtTq] [-s signal] [-p prefix]"
    for word in ("-?,-h", "-v ", "-V ", "-t ", "-T ", "-q ", "-s signal", "-p prefix",
                 "-e filename", "-c filename", "-g directives"):
        assert any(line.startswith(f"  {word}") for line in lines), word


def test_help_matches_nginx_option_lines() -> None:
    ours = wsgate("-h").stderr.splitlines()
    theirs = run(NGINX, "-h").stderr.splitlines()
    default_free = [l for l in theirs if l.startswith("  -") and "(default:" not in l]
    for line in default_free:
        assert line in ours


# ---------------------------------------------------------------- option errors

OPTION_ERRORS = [
    (["-x"], 'invalid option: "x"'),
    (["-tz"], 'invalid option: "z"'),
    (["foo"], 'invalid option: "foo"'),
    ([""], 'invalid option: ""'),
    (["-s", "foo"], 'invalid option: "-s foo"'),
    (["-sfoo"], 'invalid option: "-s foo"'),
    (["-c"], 'option "-c" requires file name'),
    (["-t", "-p"], 'option "-p" requires directory name'),
    (["-e"], 'option "-e" requires file name'),
    (["-g"], 'option "-g" requires parameter'),
    (["-s"], 'option "-s" requires parameter'),
]


@pytest.mark.parametrize(("args", "message"), OPTION_ERRORS, ids=[" ".join(a) or "empty" for a, _ in OPTION_ERRORS])
def test_option_errors(args: list[str], message: str) -> None:
    proc = wsgate(*args)
    assert proc.returncode == 1
    assert proc.stderr == f"wsgate: {message}\n"
    assert proc.stdout == ""


@pytest.mark.nginx
@pytest.mark.parametrize(("args", "message"), OPTION_ERRORS, ids=[" ".join(a) or "empty" for a, _ in OPTION_ERRORS])
def test_option_errors_match_nginx(args: list[str], message: str) -> None:
    theirs = run(NGINX, *args)
    ours = wsgate(*args)
    assert (ours.returncode, ours.stderr) == (theirs.returncode, theirs.stderr.replace("nginx:", "wsgate:"))


# ---------------------------------------------------------------- -t, -T, -q

def test_t_good(tmp_path: Path) -> None:
    conf = write_conf(tmp_path, GOOD)
    proc = wsgate("-t", "-p", str(tmp_path), "-c", "nginx.conf")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""
    assert proc.stderr == (f"wsgate: the configuration file {conf} syntax is ok\n"
                           f"wsgate: configuration file {conf} test is successful\n")


@pytest.mark.parametrize("args", [["-tq"], ["-t", "-q"], ["-qt"]])
def test_t_quiet(tmp_path: Path, args: list[str]) -> None:
    write_conf(tmp_path, GOOD)
    proc = wsgate(*args, "-p", f"{tmp_path}/", "-c", "nginx.conf")
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "", "")


@pytest.mark.parametrize("style", ["separate", "glued"])
def test_c_relative_to_prefix_glued_or_not(tmp_path: Path, style: str) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "logs").mkdir()  # the default pid file lives under the prefix
    conf = write_conf(tmp_path / "sub", GOOD, "site.conf")
    args = ["-t", "-p", str(tmp_path), "-c", "sub/site.conf"] if style == "separate" \
        else ["-tp" + str(tmp_path), "-csub/site.conf"]
    proc = wsgate(*args)
    assert proc.returncode == 0, proc.stderr
    assert f"configuration file {conf} test is successful" in proc.stderr


def test_c_absolute_and_unnormalised_like_nginx(tmp_path: Path) -> None:
    write_conf(tmp_path, GOOD)
    (tmp_path / "x" / "logs").mkdir(parents=True)  # the default pid file's directory
    proc = wsgate("-t", "-p", f"{tmp_path}/x", "-c", "../nginx.conf")
    assert proc.stderr.splitlines()[-1] == \
        f"wsgate: configuration file {tmp_path}/x/../nginx.conf test is successful"


def test_t_bad_reports_emerg_with_position(tmp_path: Path) -> None:
    conf = write_conf(tmp_path, "events {}\nhttp {\n    x;\n}\n")
    proc = wsgate("-t", "-p", str(tmp_path), "-c", str(conf))
    assert proc.returncode == 1
    lines = proc.stderr.splitlines()
    match = LOG_LINE.match(lines[0])
    assert match, lines
    assert (match["level"], match["msg"]) == ("emerg", f'unknown directive "x" in {conf}:3')
    assert lines[-1] == f"wsgate: configuration file {conf} test failed"
    assert proc.stdout == ""


def test_t_bad_with_error_log_file(tmp_path: Path) -> None:
    conf = write_conf(tmp_path, "events {}\nhttp {\n    x;\n}\n")
    proc = wsgate("-t", "-p", str(tmp_path), "-c", "nginx.conf", "-e", "err.log")
    assert proc.returncode == 1
    assert proc.stderr == (f'wsgate: [emerg] unknown directive "x" in {conf}:3\n'
                           f"wsgate: configuration file {conf} test failed\n")
    logged = (tmp_path / "err.log").read_text().splitlines()
    assert len(logged) == 1
    match = LOG_LINE.match(logged[0])
    assert match and match["level"] == "emerg"
    assert match["msg"] == f'unknown directive "x" in {conf}:3'


def test_e_unopenable_falls_back_to_stderr(tmp_path: Path) -> None:
    write_conf(tmp_path, GOOD)
    proc = wsgate("-t", "-p", str(tmp_path), "-c", "nginx.conf", "-e", "nodir/x.log")
    assert proc.returncode == 1
    lines = proc.stderr.splitlines()
    assert lines[0] == (f'wsgate: [alert] could not open error log file: open() '
                        f'"{tmp_path}/nodir/x.log" failed (2: No such file or directory)')
    assert lines[-1].endswith("test failed")


@pytest.mark.nginx
def test_e_unopenable_matches_nginx(tmp_path: Path) -> None:
    write_conf(tmp_path, f"pid {tmp_path}/nginx.pid;\n" + GOOD)
    args = ("-t", "-p", f"{tmp_path}/", "-c", "nginx.conf", "-e", "nodir/x.log")
    theirs, ours = run(NGINX, *args), wsgate(*args)
    assert ours.returncode == theirs.returncode == 1
    assert first_error(ours.stderr) == first_error(theirs.stderr)
    assert ours.stderr.splitlines()[0] == theirs.stderr.splitlines()[0].replace("nginx:", "wsgate:")


def test_capital_t_dumps_every_file(tmp_path: Path) -> None:
    main = "events {}\nhttp {\n    include conf.d/*.conf;\n}\n"
    conf = write_conf(tmp_path, main)
    (tmp_path / "conf.d").mkdir()
    (tmp_path / "conf.d" / "a.conf").write_text("server { listen 127.0.0.1:8080; }\n")
    (tmp_path / "conf.d" / "b.conf").write_text("server { listen 127.0.0.1:8081; }")
    proc = wsgate("-T", "-p", str(tmp_path), "-c", "nginx.conf")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.endswith(f"configuration file {conf} test is successful\n")
    assert proc.stdout == (f"# configuration file {conf}:\n{main}\n"
                           f"# configuration file {tmp_path}/conf.d/a.conf:\n"
                           "server { listen 127.0.0.1:8080; }\n\n"
                           f"# configuration file {tmp_path}/conf.d/b.conf:\n"
                           "server { listen 127.0.0.1:8081; }\n")


@pytest.mark.nginx
def test_capital_t_matches_nginx(tmp_path: Path) -> None:
    main = f"pid {tmp_path}/nginx.pid;\nevents {{}}\nhttp {{\n    include conf.d/*.conf;\n}}\n"
    write_conf(tmp_path, main)
    (tmp_path / "conf.d").mkdir()
    (tmp_path / "conf.d" / "a.conf").write_text("server { listen 127.0.0.1:8080; }\n")
    args = ("-Tq", "-p", f"{tmp_path}/", "-c", "nginx.conf", "-e", "stderr")
    theirs, ours = run(NGINX, *args), wsgate(*args)
    assert (ours.returncode, ours.stdout, ours.stderr) == (theirs.returncode, theirs.stdout, "")


def test_capital_t_bad_dumps_nothing(tmp_path: Path) -> None:
    write_conf(tmp_path, "events {}\nbogus;\n")
    proc = wsgate("-T", "-p", str(tmp_path), "-c", "nginx.conf")
    assert proc.returncode == 1
    assert proc.stdout == ""


def test_t_creates_pid_file_like_nginx(tmp_path: Path) -> None:
    write_conf(tmp_path, f"pid {tmp_path}/run/x.pid;\n" + GOOD)
    proc = wsgate("-t", "-p", str(tmp_path), "-c", "nginx.conf")
    assert proc.returncode == 1
    assert proc.stderr.splitlines()[0].endswith("syntax is ok")
    level, msg = first_error(proc.stderr) or ("", "")
    assert (level, msg) == ("emerg", f'open() "{tmp_path}/run/x.pid" failed (2: No such file or directory)')
    (tmp_path / "run").mkdir()
    assert wsgate("-t", "-p", str(tmp_path), "-c", "nginx.conf").returncode == 0
    assert (tmp_path / "run" / "x.pid").read_bytes() == b""


# ---------------------------------------------------------------- -g

def test_g_good(tmp_path: Path) -> None:
    write_conf(tmp_path, GOOD)
    proc = wsgate("-t", "-p", str(tmp_path), "-c", "nginx.conf", "-g", "daemon off; worker_processes 2;")
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize(("g", "message"), [
    ("daemon off", 'unexpected end of parameter, expecting ";" in command line'),
    ("bogus on;", 'unknown directive "bogus" in command line'),
    ("events {}", "block directives are not supported in -g option in command line"),
])
def test_g_bad(tmp_path: Path, g: str, message: str) -> None:
    write_conf(tmp_path, GOOD)
    proc = wsgate("-t", "-p", str(tmp_path), "-c", "nginx.conf", "-g", g)
    assert proc.returncode == 1
    assert first_error(proc.stderr) == ("emerg", message)


# ---------------------------------------------------------------- -s

def _signal_conf(tmp_path: Path) -> Path:
    return write_conf(tmp_path, f"pid {tmp_path}/master.pid;\n" + GOOD)


def test_s_without_pid_file(tmp_path: Path) -> None:
    _signal_conf(tmp_path)
    proc = wsgate("-s", "reload", "-p", str(tmp_path), "-c", "nginx.conf")
    assert proc.returncode == 1
    lines = [LOG_LINE.match(l) for l in proc.stderr.splitlines()]
    assert all(lines), proc.stderr
    assert [(m["level"], m["msg"]) for m in lines if m] == [
        ("notice", "signal process started"),
        ("error", f'open() "{tmp_path}/master.pid" failed (2: No such file or directory)'),
    ]


def test_s_stale_pid(tmp_path: Path) -> None:
    _signal_conf(tmp_path)
    stale = int(Path("/proc/sys/kernel/pid_max").read_text())  # no process has this pid
    (tmp_path / "master.pid").write_text(f"{stale}\n")
    proc = wsgate("-s", "reload", "-p", str(tmp_path), "-c", "nginx.conf")
    assert proc.returncode == 1
    assert first_error(proc.stderr) == ("alert", f"kill({stale}, 1) failed (3: No such process)")


@pytest.mark.parametrize("content", ["", "abc", "12x"])
def test_s_invalid_pid(tmp_path: Path, content: str) -> None:
    _signal_conf(tmp_path)
    (tmp_path / "master.pid").write_text(content + "\n")
    proc = wsgate("-s", "stop", "-p", str(tmp_path), "-c", "nginx.conf")
    assert proc.returncode == 1
    assert f'[error]' in proc.stderr
    assert proc.stderr.rstrip().endswith(f'invalid PID number "{content}" in "{tmp_path}/master.pid"')


@pytest.mark.nginx
@pytest.mark.parametrize("content", [None, "abc", "stale"])
def test_s_errors_match_nginx(tmp_path: Path, content: str | None) -> None:
    _signal_conf(tmp_path)
    if content is not None:
        value = Path("/proc/sys/kernel/pid_max").read_text().strip() if content == "stale" else content
        (tmp_path / "master.pid").write_text(value + "\n")
    args = ("-s", "quit", "-p", str(tmp_path), "-c", "nginx.conf", "-e", "stderr")
    theirs, ours = run(NGINX, *args), wsgate(*args)
    strip = lambda text: [LOG_LINE.sub(r"[\g<level>] \g<msg>", l) for l in text.splitlines()]  # noqa: E731
    assert (ours.returncode, strip(ours.stderr)) == (theirs.returncode, strip(theirs.stderr))


SIGNAL_CHILD = """
import signal, sys, time
got = []
for name in ("SIGHUP", "SIGTERM", "SIGQUIT", "SIGUSR1"):
    signal.signal(getattr(signal, name), lambda s, f, name=name: got.append(name))
print("ready", flush=True)
deadline = time.monotonic() + 30
while not got and time.monotonic() < deadline:
    time.sleep(0.01)
print(got[0] if got else "none", flush=True)
"""


@pytest.mark.parametrize(("name", "expected"), [
    ("reload", "SIGHUP"), ("stop", "SIGTERM"), ("quit", "SIGQUIT"), ("reopen", "SIGUSR1")])
def test_s_signals_the_master(tmp_path: Path, name: str, expected: str) -> None:
    _signal_conf(tmp_path)
    child = subprocess.Popen([sys.executable, "-c", SIGNAL_CHILD], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "ready"
        (tmp_path / "master.pid").write_text(f"{child.pid}\n")
        proc = wsgate("-s", name, "-p", str(tmp_path), "-c", "nginx.conf")
        assert proc.returncode == 0, proc.stderr
        assert child.stdout.readline().strip() == expected
    finally:
        if child.poll() is None:
            child.kill()
        child.wait(timeout=10)


def test_s_with_bad_config_fails_before_signalling(tmp_path: Path) -> None:
    write_conf(tmp_path, "events {}\nbogus;\n")
    proc = wsgate("-s", "reload", "-p", str(tmp_path), "-c", "nginx.conf")
    assert proc.returncode == 1
    assert first_error(proc.stderr) == ("emerg", f'unknown directive "bogus" in {tmp_path}/nginx.conf:2')
    assert "signal process started" not in proc.stderr


# ---------------------------------------------------------------- serving

def _workers(master_pid: int) -> list[int]:
    """Live children of the master, read from /proc (no psutil)."""
    kids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == master_pid and fields[0] != "Z":
            kids.append(int(entry.name))
    return kids


def _wait(pred, timeout: float = 10.0) -> bool:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.05)
    return False


def test_g_directives_survive_a_reload(tmp_path: Path) -> None:
    """nginx re-applies -g on HUP; a reload that dropped it would go back to 1 worker."""
    import signal
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    write_conf(tmp_path, GOOD.replace("8080", str(port)))
    pid_file = tmp_path / "g.pid"
    exe = Path(sys.executable).with_name("wsgate")
    proc = subprocess.Popen(
        [str(exe), "-p", str(tmp_path), "-c", "nginx.conf", "-e", str(tmp_path / "error.log"),
         "-g", f"daemon off; master_process on; worker_processes 2; pid {pid_file};"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert _wait(pid_file.exists), "the master never wrote its pid file"
        assert _wait(lambda: len(_workers(proc.pid)) == 2), _workers(proc.pid)
        before = set(_workers(proc.pid))
        proc.send_signal(signal.SIGHUP)
        # Give a wrong reload (back to 1 worker) time to happen before judging.
        _wait(lambda: len(_workers(proc.pid)) != 2, 2.0)
        assert len(_workers(proc.pid)) == 2, (before, _workers(proc.pid))
        assert proc.poll() is None
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


# ---------------------------------------------------------------- bad input

def _assert_emerg_at(proc: subprocess.CompletedProcess[str], path: Path) -> None:
    assert proc.returncode == 1
    error = first_error(proc.stderr)
    assert error is not None and error[0] == "emerg", proc.stderr[:2000]
    assert re.search(rf" in {re.escape(str(path))}:\d+$", error[1]), error


def _nginx_vs_wsgate(tmp_path: Path, conf: Path) -> tuple[subprocess.CompletedProcess[str], ...]:
    args = ("-t", "-p", f"{tmp_path}/", "-c", str(conf), "-e", "stderr")
    return run(NGINX, *args), wsgate(*args)


def test_binary_garbage(tmp_path: Path) -> None:
    conf = write_conf(tmp_path, bytes(range(256)) * 4)
    theirs, ours = _nginx_vs_wsgate(tmp_path, conf)
    _assert_emerg_at(ours, conf)
    # nginx prints the raw bytes of the bad token (up to its first NUL), so only the
    # position is compared.
    pos = lambda p: re.search(r" in (\S+:\d+)$", (first_error(p.stderr) or ("", ""))[1])  # noqa: E731
    assert theirs.returncode == 1
    assert pos(ours) and pos(theirs) and pos(ours)[1] == pos(theirs)[1]


def test_ten_megabyte_token(tmp_path: Path) -> None:
    conf = write_conf(tmp_path, "events {}\n" + "x" * 10_000_000)
    theirs, ours = _nginx_vs_wsgate(tmp_path, conf)
    _assert_emerg_at(ours, conf)
    assert first_error(ours.stderr) == first_error(theirs.stderr)


def test_ten_megabyte_config_error_at_the_end(tmp_path: Path) -> None:
    conf = write_conf(tmp_path, "events {}\n" + "# padding line of a big file\n" * 360_000 + "http { foo; }\n")
    assert conf.stat().st_size > 10_000_000
    theirs, ours = _nginx_vs_wsgate(tmp_path, conf)
    _assert_emerg_at(ours, conf)
    assert first_error(ours.stderr) == first_error(theirs.stderr)


def test_include_loop(tmp_path: Path) -> None:
    # nginx 1.22 has no include-loop check and crashes (SIGSEGV) on this; wsgate must
    # reject it with an [emerg] at a position instead.
    write_conf(tmp_path, "include self.inc;\n", "self.inc")
    conf = write_conf(tmp_path, "events {}\nhttp {\n    include self.inc;\n}\n")
    proc = wsgate("-t", "-p", str(tmp_path), "-c", str(conf))
    assert proc.returncode == 1
    error = first_error(proc.stderr)
    assert error is not None and error[0] == "emerg", proc.stderr[:2000]
    assert re.search(r" in \S+:\d+$", error[1]), error


def test_missing_config_matches_nginx(tmp_path: Path) -> None:
    theirs, ours = _nginx_vs_wsgate(tmp_path, tmp_path / "missing.conf")
    assert ours.returncode == theirs.returncode == 1
    assert first_error(ours.stderr) == first_error(theirs.stderr)
    assert ours.stderr.splitlines()[-1] == theirs.stderr.splitlines()[-1].replace("nginx:", "wsgate:")


def test_directory_as_config_matches_nginx(tmp_path: Path) -> None:
    target = tmp_path / "conf"
    target.mkdir()
    theirs, ours = _nginx_vs_wsgate(tmp_path, target)
    assert ours.returncode == theirs.returncode == 1
    assert first_error(ours.stderr) == first_error(theirs.stderr)


def test_unreadable_config(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("running as root: chmod 000 does not stop root reading; "
                    "unreadability is covered by test_directory_as_config_matches_nginx")
    conf = write_conf(tmp_path, GOOD)
    conf.chmod(0)
    proc = wsgate("-t", "-p", str(tmp_path), "-c", str(conf))
    assert proc.returncode == 1
    assert first_error(proc.stderr) == (
        "emerg", f'open() "{conf}" failed (13: Permission denied)')


def test_example_config_is_accepted() -> None:
    examples = Path(__file__).resolve().parents[2] / "examples"
    proc = wsgate("-t", "-p", f"{examples}/", "-c", "wsgate.conf")
    assert proc.returncode == 0, proc.stderr


@pytest.mark.nginx
def test_example_config_is_accepted_by_nginx() -> None:
    examples = Path(__file__).resolve().parents[2] / "examples"
    proc = run(NGINX, "-t", "-p", f"{examples}/", "-c", "wsgate.conf")
    assert proc.returncode == 0, proc.stderr


def test_no_traceback_on_internal_error(tmp_path: Path) -> None:
    # A config path that is not valid text for the filesystem encoding must not crash.
    proc = wsgate("-t", "-p", str(tmp_path), "-c", "bad\udcff.conf")
    assert proc.returncode == 1
    assert proc.stderr.strip()

