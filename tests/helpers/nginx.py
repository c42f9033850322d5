"""Run real nginx and wsgate on the SAME configuration text, for differential tests.

    conf = '''events {}
    http { server { listen 127.0.0.1:{{port}};
                    location / { proxy_pass http://127.0.0.1:{{backend}}; } } }'''
    srv = NginxServer(conf, tmp_path / "nginx", params={"port": p, "backend": b}).start()
    ... srv.url("/x") ... srv.error_log() ...
    srv.stop()                       # QUIT, then KILL after a grace period

`WsgateServer` has the same API and runs `.venv/bin/wsgate` with nginx's flags, so a
test writes one config and runs both.

How the config is made runnable (`prepare_conf`), identically for both servers:
- `{{name}}` placeholders are replaced from `params` (nginx's own syntax never has
  `{{`, unlike `$var` or `%`, so templates stay readable);
- `access_log PREFIX/access.log;` is added at the top of `http {}` unless the text
  names `access_log` itself, so nothing writes to /var/log/nginx;
- main-context settings the runner needs are passed with `-g`, and only those the text
  does not set itself (nginx rejects a `-g` directive the file repeats with
  "directive is duplicate"): `daemon off;` (so the process we started IS the server),
  `master_process off;` unless `master=True`, and `pid PREFIX/nginx.pid;`.
- `-e PREFIX/error.log` collects startup errors and the default error log.

Every `listen` must be on 127.0.0.1, [::1], localhost or a unix socket (tests never
bind other addresses); `substitute_ports` rewrites published configs (`listen 80;`,
`proxy_pass http://127.0.0.1:3000;`) to loopback and free ports.
"""

from __future__ import annotations

import pathlib
import re
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from typing import Any

from helpers.ports import wait_port
from helpers.procs import Process, ProcessFailed, ProcessGroup, start_process

NGINX_BIN = "/usr/sbin/nginx"
WSGATE_BIN = str(pathlib.Path(sys.executable).with_name("wsgate"))
_PLACEHOLDER = re.compile(r"\{\{(\w+)\}\}")
_LISTEN = re.compile(r"((?:^|[;{])\s*listen\s+)([^;\s]+)", re.MULTILINE)
_LOOPBACK_HOSTS = {"127.0.0.1", "[::1]", "localhost"}


# --- config text ----------------------------------------------------------------------

def render(conf_text: str, params: Mapping[str, Any]) -> str:
    """Replace `{{name}}` placeholders; an unknown name is a test bug (KeyError)."""
    return _PLACEHOLDER.sub(lambda m: str(params[m.group(1)]), conf_text)


def substitute_ports(conf_text: str, ports: Mapping[int, int]) -> str:
    """Rewrite a published config's ports: every `listen` whose port is in `ports`
    moves to 127.0.0.1:NEW (keeping its host if that is loopback), and every
    `host:PORT` elsewhere (proxy_pass, server) gets the NEW port, host unchanged."""
    def listen(m: re.Match[str]) -> str:
        host, port = _split_listen(m.group(2))
        if port is None or int(port) not in ports:
            return m.group(0)
        host = host if host in _LOOPBACK_HOSTS else "127.0.0.1"
        return f"{m.group(1)}{host}:{ports[int(port)]}"

    text = _LISTEN.sub(listen, conf_text)
    for old, new in ports.items():
        text = re.sub(rf"(?<=[\w\].]):{old}\b(?!\.)", f":{new}", text)
    return text


def _split_listen(addr: str) -> tuple[str | None, str | None]:
    """(host, port) of a listen address; host None for a bare port."""
    if addr.startswith("unix:"):
        return addr, None
    if addr.isdigit():
        return None, addr
    host, sep, port = addr.rpartition(":")
    if sep and port.isdigit() and (not host.startswith("[") or host.endswith("]")):
        return host, port
    return addr, None


def listen_addresses(conf_text: str) -> list[tuple[str, int] | str]:
    """Every `listen` in the text: (host, port) for TCP, the path for unix sockets.

    Raises ValueError for a non-loopback TCP address: tests may only bind loopback.
    """
    out: list[tuple[str, int] | str] = []
    for m in _LISTEN.finditer(conf_text):
        host, port = _split_listen(m.group(2))
        if host is not None and host.startswith("unix:"):
            out.append(host[len("unix:"):])
            continue
        if port is None:
            raise ValueError(f"cannot read listen address {m.group(2)!r}")
        if host is not None and host not in _LOOPBACK_HOSTS:
            raise ValueError(f"tests must listen on loopback only, not {m.group(2)!r}")
        if host is None:
            raise ValueError(f"`listen {port}` binds every address; write "
                             f"127.0.0.1:{port} (or use substitute_ports)")
        out.append(("127.0.0.1" if host == "localhost" else host.strip("[]"), int(port)))
    return out


def _sets(conf_text: str, directive: str) -> bool:
    return re.search(rf"^\s*{directive}\s", conf_text, re.MULTILINE) is not None


def prepare_conf(conf_text: str, prefix: pathlib.Path) -> str:
    """Add `access_log PREFIX/access.log;` to `http {}` unless the text has one."""
    if "access_log" in conf_text:
        return conf_text
    return re.sub(r"^(\s*http\s*\{)", rf"\1\n    access_log {prefix}/access.log;",
                  conf_text, count=1, flags=re.MULTILINE)


