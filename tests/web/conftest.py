"""Fixtures of the web tests: in-process nodes on 127.0.0.1, an HTTP client, Chromium.

``nodes`` starts real nodes in this event loop (port 0, ``MembershipConfig.local()``),
links each new one to the first and waits until every node sees every other and places
names on all of them; whatever happens, every node is stopped afterwards. ``chromium``
is the path of the browser, or the test is skipped (failed on CI) saying why.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from distable import MembershipConfig, Node
from distable.ring import Ring
from distable.testing import eventually, handoffs_in_flight

from .._system import system_tool

COOKIE = "web-cookie"
#: What the web tests register: the registry tests' counter (child nodes import it by reference).
WORKER = "tests.registry.apps:Counter"
ROOT = Path(__file__).resolve().parents[2]  # children import tests.registry.apps from here


class Nodes:
    """The in-process nodes of one test."""

    def __init__(self) -> None:
        self.nodes: list[Node] = []

    async def add(self, short: str) -> Node:
        """Start a server node, link it to the first one, wait until everyone agrees."""
        node = Node(short, cookie=COOKIE, membership=MembershipConfig.local(), drain_timeout=10.0)
        await node.start()
        self.nodes.append(node)
        if len(self.nodes) > 1:
            await node.connect(self.nodes[0].name, timeout=10.0)
        await self.wait_joined()
        return node

    async def start(self, count: int, prefix: str = "n") -> list[Node]:
        return [await self.add(f"{prefix}{len(self.nodes)}") for _ in range(count)]

    async def wait_joined(self) -> None:
        names = sorted(n.name for n in self.nodes)

        def joined() -> bool:
            return all(sorted([*n.nodes(), n.name]) == names and n.placement().nodes == names for n in self.nodes)

        await eventually(joined, timeout=15.0, message=self.describe)

    def describe(self) -> str:
        return "; ".join(
            f"{n.name}: sees {n.nodes()}, placement {n.placement().nodes}, {len(n.registered())} names"
            for n in self.nodes
        )

    def idle(self) -> bool:
        """No handoff in flight anywhere."""
        return all(not (h := handoffs_in_flight(n)).moving and not h.outgoing for n in self.nodes)

    def agreed(self, count: int) -> bool:
        """Every replica holds the same ``count`` names, each on its ring owner."""
        tables = [dict(n.registered()) for n in self.nodes]
        if any(len(t) != count or t != tables[0] for t in tables):
            return False
        ring = Ring().place(n.name for n in self.nodes)
        return all(pid.node == ring.owner(name) for name, pid in tables[0].items())

    async def close(self) -> None:
        for node in reversed(self.nodes):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(node.stop(), 20.0)
        self.nodes.clear()


@pytest.fixture
async def nodes() -> AsyncIterator[Nodes]:
    group = Nodes()
    try:
        yield group
    finally:
        await group.close()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def get_json(http: aiohttp.ClientSession, url: str) -> tuple[int, Any]:
    async with http.get(url) as response:
        return response.status, await response.json()


async def scrape(http: aiohttp.ClientSession, url: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """``/metrics`` parsed: (sample name, labels) -> value."""
    async with http.get(url + "/metrics") as response:
        assert response.status == 200
        text = await response.text()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def labels(**pairs: str) -> frozenset[tuple[str, str]]:
    return frozenset(pairs.items())


def first_owned(owner: str, placement_nodes: Iterable[str], prefix: str = "name") -> str:
    """The first name ``prefix-<i>`` that ``owner`` owns among ``placement_nodes``."""
    ring = Ring().place(placement_nodes)
    return next(f"{prefix}-{i}" for i in range(10_000) if ring.owner(f"{prefix}-{i}") == owner)


@pytest.fixture
def chromium() -> str:
    """The Chromium binary; skips the test when it is missing (fails on CI, where it must be)."""
    return system_tool("chromium", "chromium-browser", package="chromium")
