"""Busy polling after traffic: the event loop keeps polling for a short while after a frame
arrives, instead of going to sleep in the kernel at once.

Why: the answer to a request usually comes back within tens of microseconds. A node that
sleeps in ``epoll_wait`` as soon as it has sent one is woken by the answer; on a virtual
machine a sleeping vCPU is halted, and waking it through the hypervisor costs 50 to
100 µs, several times the round trip itself (docs/performance.md, "Busy polling").
Erlang's schedulers spin before they sleep for the same reason (the BEAM's ``+sbwt``).

While the window lasts, one callback re-schedules itself, so the loop polls its sockets
with a zero timeout. A round that finds the loop idle (it comes back within
``IDLE_ROUND`` of the last one: nothing else ran in between) yields the CPU
(``sched_yield``), so that a process on the same CPU, often the peer that is about to
answer, runs first. A round that finds the loop busy does not: yielding then hands the
CPU away in the middle of the work a peer waits for (with three nodes on two vCPUs,
yielding in every round cost a third of the registrations one at a time, and a seventh of
those from 32 callers: docs/performance.md, "Yield only when idle"). A loop with other
work does not spin either: the callback is one more ready item among many. The window
starts again with every frame, so a node that is sent nothing goes back to sleep after
one window.

One poller per event loop, shared by the nodes on it (tests run many nodes on one loop).
The window is measured on the real clock, not the loop's: the wake-up it avoids takes
real time, and a loop with a virtual clock (the simulator's) would never see its time
pass while a callback is always ready. A window also ends after ``MAX_ROUNDS`` rounds.
Written by hand: neither asyncio nor uvloop has such a mode.
"""

from __future__ import annotations

import asyncio
import os
import time
import weakref

_yield_cpu = getattr(os, "sched_yield", lambda: None)  # not on every platform
_clock = time.perf_counter

#: Rounds of polling after one touch at most (a round is about a microsecond or more).
MAX_ROUNDS = 10_000
#: A round that comes back within this many seconds of the last found the loop idle, and
#: yields the CPU; a longer one had other work in between, and keeps it. An idle round on
#: this project's 2-vCPU VM (a zero-timeout poll and the callback) takes 2 to 5 µs.
IDLE_ROUND = 10e-6


class BusyPoll:
    """Keeps one event loop polling until ``window`` seconds after the last ``touch``."""

    __slots__ = ("_loop", "last", "rounds", "spinning", "until")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = weakref.ref(loop)  # the pollers' table holds the loop weakly: so does this
        self.until = 0.0  # on the real clock (``_clock``)
        self.rounds = 0
        self.last = 0.0  # the real clock at the end of the last round
        self.spinning = False

    def touch(self, window: float) -> None:
        """Traffic arrived: keep polling until ``window`` seconds from now (or longer)."""
        until = _clock() + window
        if until > self.until:
            self.until = until
        self.rounds = 0
        if not self.spinning:
            loop = self._loop()
            if loop is not None:
                self.spinning = True
                loop.call_soon(self._spin)

    def _spin(self) -> None:
        loop = self._loop()
        self.rounds += 1
        now = _clock()
        if loop is not None and not loop.is_closed() and self.rounds <= MAX_ROUNDS and now < self.until:
            if now - self.last < IDLE_ROUND:
                _yield_cpu()
            self.last = _clock()
            loop.call_soon(self._spin)
        else:
            self.spinning = False


_pollers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, BusyPoll] = weakref.WeakKeyDictionary()


def busy_poll_for(loop: asyncio.AbstractEventLoop) -> BusyPoll:
    """The poller of ``loop``, made on first use."""
    poller = _pollers.get(loop)
    if poller is None:
        poller = _pollers[loop] = BusyPoll(loop)
    return poller
