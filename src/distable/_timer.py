"""One re-armable timer: how an asyncio shell wakes its sans-I/O core at the core's deadline.

A shell keeps one ``Timer`` whose callback runs the core's ``handle_timer``, and after
every input (and after every firing) arms it at the core's ``next_deadline()``, in the
style of aioquic's protocol shell. Arming never moves the timer later: a timer already
armed at or before the new deadline stays (when it fires, the shell arms it again at the
deadline of the moment), so an input costs no loop call unless it brings the deadline
forward. ``Expiry`` keeps one such timer for many dict keys that expire after one delay.
A leaf module: it imports nothing from distable.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Hashable, MutableMapping
from typing import Any


class Timer:
    """A ``loop.call_at`` of ``callback``, kept at the earliest deadline armed.

    Runs on ``loop``'s thread. The timer is disarmed before ``callback`` runs, so the
    callback may arm it again.
    """

    __slots__ = ("_callback", "_handle", "_loop", "_when")

    def __init__(self, loop: asyncio.AbstractEventLoop, callback: Callable[[], object]) -> None:
        self._loop = loop
        self._callback = callback
        self._handle: asyncio.Handle | None = None
        # The deadline ``_handle`` was armed for: uvloop's ``call_at`` returns a plain
        # ``Handle``, which has no ``when()``, for a deadline already due.
        self._when = 0.0

    @property
    def when(self) -> float | None:
        """The deadline the timer is armed for, or None when it is not armed."""
        return self._when if self._handle is not None else None

    def arm(self, deadline: float) -> None:
        """Fire at ``deadline`` (loop time), unless already armed at or before it."""
        handle = self._handle
        if handle is not None:
            if self._when <= deadline:
                return
            handle.cancel()
        self._when = deadline
        self._handle = self._loop.call_at(deadline, self._fire)

    def cancel(self) -> None:
        """Disarm (nothing if not armed)."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _fire(self) -> None:
        self._handle = None
        self._callback()


class Expiry:
    """Dict keys dropped ``delay`` seconds after ``drop_later``, with one ``Timer`` for all
    of them instead of a ``loop.call_later`` each: a handoff wave leaves thousands of
    entries to forget after the same delay at once, and a timer handle each (kept that
    long, walked by the garbage collector meanwhile) cost a tenth of the wave's CPU.

    The delay is the same for every key, so the keys expire in the order they came: a
    queue, the timer armed at its head. Runs on ``loop``'s thread.
    """

    __slots__ = ("_delay", "_entries", "_loop", "_timer")

    def __init__(self, loop: asyncio.AbstractEventLoop, delay: float) -> None:
        self._loop = loop
        self._delay = delay
        self._entries: deque[tuple[float, MutableMapping[Any, Any], Hashable]] = deque()
        self._timer = Timer(loop, self._expire)

    def __len__(self) -> int:
        return len(self._entries)

    def drop_later(self, table: MutableMapping[Any, Any], key: Hashable) -> None:
        """``table.pop(key, None)`` in ``delay`` seconds (whatever ``key`` holds by then)."""
        due = self._loop.time() + self._delay
        self._entries.append((due, table, key))
        if len(self._entries) == 1:
            self._timer.arm(due)

    def cancel(self) -> None:
        """Disarm; the keys still queued stay in their tables."""
        self._timer.cancel()
        self._entries.clear()

    def _expire(self) -> None:
        entries = self._entries
        now = self._loop.time() + 0.001  # a timer may fire a hair early (the loop's resolution)
        while entries and entries[0][0] <= now:
            _, table, key = entries.popleft()
            table.pop(key, None)
        if entries:
            self._timer.arm(entries[0][0])
