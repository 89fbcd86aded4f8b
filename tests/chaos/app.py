"""The app every ``distable node`` of the fault test runs (``--app tests.chaos.app:start``).

``Counter`` is the named process the client registers (factory ``tests.chaos.app:Counter``):
its state is the set of operation ids it applied and a *lineage*, a random id drawn when a
copy starts fresh, carried by graceful moves (``begin_handoff`` -> ``Resume(state)`` ->
``end_handoff``) and kept by the winner of a conflict, which also records the loser's
lineage as absorbed (``resolve_conflict``). A lineage that disappears is a state reset.

Registered as ``register(name, Counter, name, True, replicas=k)`` (the harness's
``Config(checkpoints=True)``), a copy *checkpoints*: ``add`` answers only after
``await self.checkpoint(state)`` returned (so every acknowledged op is in an acknowledged
checkpoint, marked with its ``writer``), a merge is checkpointed too, and a copy restarted
from a checkpoint after its host died (``end_handoff`` with a ``writer``'s state) continues
the checkpoint's lineage, like a ``Resume``; its ledger lines of a restore or a resume
list the ops it got. A failed checkpoint answers ``{"error": ...}``
(the harness counts the op as indeterminate) instead of crashing the copy.

Every copy writes a line to the node's ledger (the file named by ``DISTABLE_CHAOS_LEDGER``,
one JSON object per line, flushed at once so that a SIGKILL loses nothing written) when it
starts a lineage, resumes one (``resume``), restores one from a checkpoint (``restore``) or
absorbs one: the checker learns from it which nodes hosted
a lineage, to tell a reset explained by a crash or a pause of such a host from one that is
not.

``Inspector`` answers ``"inspect"`` with what the checker needs from this node: its
replica, its placement, the registry's work in flight and every live ``Counter`` here
(a copy the replica does not point at is a duplicate), each with whether it is frozen
(handing off) or gated (just handed in, holding messages until flushed). ``start`` spawns it and prints its
pid on standard output before the node's "up" line, so the harness can call it.

Node processes import this module as ``tests.chaos.app``; it imports nothing else from
the test suite.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import IO, Any

from distable import Caller, Node, Pid, Process, Resume
from distable.testing import gate_of, is_frozen, registry_stats, replica_digest

#: Every live Counter of this node process, by pid.
_live: dict[Pid, Counter] = {}
_ledger: IO[str] | None = None


def _record(**entry: Any) -> None:
    global _ledger
    path = os.environ.get("DISTABLE_CHAOS_LEDGER")
    if not path:
        return
    if _ledger is None:
        _ledger = open(path, "a", buffering=1)  # noqa: SIM115 (kept open for the process's life)
    _ledger.write(json.dumps({"t": time.time(), **entry}) + "\n")
    _ledger.flush()


def _pid(pid: Pid) -> list[Any]:
    return [pid.node, pid.incarnation, pid.id]


class Counter(Process):
    """Calls: ``("add", op)`` applies ``op`` once and answers ``[node, lineage, count]``
    (with ``checkpoints``, once it is in an acknowledged checkpoint; ``{"error": ...}`` if
    the checkpoint failed); ``"state"`` answers ``{"ops", "lineage", "absorbed", "node"}``."""

    async def init(self, name: str, checkpoints: bool = False) -> None:
        self.name = name
        self.checkpoints = checkpoints
        self.ops: set[str] = set()
        self.lineage = os.urandom(6).hex()
        self.absorbed: set[str] = set()
        self.logged = False  # the lineage's first line is written on first use (a handoff replaces it)
        self.started = time.time()  # ... and says when the copy started (``started``)
        _live[self.pid] = self

    def _log(self, event: str, **extra: Any) -> None:
        _record(node=self.node.name, name=self.name, lineage=self.lineage, event=event, pid=_pid(self.pid), **extra)

    def _fresh(self) -> None:
        if not self.logged:
            self.logged = True
            self._log("fresh", started=self.started)

    async def handle_call(self, message: Any, caller: Caller) -> Any:
        self._fresh()
        match message:
            case ("add", str(op)):
                self.ops.add(op)
                if self.checkpoints:
                    error = await self._checkpoint()
                    if error is not None:
                        return {"error": error}  # not acknowledged: the op may or may not survive
                return [self.node.name, self.lineage, len(self.ops)]
            case "state":
                return {
                    "ops": sorted(self.ops),
                    "lineage": self.lineage,
                    "absorbed": sorted(self.absorbed),
                    "node": self.node.name,
                }
        raise ValueError(f"unexpected call {message!r}")

    def _state(self) -> dict[str, Any]:
        return {"ops": sorted(self.ops), "lineage": self.lineage, "absorbed": sorted(self.absorbed)}

    async def _checkpoint(self) -> str | None:
        """Checkpoint the state (marked with its writer); the error, if it failed."""
        try:
            await self.checkpoint({**self._state(), "writer": self.node.name})
        except Exception as exc:
            self._log("checkpoint-failed", error=repr(exc))
            return repr(exc)
        return None

    async def begin_handoff(self) -> Resume:
        self._fresh()
        # ``handoff``: an id of this move. The new host writes a Resume state as its next
        # checkpoint, so a restore can deliver this very state again; its ledger line
        # then repeats the id (the first line with an id is the handoff).
        return Resume({**self._state(), "host": self.node.name, "handoff": os.urandom(6).hex()})

    async def end_handoff(self, state: Any) -> None:
        self.ops = set(state["ops"])
        self.lineage = state["lineage"]
        self.absorbed = set(state["absorbed"])
        self.logged = True
        # with checkpoints, the ops it got: the checker finds where an op went missing
        ops = {"ops": state["ops"]} if self.checkpoints else {}
        if "writer" in state:  # the last checkpoint of a copy whose host died
            self._log("restore", writer=state["writer"], **ops)
        else:
            self._log("resume", **{"from": state.get("host"), "handoff": state.get("handoff")}, **ops)

    async def resolve_conflict(self, state: Any) -> None:
        self._fresh()
        if state is None:
            self._log("merge-nothing")
            return
        self.ops |= set(state["ops"])
        if state["lineage"] != self.lineage:
            self.absorbed.add(state["lineage"])
        self.absorbed |= set(state["absorbed"]) - {self.lineage}
        self._log("merge", loser=state["lineage"], ops=len(state["ops"]))
        if self.checkpoints:  # the loser's acknowledged ops must outlive this host's crash
            await self._checkpoint()

    async def terminate(self, reason: Any) -> None:
        _live.pop(self.pid, None)


class Inspector(Process):
    """Answers ``"inspect"`` (see the module's docstring)."""

    async def handle_call(self, message: Any, caller: Caller) -> Any:
        if message != "inspect":
            raise ValueError(f"unexpected call {message!r}")
        node = self.node
        placement = node.placement()
        replica = [[name, _pid(pid)] for name, pid in node.registered()]
        off_owner = [name for name, pid in node.registered() if placement.owner(name) != pid.node]
        copies = [
            [c.name, _pid(pid), c.lineage, len(c.ops), is_frozen(c), gate_of(c) is not None] for pid, c in _live.items()
        ]
        return {
            "node": node.name,
            "incarnation": node.incarnation,
            "placement": list(placement.nodes),
            "replica": replica,
            "off_owner": off_owner,
            "digest": replica_digest(node),
            "work": registry_stats(node),
            "copies": copies,
        }


async def start(node: Node) -> None:
    """Spawn this node's ``Inspector`` and say where it is (one line on standard output)."""
    pid = await node.spawn(Inspector)
    sys.stdout.write("chaos-inspector " + json.dumps(_pid(pid)) + "\n")
    sys.stdout.flush()
