"""Busy polling after traffic: the event loop keeps polling for a short while after a frame
arrives, instead of going to sleep in the kernel at once.

Why: the answer to a request usually comes back within tens of microseconds. A node that
sleeps in ``epoll_wait`` as soon as it has sent one is woken by the answer; on a virtual
machine a sleeping vCPU is halted, and waking it through the hypervisor costs 50 to
100 µs, several times the round trip itself (docs/performance.md, "Busy polling").
Erlang's schedulers spin before they sleep for the same reason (the BEAM's ``+sbwt``).

While the window lasts, one callback re-schedules itself, so the loop polls its sockets
with a zero timeout; each round yields the CPU (``sched_yield``), so that a process on
the same CPU, often the peer that is about to answer, runs first. A loop with other work
does not spin: the callback is one more ready item among many. The window starts again
with every frame, so a node that is sent nothing goes back to sleep after one window.

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


class BusyPoll:
    """Keeps one event loop polling until ``window`` seconds after the last ``touch``."""

    __slots__ = ("_loop", "rounds", "spinning", "until")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = weakref.ref(loop)  # the pollers' table holds the loop weakly: so does this
        self.until = 0.0  # on the real clock (``_clock``)
        self.rounds = 0
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
        if loop is not None and not loop.is_closed() and self.rounds <= MAX_ROUNDS and _clock() < self.until:
            _yield_cpu()
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
