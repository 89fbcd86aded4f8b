"""Messages from another node to an idle process are handled as soon as their batch is
dispatched, in the loop turn they arrived in (``Runtime._run_now``), and so are local
calls to an idle process, in the caller's turn (``Runtime._call_now``), without a drain
task when the handler does not suspend: the drain's contract still holds.

Two real nodes over loopback TCP in this one OS process; the tests look at the callee's
process object directly. ``via``: the call comes from the other node ("remote") or from
the callee's own ("local").
"""

from __future__ import annotations

import asyncio
from contextvars import ContextVar
from typing import Any

import pytest

from distable import Caller, CallTimeout, Crash, Node, Pid, Process, ProcessExited
from distable.node import _node as node_module
from distable.runtime import _runtime as runtime_module
from distable.runtime import current_process
from distable.runtime._process import BATCH
from distable.testing import eventually
from distable.wire._messages import Send

from ._support import COOKIE

MARK: ContextVar[str] = ContextVar("test_run_now_mark", default="unset")


class Probe(Process):
    """Records what its handlers see. Calls: ("plain", x) -> x at once; ("suspend", x) ->
    how a handler that awaits saw itself; ("group", x) -> x from a task of a TaskGroup;
    ("crash", text) raises; ("stop", reason) stops after answering; ("self", x) sends
    itself ("echoed", x). Infos and casts: logged at their start and end; ("slow", n)
    sleeps between the two."""

    async def init(self, log: list[Any]) -> None:
        self.log = log

    async def handle_call(self, message: Any, caller: Caller) -> Any:
        self.log.append(("call", message))
        match message:
            case ("plain", value):
                return value
            case ("suspend", str(value)):
                before = asyncio.current_task()
                MARK.set(value)
                async with asyncio.timeout(10):
                    await asyncio.sleep(0.01)
                return {
                    "task": before is not None and asyncio.current_task() is before,
                    "context": MARK.get() == value,
                    "process": current_process() is self,
                }
            case ("group", value):
                async with asyncio.TaskGroup() as group:
                    task = group.create_task(asyncio.sleep(0.01, value))
                return task.result()
            case ("crash", str(text)):
                raise ValueError(text)
            case ("stop", reason):
                self.stop(reason)
                return "stopping"
            case ("self", value):
                self.node.send(self.pid, ("echoed", value))
                return "sent"
            case ("timeout", _):
                try:
                    async with asyncio.timeout(0):
                        await asyncio.sleep(10)
                except TimeoutError:
                    return "timed out"
                return "not timed out"
            case ("group fails", _):
                outcome = "group did not fail"
                try:
                    async with asyncio.TaskGroup() as group:
                        group.create_task(self._fail())
                        await asyncio.sleep(10)
                except* ValueError:
                    outcome = "group failed"
                return outcome
            case ("cancel self", _):
                current = asyncio.current_task()
                assert current is not None
                current.cancel()
                await asyncio.sleep(0)
                return "not cancelled"
        raise ValueError(f"unexpected call {message!r}")

    async def _fail(self) -> None:
        raise ValueError("a child of the task group")

    async def handle_info(self, message: Any) -> None:
        await self._logged("info", message)

    async def handle_cast(self, message: Any) -> None:
        await self._logged("cast", message)

    async def _logged(self, kind: str, message: Any) -> None:
        self.log.append((kind, "start", message))
        if message[0] == "slow":
            await asyncio.sleep(0.01 * message[1])
        self.log.append((kind, "end", message))

    async def terminate(self, reason: Any) -> None:
        self.log.append(("terminate", reason))
        self.terminated_in_itself = current_process() is self


async def idle_probe(node: Node, log: list[Any]) -> tuple[Pid, Probe]:
    """A ``Probe`` on ``node`` whose drain has ended (the one that ran its ``init``)."""
    pid = await node.spawn(Probe, log)
    proc = node.runtime.local(pid)
    assert isinstance(proc, Probe)
    await eventually(lambda: not proc._running, message="the drain of init never ended")
    return pid, proc


VIA = pytest.mark.parametrize("via", ["remote", "local"])


def caller_of(a: Node, b: Node, via: str) -> Node:
    """The node a test calls b's process from."""
    return a if via == "remote" else b


@VIA
async def test_a_call_to_an_idle_process_is_answered_without_a_drain(via: str) -> None:
    async with Node("a", cookie=COOKIE) as a, Node("b", cookie=COOKIE) as b:
        log: list[Any] = []
        pid, proc = await idle_probe(b, log)
        await a.connect(b.name)
        a = caller_of(a, b, via)
        for i in range(3):
            assert await a.call(pid, ("plain", i)) == i
            assert not proc._running
            assert proc._task is None
            assert proc._mailbox is None  # idle again: no deque kept, as after a drain
        assert log == [("call", ("plain", i)) for i in range(3)]


