"""An open tunnel outlives its connection's coroutine (proxy/tunnellife.py).

Once the upstream answered 101, the client connection's task ends and a TunnelLife
takes its place in the worker's connection set: these tests check, on a real
in-process server, that no task is left per tunnel, and that everything that saw
the connection still sees the tunnel (worker_connections' count, stub_status,
the live status page) until it ends, and then nothing is left behind.
"""

from __future__ import annotations

import asyncio
import json
import re
import urllib.request

import pytest
from websockets.asyncio.client import connect

import wsgate
from helpers.fixtures import procs, websockets_backend  # noqa: F401
from helpers.ports import free_port
from wsgate.proxy.tunnellife import TunnelLife

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
        location = /stub {{ stub_status; }}
        location = /live {{ websocket_status; }}
    }}
}}
"""


def _get(port: int, path: str) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
        return str(resp.read().decode())


def _writing(stub: str) -> int:
    found = re.search(r"Writing: (\d+)", stub)
    assert found, stub
    return int(found.group(1))


def test_idle_tunnel_has_no_task_and_is_still_counted(websockets_backend) -> None:
    backend = websockets_backend()
    port = free_port()

    async def scenario() -> None:
        server = wsgate.Server(CONF.format(port=port, backend=backend.port))
        await server.start()
        worker = server._worker
        loop = asyncio.get_running_loop()
        ws = await connect(f"ws://127.0.0.1:{port}/chat?x=1", ping_interval=None)
        await ws.send("hi")
        assert await asyncio.wait_for(ws.recv(), 5) == "hi"
        for _ in range(50):                     # the task ends right after the 101
            if not worker.tasks:
                break
            await asyncio.sleep(0.02)
        assert not worker.tasks
        [life] = list(worker.runtime.connections)
        assert isinstance(life, TunnelLife) and life.tunnel.stats is None
        assert worker.live == 1
        # stub_status: the tunnel and the status request itself are writing
        assert _writing(await loop.run_in_executor(None, _get, port, "/stub")) == 2
        page = json.loads(await loop.run_in_executor(None, _get, port,
                                                     "/live?format=json"))
        [row] = page["tunnels"]
        host, cport = ws.local_address[:2]
        assert row["client"] == f"{host}:{cport}" and row["uri"] == "/chat?x=1"
        assert row["bytes_in"] > 0 and row["bytes_out"] > 0
        await ws.close()
        for _ in range(100):
            if not worker.runtime.connections:
                break
            await asyncio.sleep(0.02)
        assert not worker.runtime.connections and worker.live == 0
        assert len(worker.live_tunnels) == 0
        assert _writing(await loop.run_in_executor(None, _get, port, "/stub")) == 1
        await server.stop(graceful=False)
    asyncio.run(scenario())


def test_shutdown_timeout_closes_a_tunnel_whose_task_is_gone(websockets_backend) -> None:
    backend = websockets_backend()
    port = free_port()

    async def scenario() -> None:
        server = wsgate.Server(CONF.format(port=port, backend=backend.port))
        await server.start()
        ws = await connect(f"ws://127.0.0.1:{port}/", ping_interval=None)
        await ws.send("hi")
        assert await asyncio.wait_for(ws.recv(), 5) == "hi"
        await asyncio.wait_for(server.stop(graceful=True, timeout=0.5), 10)
        # the tunnel was closed when the shutdown timeout expired
        await asyncio.wait_for(ws.wait_closed(), 5)
    asyncio.run(scenario())
