"""The app the CLI tests run in their ``distable node`` processes (``--app tests.cli.cliapp:start``).

Each node registers a few named counters through the factory ``Counter`` (so the registry
places them on their owners and hands them off, with their count, when a node leaves):
node ``NAME`` registers ``NAME-0`` .. ``NAME-{COUNT - 1}``, and node ``a`` also the tuple
name ``("pair", 1)``. Child processes import this module as ``tests.cli.cliapp``, so it
imports nothing else from the test suite.
"""

from __future__ import annotations

from typing import Any

from distable import Caller, Node, Process, Resume

COUNT = 4


class Counter(Process):
    """Call "get" answers ``(name, count, node name)``; cast "incr" adds one."""

    async def init(self, name: Any, count: int = 0) -> None:
        self.name = name
        self.count = count

    async def handle_cast(self, message: Any) -> None:
        if message == "incr":
            self.count += 1

    async def handle_call(self, message: Any, caller: Caller) -> Any:
        if message == "get":
            return (self.name, self.count, self.node.name)
        raise ValueError(f"unexpected call {message!r}")

    async def begin_handoff(self) -> Resume:
        return Resume(self.count)

    async def end_handoff(self, state: Any) -> None:
        self.count = state


def names(short: str) -> list[Any]:
    """The names node ``short`` registers."""
    out: list[Any] = [f"{short}-{i}" for i in range(COUNT)]
    if short == "a":
        out.append(("pair", 1))
    return out


async def start(node: Node) -> None:
    """Register this node's names (wherever the registry places them)."""
    for name in names(node.short_name):
        await node.register(name, Counter, name)


async def fail(node: Node) -> None:
    """An app function that raises, for the CLI's error test."""
    raise RuntimeError(f"cannot start on {node.name}")


async def twice(node: Node) -> None:
    """An app function that registers a name taken already, as the same app on a second
    node does with ``register``, for the CLI's error test."""
    await node.register("once", Counter, "once")
    await node.register("once", Counter, "once")


SHARED = [f"shared-{i}" for i in range(8)]


async def start_shared(node: Node) -> None:
    """Every node runs this: each name starts once in the cluster, wherever it is placed
    (``whereis_or_register``), as an app meant for rolling restarts would do."""
    for name in SHARED:
        await node.whereis_or_register(name, Counter, name)


MANY = [f"many-{i}" for i in range(32)]


async def start_many(node: Node) -> None:
    """As ``start_shared`` with more names: a node that registered on a partial ring would
    place some of them elsewhere than the others do."""
    for name in MANY:
        await node.whereis_or_register(name, Counter, name)
