"""Headless Debian chromium driven over the DevTools protocol (CDP), for end-to-end
tests through wsgate. No selenium/playwright: the browser's own DevTools WebSocket,
spoken with the `websockets` library.

    with Chromium(tmp_path) as browser:                     # process, killed on exit
        async with DevTools.connect(browser.devtools_url) as cdp:
            tab = await cdp.open_tab(url)                   # Runtime/Page/Network enabled first
            await cdp.wait_console(tab, r"\\[vite\\] connected")
            await cdp.until(tab, "document.title === 'x'", "the title")

Unlike a reply-only client, `DevTools` keeps every event it receives (console calls,
page loads, WebSocket creations), so tests can wait on real signals the page emits
rather than sleeping. A tab is opened on about:blank, the domains are enabled, and only
then does it navigate, so no console line of the page is missed.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import pathlib
import re
import shutil
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

from helpers.procs import wait_log  # noqa: F401  (public here too: tests import it from cdp)

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
STEP = 20.0          # seconds any one wait may take unless the caller says otherwise

Event = dict[str, Any]


def chromium_available() -> bool:
    return os.path.exists(CHROMIUM)


def chromium_argv(profile: pathlib.Path) -> list[str]:
    """A quiet headless chromium on a random DevTools port, proxies off (loopback only)."""
    return [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
            "--no-first-run", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-proxy-server", "--window-size=1000,720",
            f"--user-data-dir={profile}", "--remote-debugging-port=0", "about:blank"]


def wait_text(read: Callable[[], str], pattern: str, what: str,
              timeout: float = STEP) -> re.Match[str]:
    """Block until `read()` matches `pattern`: e.g. a proxy's access log, whose line for
    a WebSocket is written only when the tunnel ends (after the browser is gone)."""
    deadline = time.monotonic() + timeout
    text = read()
    while not (found := re.search(pattern, text)):
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: {pattern!r} not seen within {timeout} s:\n{text[-4000:]}")
        time.sleep(0.05)
        text = read()
    return found


class Chromium:
    """The browser process, in its own process group, killed (group) on exit."""

    def __init__(self, workdir: pathlib.Path) -> None:
        self.workdir = workdir
        self.log = workdir / "chromium.out"
        self.proc: subprocess.Popen[bytes] | None = None
        self.devtools_url = ""

    def __enter__(self) -> "Chromium":
        if not chromium_available():
            raise AssertionError("chromium is missing: apt-get install chromium (scripts/setup.sh)")
        self.workdir.mkdir(parents=True, exist_ok=True)
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(chromium_argv(self.workdir / "profile"), stdout=out,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         start_new_session=True)
        proc = self.proc
        found = wait_log(self.log, r"DevTools listening on (ws://\S+)",
                         lambda: proc.poll() is None)
        self.devtools_url = found.group(1)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=10)


class DevTools:
    """Commands and recorded events over the browser's DevTools WebSocket."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.ids = itertools.count(1)
        self.pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.events: list[Event] = []
        self.changed = asyncio.Event()
        self.reader = asyncio.get_running_loop().create_task(self._read())

    @classmethod
    @contextlib.asynccontextmanager
    async def connect(cls, url: str) -> AsyncIterator["DevTools"]:
        async with connect(url, max_size=None) as ws:
            cdp = cls(ws)
            try:
                yield cdp
            finally:
                cdp.reader.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await cdp.reader

    async def _read(self) -> None:
        """Route replies to their callers; keep every event, and wake the waiters."""
        async for raw in self.ws:
            msg = json.loads(raw)
            future = self.pending.pop(msg.get("id", -1), None)
            if future is not None and not future.done():
                future.set_result(msg)
            elif "method" in msg:
                self.events.append(msg)
                self.changed.set()

    async def call(self, method: str, session: str | None = None, **params: Any) -> dict[str, Any]:
        msg_id = next(self.ids)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.pending[msg_id] = future
        body: dict[str, Any] = {"id": msg_id, "method": method, "params": params}
        if session is not None:
            body["sessionId"] = session
        await self.ws.send(json.dumps(body))
        reply = await asyncio.wait_for(future, STEP)
        if "error" in reply:
            raise AssertionError(f"{method}: {reply['error']}")
        return dict(reply.get("result", {}))

    async def open_tab(self, url: str) -> str:
        """A new tab's session id; Runtime, Page and Network are on before it loads `url`."""
        target = (await self.call("Target.createTarget", url="about:blank"))["targetId"]
        session = str((await self.call("Target.attachToTarget", targetId=target,
                                       flatten=True))["sessionId"])
        for domain in ("Runtime", "Page", "Network"):
            await self.call(f"{domain}.enable", session)
        await self.call("Page.navigate", session, url=url)
        return session

    # -- events -----------------------------------------------------------------------

    def of(self, session: str, method: str) -> list[Event]:
        return [e for e in self.events
                if e.get("sessionId") == session and e.get("method") == method]

    def console(self, session: str) -> list[str]:
        """The tab's console lines so far: the arguments of each console.* call joined."""
        return [" ".join(str(a.get("value", a.get("description", ""))) for a in
                         e["params"].get("args", []))
                for e in self.of(session, "Runtime.consoleAPICalled")]

    async def wait_for(self, found: Callable[[], Any], what: str,
                       timeout: float = STEP) -> Any:
        """Wait until `found()` (evaluated over the recorded events) is truthy."""
        deadline = time.monotonic() + timeout
        while (value := found()) in (None, False, [], ""):
            left = deadline - time.monotonic()
            if left <= 0 or self.reader.done():
                raise AssertionError(f"{what}: not seen within {timeout} s")
            self.changed.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.changed.wait(), min(left, 0.5))
        return value

    async def wait_console(self, session: str, pattern: str, timeout: float = STEP) -> str:
        """The first console line of the tab matching `pattern` (regex)."""
        def match() -> str | None:
            return next((ln for ln in self.console(session) if re.search(pattern, ln)), None)
        try:
            return str(await self.wait_for(match, f"console line {pattern!r}", timeout))
        except AssertionError as exc:
            raise AssertionError(f"{exc}; console so far: {self.console(session)}") from None

    # -- JavaScript -------------------------------------------------------------------

    async def js(self, session: str, expression: str) -> Any:
        result = await self.call("Runtime.evaluate", session, expression=expression,
                                 returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise AssertionError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    async def until(self, session: str, expression: str, what: str,
                    timeout: float = STEP) -> Any:
        """Poll `expression` until it is truthy; while the page is still loading its
        objects may not exist yet, which counts as false."""
        deadline = time.monotonic() + timeout
        value = None
        guarded = f"(() => {{ try {{ return {expression}; }} catch (e) {{ return null; }} }})()"
        while time.monotonic() < deadline:
            value = await self.js(session, guarded)
            if value:
                return value
            await asyncio.sleep(0.1)
        raise AssertionError(f"{what}: never became true ({expression} = {value!r}); "
                             f"console: {self.console(session)}")
