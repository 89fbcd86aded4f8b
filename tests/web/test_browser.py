"""The dashboard in a real browser, against a real cluster of OS processes.

Three nodes run as child processes (``NodeProcess``); the first serves the dashboard
(``--dashboard 127.0.0.1:0``). Headless Chromium, driven over the DevTools Protocol
(``_cdp``), opens the page; the test reads the DOM until it shows what the nodes hold:
3 nodes, every registered name, each node's process count. A 4th node joins and the
page follows. Everything listens and connects on 127.0.0.1 only.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from distable.testing import NodeProcess, eventually

from ._cdp import Chromium
from .conftest import COOKIE, ROOT, WORKER

pytestmark = pytest.mark.cluster

NAMES = 40
SETTLE = 30.0  # bound on each wait for the cluster or the page (generous: the machine is shared)

#: What the page shows, read in one go.
READ_PAGE = """(() => ({
  updates: Number(document.body.dataset.updates || 0),
  nodes: document.getElementById("node-count").textContent,
  names: document.getElementById("name-count").textContent,
  rows: Object.fromEntries([...document.querySelectorAll("#nodes tr[data-node]")].map(
    (tr) => [tr.dataset.node, tr.querySelector(".procs").textContent])),
  ring: [...document.querySelectorAll("#ring-hash .seg")].map((s) => s.dataset.node),
  events: [...document.querySelectorAll("#events li")].map((li) => [li.dataset.type, li.textContent]),
  status: document.getElementById("status").dataset.state,
}))()"""


class Cluster:
    """Node processes of one test; ``close()`` ends every one of them."""

    def __init__(self) -> None:
        self.procs: list[NodeProcess] = []

    async def start(self, name: str, **options: Any) -> NodeProcess:
        connect = [self.procs[0].name] if self.procs else []
        proc = await NodeProcess.start(name, COOKIE, connect=connect, paths=[str(ROOT)], **options)
        self.procs.append(proc)
        return proc

    async def settled(self, names: int) -> bool:
        """Every node sees all the others, places names on all, and holds every name."""
        everyone = sorted(p.name for p in self.procs)
        for proc in self.procs:
            if sorted([*(await proc.nodes()), proc.name]) != everyone or await proc.placement() != everyone:
                return False
            if len(await proc.registered()) != names:
                return False
        return True

    async def processes(self) -> dict[str, str]:
        """Each node's live process count, as the page prints it."""
        return {p.name: str((await p.stats())["runtime"]["processes"]) for p in self.procs}

    async def close(self) -> None:
        await asyncio.gather(*(p.close() for p in self.procs), return_exceptions=True)


@pytest.fixture
async def cluster() -> AsyncIterator[Cluster]:
    group = Cluster()
    try:
        yield group
    finally:
        await group.close()


@pytest.fixture
async def browser(chromium: str, tmp_path: Path) -> AsyncIterator[Chromium]:
    async with await Chromium.launch(chromium, tmp_path / "chromium") as browser:
        yield browser


async def test_dashboard_shows_the_cluster_and_follows_a_join(cluster: Cluster, browser: Chromium) -> None:
    a = await cluster.start("a", dashboard="127.0.0.1:0")
    assert a.dashboard_url is not None
    assert a.dashboard_url.startswith("http://127.0.0.1:")
    await asyncio.gather(cluster.start("b"), cluster.start("c"))
    await eventually(lambda: cluster.settled(0), timeout=SETTLE, message="the three nodes did not meet")
    result = await a.register([["w", i] for i in range(NAMES)], WORKER)
    assert result == {"registered": NAMES, "errors": {}}
    await eventually(lambda: cluster.settled(NAMES), timeout=SETTLE, message="the names did not spread")

    await browser.navigate(a.dashboard_url + "/")
    page: dict[str, Any] = {}
    expected: dict[str, Any] = {}

    async def shows_the_cluster() -> bool:
        page.update(await browser.evaluate(READ_PAGE))
        expected.update(nodes=str(len(cluster.procs)), names=str(NAMES), rows=await cluster.processes())
        return bool(
            page["status"] == "live"
            and page["nodes"] == expected["nodes"]
            and page["names"] == expected["names"]
            and page["rows"] == expected["rows"]
            and sorted(page["ring"]) == sorted(expected["rows"])
        )

    def mismatch() -> str:
        return f"the page shows {json.dumps(page)}; the cluster holds {json.dumps(expected)}"

    await eventually(shows_the_cluster, timeout=SETTLE, interval=0.1, message=mismatch)
    assert all(int(count) > 0 for count in page["rows"].values()), "a node hosts no worker"

    # A 4th node joins: names move to it, and the page follows.
    d = await cluster.start("d")
    await eventually(lambda: cluster.settled(NAMES), timeout=SETTLE, message="d did not join")
    await eventually(shows_the_cluster, timeout=SETTLE, interval=0.1, message=mismatch)
    assert d.name in page["rows"]
    # The event list (Server-Sent Events) tells of the join.
    await eventually(lambda: saw_join(browser, d.name), timeout=SETTLE, interval=0.1, message="no NodeUp event shown")


async def saw_join(browser: Chromium, node: str) -> bool:
    events: list[list[str]] = await browser.evaluate(READ_PAGE.rstrip() + ".events")
    return any(kind == "NodeUp" and node in text for kind, text in events)


