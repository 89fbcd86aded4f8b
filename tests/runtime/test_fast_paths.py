"""The runtime's fast paths keep the contract: lingering drains, slotted call deadlines,
the module-level send/call shortcut for pids, and the batch writer's size report."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

import distable
from distable import CallTimeout, Node, Process
from distable.runtime._runtime import LINGER, TIMEOUT_SLOTS
from distable.testing import eventually
from distable.wire import BatchWriter

from ._support import COOKIE, NODE_NAME, Recorder, proc_of


class Silent(Process):
    """Never answers a call (so every call to it times out)."""

    async def handle_call(self, message: Any, caller: Any) -> Any:
        return distable.NOREPLY


async def test_a_process_that_went_quiet_still_gets_every_message_in_order() -> None:
    async with Node(NODE_NAME, cookie=COOKIE) as node:
        pid = await Recorder.start()
        proc = proc_of(pid)
        node.send(pid, 1)
        await eventually(lambda: proc.log == [("info", 1)])
        assert proc._running  # its drain lingers, parked, for a while
        node.send(pid, 2)
        node.cast(pid, 3)
        assert await node.call(pid, ("echo", 4)) == 4
        assert proc.log == [("info", 1), ("info", 2), ("cast", 3), ("call", ("echo", 4))]


async def test_a_lingering_drain_ends_after_a_while_and_the_next_message_starts_another() -> None:
    async with Node(NODE_NAME, cookie=COOKIE) as node:
        pid = await Recorder.start()
        proc = proc_of(pid)
        node.send(pid, "first")
        await eventually(lambda: not proc._running, timeout=4 * LINGER + 2, message="the drain never ended")
        assert proc._parked is None
        assert proc._mailbox is None  # an idle process keeps no deque
        node.send(pid, "second")
        await eventually(lambda: proc.log == [("info", "first"), ("info", "second")])


async def test_a_flush_marker_parked_in_a_frozen_process_without_a_deque_is_relayed_in_its_place() -> None:
    # A handoff freezes an idle process: its drain ends with nothing queued and drops the
    # deque. A flush marker that comes before the commit must still be parked, in order.
    async with Node(NODE_NAME, cookie=COOKIE) as node:
        runtime = node.runtime
        pid, successor = await Recorder.start(), await Recorder.start()
        proc = proc_of(pid)

        async def freeze(p: Process) -> None:
            runtime.freeze(p)

        await runtime.run_in(proc, freeze)
        await eventually(lambda: not proc._running, message="the frozen process's drain never ended")
        assert proc._mailbox is None
        runtime.park_marker(proc, "x", 7)
        node.send(pid, "after")
        runtime.forward_mailbox(proc, successor, lambda n, hid: node.send(successor, ("marker", n, hid)))
        want = [("info", ("marker", "x", 7)), ("info", "after")]
        await eventually(lambda: proc_of(successor).log == want, message=lambda: f"{proc_of(successor).log}")
        assert proc.log == []
        runtime.unfreeze(proc)  # so that the node's stop does not wait for it


async def test_stopping_a_process_whose_drain_lingers_runs_terminate_once() -> None:
    async with Node(NODE_NAME, cookie=COOKIE) as node:
        pid = await Recorder.start()
        proc = proc_of(pid)
        node.send(pid, "hello")  # a drain runs it, then lingers
        await eventually(lambda: proc.log == [("info", "hello")])
        assert await node.call(pid, ("echo", "x")) == "x"  # handled at once, in the lingering drain's task
        assert proc._running
        assert proc._parked is not None
        assert await node.stop_process(pid, "bye") == "bye"
        assert proc.terminated == ["bye"]
        assert node.runtime.local(pid) is None


async def test_a_node_stops_cleanly_with_many_lingering_drains() -> None:
    async with Node(NODE_NAME, cookie=COOKIE) as node:
        pids = [await Recorder.start() for _ in range(200)]
        procs = [proc_of(pid) for pid in pids]
        for pid in pids:
            node.send(pid, "hello")
        await eventually(lambda: all(proc.log == [("info", "hello")] for proc in procs))
        assert any(proc._running for proc in procs)
    assert all(proc.terminated == ["shutdown"] and not proc._running for proc in procs)


async def test_calls_time_out_no_earlier_than_asked_and_not_much_later() -> None:
    async with Node(NODE_NAME, cookie=COOKIE):
        pid = await Silent.start()

        async def timed(timeout: float) -> tuple[float, float]:
            started = time.monotonic()
            with pytest.raises(CallTimeout):
                await distable.call(pid, "hello?", timeout=timeout)
            return timeout, time.monotonic() - started

        results = await asyncio.gather(*(timed(t) for t in (0.01, 0.02, 0.05, 0.05, 0.1, 0.13, 0.2)))
        for timeout, elapsed in results:
            # loop time has millisecond resolution under uvloop; slots round deadlines up
            assert elapsed >= timeout - 0.002, (timeout, elapsed)
            assert elapsed < timeout + 1 / TIMEOUT_SLOTS + 0.5, (timeout, elapsed)


async def test_answered_calls_leave_nothing_behind_in_the_deadline_slots() -> None:
    async with Node(NODE_NAME, cookie=COOKIE) as node:
        pid = await Recorder.start()
        for i in range(300):
            assert await distable.call(pid, ("echo", i)) == i
        assert all(not waiting for waiting in node.runtime._deadlines.values())


async def test_module_level_send_and_call_with_a_pid_work_from_plain_code() -> None:
    async with Node(NODE_NAME, cookie=COOKIE):
        pid = await Recorder.start()
        distable.send(pid, "plain")
        distable.cast(pid, "cast")
        assert await distable.call(pid, ("echo", "ok")) == "ok"
        assert proc_of(pid).log == [("info", "plain"), ("cast", "cast"), ("call", ("echo", "ok"))]


def test_batch_writer_add_reports_the_bytes_waiting() -> None:
    writer = BatchWriter(max_frame_size=1024)
    for message in ([1, "two", b"three"], "x" * 300, {"k": list(range(50))}, "y" * 600, 7):
        assert writer.add(message) == len(writer)
    assert writer.count == 5
