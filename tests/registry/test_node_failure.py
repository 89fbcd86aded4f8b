"""A node dies (no graceful leave): its names restart exactly once on their new owners."""

from __future__ import annotations

import asyncio
from typing import Any

from distable import Node, NodeDown, ProcessRestarted
from distable.ring import Ring
from distable.testing import claimants, eventually, intercept
from distable.wire._messages import Delta, RegisterRequest

from . import apps
from .conftest import Cluster


async def test_names_of_a_crashed_node_restart_exactly_once_on_their_new_owners(
    cluster: Cluster, three: list[Node]
) -> None:
    a, b, victim = three
    names = [f"svc-{i}" for i in range(45)]
    before = {name: await three[i % 3].register(name, apps.Counter, key=name) for i, name in enumerate(names)}
    await eventually(lambda: cluster.agreed() == before, message=cluster.describe)
    hosted = [name for name, pid in before.items() if pid.node == victim.name]
    assert len(hosted) >= 5, f"the victim should host some names: {hosted}"

    await cluster.crash(victim)
    survivors = [a, b]
    await eventually(lambda: all(victim.name not in n.placement().nodes for n in survivors), message=cluster.describe)
    await eventually(
        lambda: (t := cluster.agreed()) is not None and len(t) == len(names) and cluster.on_owners(names),
        timeout=15,
        message=cluster.describe,
    )
    after = cluster.agreed()
    assert after is not None
    for name in names:
        if name in hosted:
            assert after[name] != before[name]
            assert after[name].node in (a.name, b.name)
            assert apps.INITS[name] == 2, f"{name} started {apps.INITS[name]} times"
        else:
            assert after[name] == before[name]
            assert apps.INITS[name] == 1
        assert cluster.live_copies(name) == [after[name]]
        for node in survivors:
            assert claimants(node, name) == [after[name]], f"{node.name} holds {claimants(node, name)} for {name}"
        assert await a.call(name, "get") == (0, after[name].node)

    restarted = [e for n in survivors for e in cluster.events(n) if isinstance(e, ProcessRestarted)]
    assert sorted(e.name for e in restarted) == sorted(hosted)
    assert {e.reason for e in restarted} == {"nodedown"}
    assert all(any(isinstance(e, NodeDown) and e.node == victim.name for e in cluster.events(n)) for n in survivors)


async def test_register_name_entries_of_a_crashed_node_vanish(cluster: Cluster, three: list[Node]) -> None:
    a, b, victim = three
    on_victim = [await victim.spawn(apps.Counter, f"manual-{i}") for i in range(3)]
    on_a = await a.spawn(apps.Counter, "manual-a")
    for i, pid in enumerate(on_victim):
        await three[i].register_name(f"manual-{i}", pid)
    await b.register_name("manual-a", on_a)
    await eventually(lambda: (t := cluster.agreed()) is not None and len(t) == 4)

    await cluster.crash(victim)
    await eventually(
        lambda: all(n.registered() == [("manual-a", on_a)] for n in (a, b)), timeout=15, message=cluster.describe
    )
    # Never restarted: they had no factory.
    assert apps.INITS == {"manual-0": 1, "manual-1": 1, "manual-2": 1, "manual-a": 1}
    assert all(claimants(n, f"manual-{i}") == [] for n in (a, b) for i in range(3))


async def test_a_name_handed_to_a_node_that_died_is_restarted_when_the_handoff_reaches_its_owner_late(
    cluster: Cluster, three: list[Node]
) -> None:
    """The fault campaign's lost names (seed 4229829435): x leaves and hands the name to y;
    y dies at once; o, the owner now, hears of the move (x's removal, naming y's pid as the
    successor) only after it saw y go down, then x's request to restart the name (x saw y
    die). Kept, the successor made o resolve the name to y's dead pid and answer x "it is
    registered": x's drain ended content, and nobody ever restarted the name."""
    x, y, o = three
    name = next(
        n
        for i in range(10_000)
        if Ring().place([x.name, y.name, o.name]).owner(n := f"late-{i}") == x.name
        and Ring().place([y.name, o.name]).owner(n) == y.name
    )
    first = await x.register(name, apps.Counter, key=name)
    await eventually(lambda: all(n.whereis(name) == first for n in three), message=cluster.describe)

    held: list[tuple[str, Any, Any]] = []  # what x and y send o, in order, until o saw y go down

    def hold(sender: str, msg: Any, deliver: Any) -> None:
        held.append((sender, msg, deliver))

    with intercept(o, Delta, hold), intercept(o, RegisterRequest, hold):
        leaving = asyncio.ensure_future(cluster.stop(x))
        await eventually(lambda: [p.node for p in claimants(y, name)] == [y.name], message=cluster.describe)
        await cluster.crash(y)
        await eventually(lambda: y.name not in o.nodes(), message=cluster.describe)
        await eventually(lambda: any(isinstance(m, RegisterRequest) for _, m, _ in held), message=lambda: f"{held}")
    for sender, msg, deliver in held:
        deliver(sender, msg)
    await leaving

    def restarted() -> bool:
        pid = o.whereis(name)
        return pid is not None and pid.node == o.name and cluster.live_copies(name) == [pid]

    await eventually(restarted, timeout=10, message=lambda: f"{o.name} resolves {name!r} to {o.whereis(name)}")
