"""The demo (``python -m distable.demo``, the README's first command) runs to an OK verdict.

It runs as a newcomer would run it, in its own OS process with its own node processes,
with fewer workers (600) and plain output; its seed comes from a seeded ``random.Random``
(printed; ``DISTABLE_TEST_SEED`` replays it). Its gossip port and cookie are random, so it
never meets another test's nodes.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from distable.demo import main
from tests._seed import printed_seed

pytestmark = pytest.mark.cluster

WORKERS = 600


def summary_of(output: str) -> dict[str, float]:
    """The figures of the demo's ``summary: key=value ...`` line."""
    [line] = [line for line in output.splitlines() if "summary: " in line]
    pairs = (item.split("=", 1) for item in line.split("summary: ", 1)[1].split())
    return {key: float(value) for key, value in pairs}


def test_the_demo_moves_workers_with_their_state_restarts_the_killed_ones_and_says_ok() -> None:
    seed = printed_seed()

    result = subprocess.run(
        [sys.executable, "-m", "distable.demo", "--plain", "--workers", str(WORKERS), "--seed", str(seed)],
        capture_output=True,
        text=True,
        timeout=90,
    )

    print(result.stdout)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "verdict: OK" in result.stdout
    figures = summary_of(result.stdout)
    assert figures["workers"] == WORKERS
    # Step 1, a node joins: some workers moved to it, by handoffs the nodes report.
    assert 0 < figures["join_moved"] < WORKERS
    assert figures["join_handoffs"] >= figures["join_moved"]
    # Step 2, a node leaves gracefully: its workers moved, by handoffs.
    assert 0 < figures["leave_moved"] < WORKERS
    assert figures["leave_handoffs"] >= figures["leave_moved"]
    # Step 3, a node is killed: its workers were restarted on the survivors, each from its
    # last checkpoint (the verdict fails a worker that came back below the count it had
    # answered); what write-behind lost is counted, never more than the casts sent after.
    assert 0 < figures["kill_restarted"] < WORKERS
    assert figures["kill_restarts"] >= figures["kill_restarted"]
    assert 0 <= figures["kill_increments_lost"] <= 3 * figures["kill_restarted"]
    assert "the restarted workers continue from their last checkpoint" in result.stdout
    assert result.stderr == "", result.stderr[-3000:]  # every node's log went to its file


def test_the_demo_refuses_a_worker_count_below_one(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--workers", "0"])

    assert exit_info.value.code == 2
    assert "--workers must be at least 1" in capsys.readouterr().err
