"""A registered worker moves to a node that joins, with its state, and loses no message.

    python examples/handoff.py

Node "a" (this process) starts alone and registers a counting worker; a ``Sender`` on
"a" casts numbered messages to it by name, non-stop. Then node "b" (its own OS process,
started with no link to "a") is linked to "a": the ring now assigns the worker's name to
"b", so the registry moves it. The worker's ``begin_handoff`` answers ``Resume(state)``,
the new copy on "b" gets ``end_handoff(state)`` before any other message, and the casts
sent while it moved, to its old pid, reach the new copy in order. A second ``Sender``,
on "b", joins in as soon as "b" knows the name. Everything runs on 127.0.0.1 and ends by
itself in a few seconds.
"""

from __future__ import annotations

import asyncio
import secrets
import sys
from pathlib import Path
from typing import Any

import distable
from distable import (
    Caller,
    EventStream,
    HandoffCompleted,
    MembershipConfig,
    Node,
    Pid,
    Process,
    Resume,
    Ring,
    call,
)
from distable.testing import NodeProcess, eventually

HERE = Path(__file__).resolve().parent
BURST = 10  # casts per tick of a sender


class Worker(Process):
    """Counts ``("seq", sender, i, to)`` casts and checks that each sender's arrive in order."""

    async def init(self, name: Any) -> None:
        self.name = name
        self.count = 0
        self.last: dict[str, int] = {}  # sender -> the last sequence number seen
        self.gaps: list[tuple[str, int, int]] = []  # (sender, expected, got): should stay empty
        self.resumed_at: int | None = None  # the count end_handoff brought
        self.first: str | None = None  # what this copy handled first
        self.via_old_pid = 0  # casts this copy got that were sent to an earlier copy

    async def handle_cast(self, message: Any) -> None:
        match message:
            case ("seq", str(sender), int(i), Pid() as to):
                self.first = self.first or "cast"
                expected = self.last.get(sender, 0) + 1
                if i != expected:
                    self.gaps.append((sender, expected, i))
                self.last[sender] = i
                self.count += 1
                if to != self.pid:
                    self.via_old_pid += 1

    async def handle_call(self, message: Any, caller: Caller) -> Any:
        if message == "report":
            self.first = self.first or "call"
            return {
                "node": self.node.name,
                "count": self.count,
                "last": dict(self.last),  # copies: a local caller would share the originals
                "gaps": list(self.gaps),
                "resumed_at": self.resumed_at,
                "first": self.first,
                "via_old_pid": self.via_old_pid,
            }
        raise ValueError(f"unexpected call {message!r}")

    async def begin_handoff(self) -> Resume:  # on the old node: take the state along
        return Resume({"count": self.count, "last": self.last, "gaps": self.gaps})

    async def end_handoff(self, state: Any) -> None:  # on the new node, before any other message
        self.first = self.first or "end_handoff"
        self.count, self.last, self.gaps = state["count"], state["last"], state["gaps"]
        self.resumed_at = self.count


class Sender(Process):
    """Casts numbered messages to a name, ``BURST`` per tick, resolving the name at each send."""

    async def init(self) -> None:
        self.label = ""
        self.target: Any = None
        self.sent = 0
        self.running = False

    async def handle_call(self, message: Any, caller: Caller) -> Any:
        match message:
            case ("go", str(label), target):
                self.label, self.target, self.running = label, target, True
                self.send_after(0, "tick")
                return None
            case "stop":
                self.running = False
                return self.sent
        raise ValueError(f"unexpected call {message!r}")

    async def handle_info(self, message: Any) -> None:
        if message != "tick" or not self.running:
            return
        pid = distable.whereis(self.target)  # a local read of this node's replica
        if pid is not None:  # None until this node has learned the name
            for _ in range(BURST):
                self.sent += 1
                distable.cast(pid, ("seq", self.label, self.sent, pid))
        self.send_after(0, "tick")


async def report(name: Any, at_least: int = 0, on: str | None = None) -> dict[str, Any] | None:
    """The worker's report, asked by name, once it counted ``at_least`` casts (on node ``on``)."""
    got: dict[str, Any] = await call(name, "report")
    if got["count"] >= at_least and (on is None or got["node"] == on):
        return got
    return None


def handoff_completed(events: EventStream) -> HandoffCompleted | None:
    """The first ``HandoffCompleted`` among the events published so far, if any."""
    while True:
        try:
            event = events.get_nowait()
        except asyncio.QueueEmpty:
            return None
        if isinstance(event, HandoffCompleted):
            return event


async def main() -> None:
    cookie = secrets.token_hex(16)
    async with Node("a", cookie=cookie, membership=MembershipConfig.local()) as a:
        # Node b runs in its own OS process, linked to nobody yet.
        b = await NodeProcess.start("b", cookie, spawn={"sender": "handoff:Sender"}, paths=[str(HERE)])
        try:
            # A name that a owns now (alone), and that b owns once the two are linked.
            ring = Ring().place([a.name, b.name])
            name = next(("worker", i) for i in range(1000) if ring.owner(("worker", i)) == b.name)
            pid = await distable.register(name, Worker, name)
            print(f"registered {name} on {pid.node}, the only node")

            events = a.events()
            a_sender, b_sender = await Sender.start(), b.pid("sender")
            await call(a_sender, ("go", "a", name))
            await eventually(lambda: report(name, at_least=100))
            await call(b_sender, ("go", "b", name))  # it casts once b has learned the name
            await a.connect(b.name)  # b joins: the ring now gives the name to b

            moved = await eventually(lambda: handoff_completed(events))
            events.close()
            print(f"{b.name} joined; {name} moved to {moved.new_pid.node} (answer {moved.answer!r})")
            # Both senders keep casting to the new copy for a while; then they stop.
            there = await eventually(lambda: report(name, on=b.name))
            await eventually(lambda: report(name, at_least=there["count"] + 200))
            sent = {"a": await call(a_sender, "stop"), "b": await call(b_sender, "stop")}
            final = await eventually(lambda: report(name, at_least=sum(sent.values())))

            print(f"  the new copy handled first: {final['first']} (state resumed at count {final['resumed_at']})")
            print(f"  casts sent to the old pid, delivered to the new copy: {final['via_old_pid']}")
            print(f"  sent {sent}; the worker counted {final['count']}, last seen {final['last']}")
            print(f"  out of order or missing: {final['gaps'] or 'none'}")
            ok = (
                final["node"] == b.name
                and final["first"] == "end_handoff"
                and final["last"] == sent
                and final["count"] == sum(sent.values())
                and not final["gaps"]
            )
            print("done: moved with its state, every message delivered once and in order" if ok else "FAILED")
        finally:
            await b.close()


if __name__ == "__main__":
    sys.path.insert(0, str(HERE))
    distable.run(main())
