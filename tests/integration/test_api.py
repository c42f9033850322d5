"""The library API (`wsgate.Server`, `wsgate.load_config`) started in-process."""

from __future__ import annotations

import asyncio
import urllib.request

import pytest
from websockets.asyncio.client import connect

import wsgate
from helpers.fixtures import procs, websockets_backend  # noqa: F401
from helpers.ports import free_port

pytestmark = pytest.mark.timeout(60)

CONF = """
events {{}}
http {{
    access_log off;
    map $http_upgrade $connection_upgrade {{ default upgrade; '' close; }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://127.0.0.1:{backend};
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
        }}
        location = /which {{ return 200 "{text}"; }}
    }}
}}
"""


def _get(port: int, path: str = "/which") -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
        return str(resp.read().decode())


def test_public_names() -> None:
    assert set(wsgate.__all__) >= {"Server", "ServerThread", "load_config", "ConfigError"}
    assert wsgate.Server.__doc__ and wsgate.load_config.__doc__


def test_load_config_errors_name_file_and_line(tmp_path) -> None:
    with pytest.raises(wsgate.ConfigError) as info:
        wsgate.load_config("events {}\nhttp { bogus; }\n", prefix=str(tmp_path))
    assert 'unknown directive "bogus"' in str(info.value) and ":2" in str(info.value)
    path = tmp_path / "x.conf"
    path.write_text(CONF.format(port=1, backend=2, text="t"))
    assert wsgate.load_config(path).http is not None
    assert wsgate.load_config(str(path)).http is not None


def test_in_loop_start_reload_stop(websockets_backend, tmp_path) -> None:
    backend = websockets_backend()
    port = free_port()

    async def scenario() -> None:
        server = wsgate.Server(CONF.format(port=port, backend=backend.port, text="one"))
        await server.start()
        assert ("127.0.0.1", port) in server.addresses
        loop = asyncio.get_running_loop()
        assert await loop.run_in_executor(None, _get, port) == "one"
        ws = await connect(f"ws://127.0.0.1:{port}/x", ping_interval=None)
        await ws.send("hi")
        assert await asyncio.wait_for(ws.recv(), 5) == "hi"
        with pytest.raises(wsgate.ConfigError):
            await server.reload("events {}\nhttp { nope; }\n")
        assert await loop.run_in_executor(None, _get, port) == "one"
        await server.reload(CONF.format(port=port, backend=backend.port, text="two"))
        assert await loop.run_in_executor(None, _get, port) == "two"
        await ws.send("still here")          # the tunnel keeps its generation
        assert await asyncio.wait_for(ws.recv(), 5) == "still here"
        stopping = asyncio.create_task(server.stop(graceful=True, timeout=5))
        await asyncio.sleep(0.2)
        assert not stopping.done()            # waits for the live tunnel
        await ws.close()
        await asyncio.wait_for(stopping, 5)
        assert not server.running
    asyncio.run(scenario())


def test_in_thread_from_options(websockets_backend) -> None:
    backend = websockets_backend()
    port = free_port()
    server = wsgate.Server.from_options(listen=f"127.0.0.1:{port}",
                                        to=[f"127.0.0.1:{backend.port}"] * 2,
                                        balance="least_conn")
    running = server.start_in_thread()
    try:
        assert _get(port, "/http").startswith("hello from websockets")

        async def talk() -> None:
            async with connect(f"ws://127.0.0.1:{port}/", ping_interval=None) as ws:
                await ws.send("threaded")
                assert await asyncio.wait_for(ws.recv(), 5) == "threaded"
        asyncio.run(talk())
        running.reload(CONF.format(port=port, backend=backend.port, text="reloaded"))
        assert _get(port) == "reloaded"
    finally:
        running.stop(graceful=False)
    with pytest.raises(OSError):
        _get(port)


def test_bind_failure_raises_nginx_message() -> None:
    import socket
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        server = wsgate.Server(CONF.format(port=port, backend=1, text="x"))
        with pytest.raises(wsgate.WsgateError,
                           match=rf"bind\(\) to 127.0.0.1:{port} failed \(98: "):
            server.start_in_thread()
