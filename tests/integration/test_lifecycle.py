"""The process model over real processes: master + workers, signals, -s, pid file.

Each test starts wsgate in nginx mode (master_process on) in its own prefix with a
real WebSocket echo backend, and checks what a client and the error log see.
"""

from __future__ import annotations

import asyncio
import os
import pathlib
import signal
import subprocess
import time
from typing import Any, Callable

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from helpers.fixtures import procs, websockets_backend, wsgate_server  # noqa: F401
from helpers.nginx import WSGATE_BIN
from helpers.ports import free_port, port_open
from soak.reload_soak import process_tree

pytestmark = pytest.mark.timeout(90)

CONF = """
worker_processes {{workers}};
error_log error.log notice;
events { }
http {
    map $http_upgrade $connection_upgrade { default upgrade; '' close; }
    server {
        listen 127.0.0.1:{{port}};
        location / {
            proxy_pass http://127.0.0.1:{{backend}};
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
        }
        location = /plain { return 200 "{{text}}\\n"; }
    }
}
"""


def _start(wsgate_server: Callable[..., Any], backend: Any, tmp: pathlib.Path,
           workers: int = 2, text: str = "one", extra: str = "") -> Any:
    port = free_port()
    conf = CONF.replace("events { }", extra + "events { }")
    return wsgate_server(conf, master=True, workers=workers, port=port,
                         backend=backend.port, text=text)


def _workers(server: Any) -> list[int]:
    return process_tree(server.proc.pid)[1:]


def _wait(pred: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.05)
    return pred()


def _get(port: int, path: str = "/plain") -> str:
    import urllib.request
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
        return str(resp.read().decode())


async def _echo(ws: Any, text: str) -> bool:
    await ws.send(text)
    return bool(await asyncio.wait_for(ws.recv(), 5) == text)


def _socket_owner(local_port: int, server_port: int, pids: list[int]) -> int | None:
    """Which worker holds the server side of the client connection from `local_port`."""
    inode = None
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in pathlib.Path(table).read_text().splitlines()[1:]:
            f = line.split()
            loc, rem = f[1], f[2]
            if int(loc.split(":")[1], 16) == server_port and \
                    int(rem.split(":")[1], 16) == local_port:
                inode = f[9]
    if inode is None:
        return None
    for pid in pids:
        fd_dir = pathlib.Path(f"/proc/{pid}/fd")
        for fd in fd_dir.iterdir():
            try:
                if os.readlink(fd) == f"socket:[{inode}]":
                    return pid
            except OSError:
                continue
    return None


def test_pid_file_lifecycle_and_workers(wsgate_server, websockets_backend, tmp_path):
    server = _start(wsgate_server, websockets_backend(), tmp_path, workers=3)
    pid_file = server.prefix / "nginx.pid"
    assert pid_file.read_text() == f"{server.proc.pid}\n"
    assert _wait(lambda: len(_workers(server)) == 3)
    assert _get(server.port) == "one\n"
    assert server.stop() == 0
    assert not pid_file.exists()
    assert server.alerts() == []


def test_worker_sigkill_is_restarted_and_other_tunnels_survive(
        wsgate_server, websockets_backend, tmp_path):
    server = _start(wsgate_server, websockets_backend(), tmp_path, workers=2)
    assert _wait(lambda: len(_workers(server)) == 2)
    workers = _workers(server)

    async def scenario() -> None:
        sessions = []
        owners: dict[int, list[Any]] = {}
        for i in range(16):
            ws = await connect(server.url(f"/s{i}"), ping_interval=None)
            assert await _echo(ws, f"hello {i}")
            owner = _socket_owner(ws.local_address[1], server.port, workers)
            assert owner in workers
            owners.setdefault(owner, []).append(ws)
            sessions.append(ws)
            if len(owners) == 2 and i >= 3:
                break
        victim = max(owners, key=lambda p: len(owners[p]))
        os.kill(victim, signal.SIGKILL)
        for pid, conns in owners.items():
            for n, ws in enumerate(conns):
                if pid == victim:
                    with pytest.raises(ConnectionClosed):
                        await _echo(ws, "dead")
                else:
                    assert await _echo(ws, f"still alive {n}")
        assert _wait(lambda: len(_workers(server)) == 2)
        assert victim not in _workers(server)
        async with connect(server.url("/new"), ping_interval=None) as ws:
            assert await _echo(ws, "after restart")
        for ws in sessions:
            await ws.close()
        assert f"[alert]" in server.error_log()
        assert f"worker process {victim} exited on signal 9" in server.error_log()
    asyncio.run(scenario())
    assert server.stop() == 0


