"""The shells' re-armable timer (``distable._timer.Timer``) and its queue of expiring keys
(``Expiry``), on a loop that only records.

The loop's ``call_at`` is stubbed: each call returns a handle the test fires or checks by
hand, so which deadline is armed, and when a call is made at all, is asserted exactly.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, cast

from distable._timer import Expiry, Timer


class _Handle:
    def __init__(self, when: float, callback: Callable[[], Any]) -> None:
        self.when = when
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class _Loop:
    def __init__(self) -> None:
        self.calls: list[_Handle] = []
        self.now = 0.0

    def time(self) -> float:
        return self.now

    def call_at(self, when: float, callback: Callable[[], Any]) -> _Handle:
        handle = _Handle(when, callback)
        self.calls.append(handle)
        return handle

    def armed(self) -> list[float]:
        return [h.when for h in self.calls if not h.cancelled]


def make_timer() -> tuple[_Loop, list[str], Timer]:
    """A timer on a recording loop, and the list its callback appends "fired" to."""
    loop, fired = _Loop(), []
    return loop, fired, Timer(cast(asyncio.AbstractEventLoop, loop), lambda: fired.append("fired"))


def test_arming_keeps_the_earliest_deadline_and_moves_only_earlier() -> None:
    loop, fired, timer = make_timer()
    assert (loop.armed(), timer.when) == ([], None)
    timer.arm(5.0)
    timer.arm(7.0)  # later: the timer stays at 5.0, with no new call
    timer.arm(5.0)
    assert (loop.armed(), len(loop.calls), timer.when) == ([5.0], 1, 5.0)
    timer.arm(2.0)  # earlier: the 5.0 call is cancelled and replaced
    assert (loop.armed(), len(loop.calls), timer.when) == ([2.0], 2, 2.0)
    assert fired == []


def test_a_fired_timer_is_disarmed_before_its_callback_so_the_callback_can_arm_it() -> None:
    loop, fired, timer = make_timer()
    timer.arm(1.0)
    loop.calls[-1].callback()
    assert (fired, timer.when) == (["fired"], None)
    timer.arm(9.0)  # later than the deadline it fired at: armed anew
    assert (loop.armed(), timer.when) == ([1.0, 9.0], 9.0)


def test_cancel_disarms_and_a_second_cancel_does_nothing() -> None:
    loop, fired, timer = make_timer()
    timer.cancel()
    timer.arm(3.0)
    timer.cancel()
    timer.cancel()
    assert (loop.armed(), timer.when) == ([], None)
    timer.arm(4.0)
    assert (loop.armed(), timer.when, fired) == ([4.0], 4.0, [])


def test_expiry_drops_keys_in_order_with_one_timer_at_a_time() -> None:
    loop = _Loop()
    expiry = Expiry(cast(asyncio.AbstractEventLoop, loop), 30.0)
    table = {"a": 1, "b": 2, "c": 3}
    expiry.drop_later(table, "a")
    loop.now = 1.0
    expiry.drop_later(table, "b")
    expiry.drop_later(table, "gone")  # a key no longer there is no error
    assert loop.armed() == [30.0]  # one timer, at the first key's deadline
    loop.now = 30.0
    loop.calls[-1].callback()
    assert table == {"b": 2, "c": 3}
    assert len(expiry) == 2
    assert loop.armed() == [30.0, 31.0]  # the fired one, then the next head's
    loop.now = 31.0
    loop.calls[-1].callback()
    assert table == {"c": 3}
    assert len(expiry) == 0
    assert len(loop.calls) == 2  # nothing armed once the queue is empty
    expiry.drop_later(table, "c")
    expiry.cancel()
    assert table == {"c": 3}
    assert loop.calls[-1].cancelled
