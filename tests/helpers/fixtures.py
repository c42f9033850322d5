"""pytest fixtures over the helpers. Import the ones a test module needs:

    from helpers.fixtures import procs, nginx_server, recording_backend  # noqa: F401

(or have tests/conftest.py declare `pytest_plugins = ["helpers.fixtures"]`).
Factories return started servers; everything is stopped in the finalizer, in
reverse start order, even when the test failed.

    def test_x(nginx_server, recording_backend):
        rec = recording_backend()
        srv = nginx_server(CONF, backend=rec.port, port=free_port())
"""

from __future__ import annotations

import pathlib
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from helpers import backends
from helpers.nginx import ConfServer, NginxServer, WsgateServer
from helpers.procs import ProcessGroup

SHARED_CONFIGS = pathlib.Path(__file__).resolve().parents[3] / "shared" / "configs"


@pytest.fixture
def procs(tmp_path: pathlib.Path) -> Iterator[ProcessGroup]:
    """Every helper process of one test; all killed at teardown."""
    group = ProcessGroup(tmp_path)
    yield group
    group.stop_all()


def _server_factory(cls: type[ConfServer], procs: ProcessGroup,
                    tmp_path: pathlib.Path) -> Callable[..., ConfServer]:
    count = 0

    def make(conf_text: str, *, master: bool = False, start: bool = True,
             **params: Any) -> ConfServer:
        nonlocal count
        count += 1
        server = cls(conf_text, tmp_path / f"{cls.name}-{count}", params=params,
                     master=master, procs=procs)
        return server.start() if start else server
    return make


@pytest.fixture
def nginx_server(procs: ProcessGroup, tmp_path: pathlib.Path) -> Callable[..., ConfServer]:
    """nginx_server(conf_text, **params) -> started NginxServer ({{name}} from params)."""
    return _server_factory(NginxServer, procs, tmp_path)


@pytest.fixture
def wsgate_server(procs: ProcessGroup, tmp_path: pathlib.Path) -> Callable[..., ConfServer]:
    """wsgate_server(conf_text, **params) -> started WsgateServer (start=False for -t)."""
    return _server_factory(WsgateServer, procs, tmp_path)


@pytest.fixture
def websockets_backend(procs: ProcessGroup) -> Callable[..., backends.Backend]:
    return lambda **kw: backends.start_websockets_echo(procs, **kw)


@pytest.fixture
def node_backend(procs: ProcessGroup) -> Callable[..., backends.Backend]:
    if not backends.node_available():
        pytest.fail("node or tests/node/node_modules/ws missing: run scripts/setup.sh test")
    return lambda **kw: backends.start_node_ws_echo(procs, **kw)


@pytest.fixture
def recording_backend(procs: ProcessGroup) -> Callable[..., backends.Backend]:
    """recording_backend(spec=None, port=None) -> started recording Backend."""
    return lambda **kw: backends.start_recording(procs, **kw)


@pytest.fixture
def shared_config() -> Callable[[str], str]:
    """shared_config("article-minimal-fixed.conf") -> its text; fails if the folder is gone."""
    def read(name: str) -> str:
        path = SHARED_CONFIGS / name
        if not path.is_file():
            pytest.fail(f"shared config {path} is missing (expected ../shared/configs "
                        f"next to the repository)")
        return path.read_text()
    return read