def test_hup_reload_keeps_tunnels_and_applies_new_config(
        wsgate_server, websockets_backend, tmp_path):
    server = _start(wsgate_server, websockets_backend(), tmp_path, workers=2)
    # the port answers once one worker is up; the other may still be forking
    assert _wait(lambda: len(_workers(server)) == 2)
    before = _workers(server)

    async def scenario() -> None:
        ws = await connect(server.url("/t"), ping_interval=None)
        assert await _echo(ws, "before")
        server.conf_path.write_text(server.conf_text.replace('"one', '"two'))
        server.send_signal(signal.SIGHUP)
        assert _wait(lambda: _get(server.port) == "two\n")
        assert await _echo(ws, "after reload")
        await ws.close()
    asyncio.run(scenario())
    assert sorted(_workers(server)) == sorted(before)    # swapped in place
    assert "reconfiguring" in server.error_log()
    assert server.stop() == 0


def test_reload_with_broken_config_keeps_running(wsgate_server, websockets_backend, tmp_path):
    server = _start(wsgate_server, websockets_backend(), tmp_path)
    server.conf_path.write_text(server.conf_text.replace("events { }", "events { bogus; }"))
    server.send_signal(signal.SIGHUP)
    conf = str(server.conf_path)
    assert _wait(lambda: f'unknown directive "bogus" in {conf}:' in server.error_log())
    assert "[emerg]" in server.error_log()
    assert _get(server.port) == "one\n"
    assert server.stop() == 0


def test_reload_new_listen_and_worker_count(wsgate_server, websockets_backend, tmp_path):
    server = _start(wsgate_server, websockets_backend(), tmp_path, workers=1)
    extra_port = free_port()

    async def scenario() -> None:
        ws = await connect(server.url("/t"), ping_interval=None)
        assert await _echo(ws, "before")
        text = server.conf_text.replace("worker_processes 1;", "worker_processes 3;")
        text = text.replace(f"listen 127.0.0.1:{server.port};",
                            f"listen 127.0.0.1:{server.port}; listen 127.0.0.1:{extra_port};")
        server.conf_path.write_text(text)
        server.send_signal(signal.SIGHUP)
        assert _wait(lambda: port_open("127.0.0.1", extra_port))
        assert _get(extra_port) == "one\n"
        assert _wait(lambda: len(_workers(server)) == 3)
        assert await _echo(ws, "after growing")
        server.conf_path.write_text(server.conf_text)      # back to 1 worker, 1 port
        server.send_signal(signal.SIGHUP)
        assert _wait(lambda: not port_open("127.0.0.1", extra_port))
        assert _wait(lambda: len(_workers(server)) == 1)
        assert await _echo(ws, "after shrinking")
        await ws.close()
    asyncio.run(scenario())
    assert server.stop() == 0
    assert server.alerts() == []


def test_quit_waits_for_a_live_tunnel(wsgate_server, websockets_backend, tmp_path):
    server = _start(wsgate_server, websockets_backend(), tmp_path, workers=1)
    pid_file = server.prefix / "nginx.pid"

    async def scenario() -> None:
        ws = await connect(server.url("/t"), ping_interval=None)
        assert await _echo(ws, "before")
        server.send_signal(signal.SIGQUIT)
        assert _wait(lambda: not port_open("127.0.0.1", server.port))
        await asyncio.sleep(0.5)
        assert await _echo(ws, "while draining")
        assert server.proc.alive() and pid_file.exists()
        await ws.close()
    asyncio.run(scenario())
    assert server.proc.wait(10) == 0
    assert not pid_file.exists()
    assert "gracefully shutting down" in server.error_log()


def test_quit_closes_tunnels_at_worker_shutdown_timeout(
        wsgate_server, websockets_backend, tmp_path):
    server = _start(wsgate_server, websockets_backend(), tmp_path, workers=1,
                    extra="worker_shutdown_timeout 500ms;\n")

    async def scenario() -> None:
        ws = await connect(server.url("/t"), ping_interval=None)
        assert await _echo(ws, "before")
        started = time.monotonic()
        server.send_signal(signal.SIGQUIT)
        with pytest.raises(ConnectionClosed):
            for _ in range(100):
                await _echo(ws, "draining")
                await asyncio.sleep(0.1)
        assert time.monotonic() - started < 8
    asyncio.run(scenario())
    assert server.proc.wait(10) == 0


def test_term_stops_fast(wsgate_server, websockets_backend, tmp_path):
    server = _start(wsgate_server, websockets_backend(), tmp_path, workers=2)
    assert _wait(lambda: len(_workers(server)) == 2)
    workers = _workers(server)

    async def scenario() -> None:
        ws = await connect(server.url("/t"), ping_interval=None)
        assert await _echo(ws, "before")
        server.send_signal(signal.SIGTERM)
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 5)
    asyncio.run(scenario())
    assert server.proc.wait(10) == 0
    assert not (server.prefix / "nginx.pid").exists()
    assert all(not pathlib.Path(f"/proc/{p}").exists() or
               "Z" in pathlib.Path(f"/proc/{p}/stat").read_text().split()[2]
               for p in workers)


