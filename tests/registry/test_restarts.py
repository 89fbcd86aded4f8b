"""Restart policies of factory-registered names: temporary, transient, permanent; backoff."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from distable import Crash, Node, ProcessExited
from distable.registry._core import RestartElsewhere
from distable.registry._factory import factory_ref
from distable.testing import eventually, intercept, restarts_due
from distable.wire._messages import RegisterRequest, Spec

from . import apps
from .conftest import Cluster, first_owned, log_records


async def crash(node: Node, name: str) -> None:
    with pytest.raises(ProcessExited) as info:
        await node.call(name, "crash")
    assert isinstance(info.value.reason, Crash)


def replaced(cluster: Cluster, name: str, old: object) -> bool:
    pids = {n.whereis(name) for n in cluster.nodes}
    return len(pids) == 1 and None not in pids and old not in pids


async def test_temporary_process_that_crashes_is_dropped_and_not_restarted(cluster: Cluster, three: list[Node]) -> None:
    a = three[0]
    pid = await a.register("temp", apps.Counter, key="temp", restart="temporary")
    await eventually(lambda: all(n.whereis("temp") == pid for n in three))
    await crash(a, "temp")
    await eventually(lambda: all(n.whereis("temp") is None for n in three), message=cluster.describe)
    # Give a restart every chance to happen: wait until the owner has none left to make
    # (a restart it had armed waits out a backoff that starts at 0.05 s).
    owner = cluster.node(pid.node)
    await eventually(lambda: not restarts_due(owner))
    assert all(n.whereis("temp") is None for n in three)
    assert apps.INITS["temp"] == 1
    assert cluster.live_copies("temp") == []


async def test_transient_process_is_restarted_on_its_owner_with_a_new_pid_after_a_crash(
    cluster: Cluster, three: list[Node]
) -> None:
    a, b, c = three
    name = first_owned(c.name, a.placement().nodes, "transient")
    pid = await a.register(name, apps.Counter, key=name, start=5, restart="transient")
    assert pid.node == c.name
    await eventually(lambda: all(n.whereis(name) == pid for n in three))
    await b.call(name, "incr")

    await crash(b, name)
    await eventually(lambda: replaced(cluster, name, pid), message=cluster.describe)
    new = a.whereis(name)
    assert new is not None
    assert new != pid
    assert new.node == c.name  # restarted on the owner
    assert apps.INITS[name] == 2
    assert await a.call(name, "get") == (5, c.name)  # fresh state: init's arguments again
    assert cluster.live_copies(name) == [new]


async def test_transient_process_is_not_restarted_after_a_normal_stop(cluster: Cluster, three: list[Node]) -> None:
    a = three[0]
    pid = await a.register("transient-stop", apps.Counter, key="ts", restart="transient")
    await eventually(lambda: all(n.whereis("transient-stop") == pid for n in three))
    assert await a.call("transient-stop", ("stop", "normal")) == "stopping"
    await eventually(lambda: all(n.whereis("transient-stop") is None for n in three), message=cluster.describe)
    owner = cluster.node(pid.node)
    await eventually(lambda: not restarts_due(owner))
    assert apps.INITS["ts"] == 1
    assert all(n.whereis("transient-stop") is None for n in three)


async def test_permanent_process_is_restarted_after_a_normal_stop(cluster: Cluster, three: list[Node]) -> None:
    a, b, _ = three
    pid = await a.register("forever", apps.Counter, key="forever", restart="permanent")
    await eventually(lambda: all(n.whereis("forever") == pid for n in three))
    assert await b.call("forever", ("stop", "normal")) == "stopping"
    await eventually(lambda: replaced(cluster, "forever", pid), message=cluster.describe)
    new = a.whereis("forever")
    assert new is not None
    assert new.node == pid.node == a.placement().owner("forever")
    assert apps.INITS["forever"] == 2
    # And after a crash, too.
    await crash(a, "forever")
    await eventually(lambda: replaced(cluster, "forever", new), message=cluster.describe)
    assert apps.INITS["forever"] == 3


async def test_factory_failing_at_every_restart_is_retried_with_backoff_and_rate_limited_logs(
    cluster: Cluster, three: list[Node], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="distable.registry")
    a = three[0]
    pid = await a.register("flaky", apps.Flaky, "flaky", restart="permanent")
    owner = cluster.node(pid.node)
    loop = owner.registry.loop
    apps.FAILING.add("flaky")
    crashed_at = loop.time()
    with pytest.raises(ProcessExited):
        await a.call("flaky", "crash")

    attempts = apps.ATTEMPTS["flaky"]  # the first entry is the successful registration
    await eventually(lambda: len(attempts) >= 1 + 6, timeout=20, message=lambda: f"attempts at {attempts}")
    restarts = attempts[1:7]
    gaps = [later - earlier for earlier, later in zip([crashed_at, *restarts], restarts, strict=False)]
    # The configured backoff: 0.05 s, doubled per consecutive failure (a slow machine
    # only stretches the gaps). A tight loop would show thousands of attempts instead.
    for i, gap in enumerate(gaps):
        assert gap >= 0.05 * 2**i * 0.9, f"attempt {i + 1} came {gap:.3f} s after the previous one: {gaps}"
    elapsed = restarts[-1] - crashed_at
    assert len([t for t in attempts[1:] if t - crashed_at <= elapsed]) == 6
    # One warning line for all these failures (the rest are counted, not written).
    lines = log_records(caplog, "cannot restart", "'flaky'")
    assert len(lines) == 1, lines
    assert apps.INITS["flaky"] == 1
    assert all(n.whereis("flaky") is None for n in three)

    # Once the factory works again, the next retry brings the name back.
    apps.FAILING.clear()
    await eventually(lambda: all(n.whereis("flaky") is not None for n in three), timeout=20, message=cluster.describe)
    assert apps.INITS["flaky"] == 2


async def test_a_restart_asked_of_a_slow_owner_is_asked_again_and_the_log_says_not_confirmed(
    cluster: Cluster, caplog: pytest.LogCaptureFixture
) -> None:
    """A survivor asks the owner to restart an orphan (``RestartElsewhere``); the owner,
    busy restarting the thousands of names of a dead node, answers late. The log says the
    restart is not confirmed and when it is asked again, not "cannot restart" (it may
    well have happened), and the second request brings the name back."""
    caplog.set_level(logging.WARNING, logger="distable.registry")
    a, b = await cluster.start(2)
    name = first_owned(b.name, [a.name, b.name], "orphan")
    spec = Spec(factory_ref(apps.Counter), [], {"key": name}, "transient", 0.2, 0)
    held: list[Any] = []
    with intercept(b, RegisterRequest, lambda sender, msg, deliver: held.append(msg)):
        await a.registry._restart_elsewhere(RestartElsewhere(name, spec, b.name))
        assert held  # asked, never answered
    lines = log_records(caplog, "restart of", repr(name), "not confirmed", "the owner may be busy", "asking again in")
    assert len(lines) == 1, caplog.text
    assert not log_records(caplog, "cannot restart")
    await eventually(lambda: a.whereis(name) is not None and b.whereis(name) is not None, message=cluster.describe)
    pid = a.whereis(name)
    assert pid is not None
    assert pid == b.whereis(name)
    assert pid.node == b.name
