"""The fake's own promises: the jumping clock, black-hole partitions, crashes, reproducibility.

These are what the simulator adds to the real transport's contract (test_contract.py),
so they run on the memory network only.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from distable import Caller, Down, Node, Pid, Process, ProcessExited
from distable.testing import MemoryNetwork, MemoryTransport, VirtualTimeDeadlock, VirtualTimeLoop
from distable.transport._transport import Peer

COOKIE = "memory-cookie"


def run(main: Callable[[], Awaitable[Any]]) -> Any:
    async def wrapper() -> Any:
        return await main()

    with asyncio.Runner(loop_factory=VirtualTimeLoop) as runner:
        return runner.run(wrapper())


def pair(net: MemoryNetwork) -> tuple[Node, Node]:
    return (
        Node("a", cookie=COOKIE, transport_factory=net.transport_factory),
        Node("b", cookie=COOKIE, transport_factory=net.transport_factory),
    )


async def until(predicate: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() >= deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        await asyncio.sleep(0.01)


class Log(Process):
    """Appends (loop time, message) for every cast; answers calls with the message."""

    async def init(self, log: list[tuple[float, Any]]) -> None:
        self.log = log

    async def handle_cast(self, message: Any) -> None:
        self.log.append((self.node.runtime.loop.time(), message))

    async def handle_call(self, message: Any, caller: Caller) -> Any:
        return message


class Watcher(Process):
    async def init(self, downs: list[Down]) -> None:
        self.downs = downs

    async def handle_call(self, message: Any, caller: Caller) -> Any:
        assert isinstance(message, Pid)
        return self.node.monitor(message)

    async def handle_info(self, message: Any) -> None:
        if isinstance(message, Down):
            self.downs.append(message)


# --- the clock -------------------------------------------------------------------------------------


def test_the_clock_jumps_to_the_next_timer_and_a_loop_that_would_sleep_forever_raises() -> None:
    async def main() -> tuple[float, float]:
        loop = asyncio.get_running_loop()
        start = loop.time()
        await asyncio.sleep(3600)
        return start, loop.time()

    started = time.monotonic()
    start, end = run(main)
    assert (start, end) == (0.0, 3600.0)
    assert time.monotonic() - started < 5.0

    async def forever() -> None:
        await asyncio.get_running_loop().create_future()

    with pytest.raises(VirtualTimeDeadlock):
        run(forever)


def test_a_timer_never_runs_before_its_deadline_so_waits_until_a_deadline_end() -> None:
    async def main() -> list[tuple[float, float]]:
        loop = asyncio.get_running_loop()
        seen: list[tuple[float, float]] = []
        busy = asyncio.Event()

        async def spin() -> None:  # keeps the ready queue non-empty meanwhile
            for _ in range(100_000):
                if busy.is_set():
                    return
                await asyncio.sleep(0)

        spinner = asyncio.create_task(spin())
        when = loop.time() + 1e-10  # well inside asyncio's clock resolution
        loop.call_at(when, lambda: seen.append((when, loop.time())))
        # The pattern that spins forever on a frozen clock: wait for an event until a deadline.
        deadline = loop.time() + 0.5e-9
        never = asyncio.Event()
        for _ in range(1000):
            if loop.time() >= deadline:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(never.wait(), max(0.0, deadline - loop.time()))
        busy.set()
        await spinner
        assert loop.time() >= deadline
        return seen

    seen = run(main)
    assert len(seen) == 1
    when, at = seen[0]
    assert at >= when


# --- faults -------------------------------------------------------------------------------------------


def test_a_black_hole_holds_what_was_sent_and_delivers_it_in_order_when_healed() -> None:
    net = MemoryNetwork(3, latency=(0.001, 0.01))

    async def main() -> None:
        a, b = pair(net)
        async with a, b:
            log: list[tuple[float, Any]] = []
            target = await b.spawn(Log, log)
            await a.connect(b.name)
            net.partition([a.name], [b.name])
            for i in range(100):
                a.cast(target, i)
            await asyncio.sleep(2.0)  # less than any keep-alive or failure-detection timeout
            assert log == []
            assert a.transport.is_connected(b.name)
            assert b.transport.is_connected(a.name)
            assert net.statistics().chunks_held > 0
            net.heal()
            await until(lambda: len(log) == 100, "everything held arrived")
            assert [m for _, m in log] == list(range(100))
            assert min(t for t, _ in log) >= 2.0
            assert [p.connects for p in a.statistics().transport.peers] == [1]  # the same link throughout

    run(main)


def test_a_black_hole_longer_than_the_keepalive_breaks_the_link_and_the_link_returns_after_heal() -> None:
    net = MemoryNetwork(4, latency=(0.001, 0.01))

    async def main() -> None:
        a, b = pair(net)
        async with a, b:
            target = await b.spawn(Log, [])
            await a.connect(b.name)
            net.partition([a.name], [b.name])
            await until(lambda: not a.transport.is_connected(b.name), "the link timed out", timeout=20.0)
            with pytest.raises(ProcessExited) as lost:
                await a.call(target, "during", timeout=30.0)
            assert lost.value.reason == "noconnection"
            net.heal()
            await until(lambda: a.transport.is_connected(b.name) and b.transport.is_connected(a.name), "relinked")
            assert await a.call(target, "after") == "after"

    run(main)


def test_a_crash_delivers_what_the_node_had_sent_then_its_peers_see_it_gone() -> None:
    net = MemoryNetwork(5, latency=(0.001, 0.02))

    async def main() -> None:
        a, b = pair(net)
        async with a:
            await b.start()
            log: list[tuple[float, Any]] = []
            downs: list[Down] = []
            on_a = await a.spawn(Log, log)
            watcher = await a.spawn(Watcher, downs)
            on_b = await b.spawn(Log, [])
            await a.connect(b.name)
            ref = await a.call(watcher, on_b)
            assert await a.call(on_b, "sync") == "sync"
            for i in range(20):
                b.cast(on_a, i)
            await asyncio.sleep(0)  # b's batch goes out on this loop turn, before the kill
            await asyncio.sleep(0)
            net.crash(b)

            await until(lambda: downs == [Down(ref, on_b, "noconnection")], "the monitor fired")
            assert [m for _, m in log] == list(range(20))
            with pytest.raises(ProcessExited) as gone:
                await a.call(on_b, "after", timeout=30.0)
            assert gone.value.reason == "noconnection"  # its dial is refused
            assert net.statistics().refused >= 1

    run(main)


def test_a_node_restarted_on_its_port_is_dialed_once_even_when_the_handshake_outlasts_the_redial_delay() -> None:
    """b is killed and at once restarted under its name and port. a's link drops; a dials
    the new b at once, and that dial takes a few latencies (longer than the first redial
    backoff). The backoff redial scheduled as the link dropped must not start a second
    dial besides it: the new b would take that link in place of the first and close the
    first with what a sent on it unread, while both nodes stay up (the registry
    simulator's seed 907 lost a HandoffCommit so)."""
    net = MemoryNetwork(11, latency=(0.03, 0.05))

    def connects(node: Node, other: str) -> int:
        return sum(p.connects for p in node.statistics().transport.peers if p.name == other)

    def settled(node: Node, other: str) -> bool:
        peer = node.transport.peers.get(other)
        return peer is not None and peer.conn is not None and peer.dialing is None and peer.dial_handle is None

    async def main() -> None:
        a, old_b = pair(net)
        async with a:
            await old_b.start()
            await a.connect(old_b.name)
            net.crash(old_b)
            b = Node("b", cookie=COOKIE, port=old_b.port, transport_factory=net.transport_factory)
            async with b:
                log: list[tuple[float, Any]] = []
                on_b = await b.spawn(Log, log)
                await until(
                    lambda: a.transport.is_connected(b.name) and a.transport.peers[b.name].incarnation == b.incarnation,
                    "a linked with the new b",
                )
                for i in range(200):  # a stream across the link while a second dial would land
                    a.cast(on_b, i)
                    await asyncio.sleep(0.001)
                assert await a.call(on_b, "sync") == "sync"
                assert [m for _, m in log] == list(range(200))
                await until(lambda: settled(a, b.name) and settled(b, a.name), "no dial left")
                assert (connects(a, b.name), connects(b, a.name)) == (2, 1)  # none replaced

    run(main)


def test_redials_of_an_address_that_refuses_are_one_at_a_time_and_backed_off_though_on_down_redials_at_once() -> None:
    """Membership answers every ``on_down`` with ``connect`` (redial at once). A dial that
    is refused at once must still be redialed with backoff, by one chain of dials: the
    transport schedules its redial before it reports the failure, so that ``connect``
    finds it pending. (A second chain of dials is what replaced a restarted node's fresh
    link; the first attempt at that fix redialed a refusing address in a loop with no
    backoff, as fast as the loop turned.)"""
    net = MemoryNetwork(3)
    target = "gone@127.0.0.1:9"  # nothing listens there on this network: refused at once
    horizon = 20.0

    async def main() -> tuple[int, int]:
        loop = asyncio.get_running_loop()
        downs: list[float] = []
        transport: MemoryTransport

        def on_down(node: str, incarnation: int, reason: str) -> None:
            downs.append(loop.time())
            if len(downs) < 1_000:  # bounded: a loop without backoff fails below, not hangs
                transport.connect(node)

        transport = net.transport_factory(
            name="a@127.0.0.1:1",
            incarnation=1,
            cookie=COOKIE.encode(),
            loop=loop,
            spawn_task=loop.create_task,
            dispatch=lambda node, messages: None,
            on_up=lambda node, incarnation: None,
            on_down=on_down,
        )
        await transport.listen("127.0.0.1", 1)
        overlapping = 0
        dial = transport._dial

        def counting_dial(peer: Peer) -> None:
            nonlocal overlapping
            overlapping += peer.dialing is not None
            dial(peer)

        transport._dial = counting_dial  # type: ignore[method-assign]
        try:
            transport.connect(target)
            await asyncio.sleep(horizon)
        finally:
            await transport.close()
        return len([t for t in downs if t <= horizon]), overlapping

    failures, overlapping = run(main)
    assert overlapping == 0
    # Backoff from backoff_initial (0.05 s) doubling to backoff_max (5 s), jittered down to
    # half: at most 13 waits fit in 20 s, so at most 14 dials (the first is at once).
    assert 5 <= failures <= 14, failures


def test_the_same_seed_gives_the_same_history() -> None:
    def history(seed: int) -> list[tuple[float, Any]]:
        net = MemoryNetwork(seed, latency=(0.0, 0.05))

        async def main() -> list[tuple[float, Any]]:
            a, b = pair(net)
            async with a, b:
                log: list[tuple[float, Any]] = []
                target = await b.spawn(Log, log)
                await a.connect(b.name)
                for i in range(50):
                    a.cast(target, i)
                    await asyncio.sleep(0.003)
                await until(lambda: len(log) == 50, "all arrived")
                return log

        result: list[tuple[float, Any]] = run(main)
        return result

    first, second, other = history(11), history(11), history(12)
    assert first == second
    assert [m for _, m in first] == list(range(50))
    assert first != other  # the latencies come from the seed