def test_usr1_reopens_logs(wsgate_server, websockets_backend, tmp_path):
    server = _start(wsgate_server, websockets_backend(), tmp_path)
    access, error = server.prefix / "access.log", server.prefix / "error.log"
    assert _get(server.port) == "one\n"
    assert _wait(lambda: "GET /plain" in access.read_text())
    access.rename(server.prefix / "access.log.1")
    error.rename(server.prefix / "error.log.1")
    server.send_signal(signal.SIGUSR1)
    assert _wait(lambda: access.exists() and error.exists())
    for _ in range(3):     # each worker reopens its own; any of them may answer
        assert _get(server.port) == "one\n"
    assert _wait(lambda: access.read_text().count("GET /plain") == 3)
    assert "GET /plain" in (server.prefix / "access.log.1").read_text()
    assert server.stop() == 0
    assert "exit" in error.read_text()


def _cli(server: Any, *flags: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([WSGATE_BIN, "-p", f"{server.prefix}/", "-c", "nginx.conf",
                           "-g", f"pid {server.prefix}/nginx.pid;", *flags],
                          capture_output=True, text=True, timeout=30)


def test_dash_s_reload_reopen_quit(wsgate_server, websockets_backend, tmp_path):
    server = _start(wsgate_server, websockets_backend(), tmp_path)
    server.conf_path.write_text(server.conf_text.replace('"one', '"two'))
    assert _cli(server, "-s", "reload").returncode == 0
    assert _wait(lambda: _get(server.port) == "two\n")
    (server.prefix / "access.log").rename(server.prefix / "access.log.old")
    assert _cli(server, "-s", "reopen").returncode == 0
    assert _wait(lambda: (server.prefix / "access.log").exists())
    assert _cli(server, "-s", "quit").returncode == 0
    assert server.proc.wait(10) == 0
    assert "Traceback" not in server.output()


def test_dash_s_stop(wsgate_server, websockets_backend, tmp_path):
    server = _start(wsgate_server, websockets_backend(), tmp_path)
    assert _cli(server, "-s", "stop").returncode == 0
    assert server.proc.wait(10) == 0
    assert not (server.prefix / "nginx.pid").exists()


def test_dash_s_without_master_and_with_dead_pid(wsgate_server, websockets_backend, tmp_path):
    server = _start(wsgate_server, websockets_backend(), tmp_path, workers=1)
    assert server.stop() == 0
    gone = _cli(server, "-s", "reload")
    assert gone.returncode == 1
    assert f'open() "{server.prefix}/nginx.pid" failed (2: No such file or directory)' \
        in gone.stderr
    dead = subprocess.Popen(["true"])
    dead.wait()
    (server.prefix / "nginx.pid").write_text(f"{dead.pid}\n")
    stale = _cli(server, "-s", "quit")
    assert stale.returncode == 1
    assert f"kill({dead.pid}, 3) failed (3: No such process)" in stale.stderr
    # a pid file naming a dead process does not stop a new start
    server.start()
    assert (server.prefix / "nginx.pid").read_text() == f"{server.proc.pid}\n"
    assert server.stop() == 0


def test_second_instance_on_same_port_fails_like_nginx(
        wsgate_server, websockets_backend, tmp_path):
    server = _start(wsgate_server, websockets_backend(), tmp_path, workers=1)
    other = tmp_path / "other"
    other.mkdir()
    (other / "nginx.conf").write_text(server.conf_text)
    started = time.monotonic()
    res = subprocess.run([WSGATE_BIN, "-p", f"{other}/", "-c", "nginx.conf",
                          "-g", f"pid {other}/nginx.pid;"],
                         capture_output=True, text=True, timeout=30)
    assert res.returncode == 1
    msg = f"bind() to 127.0.0.1:{server.port} failed (98: Address already in use)"
    assert res.stderr.count(msg) == 5
    assert "still could not bind()" in res.stderr
    assert "Traceback" not in res.stderr
    assert time.monotonic() - started >= 1.5          # nginx retries, 500 ms apart
    assert not (other / "nginx.pid").exists()
    assert (server.prefix / "nginx.pid").exists()      # the running one's file untouched
    assert _get(server.port) == "one\n"
    assert server.stop() == 0


def test_worker_connections_limit(wsgate_server, websockets_backend, tmp_path):
    server = _start(wsgate_server, websockets_backend(), tmp_path, workers=1)
    text = server.conf_text.replace("events { }", "events { worker_connections 4; }")
    server.conf_path.write_text(text)
    server.send_signal(signal.SIGHUP)
    assert _wait(lambda: server.error_log().count("reconfiguring") == 1)
    time.sleep(0.5)

    async def scenario() -> None:
        kept = []
        for i in range(3):     # 1 listener + 3 clients = 4: the fourth client fails
            ws = await connect(server.url(f"/{i}"), ping_interval=None)
            assert await _echo(ws, "x")
            kept.append(ws)
        with pytest.raises(Exception):
            await connect(server.url("/over"), ping_interval=None, open_timeout=3)
        for ws in kept:
            await ws.close()
    asyncio.run(scenario())
    assert "4 worker_connections are not enough" in server.error_log()
    server.stop()
