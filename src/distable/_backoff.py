"""Exponential backoff, pure: no clock and no I/O (callers pass ``now``), and randomness
only from a ``random.Random`` the caller injects.

One copy for every retry in distable: the transport's redial (with jitter) and the
tracker core's restarts of a crashed process (without jitter; reset once the process ran
long enough).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import random


class Backoff:
    """Delays that start at ``initial`` and double with each failure up to ``maximum``.

    Args:
        initial: the first delay, and the first again after a reset.
        maximum: the cap.
        rng: with it, each delay is jittered: scaled by a uniform factor in
            ``[1 - jitter, 1)`` drawn from ``rng`` (one draw per delay), so peers that
            failed together do not retry together. The doubling goes on from the
            unjittered delay.
        jitter: the jitter's width, in ``[0, 1]``.
        reset_after: with it, a failure that comes at least this long after the attempt
            before it started (that attempt ran this long) starts again at ``initial``.
    """

    __slots__ = ("_delay", "_rng", "_started", "initial", "jitter", "maximum", "reset_after")

    def __init__(
        self,
        initial: float,
        maximum: float,
        *,
        rng: random.Random | None = None,
        jitter: float = 0.5,
        reset_after: float | None = None,
    ) -> None:
        if not 0.0 <= jitter <= 1.0:
            raise ValueError(f"jitter must be in [0, 1], not {jitter}")
        self.initial = initial
        self.maximum = maximum
        self.jitter = jitter
        self.reset_after = reset_after
        self._rng = rng
        self._delay = 0.0  # the last delay before jitter; 0.0: none since the last reset
        self._started = 0.0  # when the attempt after the last delay starts

    @property
    def delay(self) -> float:
        """The last delay given, before jitter (0.0 when none was given since a reset)."""
        return self._delay

    def next_delay(self, now: float) -> float:
        """An attempt failed at ``now``: how long to wait before the next one."""
        if self.reset_after is not None and now - self._started >= self.reset_after:
            self._delay = 0.0
        self._delay = min(self.maximum, self._delay * 2 if self._delay else self.initial)
        delay = self._delay
        if self._rng is not None:
            delay *= 1.0 - self.jitter + self.jitter * self._rng.random()
        self._started = now + delay
        return delay

    def expired(self, now: float) -> bool:
        """Whether the next failure would start again at ``initial`` anyway (``reset_after``
        has passed since the last attempt started, or no delay was given since a reset):
        a holder of many backoffs may drop this one and make a fresh one when it needs it."""
        return not self._delay or (self.reset_after is not None and now - self._started >= self.reset_after)

    def reset(self) -> None:
        """The attempt succeeded: the next failure starts again at ``initial``."""
        self._delay = 0.0
