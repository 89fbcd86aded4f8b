"""Messages on a single node: send, cast and call by pid; order; one handler at a time; fairness."""

from __future__ import annotations

import asyncio
import random
from typing import Any

from distable import Caller, Node, Process, call, cast, send
from distable.runtime._process import CALL
from distable.testing import eventually

from ._support import COOKIE, NODE_NAME, Recorder, proc_of

ORDER_SEED = 20240611
ORDER_COUNT = 10_000


class Sink(Process):
    """Records the sequence numbers it receives, whichever way they come."""

    async def init(self) -> None:
        self.seen: list[int] = []

    async def handle_info(self, message: Any) -> None:
        self.seen.append(message)

    async def handle_cast(self, message: Any) -> None:
        self.seen.append(message)

    async def handle_call(self, message: Any, caller: Caller) -> Any:
        self.seen.append(message)
        return message


class MixedSender(Process):
    """On ("go", sink, kinds), sends 0..n-1 to sink, message i by kinds[i]."""

    async def init(self) -> None:
        self.replies_ok = True

    async def handle_info(self, message: Any) -> None:
        _, sink, kinds = message
        for i, kind in enumerate(kinds):
            if kind == "send":
                send(sink, i)
            elif kind == "cast":
                cast(sink, i)
            elif await call(sink, i) != i:
                self.replies_ok = False


class Gate(Process):
    """Handles "slow" by waiting on an event, "fast" at once; records starts and ends."""

    async def init(self, gate: asyncio.Event, slow_started: asyncio.Event) -> None:
        self.gate = gate
        self.slow_started = slow_started
        self.trace: list[str] = []
        self.active = 0
        self.max_active = 0

    async def handle_info(self, message: Any) -> None:
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        self.trace.append(f"{message} start")
        if message == "slow":
            self.slow_started.set()
            await self.gate.wait()
        self.trace.append(f"{message} end")
        self.active -= 1


class Tagger(Process):
    """Appends (tag, message) to a log shared between processes: the recorded interleaving."""

    async def init(self, tag: str, shared: list[tuple[str, Any]]) -> None:
        self.tag = tag
        self.shared = shared

    async def handle_info(self, message: Any) -> None:
        self.shared.append((self.tag, message))


async def test_send_cast_and_call_reach_the_process_by_pid() -> None:
    async with Node(NODE_NAME, cookie=COOKIE) as node:
        pid = await Recorder.start()
        proc = proc_of(pid)
        send(pid, "by module send")
        node.send(pid, "by node send")
        cast(pid, "by module cast")
        node.cast(pid, "by node cast")
        assert await call(pid, ("echo", "by module call")) == "by module call"
        assert await node.call(pid, ("echo", "by node call")) == "by node call"
        assert proc.log == [
            ("info", "by module send"),
            ("info", "by node send"),
            ("cast", "by module cast"),
            ("cast", "by node cast"),
            ("call", ("echo", "by module call")),
            ("call", ("echo", "by node call")),
        ]


async def test_ten_thousand_mixed_messages_between_two_processes_arrive_in_order() -> None:
    rng = random.Random(ORDER_SEED)
    kinds = [rng.choice(("send", "cast", "call")) for _ in range(ORDER_COUNT)]
    async with Node(NODE_NAME, cookie=COOKIE):
        sink_pid = await Sink.start()
        sender_pid = await MixedSender.start()
        sink = proc_of(sink_pid)
        sender = proc_of(sender_pid)
        send(sender_pid, ("go", sink_pid, kinds))
        await eventually(
            lambda: len(sink.seen) == ORDER_COUNT,
            timeout=60,
            message=lambda: f"seed {ORDER_SEED}: sink has {len(sink.seen)} of {ORDER_COUNT} messages",
        )
        assert sink.seen == list(range(ORDER_COUNT)), f"out of order with seed {ORDER_SEED}"
        assert sender.replies_ok, f"a call got a wrong reply with seed {ORDER_SEED}"


async def test_a_process_never_runs_two_handlers_at_once() -> None:
    async with Node(NODE_NAME, cookie=COOKIE) as node:
        gate, slow_started = asyncio.Event(), asyncio.Event()
        pid = await Gate.start(gate, slow_started)
        proc = proc_of(pid)
        bystander = await Recorder.start()
        send(pid, "slow")
        send(pid, "fast")
        await slow_started.wait()
        # The loop keeps running other processes meanwhile; the second message still waits.
        for i in range(20):
            assert await node.call(bystander, ("echo", i)) == i
        assert proc.trace == ["slow start"]
        gate.set()
        await eventually(lambda: len(proc.trace) == 4, message=lambda: f"trace {proc.trace}")
        assert proc.trace == ["slow start", "slow end", "fast start", "fast end"]
        assert proc.max_active == 1


async def test_a_flooded_process_does_not_starve_another_process() -> None:
    flood = 1_000
    async with Node(NODE_NAME, cookie=COOKIE):
        shared: list[tuple[str, Any]] = []
        busy = await Tagger.start("busy", shared)
        other = await Tagger.start("other", shared)
        for i in range(flood):
            send(busy, i)
        send(other, "hello")  # sent after the whole flood is queued
        await eventually(lambda: len(shared) == flood + 1, message=lambda: f"{len(shared)} handled")
        position = shared.index(("other", "hello"))
        busy_after = [m for tag, m in shared[position:] if tag == "busy"]
        assert busy_after, f"'other' ran only after the whole flood (position {position})"
        assert [m for tag, m in shared if tag == "busy"] == list(range(flood))


async def test_what_a_gate_held_for_a_process_retired_meanwhile_goes_to_its_successor() -> None:
    """A handed-in process's gate holds a peer's direct messages; if the process is retired
    before the gate opens (a conflict's loser: its state went to the winner), the call the
    gate held is answered by the successor, not by the retired copy."""
    async with Node(NODE_NAME, cookie=COOKIE) as node:
        runtime = node.runtime
        log_old: list[Any] = []
        log_new: list[Any] = []
        old = await Recorder.start(log_old)
        new = await Recorder.start(log_new)
        proc = proc_of(old)
        gate = runtime.gate(proc, {"peer@127.0.0.1:1"})
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        gate.admit("peer@127.0.0.1:1", (CALL, ("echo", "held"), Caller(runtime, None, fut)))
        runtime.retire(proc, new, 30.0)
        gate.release_all()
        assert await asyncio.wait_for(fut, 5.0) == "held"
        assert log_old == []
        assert log_new == [("call", ("echo", "held"))]
