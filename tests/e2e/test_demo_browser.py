"""A real browser through wsgate: headless Debian chromium opens the demo page served by
`wsgate demo`, the page connects its WebSocket through the proxy, one tab sends a chat
message, and both tabs show it.  Driven with the DevTools protocol over its own
WebSocket (the `websockets` library; no selenium/playwright).  A screenshot of the page
is saved to /tmp/wsgate-demo-browser.png for a human to look at.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import os
import pathlib
import re
import shutil
import signal
import subprocess
import sys
import time
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SCREENSHOT = pathlib.Path("/tmp/wsgate-demo-browser.png")
STEP = 20.0          # seconds any one wait may take


# -- processes -------------------------------------------------------------------------------


def wait_for(path: pathlib.Path, pattern: str, proc: subprocess.Popen[bytes],
             timeout: float = STEP) -> re.Match[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = path.read_text(errors="replace") if path.exists() else ""
        if found := re.search(pattern, text):
            return found
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    raise AssertionError(f"{pattern!r} never appeared in {path}:\n{path.read_text(errors='replace')[-4000:]}")


def spawn(argv: list[str], log: pathlib.Path) -> subprocess.Popen[bytes]:
    with open(log, "wb") as out:
        return subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)


def kill_group(proc: subprocess.Popen[bytes], sig: int = signal.SIGKILL) -> None:
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def chromium_argv(profile: pathlib.Path) -> list[str]:
    return [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
            "--no-first-run", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-proxy-server", "--window-size=1000,720",
            f"--user-data-dir={profile}", "--remote-debugging-port=0", "about:blank"]


# -- the DevTools protocol --------------------------------------------------------------------


class DevTools:
    """Commands over the browser's DevTools WebSocket; events are ignored."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.ids = itertools.count(1)

    async def call(self, method: str, session: str | None = None, **params: Any) -> dict[str, Any]:
        msg_id = next(self.ids)
        body: dict[str, Any] = {"id": msg_id, "method": method, "params": params}
        if session is not None:
            body["sessionId"] = session
        await self.ws.send(json.dumps(body))
        for _ in range(10000):
            reply = json.loads(await asyncio.wait_for(self.ws.recv(), STEP))
            if reply.get("id") == msg_id:
                if "error" in reply:
                    raise AssertionError(f"{method}: {reply['error']}")
                return dict(reply.get("result", {}))
        raise AssertionError(f"no reply to {method}")

    async def open_tab(self, url: str) -> str:
        target = (await self.call("Target.createTarget", url=url))["targetId"]
        return str((await self.call("Target.attachToTarget", targetId=target, flatten=True))["sessionId"])

    async def js(self, session: str, expression: str) -> Any:
        result = await self.call("Runtime.evaluate", session, expression=expression,
                                 returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise AssertionError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    async def until(self, session: str, expression: str, what: str) -> Any:
        """Poll `expression` until it is truthy (bounded by STEP seconds); while the page
        is still loading, its elements may not exist yet, which counts as false."""
        deadline = time.monotonic() + STEP
        value = None
        guarded = f"(() => {{ try {{ return {expression}; }} catch (e) {{ return null; }} }})()"
        while time.monotonic() < deadline:
            value = await self.js(session, guarded)
            if value:
                return value
            await asyncio.sleep(0.1)
        page = await self.js(session, "document.querySelector('main').innerText")
        raise AssertionError(f"{what}: never became true ({expression} = {value!r}); page:\n{page}")


STATE = "document.getElementById('status').dataset.state"
MINE = ("Array.from(document.querySelectorAll('#messages li.msg.mine'))"
        ".map(li => li.textContent).join('\\n')")
OTHERS = ("Array.from(document.querySelectorAll('#messages li.msg:not(.mine)'))"
          ".map(li => li.textContent).join('\\n')")


async def drive(devtools_url: str, page_url: str) -> None:
    async with connect(devtools_url, max_size=None) as ws:
        cdp = DevTools(ws)
        first = await cdp.open_tab(page_url)
        second = await cdp.open_tab(page_url)
        for tab in (first, second):
            assert await cdp.until(tab, f"{STATE} === 'connected'", "the page connected") is True
        assert await cdp.until(second, "document.getElementById('clients').textContent === '2'",
                               "two clients online")
        text = "hello through wsgate"
        await cdp.js(first, f"document.getElementById('text').value = {json.dumps(text)};"
                            "document.getElementById('compose').requestSubmit(); true")
        assert text in await cdp.until(first, MINE, "the sender's echo")
        assert text in await cdp.until(second, OTHERS, "the broadcast in the other tab")
        latency = await cdp.until(first, "/ms$/.test(document.getElementById('latency').textContent)"
                                         " && document.getElementById('latency').textContent",
                                  "a latency measurement")
        assert re.fullmatch(r"\d+\.\d ms", latency)
        shot = await cdp.call("Page.captureScreenshot", first, format="png")
        SCREENSHOT.write_bytes(base64.b64decode(shot["data"]))


def test_browser_chats_through_wsgate(tmp_path: pathlib.Path) -> None:
    if not os.path.exists(CHROMIUM):
        pytest.fail("chromium is missing: apt-get install chromium (scripts/setup.sh)")
    demo_log, browser_log = tmp_path / "demo.out", tmp_path / "chromium.out"
    demo = spawn([sys.executable, "-m", "wsgate", "demo", "--listen", "127.0.0.1:0",
                  "--dir", str(tmp_path / "demo")], demo_log)
    browser: subprocess.Popen[bytes] | None = None
    try:
        page_url = wait_for(demo_log, r"open (http://127\.0\.0\.1:\d+/)", demo).group(1)
        browser = spawn(chromium_argv(tmp_path / "profile"), browser_log)
        devtools_url = wait_for(browser_log, r"DevTools listening on (ws://\S+)", browser).group(1)
        asyncio.run(asyncio.wait_for(drive(devtools_url, page_url), 120))
        # The page itself came through wsgate (its access log), the sessions reached the backend.
        wait_for(tmp_path / "demo" / "access.log", r"GET / HTTP/1\.1\t200\t", demo)
        assert re.search(r"open   c\d+ +from 127\.0\.0\.1", demo_log.read_text())
    finally:
        if browser is not None:
            kill_group(browser)
        kill_group(demo, signal.SIGINT)
