"""The short fault schedule, on every test run: a seeded nemesis against five to seven real
``distable node`` processes and a client, then the checker (see ``tests.chaos.harness``).

The seed is printed; ``DISTABLE_CHAOS_SEED=<n>`` replays its schedule. Where the machine
allows it (root, nftables, cgroup v2: CI does), both schedules have network partitions
too (the checkpointed one again since the campaigns of 2026-12-06 evening ran clean:
docs/performance.md, "With partitions"); where not, the test says why. The run's logs (node
logs, ledgers, acknowledgements, the harness's timeline) stay in the printed folder. The long
campaign is ``python3 tasks.py chaos --minutes 30`` (``--checkpoints`` for the checkpointed mode).
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from tests.chaos._partition import missing_requirements
from tests.chaos.harness import Config, run, summary

pytestmark = pytest.mark.cluster


async def _short_schedule(tmp_path: Path, checkpoints: bool) -> None:
    seed = int(os.environ.get("DISTABLE_CHAOS_SEED") or random.SystemRandom().randrange(2**32))
    print(f"chaos seed {seed} (rerun with DISTABLE_CHAOS_SEED={seed}); logs in {tmp_path}")
    missing = missing_requirements()
    print("with network partitions" if missing is None else f"no network partitions: {missing}")
    config = Config(seed=seed, run_dir=tmp_path, checkpoints=checkpoints, partitions=missing is None)
    result = await run(config)
    print(summary(result))
    assert not result.violations, summary(result)


# A passing run takes about 50 s; a failing one may wait out every bound (quiescence,
# reads, exits) and should still print its report.
@pytest.mark.timeout(240)
async def test_a_short_fault_schedule_loses_nothing_acknowledged_or_registered(tmp_path: Path) -> None:
    await _short_schedule(tmp_path, checkpoints=False)


# The same with checkpointing counters: an acknowledged op may be lost only when failures
# overlapped (the checkpoint guarantee, as tests.chaos.harness models it), not to one crash.
@pytest.mark.timeout(240)
async def test_a_short_fault_schedule_with_checkpoints_loses_acks_only_to_overlapping_failures(
    tmp_path: Path,
) -> None:
    await _short_schedule(tmp_path, checkpoints=True)
