"""A real browser through wsgate: headless Debian chromium opens the demo page served by
`wsgate demo`, the page connects its WebSocket through the proxy, one tab sends a chat
message, and both tabs show it.  Driven with the DevTools protocol over its own
WebSocket (`helpers.cdp`; no selenium/playwright).  A screenshot of the page is saved
to /tmp/wsgate-demo-browser.png for a human to look at.
"""

from __future__ import annotations

import asyncio
import base64
import json
import pathlib
import re
import signal
import sys

import pytest

from helpers.cdp import Chromium, DevTools, chromium_available, wait_log
from helpers.procs import start_process

SCREENSHOT = pathlib.Path("/tmp/wsgate-demo-browser.png")

STATE = "document.getElementById('status').dataset.state"
MINE = ("Array.from(document.querySelectorAll('#messages li.msg.mine'))"
        ".map(li => li.textContent).join('\\n')")
OTHERS = ("Array.from(document.querySelectorAll('#messages li.msg:not(.mine)'))"
          ".map(li => li.textContent).join('\\n')")


async def drive(devtools_url: str, page_url: str) -> None:
    async with DevTools.connect(devtools_url) as cdp:
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
    if not chromium_available():
        pytest.fail("chromium is missing: apt-get install chromium (scripts/setup.sh)")
    demo = start_process([sys.executable, "-m", "wsgate", "demo", "--listen", "127.0.0.1:0",
                          "--dir", str(tmp_path / "demo")], name="demo", log_dir=tmp_path)
    try:
        page_url = wait_log(demo.log_path, r"open (http://127\.0\.0\.1:\d+/)",
                            demo.alive).group(1)
        with Chromium(tmp_path / "browser") as browser:
            asyncio.run(asyncio.wait_for(drive(browser.devtools_url, page_url), 120))
        # The page itself came through wsgate (its access log), the sessions reached the backend.
        wait_log(tmp_path / "demo" / "access.log", r"GET / HTTP/1\.1\t200\t", demo.alive)
        assert re.search(r"open   c\d+ +from 127\.0\.0\.1", demo.log_path.read_text())
    finally:
        demo.stop(signal.SIGINT, grace=10.0)
