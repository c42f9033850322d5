"""Vite's dev server behind wsgate, in a real browser: the config people copy for Vite
(location / with proxy_pass, HTTP/1.1, the Upgrade/Connection map, Host), headless
chromium opens the page through wsgate, Vite's HMR client connects its WebSocket
through the proxy ("[vite] connected."), then the test edits a JS module and a CSS
file and the page changes in place, without a reload.

Vite needs no `server.hmr` option here: its client connects to the port the page came
from, which is wsgate's (the test checks that the HMR WebSocket's URL is wsgate's and
that wsgate's access log shows the 101).
"""

from __future__ import annotations

import asyncio
import pathlib
import re
import shutil

import pytest

from helpers.cdp import Chromium, DevTools, wait_text
from helpers.fixtures import procs, wsgate_server  # noqa: F401
from helpers.ports import free_port
from helpers.procs import ProcessGroup

pytestmark = [pytest.mark.timeout(60), pytest.mark.browser, pytest.mark.node]

APP = pathlib.Path(__file__).resolve().parents[1] / "node" / "vite-app"
VITE = APP / "node_modules" / "vite" / "bin" / "vite.js"

CONF = """events {}
http {
    map $http_upgrade $connection_upgrade {
        default upgrade;
        ''      close;
    }
    server {
        listen 127.0.0.1:{{port}};
        location / {
            proxy_pass http://127.0.0.1:{{vite}};
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            proxy_set_header Host $host;
        }
    }
}
"""

NOT_RELOADED = "window.__sameDocument === true"


def copy_app(dest: pathlib.Path) -> pathlib.Path:
    """The app's sources in a private directory (the test edits them), sharing the
    installed node_modules through a symlink."""
    if not VITE.is_file():
        pytest.fail(f"{VITE} missing: run `npm ci` in {APP} (scripts/setup.sh)")
    for name in ("index.html", "vite.config.js", "package.json"):
        dest.mkdir(parents=True, exist_ok=True)
        shutil.copy(APP / name, dest / name)
    shutil.copytree(APP / "src", dest / "src")
    (dest / "node_modules").symlink_to(APP / "node_modules")
    return dest


def start_vite(procs: ProcessGroup, app: pathlib.Path, port: int) -> None:  # noqa: F811
    node = shutil.which("node") or "node"
    procs.start([node, str(VITE), "--host", "127.0.0.1", "--port", str(port), "--strictPort"],
                name="vite", cwd=app, ready_port=("127.0.0.1", port), ready_timeout=30,
                env={"VITE_CACHE_DIR": str(app / ".vite-cache"), "NO_COLOR": "1",
                     "BROWSER": "none"})


async def drive(devtools_url: str, page_url: str, app: pathlib.Path, wsgate_port: int) -> None:
    async with DevTools.connect(devtools_url) as cdp:
        tab = await cdp.open_tab(page_url)
        await cdp.wait_console(tab, r"\[vite\] connected\.")
        sockets = [e["params"]["url"] for e in cdp.of(tab, "Network.webSocketCreated")]
        assert sockets and all(f"//127.0.0.1:{wsgate_port}/" in u for u in sockets), sockets
        assert await cdp.until(tab, "document.getElementById('title').textContent",
                               "the first render") == "hello from vite"
        await cdp.js(tab, "window.__sameDocument = true")
        loads = len(cdp.of(tab, "Page.loadEventFired"))

        # A JS module edit: accepted by main.js, swapped in over the HMR WebSocket.
        module = app / "src" / "message.js"
        module.write_text(module.read_text().replace("hello from vite", "hot via wsgate"))
        await cdp.until(tab, "document.getElementById('title').textContent === 'hot via wsgate'",
                        "the edited text")
        await cdp.wait_console(tab, r"\[vite\] hot updated: /src/message\.js")

        # A CSS edit: Vite swaps the stylesheet in place.
        css = app / "src" / "style.css"
        css.write_text(css.read_text().replace("rgb(0, 0, 255)", "rgb(255, 0, 0)"))
        await cdp.until(tab, "getComputedStyle(document.getElementById('box')).color"
                             " === 'rgb(255, 0, 0)'", "the edited colour")

        assert await cdp.js(tab, NOT_RELOADED) is True, "the page was reloaded"
        assert len(cdp.of(tab, "Page.loadEventFired")) == loads, "a full reload happened"
        assert not [ln for ln in cdp.console(tab) if "page reload" in ln], cdp.console(tab)


def test_vite_hmr_through_wsgate(tmp_path: pathlib.Path, procs: ProcessGroup,  # noqa: F811
                                 wsgate_server) -> None:  # noqa: F811
    app = copy_app(tmp_path / "app")
    vite_port = free_port()
    start_vite(procs, app, vite_port)
    srv = wsgate_server(CONF, port=free_port(), vite=vite_port)
    with Chromium(tmp_path / "browser") as browser:
        asyncio.run(asyncio.wait_for(drive(browser.devtools_url, srv.url("/", scheme="http"),
                                           app, srv.port), 50))
    # The tunnel's log line is written when it ends, i.e. after the browser is gone.
    wait_text(srv.access_log, r'"GET /\?token=\S+ HTTP/1\.1" 101 ', "the HMR WebSocket")
    log = srv.access_log()
    assert re.search(r'"GET /src/main\.js HTTP/1\.1" 200 ', log), log
    assert srv.alerts() == []
