"""Real backends for integration and differential tests, each a subprocess.

    ws = start_websockets_echo(procs)        # Python `websockets` 17 echo (+ GET /http -> 200)
    node = start_node_ws_echo(procs)         # node `ws` echo, 426 to plain requests
    rec = start_recording(procs, spec={...}) # raw HTTP/1.1 recorder / scripted upstream
    rec.records()                            # what it received, one dict per request

`procs` is a helpers.procs.ProcessGroup (the `procs` fixture): whatever starts here
is killed at teardown. Every backend listens on 127.0.0.1 on a free port unless
`port=` is given (e.g. to stand where a shared config expects :3000 -- prefer
`helpers.nginx.substitute_ports` instead).

Facts the tests rely on, verified against the real libraries:
- websockets 17 answers an HTTP/1.0 handshake with `505 HTTP Version Not Supported`,
  body "Failed to open a WebSocket connection: unsupported HTTP version: HTTP/1.0.",
  and a non-upgrade HTTP/1.1 GET with `426 Upgrade Required`.
- node's ws answers any non-upgrade request (1.0 or 1.1) with `426 Upgrade Required`,
  body "Upgrade Required", and no Server header.
"""

from __future__ import annotations

import json
import pathlib
import shutil
import sys
from dataclasses import dataclass, field
from typing import Any

from helpers.ports import LOOPBACK, free_port
from helpers.procs import Process, ProcessGroup

HELPERS = pathlib.Path(__file__).resolve().parent
TESTS = HELPERS.parent
NODE_DIR = TESTS / "node"
PYTHON = sys.executable


@dataclass
class Backend:
    """A running backend: where it listens and the process behind it."""

    name: str
    host: str
    port: int
    proc: Process
    records_path: pathlib.Path | None = None
    spec: dict[str, Any] = field(default_factory=dict)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def url(self, path: str = "/", scheme: str = "ws") -> str:
        return f"{scheme}://{self.host}:{self.port}{path}"

    def records(self) -> list[dict[str, Any]]:
        """Requests the recording backend received so far, oldest first."""
        if self.records_path is None or not self.records_path.exists():
            return []
        lines = self.records_path.read_text().splitlines()
        return [json.loads(line) for line in lines if line.strip()]

    def clear_records(self) -> None:
        if self.records_path is not None and self.records_path.exists():
            self.records_path.write_text("")

    def stop(self) -> None:
        self.proc.stop()


def start_websockets_echo(procs: ProcessGroup, port: int | None = None,
                          host: str = LOOPBACK, ping_interval: float | None = None,
                          certfile: str | None = None, keyfile: str | None = None) -> Backend:
    """The Python `websockets` echo server (tests/helpers/ws_echo_server.py);
    with `certfile`/`keyfile` it serves wss:// (e.g. a trustme certificate)."""
    port = port or free_port(host)
    argv = [PYTHON, str(HELPERS / "ws_echo_server.py"), str(port), "--host", host]
    if ping_interval is not None:
        argv += ["--ping-interval", str(ping_interval)]
    if certfile:
        argv += ["--certfile", certfile, "--keyfile", keyfile or certfile]
    proc = procs.start(argv, name=f"websockets-{port}", ready_port=(host, port))
    return Backend("websockets", host, port, proc)


def node_available() -> bool:
    return shutil.which("node") is not None and (NODE_DIR / "node_modules" / "ws").is_dir()


def start_node_ws_echo(procs: ProcessGroup, port: int | None = None,
                       host: str = LOOPBACK) -> Backend:
    """The node `ws` echo server (tests/node/ws_echo.js)."""
    port = port or free_port(host)
    node = shutil.which("node") or "node"
    argv = [node, str(NODE_DIR / "ws_echo.js"), str(port), host]
    proc = procs.start(argv, name=f"node-ws-{port}", ready_port=(host, port))
    return Backend("node-ws", host, port, proc)


def start_recording(procs: ProcessGroup, spec: dict[str, Any] | None = None,
                    port: int | None = None, host: str = LOOPBACK) -> Backend:
    """The recording / scripted HTTP/1.1 backend (tests/helpers/recording_server.py).

    See that module's docstring for the `spec` format. Records are appended to a
    file in the process group's log directory; read them with `backend.records()`.
    """
    port = port or free_port(host)
    records = procs.log_dir / f"records-{port}.jsonl"
    argv = [PYTHON, str(HELPERS / "recording_server.py"), str(port), "--host", host,
            "--records", str(records)]
    if spec:
        spec_path = procs.log_dir / f"spec-{port}.json"
        spec_path.write_text(json.dumps(spec))
        argv += ["--spec", str(spec_path)]
    proc = procs.start(argv, name=f"recording-{port}", ready_port=(host, port))
    return Backend("recording", host, port, proc, records, dict(spec or {}))
