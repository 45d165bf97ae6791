"""Open aio's HTML pages in headless Debian Chromium over the DevTools protocol.

choreographer (kaleido's driver) starts the browser on a pipe. Networking is off
three ways: a proxy that refuses everything, the DevTools offline switch, and a check
that the page asked for nothing but file:, data: and blob: URLs, so a page that needs a
CDN fails here instead of going blank on a user's offline machine.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
from dataclasses import dataclass, field
from pathlib import Path

RENDER_TIMEOUT_S = 30.0


@dataclass
class PageCheck:
    path: Path
    figures: int = 0  # plotly divs on the page
    rendered: int = 0  # of those, with their SVG drawn
    errors: list[str] = field(default_factory=list)  # JS exceptions, console errors, failed loads
    requests: list[str] = field(default_factory=list)  # every URL the page asked for
    scroll_width: int = 0
    screenshot: Path | None = None
    full_screenshot: Path | None = None
    pixel_std: float = 0.0
    text: str = ""
    evals: dict = field(default_factory=dict)  # name -> value of each probe script

    @property
    def remote_requests(self) -> list[str]:
        return [u for u in self.requests if not u.startswith(("file:", "data:", "blob:", "about:"))]


def _std(png: bytes) -> float:
    from PIL import Image, ImageStat

    img = Image.open(io.BytesIO(png)).convert("L")
    return float(ImageStat.Stat(img).stddev[0])


async def _check_one(browser, path: Path, shots: Path, width: int, height: int, evals: dict, full_page: bool,
                     timeout: float) -> PageCheck:
    res = PageCheck(path)
    tab = await browser.create_tab("about:blank")

    async def on_exception(msg):
        d = msg["params"]["exceptionDetails"]
        res.errors.append("exception: " + str((d.get("exception") or {}).get("description") or d.get("text")))

    async def on_console(msg):
        p = msg["params"]
        if p.get("type") in ("error", "assert"):
            res.errors.append("console: " + " ".join(str(a.get("value", a.get("description"))) for a in p["args"]))

    async def on_log(msg):
        e = msg["params"]["entry"]
        if e.get("level") == "error":
            res.errors.append(f"log: {e.get('text')} {e.get('url', '')}")

    async def on_request(msg):
        res.requests.append(msg["params"]["request"]["url"])

    tab.subscribe("Runtime.exceptionThrown", on_exception)
    tab.subscribe("Runtime.consoleAPICalled", on_console)
    tab.subscribe("Log.entryAdded", on_log)
    tab.subscribe("Network.requestWillBeSent", on_request)
    for cmd in ("Runtime.enable", "Log.enable", "Network.enable", "Page.enable"):
        await tab.send_command(cmd)
    await tab.send_command("Network.emulateNetworkConditions",
                           params={"offline": True, "latency": 0, "downloadThroughput": 0, "uploadThroughput": 0})
    await tab.send_command("Emulation.setDeviceMetricsOverride",
                           params={"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})
    loaded = tab.subscribe_once("Page.loadEventFired")
    await tab.send_command("Page.navigate", params={"url": path.resolve().as_uri()})
    await asyncio.wait_for(loaded, timeout)

    async def evaluate(expr: str):
        r = await tab.send_command("Runtime.evaluate", params={"expression": expr, "returnByValue": True})
        return r["result"]["result"].get("value")

    probe = ("JSON.stringify({n: document.querySelectorAll('.plotly-graph-div').length,"
             " ok: Array.from(document.querySelectorAll('.plotly-graph-div'))"
             ".filter(d => d.querySelector('svg.main-svg') && d._fullLayout).length,"
             " w: document.documentElement.scrollWidth, h: document.documentElement.scrollHeight})")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        state = json.loads(await evaluate(probe))
        if state["ok"] >= state["n"] or loop.time() > deadline:
            break
        await asyncio.sleep(0.2)
    await asyncio.sleep(0.3)  # let the last frame paint
    res.figures, res.rendered, res.scroll_width = state["n"], state["ok"], state["w"]
    res.text = await evaluate("document.body.innerText") or ""
    shot = await tab.send_command("Page.captureScreenshot", params={"format": "png"})
    png = base64.b64decode(shot["result"]["data"])
    res.pixel_std = _std(png)
    stem = path.parent.name + "_" + path.stem
    res.screenshot = shots / f"{stem}.png"
    res.screenshot.write_bytes(png)
    if full_page:  # the whole page at half scale, to look at
        full_h = min(int(state["h"]), 16000)
        shot = await tab.send_command("Page.captureScreenshot", params={
            "format": "png", "captureBeyondViewport": True,
            "clip": {"x": 0, "y": 0, "width": width, "height": full_h, "scale": 0.5}})
    if full_page and "result" in shot:
        res.full_screenshot = shots / f"{stem}_full.png"
        res.full_screenshot.write_bytes(base64.b64decode(shot["result"]["data"]))
    for name, expr in evals.items():
        r = await tab.send_command("Runtime.evaluate", params={"expression": expr, "returnByValue": True,
                                                               "awaitPromise": True})
        res.evals[name] = r["result"]["result"].get("value")
    await tab.close()
    return res


async def _check(paths: list[Path], shots: Path, width: int, height: int, evals: dict, full_page: bool,
                 timeout: float) -> list[PageCheck]:
    from choreographer import Browser

    shots.mkdir(parents=True, exist_ok=True)
    # proxy to a closed port: any request that slips past the offline switch fails
    async with Browser(headless=True, proxy_server="http://127.0.0.1:9") as browser:
        return [await _check_one(browser, p, shots, width, height, evals, full_page, timeout) for p in paths]


def check_pages(paths: list[Path], shots: Path, width: int = 1920, height: int = 1080,
                evals: dict | None = None, full_page: bool = False,
                timeout: float = RENDER_TIMEOUT_S) -> list[PageCheck]:
    """Load each page, wait (up to ``timeout`` s) for its plotly figures, collect errors,
    screenshot the first screen (and the whole page with ``full_page``), then run each
    probe script of ``evals`` (awaited) on it."""
    return asyncio.run(_check(list(paths), shots, width, height, dict(evals or {}), full_page, timeout))
