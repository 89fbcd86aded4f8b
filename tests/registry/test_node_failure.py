"""A node dies (no graceful leave): its names restart exactly once on their new owners."""

from __future__ import annotations

from distable import Node, NodeDown, ProcessRestarted
from distable.testing import claimants, eventually

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
