"""Timers on a single node: send_after delivers, cancel prevents, a late timer is dropped."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from distable import Caller, Node, Process
from distable.testing import eventually

from ._support import COOKIE, NODE_NAME, proc_of


class Timed(Process):
    """("after", delay, message) schedules message to itself; the handle is kept in ``handles``."""

    async def init(self) -> None:
        self.received: list[Any] = []
        self.handles: list[asyncio.TimerHandle] = []

    async def handle_call(self, message: Any, caller: Caller) -> Any:
        _, delay, payload = message
        self.handles.append(self.send_after(delay, payload))
        return True

    async def handle_info(self, message: Any) -> None:
        self.received.append(message)


async def test_send_after_delivers_the_message_to_handle_info() -> None:
    async with Node(NODE_NAME, cookie=COOKIE) as node:
        pid = await Timed.start()
        proc = proc_of(pid)
        await node.call(pid, ("after", 0.01, "tick"))
        await eventually(lambda: proc.received, message="the timer message never arrived")
        assert proc.received == ["tick"]


async def test_cancelling_the_timer_handle_prevents_delivery() -> None:
    async with Node(NODE_NAME, cookie=COOKIE) as node:
        pid = await Timed.start()
        proc = proc_of(pid)
        await node.call(pid, ("after", 0.02, "cancelled"))
        proc.handles[0].cancel()  # in the same loop step as the reply: before the timer can be due
        await node.call(pid, ("after", 0.05, "control"))  # fires later than the cancelled one would
        await eventually(lambda: proc.received, message="the control timer never arrived")
        assert proc.received == ["control"]


async def test_timer_firing_after_the_process_exited_is_dropped(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    async with Node(NODE_NAME, cookie=COOKIE) as node:
        pid = await Timed.start()
        proc = proc_of(pid)
        await node.call(pid, ("after", 0.01, "too late"))
        await node.stop_process(pid)
        # A timer due later fires after the dead process's timer has fired (timers run in deadline order).
        witness_pid = await Timed.start()
        witness = proc_of(witness_pid)
        await node.call(witness_pid, ("after", 0.05, "marker"))
        await eventually(lambda: witness.received, message="the witness timer never arrived")
        assert proc.received == []
        assert node.runtime.local(pid) is None
        assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
