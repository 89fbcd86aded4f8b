"""A tiny Chrome DevTools Protocol client: headless Chromium driven over a websocket.

No dependency beyond aiohttp: ``Chromium.launch`` starts ``chromium --headless=new``
with ``--remote-debugging-port=0``, reads the port it picked from
``<profile>/DevToolsActivePort``, and connects to its page target's websocket;
``Page.navigate``, ``Runtime.evaluate`` and ``Page.captureScreenshot`` are all the
dashboard tests need.

Network safety: every request that is not to loopback goes to a proxy address where
nothing listens (127.0.0.1:9), host names other than localhost do not resolve, and
Chromium's background services (updates, sync, safe browsing...) are off: the browser
can reach nothing but this machine.

One ``Chromium`` per test; ``close()`` (or ``async with``) always ends the browser's
whole process group, which it started in a session of its own.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import os
import signal
import subprocess
from pathlib import Path
from typing import Any

import aiohttp

from distable.testing import eventually

FLAGS = (
    "--headless=new",
    "--no-sandbox",  # tests run as root in CI, where the sandbox cannot start
    "--remote-debugging-address=127.0.0.1",
    "--remote-debugging-port=0",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-extensions",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-default-apps",
    "--disable-sync",
    "--disable-breakpad",
    "--disable-domain-reliability",
    "--disable-client-side-phishing-detection",
    "--disable-features=Translate,OptimizationHints,MediaRouter,AutofillServerCommunication",
    "--metrics-recording-only",
    "--no-pings",
    "--mute-audio",
    # Loopback only: everything else goes to a dead proxy, names other than localhost fail.
    "--proxy-server=http://127.0.0.1:9",
    "--proxy-bypass-list=127.0.0.1;localhost;[::1]",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1",
)


def _spawn(binary: str, profile: Path) -> subprocess.Popen[bytes]:
    """Start the browser (blocking: run in a thread); its output goes to chromium.log.

    ``subprocess.Popen`` rather than asyncio's subprocesses: ``Chromium.close`` reaps the
    browser itself, after ending its process group (see there).
    """
    profile.mkdir(parents=True, exist_ok=True)
    (profile / "DevToolsActivePort").unlink(missing_ok=True)  # a reused profile's: not this browser's port
    with (profile / "chromium.log").open("wb") as log:
        return subprocess.Popen(
            [binary, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,  # its own process group: close() ends every helper too
        )


class CDPError(RuntimeError):
    """The browser answered a command with an error, or a script threw."""


class Chromium:
    """A headless Chromium and a DevTools session with its one page."""

    def __init__(self, proc: subprocess.Popen[bytes], http: aiohttp.ClientSession, port: int) -> None:
        self.proc = proc
        self.port = port
        self._http = http
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[Any]] = {}
        self._reader: asyncio.Task[None] | None = None

    @classmethod
    async def launch(cls, binary: str, profile: Path, timeout: float = 20.0) -> Chromium:
        """Start ``binary`` with a fresh ``profile`` directory; connect to its page."""
        proc = await asyncio.to_thread(_spawn, binary, profile)
        active = profile / "DevToolsActivePort"
        http = aiohttp.ClientSession()
        browser = cls(proc, http, 0)
        try:

            def port_file() -> str | None:
                if proc.poll() is not None:
                    raise RuntimeError(f"chromium exited with code {proc.returncode}: see {profile / 'chromium.log'}")
                with contextlib.suppress(FileNotFoundError):
                    text = active.read_text()
                    if text.endswith("\n") or len(text.splitlines()) >= 2:
                        return text
                return None

            text = await eventually(port_file, timeout=timeout, interval=0.05, message="no DevToolsActivePort")
            browser.port = int(text.splitlines()[0])
            await browser._connect(timeout)
        except BaseException:
            await browser.close()
            raise
        return browser

    async def _page_target(self) -> str | None:
        try:
            async with self._http.get(f"http://127.0.0.1:{self.port}/json/list") as response:
                targets = await response.json()
        except aiohttp.ClientConnectionError:
            return None  # not listening yet
        for target in targets:
            if target.get("type") == "page" and target.get("webSocketDebuggerUrl"):
                return str(target["webSocketDebuggerUrl"])
        return None

    async def _connect(self, timeout: float) -> None:
        url = await eventually(self._page_target, timeout=timeout, interval=0.05, message="no page target")
        self._ws = await self._http.ws_connect(url, max_msg_size=64 * 1024 * 1024)
        self._reader = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        """Owned by this client: routes each answer to its command's future."""
        assert self._ws is not None
        try:
            async for message in self._ws:
                if message.type != aiohttp.WSMsgType.TEXT:
                    continue
                data = json.loads(message.data)
                fut = self._waiting.pop(data.get("id", -1), None)
                if fut is None or fut.done():
                    continue  # an event: nobody here listens to them
                if "error" in data:
                    fut.set_exception(CDPError(f"{data['error']}"))
                else:
                    fut.set_result(data.get("result", {}))
        finally:
            for fut in self._waiting.values():
                if not fut.done():
                    fut.set_exception(CDPError("the DevTools connection closed"))
            self._waiting.clear()

    async def send(self, method: str, params: dict[str, Any] | None = None, timeout: float = 10.0) -> dict[str, Any]:
        """One DevTools command; its result."""
        if self._ws is None or self._ws.closed:
            raise CDPError("not connected")
        ident = next(self._ids)
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[ident] = fut
        await self._ws.send_str(json.dumps({"id": ident, "method": method, "params": params or {}}))
        try:
            return await asyncio.wait_for(fut, timeout)
        finally:
            self._waiting.pop(ident, None)

    async def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (promises awaited).

        Raises:
            CDPError: the expression threw.
        """
        result = await self.send(
            "Runtime.evaluate", {"expression": expression, "returnByValue": True, "awaitPromise": True}
        )
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            text = details.get("exception", {}).get("description") or details.get("text")
            raise CDPError(f"{expression!r} threw: {text}")
        return result.get("result", {}).get("value")

    async def navigate(self, url: str, timeout: float = 10.0) -> None:
        """Open ``url`` and wait until the document has loaded."""
        result = await self.send("Page.navigate", {"url": url})
        if result.get("errorText"):
            raise CDPError(f"cannot open {url}: {result['errorText']}")

        async def loaded() -> bool:
            state, href = await self.evaluate("[document.readyState, location.href]")
            return bool(state == "complete" and href.rstrip("/") == url.rstrip("/"))

        await eventually(loaded, timeout=timeout, interval=0.05, message=f"{url} did not load")

    async def set_viewport(self, width: int, height: int) -> None:
        """Lay the page out as in a ``width`` x ``height`` window (CSS pixels)."""
        await self.send(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
        )

    async def screenshot(self, path: Path) -> Path:
        """Save the whole page (beyond the viewport too) as a PNG at ``path``."""
        width, height = await self.evaluate(
            "[document.documentElement.scrollWidth, document.documentElement.scrollHeight]"
        )
        result = await self.send(
            "Page.captureScreenshot",
            {
                "format": "png",
                "captureBeyondViewport": True,
                "clip": {"x": 0, "y": 0, "width": width, "height": height, "scale": 1},
            },
            timeout=30.0,
        )

        def save() -> None:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(base64.b64decode(result["data"]))

        await asyncio.to_thread(save)
        return path

    async def close(self) -> None:
        """Close the session and end the browser (its whole process group). Idempotent."""
        if self._ws is not None:
            await self._ws.close()
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)
        await self._http.close()
        if self.proc.returncode is not None:
            return  # reaped already (it exited early): its group id may not be ours any more
        pid = self.proc.pid
        # Until the browser is reaped its zombie keeps the group id ours: wait for its exit
        # without reaping it, end whatever helpers are left in the group, then reap it.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGTERM)
        exited = asyncio.ensure_future(asyncio.to_thread(os.waitid, os.P_PID, pid, os.WEXITED | os.WNOWAIT))
        try:
            await asyncio.wait_for(asyncio.shield(exited), 10.0)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
            await exited
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
        self.proc.wait()

    async def __aenter__(self) -> Chromium:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