#: The charts as the page holds them: for each, its uPlot instance's series and last values,
#: and how many pixels of its canvas are painted in the colour of one of its lines.
READ_CHARTS = """(() => {
  const state = window.distableCharts;
  if (!window.uPlot || !state) return null;
  const rgb = (hex) => [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16));
  const charts = {};
  for (const [id, { plot }] of state.charts) {
    const canvas = plot.ctx.canvas;
    const pixels = plot.ctx.getImageData(0, 0, canvas.width, canvas.height).data;
    const strokes = plot.series.slice(1).map((s) => s.stroke()).filter((c) => /^#[0-9a-f]{6}$/i.test(c)).map(rgb);
    let painted = 0;
    let inked = 0;
    for (let i = 0; i < pixels.length; i += 4) {
      if (pixels[i + 3] === 0) continue;
      painted++;
      const [r, g, b] = [pixels[i], pixels[i + 1], pixels[i + 2]];
      if (strokes.some(([sr, sg, sb]) => Math.abs(r - sr) + Math.abs(g - sg) + Math.abs(b - sb) < 60)) inked++;
    }
    charts[id] = {
      uplot: typeof plot.setData === "function" && plot.root.classList.contains("uplot") && plot.root.isConnected,
      series: plot.series.slice(1).map((s) => s.label),
      last: Object.fromEntries(plot.series.slice(1).map((s, i) => [s.label, plot.data[i + 1].at(-1)])),
      samples: plot.data[0].length,
      painted,
      inked,
    };
  }
  return { canvases: document.querySelectorAll("#charts canvas").length, charts };
})()"""

CHARTS = ("names", "processes", "nodes", "rates", "calls", "lag")


def artifacts() -> Path:
    """Where the browser tests keep their screenshots (``DISTABLE_TEST_ARTIFACTS`` or
    ``test-artifacts/`` at the root of the checkout, which git ignores)."""
    return Path(os.environ.get("DISTABLE_TEST_ARTIFACTS") or ROOT / "test-artifacts")


async def test_charts_draw_the_cluster_over_time_and_show_a_join_and_a_kill(
    cluster: Cluster, browser: Chromium
) -> None:
    a = await cluster.start("a", dashboard="127.0.0.1:0")
    assert a.dashboard_url is not None
    await asyncio.gather(cluster.start("b"), cluster.start("c"))
    await eventually(lambda: cluster.settled(0), timeout=SETTLE, message="the three nodes did not meet")
    result = await a.register([["w", i] for i in range(NAMES)], WORKER)
    assert result == {"registered": NAMES, "errors": {}}
    await eventually(lambda: cluster.settled(NAMES), timeout=SETTLE, message="the names did not spread")

    await browser.set_viewport(1280, 900)
    await browser.navigate(a.dashboard_url + "/")
    page: dict[str, Any] = {}

    async def charts_show(nodes: list[str], live: int) -> bool:
        """Every chart drawn; the names chart has a line per node of ``nodes``, whose last
        values add up to every name; the cluster's last node count is ``live``."""
        page.clear()
        page.update(await browser.evaluate(READ_CHARTS) or {})
        charts = page.get("charts", {})
        if sorted(charts) != sorted(CHARTS) or page["canvases"] < len(CHARTS):
            return False
        if not all(c["uplot"] and c["samples"] >= 2 and c["inked"] > 0 for c in charts.values()):
            return False
        names = charts["names"]
        hosted = [names["last"].get(n) for n in nodes]
        return bool(
            all(n in names["series"] for n in nodes)
            and all(isinstance(count, int) and count > 0 for count in hosted)
            and sum(hosted) == NAMES
            and charts["nodes"]["last"]["nodes"] == live
        )

    def shown() -> str:
        return f"the charts show {json.dumps(page)}"

    first = [p.name for p in cluster.procs]
    await eventually(lambda: charts_show(first, 3), timeout=SETTLE, interval=0.2, message=shown)
    for chart in page["charts"].values():
        assert chart["painted"] > chart["inked"] > 0, chart  # axes and grid, and the lines
    assert sorted(page["charts"]["processes"]["series"]) == sorted(first)

    # A 4th node joins: it gets a line of its own, names move to it.
    d = await cluster.start("d")
    await eventually(lambda: cluster.settled(NAMES), timeout=SETTLE, message="d did not join")
    everyone = [p.name for p in cluster.procs]
    await eventually(lambda: charts_show(everyone, 4), timeout=SETTLE, interval=0.2, message=shown)
    assert page["charts"]["names"]["last"][d.name] > 0

    # d is killed: its line breaks off (no value), and the node count falls back.
    d.kill()
    await d.wait()
    cluster.procs.remove(d)
    await eventually(lambda: cluster.settled(NAMES), timeout=SETTLE, message="the names did not come back")

    async def d_is_gone() -> bool:
        return await charts_show(first, 3) and page["charts"]["names"]["last"].get(d.name) is None

    await eventually(d_is_gone, timeout=SETTLE, interval=0.2, message=shown)
    shot = await browser.screenshot(artifacts() / "dashboard-charts.png")
    print(f"screenshot of the dashboard: {shot}")
    assert shot.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
