"""Node shutdown with a single node: every process stops with "shutdown"; a stuck one cannot hang it."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from distable import Node, Process

from ._support import COOKIE, NODE_NAME, Recorder, proc_of, records


class Stuck(Process):
    """Its handler waits for an event nobody sets; so would its terminate, if it were called."""

    async def init(self, entered: asyncio.Event) -> None:
        self.entered = entered
        self.terminated: list[Any] = []

    async def handle_info(self, message: Any) -> None:
        self.entered.set()
        await asyncio.Event().wait()

    async def terminate(self, reason: Any) -> None:
        self.terminated.append(reason)
        await asyncio.Event().wait()


async def test_leaving_the_node_stops_every_process_with_shutdown() -> None:
    node = Node(NODE_NAME, cookie=COOKIE)
    async with node:
        pids = [await Recorder.start() for _ in range(5)]
        procs = [proc_of(pid) for pid in pids]
        node.send(pids[0], "busy before the end")
    assert [proc.terminated for proc in procs] == [["shutdown"]] * 5
    assert node.runtime.processes() == []
    assert procs[0].log == [("info", "busy before the end")]


async def test_a_process_stuck_in_a_handler_does_not_hang_shutdown(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="distable.runtime")
    node = Node(NODE_NAME, cookie=COOKIE)
    # A guard against a hang, not a performance assertion: the test would otherwise take 120 s to fail.
    async with asyncio.timeout(30):
        async with node:
            entered = asyncio.Event()
            stuck_pid = await Stuck.start(entered)
            stuck = proc_of(stuck_pid)
            polite = proc_of(await Recorder.start())
            node.send(stuck_pid, "hang")
            await entered.wait()
            exit_reason = node.runtime.stop(stuck_pid, "shutdown")
            await node.runtime.shutdown(timeout=0.5)
            assert exit_reason.result() == "killed"
            assert polite.terminated == ["shutdown"]
            assert node.runtime.processes() == []
            [killed_line] = records(caplog, logging.WARNING, "killed")
            assert repr(stuck_pid) in killed_line.getMessage()
        # Leaving the node ended the stuck handler's task; a killed process gets no terminate.
    assert stuck.terminated == []
