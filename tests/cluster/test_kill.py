"""A node in another OS process dies (SIGKILL) or is stopped (SIGTERM) under a live link.

The test's own node, in this process, monitors a process on the child node from inside
one of its own processes, and keeps a call to it in flight, then signals the child.
"""

from __future__ import annotations

import asyncio
import signal
from typing import Any

import pytest

from distable import Caller, Down, Node, NodeDown, Pid, Process, ProcessExited
from distable.testing import NodeProcess, eventually

from .conftest import COOKIE

pytestmark = pytest.mark.cluster


class Watcher(Process):
    """Monitors pids on request: call ("monitor", pid) -> ref; each ``Down`` goes to ``downs``."""

    async def init(self, downs: asyncio.Queue[Down]) -> None:
        self.downs = downs

    async def handle_call(self, message: Any, caller: Caller) -> Any:
        match message:
            case ("monitor", Pid() as pid):
                return self.node.monitor(pid)
        raise ValueError(f"unexpected call {message!r}")

    async def handle_info(self, message: Any) -> None:
        if isinstance(message, Down):
            self.downs.put_nowait(message)


async def watch_and_hold(node: Node, remote: NodeProcess) -> tuple[asyncio.Queue[Down], Any, asyncio.Task[Any]]:
    """Monitor the remote worker from a local process and leave one call to it unanswered.

    Returns the watcher's queue of ``Down`` messages, the monitor's ref, and the task of
    the call in flight. When this returns, the child has registered the monitor and holds
    the call: "held" calls travel on the same ordered link, behind both.
    """
    worker = remote.pid("worker")
    await node.connect(remote.name, timeout=20.0)
    downs: asyncio.Queue[Down] = asyncio.Queue()
    watcher = await node.spawn(Watcher, downs)
    ref = await node.call(watcher, ("monitor", worker))
    in_flight = asyncio.create_task(node.call(worker, "hold", timeout=60.0))

    async def held() -> bool:
        return bool(await node.call(worker, "held") == 1)

    await eventually(held, message="the child never got the call")
    return downs, ref, in_flight


async def test_sigkill_fires_monitor_noconnection_and_fails_the_call_in_flight(remote: NodeProcess) -> None:
    worker = remote.pid("worker")
    async with Node("a", cookie=COOKIE) as a:
        downs, ref, in_flight = await watch_and_hold(a, remote)
        try:
            remote.kill()
            assert await remote.wait() == -signal.SIGKILL
            # Nobody told us anything: the kernel closed the dead process's sockets, the
            # link dropped, and everything that depended on it fails with "noconnection".
            assert await asyncio.wait_for(downs.get(), 10.0) == Down(ref, worker, "noconnection")
            with pytest.raises(ProcessExited) as exited:
                await asyncio.wait_for(in_flight, 10.0)
            assert exited.value.reason == "noconnection"
            assert downs.empty()
        finally:
            in_flight.cancel()


async def test_sigterm_stops_the_remote_process_gracefully_and_down_carries_shutdown(remote: NodeProcess) -> None:
    # The contract, from Node.stop (what SIGTERM runs in the child): first every process
    # stops with reason "shutdown", each exit queueing its DownNotice and failing its
    # held calls (CallReply with the exit reason); then the node announces its leave; then
    # Transport.close() flushes that batch and closes (not aborts) each socket. TCP keeps
    # order, so the real reason arrives before the link drops: "shutdown", never
    # "noconnection", and a NodeDown "left" rather than "failed".
    worker = remote.pid("worker")
    async with Node("a", cookie=COOKIE) as a, a.events() as events:
        downs, ref, in_flight = await watch_and_hold(a, remote)
        try:
            remote.terminate()
            assert await remote.wait() == 0
            assert await asyncio.wait_for(downs.get(), 10.0) == Down(ref, worker, "shutdown")
            with pytest.raises(ProcessExited) as exited:
                await asyncio.wait_for(in_flight, 10.0)
            assert exited.value.reason == "shutdown"
        finally:
            in_flight.cancel()

        async def node_down() -> Any:
            async for event in events:
                if isinstance(event, NodeDown):
                    return event
            raise AssertionError("event stream ended")

        assert await asyncio.wait_for(node_down(), 10.0) == NodeDown(remote.name, "left")
        assert downs.empty()  # the link loss afterwards fired no second Down