def global_directives(conf_text: str, prefix: pathlib.Path, master: bool) -> str:
    """The `-g` text: what the runner needs and the file does not set itself."""
    wanted = {"daemon": "daemon off;",
              "master_process": f"master_process {'on' if master else 'off'};",
              "pid": f"pid {prefix}/nginx.pid;"}
    return " ".join(v for k, v in wanted.items() if not _sets(conf_text, k))


# --- the runners ----------------------------------------------------------------------

class ConfServer:
    """A server process run from one config text in its own prefix directory."""

    binary = NGINX_BIN
    name = "server"

    def __init__(self, conf_text: str, prefix_dir: pathlib.Path | str, *,
                 params: Mapping[str, Any] | None = None, master: bool = False,
                 procs: ProcessGroup | None = None, extra_args: tuple[str, ...] = ()) -> None:
        self.prefix = pathlib.Path(prefix_dir).resolve()
        self.prefix.mkdir(parents=True, exist_ok=True)
        self.conf_text = prepare_conf(render(conf_text, params or {}), self.prefix)
        self.master = master
        self.procs = procs
        self.extra_args = extra_args
        self.proc: Process | None = None
        self.conf_path = self.prefix / "nginx.conf"
        self.conf_path.write_text(self.conf_text)
        self.listens = listen_addresses(self.conf_text)

    # -- command lines ------------------------------------------------------------------

    def command(self, *flags: str) -> list[str]:
        """The server's command line with the prefix flags plus `flags`."""
        return [self.binary, "-p", f"{self.prefix}/", "-c", "nginx.conf",
                "-e", str(self.prefix / "error.log"),
                "-g", global_directives(self.conf_text, self.prefix, self.master),
                *self.extra_args, *flags]

    def test_config(self, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
        """Run `-t` on the config; returns the finished process (check returncode)."""
        return subprocess.run(self.command("-t"), capture_output=True, text=True,
                              timeout=timeout, stdin=subprocess.DEVNULL)

    # -- lifecycle ----------------------------------------------------------------------

    def start(self, timeout: float = 15.0) -> "ConfServer":
        """Start the server and wait until every TCP listen address accepts."""
        self.proc = start_process(self.command(), name=self.name, log_dir=self.prefix)
        if self.procs is not None:
            self.procs.add(self.proc)
        try:
            self._wait_listening(timeout)
            if not self.proc.alive():
                raise RuntimeError(f"exited with status {self.proc.popen.returncode}")
        except (TimeoutError, RuntimeError) as exc:
            self.proc.stop(signal.SIGKILL, grace=2.0)
            raise ProcessFailed(f"{self.name} did not start: {exc}\n--- output ---\n"
                                f"{self.proc.output()}\n--- error.log ---\n{self.error_log()}"
                                f"\n--- conf ---\n{self.conf_text}") from None
        return self

    def _wait_listening(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        assert self.proc is not None
        for addr in self.listens:
            left = max(0.1, deadline - time.monotonic())
            if isinstance(addr, str):
                _wait_path(pathlib.Path(addr), left, self.proc.alive)
            else:
                wait_port(addr[0], addr[1], left, alive=self.proc.alive)

    def stop(self, grace: float = 5.0) -> int | None:
        """Graceful stop (QUIT), then KILL the group after `grace` seconds."""
        if self.proc is None:
            return None
        return self.proc.stop(signal.SIGQUIT, grace=grace)

    def send_signal(self, signum: int) -> None:
        """Signal the server process (HUP reload, USR1 reopen, ...), not its group."""
        assert self.proc is not None
        self.proc.popen.send_signal(signum)

    # -- what tests read ----------------------------------------------------------------

    @property
    def port(self) -> int:
        """The first TCP listen port."""
        return next(a[1] for a in self.listens if not isinstance(a, str))

    def url(self, path: str = "/", scheme: str = "ws") -> str:
        return f"{scheme}://127.0.0.1:{self.port}{path}"

    def error_log(self) -> str:
        return _read(self.prefix / "error.log")

    def access_log(self) -> str:
        return _read(self.prefix / "access.log")

    def output(self) -> str:
        """The process's own stdout/stderr."""
        return self.proc.output() if self.proc else ""

    def alerts(self) -> list[str]:
        """error_log lines at [alert] or worse: each one is a real defect."""
        return [line for line in self.error_log().splitlines()
                if re.search(r"\[(alert|crit|emerg)\]", line)]


class NginxServer(ConfServer):
    """Real nginx 1.22 (Debian's /usr/sbin/nginx)."""

    binary = NGINX_BIN
    name = "nginx"


class WsgateServer(ConfServer):
    """wsgate in nginx mode: the same flags, prefix and config as NginxServer."""

    binary = WSGATE_BIN
    name = "wsgate"


def _wait_path(path: pathlib.Path, timeout: float, alive: Any) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            return
        if not alive():
            raise RuntimeError(f"server exited before creating {path}")
        time.sleep(0.02)
    raise TimeoutError(f"{path} not created after {timeout}s")


def _read(path: pathlib.Path) -> str:
    try:
        return path.read_text(errors="replace")
    except FileNotFoundError:
        return ""