@VIA
@pytest.mark.parametrize("parked", [False, True], ids=["no drain", "drain parked"])
async def test_a_handler_run_at_once_that_suspends_keeps_its_task_context_and_process(parked: bool, via: str) -> None:
    async with Node("a", cookie=COOKIE) as a, Node("b", cookie=COOKIE) as b:
        log: list[Any] = []
        pid, proc = await idle_probe(b, log)
        await a.connect(b.name)
        a = caller_of(a, b, via)
        if parked:  # a local message starts a drain, which then lingers, parked
            b.send(pid, ("local",))
            await eventually(lambda: proc._parked is not None, message="the drain never parked")
        seen = await a.call(pid, ("suspend", "marked"))
        assert seen == {"task": True, "context": True, "process": True}
        assert await a.call(pid, ("group", "grouped")) == "grouped"
        assert MARK.get() == "unset"  # the handler's context was its own


@VIA
@pytest.mark.parametrize("parked", [False, True], ids=["no drain", "drain parked"])
async def test_timeouts_and_task_groups_of_a_handler_run_at_once_cancel_that_handler(parked: bool, via: str) -> None:
    # Both cancel the current task in the next loop turn, when the task that took the
    # handler over has not gone on with it yet: the cancellation must reach the handler.
    async with Node("a", cookie=COOKIE) as a, Node("b", cookie=COOKIE) as b:
        log: list[Any] = []
        pid, proc = await idle_probe(b, log)
        await a.connect(b.name)
        a = caller_of(a, b, via)
        for message, answer in ((("timeout", 0), "timed out"), (("group fails", 0), "group failed")):
            if parked:
                b.send(pid, ("local",))
                await eventually(lambda: proc._parked is not None, message="the drain never parked")
            assert await a.call(pid, message) == answer
        assert b.runtime.local(pid) is proc


@VIA
@pytest.mark.parametrize("parked", [False, True], ids=["no drain", "drain parked"])
async def test_a_handler_run_at_once_that_cancels_its_own_task_kills_its_process(parked: bool, via: str) -> None:
    async with Node("a", cookie=COOKIE) as a, Node("b", cookie=COOKIE) as b:
        log: list[Any] = []
        pid, proc = await idle_probe(b, log)
        await a.connect(b.name)
        a = caller_of(a, b, via)
        if parked:
            b.send(pid, ("local",))
            await eventually(lambda: proc._parked is not None, message="the drain never parked")
        # As for a drain's task cancelled by its handler: the process is killed (the call
        # itself is failed, or left to time out as from a drain).
        with pytest.raises((ProcessExited, CallTimeout)):
            await a.call(pid, ("cancel self", 0), timeout=2.0)
        await eventually(lambda: b.runtime.local(pid) is None, message="the process is still there")
        assert log[-1] == ("terminate", "killed")


@VIA
async def test_messages_from_another_node_are_handled_one_at_a_time_in_order(via: str) -> None:
    async with Node("a", cookie=COOKIE) as a, Node("b", cookie=COOKIE) as b:
        log: list[Any] = []
        pid, _ = await idle_probe(b, log)
        await a.connect(b.name)
        a = caller_of(a, b, via)
        # One loop turn on a: one batch on the link. The first handler suspends, so the
        # rest wait in the mailbox behind it.
        a.send(pid, ("slow", 2))
        a.cast(pid, ("fast", 1))
        a.send(pid, ("slow", 1))
        assert await a.call(pid, ("plain", "last")) == "last"
        assert log == [
            ("info", "start", ("slow", 2)),
            ("info", "end", ("slow", 2)),
            ("cast", "start", ("fast", 1)),
            ("cast", "end", ("fast", 1)),
            ("info", "start", ("slow", 1)),
            ("info", "end", ("slow", 1)),
            ("call", ("plain", "last")),
        ]


@VIA
async def test_a_crash_in_a_handler_run_at_once_fails_the_call_and_terminates_once(via: str) -> None:
    async with Node("a", cookie=COOKIE) as a, Node("b", cookie=COOKIE) as b:
        log: list[Any] = []
        pid, proc = await idle_probe(b, log)
        await a.connect(b.name)
        a = caller_of(a, b, via)
        with pytest.raises(ProcessExited) as exited:
            await a.call(pid, ("crash", "boom"))
        crash = exited.value.reason
        assert isinstance(crash, Crash)
        assert "boom" in str(crash)
        await eventually(lambda: b.runtime.local(pid) is None, message="the crashed process is still there")
        assert log == [("call", ("crash", "boom")), ("terminate", crash)]
        assert proc.terminated_in_itself
        with pytest.raises(ProcessExited) as gone:
            await a.call(pid, ("plain", 1))
        assert gone.value.reason == "noproc"


