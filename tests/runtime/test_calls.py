"""Calls on a single node: replies, deferred replies, timeouts and every way a callee can exit."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from distable import NOREPLY, Caller, CallTimeout, Crash, Node, Pid, Process, ProcessExited, call
from distable.testing import eventually

from ._support import COOKIE, NODE_NAME, Recorder, proc_of


class Deferring(Process):
    """Answers every call with NOREPLY and keeps the callers; ("reply", x) info answers them all."""

    async def init(self) -> None:
        self.callers: list[Caller] = []

    async def handle_call(self, message: Any, caller: Caller) -> Any:
        self.callers.append(caller)
        return NOREPLY

    async def handle_info(self, message: Any) -> None:
        _, value = message
        for caller in self.callers:
            caller.reply(value)
        self.callers.clear()


class CallCrasher(Process):
    error = ZeroDivisionError("handler failed during the call")

    async def handle_call(self, message: Any, caller: Caller) -> Any:
        raise CallCrasher.error


class Blocker(Process):
    """Its first info message waits for the gate, then stops the process with reason "done"."""

    async def init(self, gate: asyncio.Event, entered: asyncio.Event) -> None:
        self.gate = gate
        self.entered = entered
        self.handled_calls = 0

    async def handle_info(self, message: Any) -> None:
        self.entered.set()
        await self.gate.wait()
        self.stop("done")

    async def handle_call(self, message: Any, caller: Caller) -> Any:
        self.handled_calls += 1
        return message


class SelfCaller(Process):
    async def handle_call(self, message: Any, caller: Caller) -> Any:
        try:
            await call(self.pid, "me", timeout=1.0)
        except RuntimeError as exc:
            return f"RuntimeError: {exc}"
        return "no error"


async def test_call_returns_the_handlers_reply() -> None:
    async with Node(NODE_NAME, cookie=COOKIE):
        pid = await Recorder.start()
        assert await call(pid, ("echo", {"a": [1, 2]})) == {"a": [1, 2]}
        assert await call(pid, ("echo", None)) is None


async def test_noreply_then_caller_reply_answers_the_call_later() -> None:
    async with Node(NODE_NAME, cookie=COOKIE) as node:
        pid = await Deferring.start()
        proc = proc_of(pid)
        pending = asyncio.create_task(node.call(pid, "question"))
        await eventually(lambda: len(proc.callers) == 1, message="the call never reached the handler")
        assert not pending.done()
        node.send(pid, ("reply", 42))
        assert await pending == 42


async def test_call_times_out_when_the_handler_never_replies() -> None:
    async with Node(NODE_NAME, cookie=COOKIE) as node:
        pid = await Deferring.start()
        with pytest.raises(CallTimeout):
            await call(pid, "anyone there?", timeout=0.05)
        assert node.runtime.local(pid) is not None  # a timeout does not hurt the callee


async def test_call_raises_process_exited_with_the_crash_when_the_handler_raises() -> None:
    async with Node(NODE_NAME, cookie=COOKIE) as node:
        pid = await CallCrasher.start()
        with pytest.raises(ProcessExited) as excinfo:
            await call(pid, "boom")
        reason = excinfo.value.reason
        assert isinstance(reason, Crash)
        assert reason.exception is CallCrasher.error
        assert reason.exception_type == "ZeroDivisionError"
        assert reason.message == "handler failed during the call"
        await eventually(lambda: node.runtime.local(pid) is None, message="the crashed process is still alive")


async def test_all_calls_queued_in_the_mailbox_fail_when_the_callee_stops() -> None:
    async with Node(NODE_NAME, cookie=COOKIE) as node:
        gate, entered = asyncio.Event(), asyncio.Event()
        pid = await Blocker.start(gate, entered)
        proc = proc_of(pid)
        node.send(pid, "hold")
        await entered.wait()
        queued = [asyncio.create_task(node.call(pid, i, timeout=30.0)) for i in range(5)]
        await eventually(lambda: node.statistics().runtime.calls == 5, message="the calls were not all made")
        gate.set()  # the handler now stops the process, with the calls still queued
        results = await asyncio.gather(*queued, return_exceptions=True)
        assert all(isinstance(r, ProcessExited) for r in results), results
        assert [r.reason for r in results if isinstance(r, ProcessExited)] == ["done"] * 5
        assert proc.handled_calls == 0


async def test_deferred_caller_fails_with_process_exited_when_the_callee_exits() -> None:
    async with Node(NODE_NAME, cookie=COOKIE) as node:
        pid = await Deferring.start()
        proc = proc_of(pid)
        pending = asyncio.create_task(node.call(pid, "question", timeout=30.0))
        await eventually(lambda: len(proc.callers) == 1, message="the call never reached the handler")
        assert await node.stop_process(pid, "going away") == "going away"
        with pytest.raises(ProcessExited) as excinfo:
            await pending
        assert excinfo.value.reason == "going away"


async def test_calling_a_dead_pid_raises_process_exited_noproc() -> None:
    async with Node(NODE_NAME, cookie=COOKIE) as node:
        pid = await Recorder.start()
        await node.stop_process(pid)
        with pytest.raises(ProcessExited) as excinfo:
            await call(pid, ("echo", 1))
        assert excinfo.value.reason == "noproc"
        never_existed = Pid(node.name, node.incarnation, 10_000)
        with pytest.raises(ProcessExited) as excinfo:
            await call(never_existed, ("echo", 1))
        assert excinfo.value.reason == "noproc"


async def test_a_process_calling_itself_raises_runtime_error() -> None:
    async with Node(NODE_NAME, cookie=COOKIE):
        pid = await SelfCaller.start()
        answer = await call(pid, "call yourself")
        assert answer.startswith("RuntimeError: "), answer
        assert "called itself" in answer
