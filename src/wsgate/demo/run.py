"""Orchestration of `wsgate demo`: backend, config, wsgate, live view, shutdown.

Order: the backend binds a free 127.0.0.1 port (in this process's event loop); the
config is written to a private directory; wsgate runs as a SUBPROCESS of the same
interpreter, `python -m wsgate -p DIR/ -c demo.conf` -- exactly the command a user
would type, so the demo proves the nginx-mode path end to end; a crash or hang in the
proxy cannot take the demo's own loop down, the proxy's signals and exit status are its
own, and stopping it is a signal away.  (The library path would share one loop and one
failure domain with the backend, and hide the CLI from the demo.)

The child stays in our process group, so a Ctrl-C in the terminal, or a supervisor
killing the group, reaches it too and it can never outlive the demo.  On stop the
backend says 1001 to its sessions, then wsgate gets SIGTERM (SIGKILL after a grace).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass

from wsgate.demo import live
from wsgate.demo.app import DemoApp
from wsgate.demo.conf import DemoPaths, render_config
from wsgate.demo.room import Room
from wsgate.demo.selftest import run_checks

__all__ = ["DemoOptions", "DemoError", "run_demo", "parse_listen", "choose_listen",
           "start_proxy", "stop_proxy"]

DEFAULT_LISTEN = ("127.0.0.1", 8080)
START_TIMEOUT = 10.0
STOP_GRACE = 5.0

Write = Callable[[str], None]


class DemoError(Exception):
    """A step of the demo failed; the message is for the user, as is."""


@dataclass(frozen=True)
class DemoOptions:
    listen: str | None = None          # host:port, port, or None for 127.0.0.1:8080
    check: bool = False                # run the self-test and exit
    print_config: bool = False         # print the config and exit
    directory: str | None = None       # keep files here instead of a temp dir
    stats_interval: float = 10.0


# -- addresses ------------------------------------------------------------------------------


def parse_listen(text: str) -> tuple[str, int]:
    """"8080", "127.0.0.1:8080", "[::1]:8080", "localhost:8080" -> (host, port)."""
    host, sep, port = text.rpartition(":")
    if not sep:
        host, port = DEFAULT_LISTEN[0], text
    host = host.strip("[]") or DEFAULT_LISTEN[0]
    if not port.isdigit() or int(port) > 65535:
        raise DemoError(f'invalid --listen "{text}": expected [host:]port')
    return ("127.0.0.1" if host == "localhost" else host), int(port)


def _can_bind(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)   # as the proxy will
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def _free_port(host: str) -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def choose_listen(opts: DemoOptions, write: Write,
                  default: tuple[str, int] = DEFAULT_LISTEN) -> tuple[str, int]:
    """The proxy's address: the default 8080 falls back to a free port (and says so);
    port 0 means any free port; an explicit port that is taken is an error."""
    if opts.listen is None and opts.check:     # nobody opens a URL: never fight for 8080
        return default[0], _free_port(default[0])
    host, port = parse_listen(opts.listen) if opts.listen else default
    if port == 0:
        return host, _free_port(host)
    if _can_bind(host, port):
        return host, port
    if opts.listen is not None:
        raise DemoError(f"{_hostport(host, port)} is already in use; pick another --listen")
    fallback = _free_port(host)
    write(f"{_hostport(host, port)} is in use; listening on {_hostport(host, fallback)} instead")
    return host, fallback


def _hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


# -- the run ----------------------------------------------------------------------------------


async def run_demo(opts: DemoOptions, write: Write) -> int:
    """Run the demo until stopped (or the check finishes); returns the exit status."""
    directory = opts.directory or tempfile.mkdtemp(prefix="wsgate-demo-")
    os.makedirs(directory, exist_ok=True)
    paths = DemoPaths(os.path.abspath(directory))
    try:
        listen = choose_listen(opts, write)
        if opts.print_config:
            backend_port = _free_port("127.0.0.1")
            write(render_config(_hostport(*listen), f"127.0.0.1:{backend_port}", paths))
            return 0
        return await _serve(opts, paths, listen, write)
    finally:
        if opts.directory is None:
            shutil.rmtree(directory, ignore_errors=True)


async def _serve(opts: DemoOptions, paths: DemoPaths, listen: tuple[str, int],
                 write: Write) -> int:
    room = Room(on_event=None if opts.check else (lambda e: write(live.format_event(e))))
    app = DemoApp(room)
    host, port = await app.start()
    with open(paths.conf, "w", encoding="utf-8") as f:
        f.write(render_config(_hostport(*listen), f"{host}:{port}", paths))
    proxy: asyncio.subprocess.Process | None = None
    try:
        proxy = await start_proxy(paths, listen)
        _banner(paths, listen, write, opts)
        if opts.check:
            return await _check(listen, write)
        return await _live(opts, app, paths, proxy, write)
    finally:
        await app.stop()
        if proxy is not None:
            await stop_proxy(proxy)


def _proxy_command(paths: DemoPaths) -> list[str]:
    return [sys.executable, "-m", "wsgate", "-p", paths.dir + "/", "-c", "demo.conf",
            "-e", paths.error_log]


async def start_proxy(paths: DemoPaths, listen: tuple[str, int]) -> asyncio.subprocess.Process:
    """Start wsgate and wait until it accepts connections on `listen`."""
    with open(paths.output, "wb") as out:
        proxy = await asyncio.create_subprocess_exec(
            *_proxy_command(paths), stdin=asyncio.subprocess.DEVNULL, stdout=out,
            stderr=asyncio.subprocess.STDOUT)
    deadline = asyncio.get_running_loop().time() + START_TIMEOUT
    while asyncio.get_running_loop().time() < deadline:
        if proxy.returncode is not None:
            raise DemoError(_start_failure(paths, f"wsgate exited with status {proxy.returncode}"))
        if await _accepts(*listen):
            return proxy
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(proxy.wait(), 0.05)
    await stop_proxy(proxy)
    raise DemoError(_start_failure(paths, f"wsgate did not listen on "
                                          f"{_hostport(*listen)} within {START_TIMEOUT:g}s"))


async def _accepts(host: str, port: int) -> bool:
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 1.0)
    except (OSError, asyncio.TimeoutError):
        return False
    writer.close()
    return True


def _start_failure(paths: DemoPaths, what: str) -> str:
    lines = _tail(paths.output) + [ln for ln in _tail(paths.error_log) if ln not in _tail(paths.output)]
    said = "\n".join(f"    {ln}" for ln in lines) or "    (no output)"
    return (f"the proxy did not start: {what}.\nwsgate said:\n{said}\n"
            f"command: {' '.join(_proxy_command(paths))}")


def _tail(path: str, count: int = 8) -> list[str]:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return [ln.rstrip() for ln in f.readlines()[-count:] if ln.strip()]
    except OSError:
        return []


async def stop_proxy(proxy: asyncio.subprocess.Process) -> None:
    """SIGTERM (nginx: fast stop), then SIGKILL after STOP_GRACE seconds."""
    if proxy.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proxy.send_signal(signal.SIGTERM)
    try:
        await asyncio.wait_for(proxy.wait(), STOP_GRACE)
    except asyncio.TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            proxy.kill()
        await proxy.wait()


def _banner(paths: DemoPaths, listen: tuple[str, int], write: Write, opts: DemoOptions) -> None:
    host, port = listen
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    write(f"wsgate demo: open http://{_hostport(shown, port)}/ in a browser "
          f"(open it twice to chat)")
    write(f"  config:     {paths.conf}   (wsgate -p {paths.dir}/ -c demo.conf)")
    write(f"  access log: {paths.access_log}")
    write(f"  error log:  {paths.error_log}")
    if opts.directory is None:
        write("  (these files are removed on exit; --dir DIR keeps them)")
    write("  running the self-test..." if opts.check else "  Ctrl-C stops everything.")


async def _check(listen: tuple[str, int], write: Write) -> int:
    ok = await run_checks(listen[0], listen[1], write)
    write("OK" if ok else "FAIL")
    return 0 if ok else 1


async def _live(opts: DemoOptions, app: DemoApp, paths: DemoPaths,
                proxy: asyncio.subprocess.Process, write: Write) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signo in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signo, stop.set)
    tasks = [asyncio.create_task(live.tail_access_log(paths.access_log, write)),
             asyncio.create_task(live.print_counts(app.room.stats, write, opts.stats_interval))]
    exited = asyncio.create_task(proxy.wait())
    stopped = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait([exited, stopped], return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (*tasks, exited, stopped):
            task.cancel()
        for signo in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signo)
    if stop.is_set():
        write("stopping...")
        return 0
    write(f"wsgate exited unexpectedly with status {proxy.returncode}:")
    for line in _tail(paths.output) + _tail(paths.error_log):
        write(f"    {line}")
    return 1