@VIA
async def test_a_handler_run_at_once_may_send_to_its_own_process_and_stop_it(via: str) -> None:
    async with Node("a", cookie=COOKIE) as a, Node("b", cookie=COOKIE) as b:
        log: list[Any] = []
        pid, _ = await idle_probe(b, log)
        await a.connect(b.name)
        a = caller_of(a, b, via)
        assert await a.call(pid, ("self", 7)) == "sent"
        await eventually(lambda: ("info", "end", ("echoed", 7)) in log, message=lambda: f"{log}")
        a.send(pid, ("after", 1))  # in the same batch as the stop: handled before it
        assert await a.call(pid, ("stop", "done")) == "stopping"
        a.send(pid, ("too late", 1))
        await eventually(lambda: b.runtime.local(pid) is None, message="the process never stopped")
        assert log[-3:] == [("info", "end", ("after", 1)), ("call", ("stop", "done")), ("terminate", "done")]


async def test_a_batch_dispatched_from_inside_a_task_is_left_to_a_drain() -> None:
    async with Node("a", cookie=COOKIE) as a, Node("b", cookie=COOKIE) as b:
        log: list[Any] = []
        pid, proc = await idle_probe(b, log)
        # Not a link's dispatcher (that runs outside any task): the handler cannot run in
        # a task of its own here, so the message waits for a drain, as any other would.
        b.runtime.dispatching = True
        b.runtime.on_send(a.name, Send(pid, ("queued", 1)))
        b.runtime.dispatching = False
        b.runtime.run_ready()
        assert log == []
        assert proc._running
        await eventually(lambda: ("info", "end", ("queued", 1)) in log)


async def test_without_asyncio_task_hooks_every_message_goes_through_a_drain(monkeypatch: pytest.MonkeyPatch) -> None:
    # A Python whose asyncio lacks _enter_task/_leave_task (RUN_NOW false): nothing is run
    # at once, and calls are still answered, by drains.
    monkeypatch.setattr(node_module, "RUN_NOW", False)
    async with Node("a", cookie=COOKIE) as a, Node("b", cookie=COOKIE) as b:
        log: list[Any] = []
        pid, _ = await idle_probe(b, log)
        await a.connect(b.name)
        ran_at_once: list[int] = []
        run_ready = b.runtime.run_ready

        def counted() -> None:
            ran_at_once.append(1)
            run_ready()

        monkeypatch.setattr(b.runtime, "run_ready", counted)
        for i in range(3):
            assert await a.call(pid, ("plain", i)) == i
        assert ran_at_once == []
        assert log == [("call", ("plain", i)) for i in range(3)]


class Relay(Process):
    """Calls ``("relay", [pid, ...], x)`` on to the first pid with the rest, and answers
    what comes back, with the process it ran in; an empty list answers ``x``."""

    async def handle_call(self, message: Any, caller: Caller) -> Any:
        _, rest, value = message
        me = current_process() is self
        if not rest:
            return [(me, self.pid)], value
        seen, value = await self.node.call(rest[0], ("relay", rest[1:], value))
        return [(me, self.pid), *seen], value


async def test_a_local_call_to_an_idle_process_is_answered_in_the_callers_turn_and_yields_every_batch() -> None:
    async with Node("b", cookie=COOKIE) as b:
        pid, proc = await idle_probe(b, [])
        turns: list[int] = []
        loop = asyncio.get_running_loop()
        loop.call_soon(turns.append, 1)
        assert await b.call(pid, ("plain", 0)) == 0
        assert turns == []  # no loop turn: the handler ran at once and replied
        assert not proc._running
        assert proc._task is None
        # A caller calling in a loop still yields to the loop, at least every BATCH calls.
        for i in range(1, BATCH + 1):
            assert await b.call(pid, ("plain", i)) == i
        assert turns == [1]


async def test_local_calls_at_once_nest_and_a_deep_chain_goes_through_mailboxes_past_the_bound() -> None:
    async with Node("b", cookie=COOKIE) as b:
        pids = [await b.spawn(Relay) for _ in range(4 * runtime_module.NOW_DEPTH)]
        seen, value = await b.call(pids[0], ("relay", pids[1:], "end"))
        assert value == "end"
        assert seen == [(True, pid) for pid in pids]  # each handler ran as its own process
        assert b.runtime._now_depth == 0


async def test_without_asyncio_task_hooks_local_calls_go_through_a_drain(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runtime_module, "RUN_NOW", False)
    async with Node("b", cookie=COOKIE) as b:
        pid, proc = await idle_probe(b, [])
        assert await b.call(pid, ("plain", 1)) == 1
        assert proc._running  # its drain answered, and lingers
