"""Membership over slow, jittery links: every byte between nodes takes 50 ± 30 ms each way.

This kernel has no ``tc netem``, so the delay comes from a TCP proxy (``_proxy.py``).
The trouble with a proxy is naming: a node is ``name@host:port`` of the address it
listens on, and the handshake refuses a peer that is not the node the dialer named, so
a node cannot simply be given the proxy's address to dial. Instead the redirection
happens under the nodes, in the kernel:

* three nodes and the proxy share one private namespace (loopback only, made by the
  test); node i listens on 127.0.0.1:700i under its true name, and all know each other
  by a ``Static`` list of those names;
* an nftables ``dnat`` rule in that namespace's ``nat output`` hook turns every
  connection to 127.0.0.1:700i into one to the proxy at 127.0.0.3:800i, unless it comes
  from 127.0.0.3, the address the proxy dials from; the proxy forwards it to
  127.0.0.1:700i, delaying each chunk by 50 ± 30 ms (seeded), in order.

So each link crosses the proxy (a round trip of 100 ± 60 ms, half the local preset's
protocol period) while every name, address and handshake check stays as in production.
The rule counters and the proxy's own statistics show the traffic went through it.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from distable.testing import eventually

from ._nodes import Nodes, describe, events, full_mesh, wait_for_probe_rounds
from ._topology import Lan, arun

pytestmark = pytest.mark.netns

PROXY = Path(__file__).resolve().with_name("_proxy.py")
PROXY_SOURCE = "127.0.0.3"
DELAY, JITTER = 0.050, 0.030
NODES = 3
WINDOW = 25  # probe rounds watched after the mesh formed: 5 s at the local preset


def dnat_rules(ports: list[int]) -> str:
    rules = "\n".join(
        f"ip saddr != {PROXY_SOURCE} ip daddr 127.0.0.1 tcp dport {port} counter dnat to {PROXY_SOURCE}:{port + 1000}"
        for port in ports
    )
    return (
        f"table ip dtproxy {{\n chain out {{\n  type nat hook output priority -100; policy accept;\n{rules}\n }}\n}}\n"
    )


class ProxyProcess:
    """``_proxy.py`` running inside a namespace; closing its stdin stops it."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    @classmethod
    async def start(cls, netns: str, pairs: list[str], seed: int) -> ProxyProcess:
        argv = [sys.executable, str(PROXY), "--delay", str(DELAY), "--jitter", str(JITTER)]
        argv += ["--seed", str(seed), "--source", PROXY_SOURCE, "--lifetime", "110", *pairs]
        proc = await asyncio.create_subprocess_exec(
            "ip", "netns", "exec", netns, *argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE
        )
        proxy = cls(proc)
        try:
            ready = await proxy.read()
        except BaseException:
            await proxy.close()
            raise
        assert "ready" in ready, ready
        return proxy

    async def read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = await asyncio.wait_for(self.proc.stdout.readline(), 10.0)
        if not line:
            raise RuntimeError(f"the proxy exited with code {await self.proc.wait()}")
        result: dict[str, Any] = json.loads(line)
        return result

    async def stats(self) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(b"stats\n")
        await self.proc.stdin.drain()
        stats: dict[str, Any] = (await self.read())["stats"]
        return stats

    async def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            await asyncio.wait_for(self.proc.wait(), 10.0)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()


@pytest.fixture
async def slow_links(lan: Lan, rng: random.Random) -> AsyncIterator[tuple[str, list[int], ProxyProcess]]:
    """A namespace whose connections to 127.0.0.1:7001.. cross the delaying proxy."""
    netns = lan.add("slow")
    ports = [7001 + i for i in range(NODES)]
    await arun("ip", "netns", "exec", netns, "nft", "-f", "-", stdin=dnat_rules(ports))
    pairs = [f"{PROXY_SOURCE}:{port + 1000}=127.0.0.1:{port}" for port in ports]
    proxy = await ProxyProcess.start(netns, pairs, rng.randrange(2**32))
    try:
        yield netns, ports, proxy
    finally:
        await proxy.close()


async def test_three_nodes_linked_through_50_30_ms_of_delay_converge_with_no_false_node_down(
    slow_links: tuple[str, list[int], ProxyProcess], nodes: Nodes
) -> None:
    netns, ports, proxy = slow_links
    names = [f"n{i}@127.0.0.1:{port}" for i, port in enumerate(ports)]
    # Over TCP: links over their Unix domain sockets would go round the proxy.
    started = [
        await nodes.start(f"n{i}", netns=netns, host="127.0.0.1", port=port, static=names, unix_sockets=False)
        for i, port in enumerate(ports)
    ]

    await eventually(lambda: full_mesh(started), timeout=30.0, message=lambda: describe(started))
    await wait_for_probe_rounds(started, WINDOW, timeout=60.0)

    assert await full_mesh(started), describe(started)
    for node in started:
        assert events(node, "NodeDown") == [], describe(started)
    # The links really crossed the proxy: every node's port was redirected, and the proxy
    # held every chunk at least DELAY - JITTER (its own bookkeeping, not a timing).
    ruleset = await arun("ip", "netns", "exec", netns, "nft", "list", "ruleset")
    redirected = [int(n) for n in re.findall(r"counter packets (\d+) bytes \d+ dnat", ruleset)]
    assert len(redirected) == NODES, ruleset
    assert all(redirected), ruleset
    stats = await proxy.stats()
    assert stats["chunks"] > 0
    assert stats["mean_delay"] >= DELAY - JITTER, stats
    print(f"proxy: {stats}")
