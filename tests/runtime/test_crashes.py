"""Crashes on a single node: a raising handler takes down its own process and nothing else."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from distable import Caller, Crash, Down, Node, Process, ProcessExited
from distable.testing import eventually

from ._support import COOKIE, NODE_NAME, Recorder, proc_of, watch


class Fragile(Process):
    """Raises a fresh KeyError from whichever handler gets the message "crash"."""

    async def init(self) -> None:
        self.raised: BaseException | None = None
        self.terminated: list[Any] = []

    def _crash(self) -> None:
        self.raised = KeyError("missing thing")
        raise self.raised

    async def handle_info(self, message: Any) -> None:
        self._crash()

    async def handle_cast(self, message: Any) -> None:
        self._crash()

    async def handle_call(self, message: Any, caller: Caller) -> Any:
        self._crash()

    async def terminate(self, reason: Any) -> None:
        self.terminated.append(reason)


HANDLERS = ["handle_info", "handle_cast", "handle_call"]


async def _crash_via(node: Node, handler: str, proc: Fragile) -> None:
    if handler == "handle_info":
        node.send(proc.pid, "crash")
    elif handler == "handle_cast":
        node.cast(proc.pid, "crash")
    else:
        with pytest.raises(ProcessExited):
            await node.call(proc.pid, "crash")


@pytest.mark.parametrize("handler", HANDLERS)
async def test_crash_in_handler_stops_only_that_process(handler: str) -> None:
    async with Node(NODE_NAME, cookie=COOKIE) as node:
        neighbour = await Recorder.start()
        pid = await Fragile.start()
        proc = proc_of(pid)
        await _crash_via(node, handler, proc)
        await eventually(lambda: node.runtime.local(pid) is None, message="the crashed process is still alive")
        assert await node.call(neighbour, ("echo", "still here")) == "still here"
        newcomer = await Recorder.start()
        assert await node.call(newcomer, ("echo", "new")) == "new"
        assert {p.pid for p in node.runtime.processes()} == {neighbour, newcomer}
        assert node.statistics().runtime.crashes == 1


@pytest.mark.parametrize("handler", HANDLERS)
async def test_crash_is_logged_at_error_with_traceback_naming_the_process(
    handler: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="distable.runtime")
    async with Node(NODE_NAME, cookie=COOKIE) as node:
        pid = await Fragile.start()
        proc = proc_of(pid)
        await _crash_via(node, handler, proc)
        await eventually(lambda: node.runtime.local(pid) is None, message="the crashed process is still alive")
        crash_records = [r for r in caplog.records if r.levelno == logging.ERROR and repr(pid) in r.getMessage()]
        assert len(crash_records) == 1, [r.getMessage() for r in caplog.records]
        record = crash_records[0]
        assert record.exc_info is not None
        assert record.exc_info[1] is proc.raised
        assert "KeyError" in caplog.text  # the formatted traceback is in the output
        assert "_crash" in caplog.text


@pytest.mark.parametrize("handler", HANDLERS)
async def test_crash_exit_reason_carries_the_original_exception(handler: str) -> None:
    async with Node(NODE_NAME, cookie=COOKIE) as node:
        pid = await Fragile.start()
        proc = proc_of(pid)
        watcher, ref = await watch(pid)
        await _crash_via(node, handler, proc)
        await eventually(lambda: watcher.downs(), message="no Down arrived")
        down = watcher.downs()[0]
        assert down.ref == ref
        assert down.pid == pid
        reason = down.reason
        assert isinstance(reason, Crash)
        assert reason.exception is proc.raised
        assert reason.exception_type == "KeyError"
        assert reason.message == str(proc.raised)
        assert "KeyError" in reason.traceback


@pytest.mark.parametrize("handler", HANDLERS)
async def test_terminate_is_called_once_with_the_crash(handler: str) -> None:
    async with Node(NODE_NAME, cookie=COOKIE) as node:
        pid = await Fragile.start()
        proc = proc_of(pid)
        watcher, _ = await watch(pid)
        await _crash_via(node, handler, proc)
        await eventually(lambda: watcher.downs(), message="no Down arrived")
        assert len(proc.terminated) == 1
        crash = proc.terminated[0]
        assert isinstance(crash, Crash)
        assert crash.exception is proc.raised
        assert watcher.downs() == [Down(watcher.downs()[0].ref, pid, crash)]
