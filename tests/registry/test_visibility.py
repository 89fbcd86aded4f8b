"""What a node tells its operator about moves and losses: one line per wave, not per name."""

from __future__ import annotations

import logging

import pytest

from distable.testing import eventually

from . import apps
from .conftest import Cluster, host_of, log_records


async def test_a_graceful_leave_logs_its_handoff_wave_in_two_lines_not_one_per_name(
    cluster: Cluster, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="distable.registry")
    a, b = await cluster.start(2)
    names = [f"wave-{i}" for i in range(40)]
    for i, name in enumerate(names):
        await a.register(name, apps.Counter, key=i)
    on_b = sum(1 for name in names if host_of(a, name) == b.name)
    assert on_b > 0
    caplog.clear()
    await cluster.stop(b)
    await eventually(lambda: all((pid := a.whereis(n)) is not None and pid.node == a.name for n in names))
    leaving = [r.getMessage() for r in caplog.records if r.getMessage().startswith(f"{b.name}:")]
    started = [line for line in leaving if "handing" in line]
    over = [line for line in leaving if "handoff wave over" in line]
    assert started == [f"{b.name}: handing {on_b} name(s) off: {on_b} to {a.name}"]
    assert over == [f"{b.name}: handoff wave over: {on_b} completed, 0 aborted"]
    assert not [line for line in leaving if "wave-" in line]  # no line names a single process


async def test_the_last_server_to_leave_says_that_its_names_are_gone(
    cluster: Cluster, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="distable.registry")
    (only,) = await cluster.start(1)
    for i in range(3):
        await only.register(f"alone-{i}", apps.Counter, key=i)
    await cluster.stop(only)
    assert log_records(caplog, only.name, "last server node leaves with 3 registered name(s)")
