"""Busy polling after traffic (``transport._busypoll``, ``TransportConfig.busy_poll``).

The poller keeps its event loop polling with a zero timeout for ``busy_poll`` seconds (on
the real clock) after each frame and then lets it sleep; these tests count its idle
rounds through the CPU yield it makes in each, and read its window from its clock (no
timing of speed).
"""

from __future__ import annotations

import asyncio
import gc
import weakref

import pytest

from distable import Node, TransportConfig
from distable.testing import eventually
from distable.transport import _busypoll

from ._support import COOKIE, spawn_echo


@pytest.fixture
def rounds(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The poller's clock at each idle round of polling (each yields the CPU once)."""
    seen: list[float] = []
    monkeypatch.setattr(_busypoll, "_yield_cpu", lambda: seen.append(_busypoll._clock()))
    return seen


async def test_the_loop_polls_until_the_window_ends_then_stops_by_itself(rounds: list[float]) -> None:
    poller = _busypoll.busy_poll_for(asyncio.get_running_loop())
    start = _busypoll._clock()
    poller.touch(0.02)
    assert poller.spinning
    await eventually(lambda: not poller.spinning)
    assert len(rounds) > 1, "the loop did not poll"
    assert rounds[0] >= start, "it polled before it was touched"
    assert len(rounds) <= _busypoll.MAX_ROUNDS
    # Each round checks the clock against the window before it polls (a round's clock is
    # read after that check, so under load it may land past the end: no bound on it here).
    stopped = len(rounds)
    await asyncio.sleep(0)  # nothing re-arms it once stopped
    assert len(rounds) == stopped


async def test_traffic_during_the_window_extends_it_without_a_second_poller(rounds: list[float]) -> None:
    loop = asyncio.get_running_loop()
    poller = _busypoll.busy_poll_for(loop)
    assert _busypoll.busy_poll_for(loop) is poller  # one per loop
    poller.touch(0.01)
    first_end = poller.until
    poller.touch(0.05)
    assert poller.until > first_end
    extended = poller.until
    poller.touch(0.0001)  # a nearer end never shortens the window
    assert poller.until == extended
    await eventually(lambda: not poller.spinning)
    assert rounds, "the loop did not poll"
    assert rounds[-1] >= first_end or len(rounds) >= _busypoll.MAX_ROUNDS, "the window was not extended"


async def test_a_round_that_finds_the_loop_busy_keeps_the_cpu(rounds: list[float]) -> None:
    # Yielding in the middle of work hands the CPU to another process while a peer waits
    # for this one; only a round with nothing else to do in the loop yields.
    loop = asyncio.get_running_loop()
    poller = _busypoll.busy_poll_for(loop)
    await eventually(lambda: not poller.spinning)
    busy: list[tuple[float, float]] = []  # the real clock around each busy callback
    done = loop.create_future()

    def work(left: int) -> None:  # a callback in every loop turn, each longer than an idle round
        start = _busypoll._clock()
        while _busypoll._clock() - start < 5 * _busypoll.IDLE_ROUND:
            pass
        busy.append((start, _busypoll._clock()))
        if left:
            loop.call_soon(work, left - 1)
        else:
            done.set_result(None)

    poller.touch(10.0)  # the window outlasts the work
    loop.call_soon(work, 50)
    await done
    spun = poller.rounds
    await eventually(lambda: len(rounds) >= 3)  # idle again: its rounds yield
    poller.until = 0.0  # end the window
    await eventually(lambda: not poller.spinning)
    assert spun >= 40, "the poller did not run beside the work"
    during = [t for t in rounds if busy[0][0] <= t <= busy[-1][1]]
    assert during == [], f"{len(during)} of {spun} rounds among the busy turns yielded the CPU"


class FrozenClockLoop(asyncio.SelectorEventLoop):
    """A loop whose clock stands still while callbacks are ready, as a virtual-time loop's."""

    def time(self) -> float:
        return 0.0


def test_a_loop_whose_clock_stands_still_stops_polling_by_the_real_clock(rounds: list[float]) -> None:
    loop = FrozenClockLoop()
    try:
        poller = _busypoll.busy_poll_for(loop)
        done = loop.create_future()

        def check() -> None:
            if poller.spinning:
                loop.call_soon(check)
            else:
                done.set_result(None)

        poller.touch(0.005)
        loop.call_soon(check)
        loop.run_until_complete(done)
        assert rounds, "the loop did not poll"
        assert len(rounds) <= _busypoll.MAX_ROUNDS
    finally:
        loop.close()


def test_the_pollers_table_does_not_keep_a_loop_alive() -> None:
    loop = asyncio.new_event_loop()
    _busypoll.busy_poll_for(loop).touch(0.001)
    ref = weakref.ref(loop)
    loop.close()  # with the poller's callback still scheduled
    del loop
    gc.collect()
    assert ref() is None


async def test_a_call_between_two_nodes_makes_both_poll(rounds: list[float]) -> None:
    async with Node("a", cookie=COOKIE) as a, Node("b", cookie=COOKIE) as b:
        await a.connect(b.name)
        on_b = await spawn_echo(b)
        await eventually(lambda: not _busypoll.busy_poll_for(asyncio.get_running_loop()).spinning)
        rounds.clear()
        assert await a.call(on_b, ("echo", "x")) == "x"
        poller = _busypoll.busy_poll_for(asyncio.get_running_loop())
        assert poller.spinning or rounds, "a frame arrived and the loop did not poll"
        await eventually(lambda: rounds)  # once idle, its rounds yield the CPU


async def test_busy_poll_zero_never_polls(rounds: list[float]) -> None:
    off = TransportConfig(busy_poll=0)
    async with Node("a", cookie=COOKIE, transport=off) as a, Node("b", cookie=COOKIE, transport=off) as b:
        await a.connect(b.name)
        on_b = await spawn_echo(b)
        for _ in range(3):
            assert await a.call(on_b, ("echo", "x")) == "x"
        assert a.transport._busy_poll is None
        assert rounds == []


@pytest.mark.parametrize("value", [-0.001, 0.5, float("nan")])
def test_a_busy_poll_outside_0_to_100_ms_is_refused(value: float) -> None:
    with pytest.raises(ValueError, match=r"busy_poll must be within 0 and 0\.1 seconds"):
        TransportConfig(busy_poll=value)
