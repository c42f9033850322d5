"""`wsgate serve` (quick mode): the generated config and the real thing over sockets."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time

import pytest
from websockets.asyncio.client import connect

from helpers.fixtures import procs, recording_backend, websockets_backend  # noqa: F401
from helpers.nginx import WSGATE_BIN
from helpers.ports import free_port, wait_port
from wsgate.cli.serve import QuickOptions, balance_line, build_config_text

pytestmark = pytest.mark.timeout(60)


def _print_config(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([WSGATE_BIN, "serve", *args, "--print-config"],
                          capture_output=True, text=True, timeout=30)


@pytest.mark.parametrize("balance, line", [
    ("round_robin", ""),
    ("least_conn", "least_conn;"),
    ("ip_hash", "ip_hash;"),
    ("random", "random;"),
    ("hash:$remote_addr", "hash $remote_addr;"),
    ("hash:$request_uri:consistent", "hash $request_uri consistent;"),
])
def test_balance_methods(balance: str, line: str) -> None:
    assert balance_line(balance) == line


def test_bad_balance_and_timeout_are_refused() -> None:
    with pytest.raises(ValueError, match="--balance"):
        balance_line("fastest")
    with pytest.raises(ValueError, match="--read-timeout"):
        build_config_text(QuickOptions(["8080"], ["127.0.0.1:1"], read_timeout="soon"))
    res = subprocess.run([WSGATE_BIN, "serve", "--listen", "8080", "--to", "127.0.0.1:1",
                          "--balance", "fastest"], capture_output=True, text=True, timeout=30)
    assert res.returncode == 2 and "invalid --balance" in res.stderr


def test_print_config_is_valid_nginx_syntax(tmp_path) -> None:
    res = _print_config("--listen", "127.0.0.1:8080", "--listen", "8081",
                        "--to", "127.0.0.1:3000", "--to", "127.0.0.1:3001",
                        "--balance", "least_conn", "--read-timeout", "90s",
                        "--access-log", str(tmp_path / "a.log"), "--workers", "2")
    assert res.returncode == 0, res.stderr
    text = res.stdout
    for piece in ("listen 127.0.0.1:8080;", "listen 8081;", "server 127.0.0.1:3000;",
                  "server 127.0.0.1:3001;", "least_conn;", "proxy_read_timeout 90s;",
                  "worker_processes 2;", "proxy_http_version 1.1;",
                  "proxy_set_header Upgrade $http_upgrade;",
                  "proxy_set_header Connection $connection_upgrade;"):
        assert piece in text
    conf = tmp_path / "quick.conf"
    conf.write_text(text)
    for binary in (WSGATE_BIN, "/usr/sbin/nginx"):   # real nginx accepts it too
        check = subprocess.run([binary, "-t", "-p", f"{tmp_path}/", "-c", str(conf),
                                "-g", f"pid {tmp_path}/t.pid;", "-e", str(tmp_path / "e.log")],
                               capture_output=True, text=True, timeout=30)
        assert check.returncode == 0, (binary, check.stderr)


def test_websocket_off_drops_upgrade_lines() -> None:
    text = build_config_text(QuickOptions(["8080"], ["127.0.0.1:1"], websocket=False))
    assert "$http_upgrade" not in text


def _wait_exit(proc: subprocess.Popen[str], timeout: float) -> int | None:
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)
        return None


def test_serve_group_websocket_http_and_reload(websockets_backend, recording_backend,
                                              tmp_path) -> None:
    ws_backend = websockets_backend()
    port = free_port()
    log = tmp_path / "access.log"
    proc = subprocess.Popen([WSGATE_BIN, "serve", "--listen", f"127.0.0.1:{port}",
                             "--to", f"127.0.0.1:{ws_backend.port}",
                             "--to", f"127.0.0.1:{ws_backend.port}",
                             "--balance", "least_conn", "--workers", "2",
                             "--access-log", str(log), "--prefix", str(tmp_path / "p")],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        wait_port("127.0.0.1", port, 15)

        async def scenario() -> None:
            for i in range(4):
                async with connect(f"ws://127.0.0.1:{port}/chat", ping_interval=None) as ws:
                    await ws.send(f"m{i}")
                    assert await asyncio.wait_for(ws.recv(), 5) == f"m{i}"
            import urllib.request
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/http", timeout=5) as r:
                assert r.status == 200 and b"hello from websockets" in r.read()
            ws = await connect(f"ws://127.0.0.1:{port}/long", ping_interval=None)
            proc.send_signal(signal.SIGHUP)           # the generated file reloads
            time.sleep(1.0)
            await ws.send("after reload")
            assert await asyncio.wait_for(ws.recv(), 5) == "after reload"
            await ws.close()
        asyncio.run(scenario())
        assert (tmp_path / "p" / "logs" / "nginx.pid").exists()
        proc.send_signal(signal.SIGQUIT)
        assert _wait_exit(proc, 15) == 0
        assert not (tmp_path / "p" / "logs" / "nginx.pid").exists()
        assert "GET /http" in log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    out = proc.stdout.read() if proc.stdout else ""
    assert "Traceback" not in out and "[alert]" not in out


def test_serve_port_in_use_fails_like_nginx(tmp_path) -> None:
    import socket
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        res = subprocess.run([WSGATE_BIN, "serve", "--listen", f"127.0.0.1:{port}",
                              "--to", "127.0.0.1:1", "--prefix", str(tmp_path)],
                             capture_output=True, text=True, timeout=30)
    assert res.returncode == 1
    assert f"bind() to 127.0.0.1:{port} failed (98: Address already in use)" in res.stderr
    assert "still could not bind()" in res.stderr and "Traceback" not in res.stderr


