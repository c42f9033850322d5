"""Vite's dev server behind wsgate, in a real browser: the config people copy for Vite
(location / with proxy_pass, HTTP/1.1, the Upgrade/Connection map, Host), headless
chromium opens the page through wsgate, Vite's HMR client connects its WebSocket
through the proxy ("[vite] connected."), then the test edits a JS module and a CSS
file and the page changes in place, without a reload.

Vite needs no `server.hmr` option here: its client connects to the port the page came
from, which is wsgate's (the test checks that the HMR WebSocket's URL is wsgate's and
that wsgate's access log shows the 101).

On a failure the test prints what each party saw: every request of the tab with its
status and how it ended (a request with no end is a stall), the browser's console and
log, wsgate's access log (status, upstream status, times, connection) and error log
(at info), and Vite's output.
"""

from __future__ import annotations

import asyncio
import os
import pathlib
import re
import shutil

import pytest

from helpers.cdp import Chromium, DevTools, wait_text
from helpers.fixtures import procs, wsgate_server  # noqa: F401
from helpers.nginx import ConfServer
from helpers.ports import free_port
from helpers.procs import Process, ProcessGroup

pytestmark = [pytest.mark.timeout(60), pytest.mark.browser, pytest.mark.node]

APP = pathlib.Path(__file__).resolve().parents[1] / "node" / "vite-app"
VITE = APP / "node_modules" / "vite" / "bin" / "vite.js"

