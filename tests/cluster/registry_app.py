"""The seed README's example in Python: workers created on demand under a supervisor,
registered by name, and spread over the cluster by the registry.

Each node process runs the app (``--app tests.cluster.registry_app:start_app``), which
starts that node's ``WorkerSup``. Anyone in the cluster then registers a worker by name
with the factory reference ``"tests.cluster.registry_app:start_worker"``; the registry
runs ``start_worker(name)`` on the name's owner, which asks *that node's* supervisor to
start a ``Worker`` child, and moves or restarts the worker when the cluster changes.

How the factory finds its node's supervisor: ``WorkerSup`` records its pid in
``_supervisors``, a module-level dict keyed by node name, and the factory looks up the
current node's entry (the registry runs factories with their node current). This stays
local: nothing is replicated, so the cluster's registry holds only the workers, and it
works as well with several nodes in one OS process. (Registering each supervisor by
name, e.g. ``("sup", node.name)``, would also work, but would put node-local plumbing
into every replica and into every ``registered()`` listing.)

Child node processes import this module as ``tests.cluster.registry_app``, so it must
import nothing else from the test suite.
"""

from __future__ import annotations

from typing import Any

from distable import Caller, Node, Pid, Process, Resume, Supervisor, current_node

#: The running ``WorkerSup`` of each node in this OS process, by node name.
_supervisors: dict[str, Pid] = {}


class WorkerSup(Supervisor):
    """This node's supervisor of workers (the seed's ``MyApp.WorkerSup``)."""

    async def init(self, max_restarts: int = 3, max_seconds: float = 5.0) -> None:
        await super().init(max_restarts, max_seconds)
        _supervisors[self.node.name] = self.pid

    async def terminate(self, reason: Any) -> None:
        if _supervisors.get(self.node.name) == self.pid:
            del _supervisors[self.node.name]
        await super().terminate(reason)


async def start_app(node: Node) -> None:
    """Start the app on ``node``: its ``WorkerSup``."""
    await node.spawn(WorkerSup)


async def start_worker(name: Any) -> Pid:
    """The factory: start a ``Worker`` for ``name`` under the current node's supervisor.

    The child is "temporary" for the supervisor: the registry, not the supervisor, decides
    where and when a registered worker is restarted (a supervisor restart would make an
    unregistered twin).

    Raises:
        RuntimeError: the app is not running on this node (no ``WorkerSup``).
    """
    node = current_node()
    supervisor = _supervisors.get(node.name)
    if supervisor is None:
        raise RuntimeError(f"no WorkerSup on {node.name}: the app is not started there")
    return await Supervisor.start_child(supervisor, Worker, name, restart="temporary")


class Worker(Process):
    """A named counter. Cast "incr" adds one; call "get" answers ``(count, node name)``.
    Cast ``("seq", sender, i)`` records ``i`` under ``sender``, in the order handled; call
    "seqs" answers ``{sender: [i, ...]}`` (for the ordering tests).

    A handoff carries the count and the records (``Resume``); a restart after its node died
    starts again from zero.
    """

    async def init(self, name: Any) -> None:
        self.name = name
        self.count = 0
        self.seqs: dict[str, list[int]] = {}

    async def handle_cast(self, message: Any) -> None:
        if message == "incr":
            self.count += 1
        elif isinstance(message, tuple | list) and len(message) == 3 and message[0] == "seq":
            self.seqs.setdefault(message[1], []).append(message[2])
        else:
            raise ValueError(f"unexpected cast {message!r}")

    async def handle_call(self, message: Any, caller: Caller) -> Any:
        if message == "get":
            return (self.count, self.node.name)
        if message == "seqs":
            return self.seqs
        raise ValueError(f"unexpected call {message!r}")

    async def begin_handoff(self) -> Resume:
        return Resume((self.count, self.seqs))

    async def end_handoff(self, state: Any) -> None:
        self.count, self.seqs = state[0], dict(state[1])
