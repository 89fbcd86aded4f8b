"""The block detector: a thread that sees the event loop held past ``block_warning``
while it is held, and names the process whose handler holds it and where.

The loop beats: a timer of ``Runtime.watch_loop_lag`` says every ``tick`` seconds when
the next beat is due. A thread of the node's wakes as often; when a beat is overdue by
more than ``block_warning``, the loop is held, and it says so once for that beat. It
looks at the loop thread's stack (``sys._current_frames``, under the GIL: the loop
thread stands still meanwhile): if the innermost handler of a process on it was there a
tick ago too, that process is named, with the line the loop is at; otherwise only the
line is (the loop is busy with many handlers, or with the node's own work). When the
loop beats again, the length of the whole hold is logged.

Why a thread rather than timing each step of each drain (as before): the timing cost
two clock reads and a generator frame per step, about a tenth of a local call
(docs/performance.md), and a handler that never returned was never reported. Here the
cost is one timer on the loop per tick, whatever the traffic, and a handler stuck for
good is reported while it is stuck. A hold shorter than ``block_warning`` plus one tick
may go unreported (the beats are ``tick`` apart); ``tick`` is a quarter of it.

A process that was stopped as a whole (SIGSTOP, a debugger, a paused VM) is not a held
loop: its beat is as late, but this thread did not run either, and the process used next
to no CPU meanwhile (a handler that sleeps on the loop's thread lets this thread run; one
that computes in C without releasing the GIL uses CPU). Whichever side sees it first (this
thread on waking, or the loop at its late beat) says once that the process was stopped,
for how long, and that its peers may have declared it failed meanwhile: the node that
wakes up after everyone thought it dead says so, instead of blaming its event loop
(``event loop held ... in Runner.run``, as it did).
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from types import FrameType
from typing import TYPE_CHECKING, Any

from .._log import RateLimitedLog

if TYPE_CHECKING:
    from ._runtime import Runtime

log = logging.getLogger("distable.runtime")

#: How many frames down the loop thread's stack a look goes for a process's handler.
MAX_DEPTH = 200
#: A stall in which the process used less CPU than this share of its length was a stop of
#: the whole process (it did not run), not a loop held by its own work.
STOPPED_CPU_SHARE = 0.25


class Watchdog:
    """One node's block detector; ``beat`` from the loop, the rest in its own thread."""

    def __init__(self, runtime: Runtime, tick: float) -> None:
        self.runtime = runtime
        self.tick = tick
        self.due = time.monotonic() + tick  # when the loop's next beat is due (monotonic)
        self.reported = -1.0  # the ``due`` of the last hold reported
        self.woke = time.monotonic()  # when this thread last ran (it wakes every tick)
        self._cpu_woke = time.process_time()
        self._stop_seen = 0.0  # when a stop of the whole process was last said
        self._lock = threading.Lock()  # ``stopped`` runs in either thread
        self._loop_thread = threading.get_ident()
        self._stopped = threading.Event()
        # Its own, used from its thread only, or under ``_lock`` (RateLimitedLog is not
        # thread-safe).
        self._ratelog = RateLimitedLog(log, f"{runtime.node_name}: ")
        self._thread = threading.Thread(
            target=self._run, name=f"distable block detector {runtime.node_name}", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()

    def beat(self, due: float) -> None:
        """From the loop: the next beat is due at ``due`` (``time.monotonic``)."""
        self.due = due

    def stopped(self, since: float, length: float, cpu: float) -> bool:
        """Whether the stall that began at ``since`` (``time.monotonic``), ``length`` seconds
        long, in which the process used ``cpu`` seconds of CPU, was a stop of the whole
        process: this thread did not run through it either, and the process hardly used the
        CPU. Said once (by the first of the two threads to see it); a stall said to be a stop
        is not reported as a hold."""
        with self._lock:
            if self._stop_seen > since:
                return True  # said already, by the other thread
            if time.monotonic() - self.woke < length / 2 or cpu > STOPPED_CPU_SHARE * length:
                return False
            self._stop_seen = time.monotonic()
            self.reported = self.due
            self._ratelog.warning(
                "stopped",
                "this process was stopped for %.3f s (none of its threads ran: SIGSTOP, a debugger, a paused VM, or "
                "a machine too busy to run it); its peers may have declared this node failed meanwhile, and it "
                "catches up now",
                length,
            )
        return True

    def _run(self) -> None:
        last: Any = None  # the handler frame on the loop thread's stack at the last look
        while not self._stopped.wait(self.tick):
            now, cpu = time.monotonic(), time.process_time()
            since, used = self.woke, cpu - self._cpu_woke
            stopped = now - since - self.tick > self.runtime.block_warning and self.stopped(since, now - since, used)
            self.woke, self._cpu_woke = now, cpu
            if stopped:
                last = None
                continue
            due = self.due
            held = now - due
            if held <= self.runtime.block_warning - 1.5 * self.tick:
                # Not held, or not long enough for a report at the next look (which wants
                # the handler of this one): nothing to look at.
                last = None  # (no frame kept past its hold)
                continue
            frame = sys._current_frames().get(self._loop_thread)
            if frame is None:  # the loop thread is gone
                return
            handler = _handler_frame(frame)
            if held > self.runtime.block_warning and self.reported != due:
                self.reported = due
                # One handler, there a tick ago and now, holds the loop (else it is busy
                # with many, or with the node's own work).
                with self._lock:
                    self._report(held, frame, handler if handler is last else None)
            last = handler
            del frame, handler

    def _report(self, held: float, frame: FrameType, holder: FrameType | None) -> None:
        if holder is not None:
            proc = holder.f_locals.get("self")
            inner = "" if frame is holder else f", at {_at(frame)} in {frame.f_code.co_qualname}"
            self._ratelog.warning(
                ("block", type(proc)),
                "process %r blocked the event loop: held for %.3f s so far, in %s (%s%s); handlers must not block "
                "(use distable.run_blocking for blocking work)",
                proc,
                held,
                holder.f_code.co_qualname,
                _at(holder),
                inner,
            )
        else:
            self._ratelog.warning(
                "lag", "event loop held for %.3f s so far, at %s in %s", held, _at(frame), frame.f_code.co_qualname
            )


def _handler_frame(frame: FrameType | None) -> FrameType | None:
    """The innermost frame on this stack of a method of a ``Process`` (its handler, or one
    it called) other than the runtime's own (the drain), if any: the process running now
    (a local call handled at once runs the callee's handler above the caller's)."""
    from . import _process
    from ._process import Process

    runtime_file = _process.__file__
    depth = 0
    while frame is not None and depth < MAX_DEPTH:
        code = frame.f_code
        if (
            code.co_argcount
            and code.co_varnames[0] == "self"
            and code.co_filename != runtime_file
            and isinstance(frame.f_locals.get("self"), Process)
        ):
            return frame
        frame = frame.f_back
        depth += 1
    return None


def _at(frame: FrameType) -> str:
    return f"{frame.f_code.co_filename}:{frame.f_lineno}"
