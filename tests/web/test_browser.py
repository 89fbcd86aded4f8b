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
