"""The checkpointed mode's checker (``Run.lost_at``) on hand-made fault timelines: a lost
acknowledged op is pinned to where it went missing and allowed only when failures
overlapped there. No node process runs: a ``Run`` is built and never started."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.chaos.harness import Ack, Config, Failure, Run

T0 = 1_000_000.0


@pytest.fixture
def chaos(tmp_path: Path) -> Iterator[Run]:
    run = Run(Config(seed=1, run_dir=tmp_path, checkpoints=True))
    run.t0 = T0
    yield run
    run.log_file.close()
    run.acks_file.close()


def _failure(node: str, kind: str, start: float, end: float) -> Failure:
    return Failure(f"{node}@127.0.0.1:1", kind, T0 + start, T0 + end)


def _ack(called: float) -> Ack:
    return Ack("w0-1", "L", "s0@127.0.0.1:1", T0 + called, T0 + called + 0.01)


HOSTED_ON_S0 = [(T0 + 1.0, "s0@127.0.0.1:1")]


def test_a_lineage_lost_with_its_lone_host_is_a_violation_even_if_failures_overlap_later(chaos: Run) -> None:
    # s0 (the host) killed alone at 10-13; s1 killed at 14 while s2 was paused: that later
    # overlap is no excuse for what the lone kill lost.
    chaos.failures = [
        _failure("s0", "kill", 10.0, 13.0),
        _failure("s2", "pause", 13.5, 18.0),
        _failure("s1", "kill", 14.0, 16.0),
    ]
    why = chaos.lost_at(_ack(5.0), False, HOSTED_ON_S0, [])
    assert not why.startswith("allowed"), why


@pytest.mark.parametrize(
    ("other", "start", "end"),
    [
        ("pause", 8.0, 12.0),  # under way when the host was killed
        ("kill", 6.0, 9.0),  # ended 1 s before: re-replication may still run
        ("kill", 11.0, 12.0),  # begun while the host was down (its restore may need it)
    ],
)
def test_a_lineage_lost_with_its_host_while_another_node_failed_is_allowed(
    chaos: Run, other: str, start: float, end: float
) -> None:
    chaos.failures = [_failure("s0", "kill", 10.0, 13.0), _failure("s1", other, start, end)]
    why = chaos.lost_at(_ack(5.0), False, HOSTED_ON_S0, [])
    assert why.startswith("allowed: "), why


def test_another_failure_that_ended_long_before_excuses_nothing(chaos: Run) -> None:
    chaos.failures = [_failure("s1", "kill", 2.0, 5.0), _failure("s0", "kill", 10.0, 13.0)]
    assert not chaos.lost_at(_ack(1.0), False, HOSTED_ON_S0, []).startswith("allowed")


def test_a_kept_lineage_that_went_backwards_is_judged_at_the_restore_that_lacks_the_op(chaos: Run) -> None:
    def restore(at: float, ops: list[str]) -> dict[str, Any]:
        return {"t": T0 + at, "event": "restore", "node": "s1@127.0.0.1:1", "lineage": "L", "ops": ops}

    got = [restore(4.0, []), restore(11.0, ["w0-1"]), restore(21.0, [])]
    chaos.failures = [_failure("s0", "kill", 10.0, 13.0), _failure("s1", "kill", 20.5, 23.0)]
    why = chaos.lost_at(_ack(5.0), True, HOSTED_ON_S0, got)
    assert "at 21.000 s" in why, why
    assert not why.startswith("allowed"), why  # one failure under way then
    chaos.failures.append(_failure("s2", "pause", 19.0, 24.0))
    assert chaos.lost_at(_ack(5.0), True, HOSTED_ON_S0, got).startswith("allowed: ")
    # missing from the final state, but no restore lacks it: nothing excuses it
    assert not chaos.lost_at(_ack(5.0), True, HOSTED_ON_S0, got[:2]).startswith("allowed")


def test_a_kept_lineage_whose_acknowledging_host_died_with_others_is_allowed_at_a_later_restore(chaos: Run) -> None:
    # Seed 2238437358: s3, paused and declared failed, kept a copy of the lineage running;
    # s0 acknowledged the op, then s0 and s6 were killed while s3 was still paused, and the
    # woken copy (which never had the op) was the one left. A later restore shows the loss
    # with one failure under way: the loss happened at the overlap, which allows it.
    def restore(at: float, ops: list[str]) -> dict[str, Any]:
        return {"t": T0 + at, "event": "restore", "node": "s0@127.0.0.1:1", "lineage": "L", "ops": ops}

    got = [restore(30.0, [])]
    chaos.failures = [
        _failure("s3", "pause", 4.0, 10.6),
        _failure("s0", "kill", 10.3, 13.0),
        _failure("s6", "kill", 10.4, 13.3),
        _failure("s3", "pause", 29.3, 34.7),
    ]
    why = chaos.lost_at(_ack(8.8), True, HOSTED_ON_S0, got)
    assert why.startswith("allowed: lost with kill of s0"), why  # s0 acknowledged it and hosted it
    # the acknowledging host killed alone: no excuse, and the restore's lone failure none either
    chaos.failures = [_failure("s0", "kill", 10.3, 13.0), _failure("s3", "pause", 29.3, 34.7)]
    assert not chaos.lost_at(_ack(8.8), True, HOSTED_ON_S0, got).startswith("allowed")
