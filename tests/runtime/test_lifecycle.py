"""Process lifecycle on a single node: start and init, identity, stopping from inside and outside."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from distable import Caller, Node, Pid, Process
from distable.runtime import current_process
from distable.testing import is_running

from ._support import COOKIE, NODE_NAME, Recorder, proc_of, yield_to_loop


class InitProbe(Process):
    async def init(self, *args: Any, **kwargs: Any) -> None:
        self.init_args = args
        self.init_kwargs = kwargs
        self.current_during_init = current_process()
        self.pid_during_init = self.pid
        self.node_during_init = self.node


class InitFails(Process):
    error = LookupError("init refuses")

    async def init(self) -> None:
        raise InitFails.error


class StopsInHandler(Process):
    async def init(self) -> None:
        self.events: list[Any] = []

    async def handle_info(self, message: Any) -> None:
        self.stop(message)
        self.events.append("stop requested")
        await yield_to_loop()  # the handler goes on after stop(), across an await
        self.events.append("handler finished")

    async def handle_call(self, message: Any, caller: Caller) -> Any:
        return "alive"

    async def terminate(self, reason: Any) -> None:
        self.events.append(("terminate", reason))


async def test_start_runs_init_with_the_arguments_inside_the_new_process() -> None:
    async with Node(NODE_NAME, cookie=COOKIE) as node:
        pid = await InitProbe.start(1, "two", three=3)
        proc = proc_of(pid)
        assert isinstance(proc, InitProbe)
        assert proc.init_args == (1, "two")
        assert proc.init_kwargs == {"three": 3}
        assert proc.current_during_init is proc
        assert proc.pid_during_init == pid
        assert proc.node_during_init is node
        assert current_process() is None  # the test itself is not a process


async def test_init_raising_makes_start_raise_it_and_leaves_no_process() -> None:
    async with Node(NODE_NAME, cookie=COOKIE) as node:
        with pytest.raises(LookupError) as excinfo:
            await InitFails.start()
        assert excinfo.value is InitFails.error
        assert node.runtime.processes() == []
        assert node.statistics().runtime.processes == 0


class NoInit(Process):
    """Keeps ``Process.init``: its start runs nothing inside it."""

    async def handle_call(self, message: Any, caller: Caller) -> Any:
        return (message, current_process() is self)


async def test_a_process_without_init_starts_idle_and_its_first_message_runs_it() -> None:
    async with Node(NODE_NAME, cookie=COOKIE) as node:
        pid = await NoInit.start("ignored", as_the_default_init_does=True)
        proc = proc_of(pid)
        assert isinstance(proc, NoInit)
        assert proc.alive
        assert not is_running(proc)  # no drain was started for an init with nothing to do
        assert await node.call(pid, "hello") == ("hello", True)
        assert [p.pid for p in node.runtime.processes()] == [pid]
        assert await node.stop_process(pid) == "normal"


async def test_a_loop_of_starts_without_init_does_not_hold_the_event_loop() -> None:
    async with Node(NODE_NAME, cookie=COOKIE):
        ran = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.call_soon(ran.set)
        for _ in range(200):
            await NoInit.start()
        assert ran.is_set()  # the loop ran other work during the loop of starts


async def test_pid_and_node_name_the_process_and_its_node() -> None:
    async with Node(NODE_NAME, cookie=COOKIE) as node:
        first = await Recorder.start()
        second = await Recorder.start()
        assert isinstance(first, Pid)
        assert first != second
        for pid in (first, second):
            proc = proc_of(pid)
            assert proc.pid == pid
            assert proc.node is node
            assert pid.node == node.name
            assert pid.incarnation == node.incarnation


async def test_stop_inside_a_handler_stops_after_it_returns_and_calls_terminate_once() -> None:
    async with Node(NODE_NAME, cookie=COOKIE) as node:
        pid = await StopsInHandler.start()
        proc = proc_of(pid)
        assert isinstance(proc, StopsInHandler)
        node.send(pid, "my reason")
        exit_reason = await node.stop_process(pid, "later reason")  # queued behind the message
        assert exit_reason == "my reason"
        assert proc.events == ["stop requested", "handler finished", ("terminate", "my reason")]
        assert node.runtime.local(pid) is None
        assert node.runtime.processes() == []


async def test_stop_process_from_outside_returns_the_exit_reason() -> None:
    async with Node(NODE_NAME, cookie=COOKIE) as node:
        pid = await Recorder.start()
        proc = proc_of(pid)
        assert await node.stop_process(pid, ("custom", 7)) == ("custom", 7)
        assert proc.terminated == [("custom", 7)]
        assert node.runtime.local(pid) is None
        assert await node.stop_process(pid) == "noproc"
