"""The demo's application: the code that runs on every server node of the demo cluster.

Each server node is started with ``--app distable.demo._app:start_app``, which imports
this module and starts the node's ``Census``. The driver then registers the workers from
its client node with ``register(("worker", i), Worker, i)``: the registry ships the
factory by reference (``"distable.demo._app:Worker"``), so every node can start a worker,
move it with its state when the ring gives its name to another node, or restart it when
its node dies.

A ``Worker`` is the seed README's example reduced to its essence: a named, long-lived
process with a little state (a counter). Casting ``"incr"`` adds one; calling ``"get"``
answers ``(count, node name)``. On a handoff it answers ``Resume(count)``, so its new
copy starts from the same count. It checkpoints its count: after each ``"incr"``
write-behind (``checkpoint(count, wait=False)``: only the latest count is sent, at most
every few milliseconds), and before it answers ``"get"``, waiting until its standby holds
it. After its node is killed it is restarted from its factory on the name's new owner and
continues from its last checkpoint: the increments made since then are lost, by design.

The ``Census`` tells the driver which workers really run on its node (not what a replica
says, but the processes alive in that OS process): the verdict's "every worker alive
exactly once" is the union of every node's census. The censuses form a process group,
so one ``multi_call`` from anywhere asks them all.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from distable import Caller, Node, Process, Resume

#: The process group of every node's ``Census``.
CENSUS = ("distable.demo", "census")

#: Worker numbers alive in this OS process, by node name (a count per number: a second
#: copy of a worker on the same node would show as 2).
_alive: dict[str, Counter[int]] = {}


class Worker(Process):
    """Demo worker ``("worker", number)``: a counter that moves with its count.

    Every handler runs on its node's event loop, one message at a time.
    """

    async def init(self, number: int) -> None:
        """Start counting from 0 (a new worker; a restarted one gets its last checkpoint
        in ``end_handoff`` before any message)."""
        self.number = number
        self.count = 0
        _alive.setdefault(self.node.name, Counter())[number] += 1

    async def handle_cast(self, message: Any) -> None:
        """``"incr"``: add one to the count."""
        if message != "incr":
            raise ValueError(f"unexpected cast {message!r}")
        self.count += 1
        self.checkpoint(self.count, wait=False)  # write-behind: returns at once

    async def handle_call(self, message: Any, caller: Caller) -> Any:
        """``"get"``: answer ``(count, name of the node this worker runs on)``."""
        if message != "get":
            raise ValueError(f"unexpected call {message!r}")
        await self.checkpoint(self.count)  # the count answered is safe on the standby
        return (self.count, self.node.name)

    async def begin_handoff(self) -> Resume:
        """The ring gave this worker's name to another node: take the count along."""
        return Resume(self.count)

    async def end_handoff(self, state: Any) -> None:
        """On the new node, before any other message: continue from the old count (handed
        over, or the last checkpoint after the old node was killed)."""
        self.count = state

    async def terminate(self, reason: Any) -> None:
        """Stopped (handed off, or its node is stopping): no longer alive here."""
        alive = _alive.get(self.node.name)
        if alive is not None:
            alive[self.number] -= 1
            if alive[self.number] <= 0:
                del alive[self.number]


class Census(Process):
    """Answers ``"workers"`` with the numbers of the workers alive on its node, sorted
    (a number twice if two copies of that worker run here)."""

    async def handle_call(self, message: Any, caller: Caller) -> Any:
        if message != "workers":
            raise ValueError(f"unexpected call {message!r}")
        return sorted(_alive.get(self.node.name, Counter()).elements())


async def start_app(node: Node) -> None:
    """Start the demo app on ``node`` (``--app distable.demo._app:start_app``): its census."""
    pid = await node.spawn(Census)
    await node.join(CENSUS, pid)
