"""Monitors on a single node: Down for every exit, "noproc" for the dead, demonitor, misuse."""

from __future__ import annotations

from typing import Any

import pytest

from distable import Crash, Down, Node, Process, monitor
from distable.testing import eventually

from ._support import COOKIE, NODE_NAME, Recorder, watch


class CrashOnInfo(Process):
    async def handle_info(self, message: Any) -> None:
        raise RuntimeError(f"crash on {message!r}")


async def test_down_arrives_after_a_normal_exit() -> None:
    async with Node(NODE_NAME, cookie=COOKIE) as node:
        pid = await Recorder.start()
        watcher, ref = await watch(pid)
        await node.stop_process(pid, "normal")
        await eventually(lambda: watcher.received, message="no Down arrived")
        assert watcher.received == [Down(ref, pid, "normal")]


async def test_down_arrives_after_a_shutdown_exit() -> None:
    async with Node(NODE_NAME, cookie=COOKIE) as node:
        pid = await Recorder.start()
        watcher, ref = await watch(pid)
        await node.stop_process(pid, "shutdown")
        await eventually(lambda: watcher.received, message="no Down arrived")
        assert watcher.received == [Down(ref, pid, "shutdown")]


async def test_down_arrives_after_a_crash() -> None:
    async with Node(NODE_NAME, cookie=COOKIE) as node:
        pid = await CrashOnInfo.start()
        watcher, ref = await watch(pid)
        node.send(pid, "boom")
        await eventually(lambda: watcher.received, message="no Down arrived")
        assert watcher.received == [Down(ref, pid, Crash("RuntimeError", "crash on 'boom'"))]


async def test_monitoring_a_dead_pid_gives_down_noproc_at_once() -> None:
    async with Node(NODE_NAME, cookie=COOKIE) as node:
        pid = await Recorder.start()
        await node.stop_process(pid)
        watcher, ref = await watch(pid)
        await eventually(lambda: watcher.received, message="no Down arrived")
        assert watcher.received == [Down(ref, pid, "noproc")]


async def test_demonitor_before_exit_means_no_down_arrives() -> None:
    async with Node(NODE_NAME, cookie=COOKIE) as node:
        pid = await Recorder.start()
        other = await Recorder.start()
        watcher, ref = await watch(pid)
        control, _ = await watch(other)  # proves Downs do flow in this same test
        assert await node.call(watcher.pid, ("demonitor", ref)) is True
        await node.stop_process(pid)
        await node.stop_process(other)
        node.send(watcher.pid, "marker")  # sent after the exits: a Down for them would be queued first
        await eventually(lambda: "marker" in watcher.received, message="the marker did not arrive")
        assert watcher.received == ["marker"]
        await eventually(lambda: control.downs(), message="the control monitor saw no Down")


async def test_monitor_outside_a_process_raises_runtime_error() -> None:
    async with Node(NODE_NAME, cookie=COOKIE):
        pid = await Recorder.start()
        with pytest.raises(RuntimeError, match="inside a process"):
            monitor(pid)