CONF = """error_log error.log info;
events {}
http {
    map $http_upgrade $connection_upgrade {
        default upgrade;
        ''      close;
    }
    # Diagnostics only (paths relative to the prefix, where the test helpers look):
    # on a failure the test prints every request's status, upstream status and time.
    log_format diag '$remote_addr:$remote_port "$request" $status $body_bytes_sent '
                    'up=$upstream_status ua=$upstream_addr rt=$request_time '
                    'urt=$upstream_response_time conn=$connection/$connection_requests';
    access_log access.log diag;
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


def start_vite(procs: ProcessGroup, app: pathlib.Path, port: int) -> Process:  # noqa: F811
    node = shutil.which("node") or "node"
    return procs.start([node, str(VITE), "--host", "127.0.0.1", "--port", str(port),
                        "--strictPort"],
                       name="vite", cwd=app, ready_port=("127.0.0.1", port), ready_timeout=30,
                       env={"VITE_CACHE_DIR": str(app / ".vite-cache"), "NO_COLOR": "1",
                            "BROWSER": "none"})


async def drive(devtools_url: str, page_url: str, app: pathlib.Path, wsgate_port: int,
                seen: list[str]) -> None:
    async with DevTools.connect(devtools_url) as cdp:
        tab = await cdp.open_tab(page_url)
        # The browser's own messages (a module that failed to load, a network error):
        # Log.enable also replays the entries from before it was on.
        await cdp.call("Log.enable", tab)
        try:
            await check_page(cdp, tab, app, wsgate_port)
        except BaseException:
            seen.append(browser_report(cdp, tab))
            raise


async def check_page(cdp: DevTools, tab: str, app: pathlib.Path, wsgate_port: int) -> None:
    await cdp.wait_console(tab, r"\[vite\] connected\.")
    sockets = [e["params"]["url"] for e in cdp.of(tab, "Network.webSocketCreated")]
    assert sockets and all(f"//127.0.0.1:{wsgate_port}/" in u for u in sockets), sockets
    # "[vite] connected." comes from /@vite/client, a module of its own: main.js may
    # still be waiting for its imports (the first CSS transform of a fresh Vite is
    # slow), so the title can still read "loading" here. Wait for the render itself.
    await cdp.until(tab, "document.getElementById('title').textContent === 'hello from vite'",
                    "the first render")
    await cdp.js(tab, "window.__sameDocument = true")
    loads = len(cdp.of(tab, "Page.loadEventFired"))

    # A JS module edit: accepted by main.js, swapped in over the HMR WebSocket.
    edit(app / "src" / "message.js", "hello from vite", "hot via wsgate")
    await cdp.until(tab, "document.getElementById('title').textContent === 'hot via wsgate'",
                    "the edited text")
    await cdp.wait_console(tab, r"\[vite\] hot updated: /src/message\.js")

    # A CSS edit: Vite swaps the stylesheet in place.
    edit(app / "src" / "style.css", "rgb(0, 0, 255)", "rgb(255, 0, 0)")
    await cdp.until(tab, "getComputedStyle(document.getElementById('box')).color"
                         " === 'rgb(255, 0, 0)'", "the edited colour")

    assert await cdp.js(tab, NOT_RELOADED) is True, "the page was reloaded"
    assert len(cdp.of(tab, "Page.loadEventFired")) == loads, "a full reload happened"
    assert not [ln for ln in cdp.console(tab) if "page reload" in ln], cdp.console(tab)


def edit(path: pathlib.Path, old: str, new: str) -> None:
    """Replace `old` by `new` in `path` as editors save: the whole new text renamed
    over the file. A write in place (truncate, then write) is two changes, and Vite's
    watcher may report the first: Vite then serves the module empty (seen: a CSS
    update with no rules, so the colour never changed)."""
    text = path.read_text()
    assert old in text, (path, old)
    staged = path.parents[2] / f".{path.name}.new"     # outside the tree Vite watches
    staged.write_text(text.replace(old, new))
    os.replace(staged, path)


def browser_report(cdp: DevTools, tab: str) -> str:
    """What the tab saw, for a failure message: every request with its status and how
    it ended (a request with no end is one the page is still waiting for), page loads,
    console lines and uncaught exceptions."""
    requests: dict[str, dict[str, str]] = {}
    events = [e for e in cdp.events if e.get("sessionId") == tab]
    t0 = next((e["params"]["timestamp"] for e in events
               if e["method"] == "Network.requestWillBeSent"), 0.0)
    for e in events:
        params = e["params"]
        row = requests.setdefault(params.get("requestId", ""), {})
        when = f"+{params['timestamp'] - t0:.3f}s" if "timestamp" in params else ""
        if e["method"] == "Network.requestWillBeSent":
            row.update(url=params["request"]["url"], sent=when)
        elif e["method"] == "Network.responseReceived":
            resp = params["response"]
            row.update(status=f"{resp['status']} cache={resp.get('fromDiskCache')}",
                       head=when)
        elif e["method"] == "Network.loadingFinished":
            row.update(end=f"finished {when} {params.get('encodedDataLength')} B")
        elif e["method"] == "Network.loadingFailed":
            row.update(end=f"FAILED {when} {params.get('errorText')} "
                           f"canceled={params.get('canceled')}")
    lines = [f"  {r.get('url', rid)} sent {r.get('sent')} status {r.get('status', '-')} "
             f"head {r.get('head', '-')} {r.get('end', 'NO END (still pending)')}"
             for rid, r in requests.items() if rid and "url" in r]
    lines += [f"  page load event x{len(cdp.of(tab, 'Page.loadEventFired'))}"]
    lines += [f"  console: {ln}" for ln in cdp.console(tab)]
    lines += [f"  log: {e['params']['entry'].get('level')} {e['params']['entry'].get('text')} "
              f"{e['params']['entry'].get('url', '')}" for e in cdp.of(tab, "Log.entryAdded")]
    lines += [f"  exception: {e['params']['exceptionDetails']}"
              for e in cdp.of(tab, "Runtime.exceptionThrown")]
    return "--- browser: requests (relative to the first) ---\n" + "\n".join(lines)


def failure_report(srv: ConfServer, vite: Process, seen: list[str]) -> str:
    return "\n".join([*seen, "--- wsgate access.log ---", srv.access_log()[-8000:],
                      "--- wsgate error.log ---", srv.error_log()[-8000:],
                      "--- vite output ---", vite.output(8000)])


def test_vite_hmr_through_wsgate(tmp_path: pathlib.Path, procs: ProcessGroup,  # noqa: F811
                                 wsgate_server) -> None:  # noqa: F811
    app = copy_app(tmp_path / "app")
    vite_port = free_port()
    vite = start_vite(procs, app, vite_port)
    srv = wsgate_server(CONF, port=free_port(), vite=vite_port)
    seen: list[str] = []
    try:
        with Chromium(tmp_path / "browser") as browser:
            asyncio.run(asyncio.wait_for(drive(browser.devtools_url,
                                               srv.url("/", scheme="http"), app, srv.port,
                                               seen), 50))
        # The tunnel's log line is written when it ends, i.e. after the browser is gone.
        wait_text(srv.access_log, r'"GET /\?token=\S+ HTTP/1\.1" 101 ', "the HMR WebSocket")
        log = srv.access_log()
        assert re.search(r'"GET /src/main\.js HTTP/1\.1" 200 ', log), log
        assert srv.alerts() == []
    except BaseException:
        # The logs of all three parties, shown by pytest with the failure.
        print(failure_report(srv, vite, seen))
        raise
