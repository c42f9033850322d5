"""wsgate.observe.errorlog: nginx's error-log line format, level order and echo rules."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pytest

from wsgate.observe import errorlog
from wsgate.observe.errorlog import ErrorLog, context, enabled, format_line, level_rank

NOW = time.mktime((2026, 11, 22, 4, 17, 0, 0, 0, -1))


def test_line_format_is_nginx() -> None:
    line = format_line("emerg", 'unknown directive "x" in /etc/nginx.conf:12', pid=1234, tid=1234, now=NOW)
    assert line == '2026/11/22 04:17:00 [emerg] 1234#1234: unknown directive "x" in /etc/nginx.conf:12\n'


def test_connection_errno_and_request_context() -> None:
    tail = context(action="connecting to upstream", client="127.0.0.1", server="localhost",
                   request="GET /ws HTTP/1.1", upstream="http://127.0.0.1:3000/ws", host="localhost:8080")
    line = format_line("error", "connect() failed", pid=7, tid=7, connection=5, err=111, tail=tail, now=NOW)
    assert line == (
        "2026/11/22 04:17:00 [error] 7#7: *5 connect() failed (111: Connection refused) while "
        'connecting to upstream, client: 127.0.0.1, server: localhost, request: "GET /ws HTTP/1.1", '
        'upstream: "http://127.0.0.1:3000/ws", host: "localhost:8080"\n')


def test_context_omits_absent_parts_and_keeps_order() -> None:
    assert context() == ""
    assert context(client="::1", referrer="http://a/") == ', client: ::1, referrer: "http://a/"'
    assert context(action="reading response header from upstream") == \
        " while reading response header from upstream"


def test_level_order_is_nginx() -> None:
    assert [level_rank(n) for n in errorlog.LEVELS] == list(range(1, 9))
    assert errorlog.LEVELS == ("emerg", "alert", "crit", "error", "warn", "notice", "info", "debug")
    assert enabled("error", "crit") and enabled("error", "error")
    assert not enabled("error", "warn")
    assert enabled("debug", "info") and not enabled("emerg", "alert")
    with pytest.raises(ValueError, match='invalid log level "loud"'):
        level_rank("loud")


def test_long_lines_are_truncated_like_nginx() -> None:
    line = format_line("error", "x" * 5000, pid=1, tid=1, now=NOW)
    assert len(line.encode()) == errorlog.MAX_LINE + 1 and line.endswith("\n")


def test_default_pid_and_tid_are_the_process() -> None:
    line = format_line("warn", "m")
    assert re.match(rf"^\d{{4}}/\d\d/\d\d \d\d:\d\d:\d\d \[warn\] {os.getpid()}#\d+: m\n$", line)


def test_file_log_writes_and_echoes_serious_levels(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = ErrorLog.open(str(tmp_path / "error.log"), level="notice")
    log.write("emerg", "bad thing")
    log.write("notice", "fine thing")
    log.write("info", "filtered out")
    log.close()
    lines = (tmp_path / "error.log").read_text().splitlines()
    assert [re.sub(r"^.*? \[", "[", line) for line in lines] == ["[emerg] " + lines[0].split("] ", 1)[1],
                                                                  "[notice] " + lines[1].split("] ", 1)[1]]
    assert lines[0].endswith(": bad thing") and lines[1].endswith(": fine thing")
    assert capsys.readouterr().err == "wsgate: [emerg] bad thing\n"


def test_filtered_serious_message_is_still_echoed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = ErrorLog.open(str(tmp_path / "error.log"), level="emerg")
    log.write("warn", "a warning", err=2)
    log.close()
    assert (tmp_path / "error.log").read_text() == ""
    assert capsys.readouterr().err == "wsgate: [warn] a warning (2: No such file or directory)\n"


def test_stderr_log_writes_full_lines_only(capsys: pytest.CaptureFixture[str]) -> None:
    log = ErrorLog.open(None, level="info")
    log.write("emerg", "once")
    err = capsys.readouterr().err
    assert err.count("once") == 1 and re.match(r"^\d{4}/.* \[emerg\] \d+#\d+: once\n$", err)


def test_no_echo_when_detached(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = ErrorLog.open(str(tmp_path / "e.log"), echo_stderr=False)
    log.write("emerg", "quiet")
    log.close()
    assert capsys.readouterr().err == ""


def test_unopenable_file_falls_back_to_stderr(tmp_path: Path) -> None:
    log = ErrorLog.open(str(tmp_path / "nodir" / "e.log"))
    assert log.to_stderr and isinstance(log.open_error, FileNotFoundError)
