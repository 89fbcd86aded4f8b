"""``Backoff`` on its own: exact delays, explicit times, a seeded rng for the jitter."""

from __future__ import annotations

import random

import pytest

from distable._backoff import Backoff


def delays(backoff: Backoff, times: list[float]) -> list[float]:
    return [backoff.next_delay(now) for now in times]


def test_delays_double_from_initial_up_to_the_cap() -> None:
    backoff = Backoff(0.05, 1.0)
    assert delays(backoff, [0.0] * 7) == [0.05, 0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    assert backoff.delay == 1.0


def test_reset_starts_again_at_initial() -> None:
    backoff = Backoff(0.05, 1.0)
    delays(backoff, [0.0] * 4)
    backoff.reset()
    assert backoff.delay == 0.0
    assert delays(backoff, [0.0, 0.0]) == [0.05, 0.1]


def test_jitter_scales_each_delay_by_one_draw_and_the_doubling_goes_on_unjittered() -> None:
    backoff = Backoff(0.05, 5.0, rng=random.Random(7))
    draws = random.Random(7)
    expected = [d * (0.5 + draws.random() / 2) for d in (0.05, 0.1, 0.2, 0.4)]
    assert delays(backoff, [0.0] * 4) == expected  # exactly: one draw per delay, in order
    assert backoff.delay == 0.4


@pytest.mark.parametrize("jitter", [0.0, 0.25, 1.0])
def test_a_jittered_delay_stays_within_its_width(jitter: float) -> None:
    backoff = Backoff(1.0, 1.0, rng=random.Random(3), jitter=jitter)
    for delay in delays(backoff, [0.0] * 200):
        assert 1.0 - jitter <= delay <= 1.0


def test_a_jitter_outside_zero_to_one_is_refused() -> None:
    with pytest.raises(ValueError, match="jitter"):
        Backoff(1.0, 2.0, jitter=1.5)


def test_a_failure_reset_after_past_the_last_attempt_starts_again_at_initial() -> None:
    """``reset_after`` counts from when the attempt started (the failure's time plus its
    delay), not from the failure: a process restarted after 1 s that then ran 29.5 s has
    not run 30 s."""
    backoff = Backoff(0.25, 8.0, reset_after=30.0)
    assert delays(backoff, [0.0, 1.0, 2.0]) == [0.25, 0.5, 1.0]  # the last attempt starts at 3.0
    assert backoff.next_delay(32.5) == 2.0  # ran 29.5 s
    assert not backoff.expired(64.25)
    assert backoff.expired(64.5)  # the last attempt started at 34.5
    assert backoff.next_delay(64.5) == 0.25


def test_without_reset_after_only_reset_starts_again() -> None:
    backoff = Backoff(0.05, 5.0)
    assert delays(backoff, [0.0, 1_000.0]) == [0.05, 0.1]
    assert not backoff.expired(1e9)
    backoff.reset()
    assert backoff.expired(0.0)


def test_a_fresh_backoff_is_expired_and_its_first_delay_is_initial_at_any_time() -> None:
    assert Backoff(0.05, 5.0, reset_after=30.0).expired(0.0)
    assert Backoff(0.05, 5.0, reset_after=30.0).next_delay(1e6) == 0.05
