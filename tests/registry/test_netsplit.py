"""Netsplits, in one process (``Cluster.partition``): both sides keep going (``Ring``) or
only the majority does (``StaticQuorumRing``); after the heal every name runs once."""

from __future__ import annotations

from typing import Any

import pytest

from distable import (
    ConflictResolved,
    HandoffAborted,
    Node,
    NodeDown,
    NodeUp,
    NoNodeAvailable,
    Pid,
    Ring,
    StaticQuorumRing,
)
from distable.testing import eventually

from . import apps
from .conftest import Cluster, Partition, first_owned, host_of


async def split(cluster: Cluster, side_a: list[Node], side_b: list[Node]) -> Partition:
    """Cut the cluster in two and wait until each side's registry sees only its own side."""
    cut = cluster.partition(side_a, side_b)

    def isolated(side: list[Node]) -> bool:
        names = sorted(n.name for n in side)
        servers = sorted(n.name for n in side if n.role == "server")
        return all(sorted([n.name, *n.nodes()]) == names and n.placement().nodes == servers for n in side)

    await eventually(lambda: isolated(side_a) and isolated(side_b), timeout=15, message=cluster.describe)
    return cut


def single_copies(cluster: Cluster, names: list[Any]) -> dict[Any, Pid] | None:
    """Every name runs exactly once, on its owner, and every replica agrees on it."""
    if not cluster.idle():
        return None
    agreed = cluster.agreed()
    if agreed is None or sorted(agreed, key=repr) != sorted(names, key=repr) or not cluster.on_owners(names):
        return None
    if any(cluster.live_copies(name) != [agreed[name]] for name in names):
        return None
    return agreed


def describe_copies(cluster: Cluster, names: list[Any]) -> str:
    return cluster.describe() + "\ncopies: " + ", ".join(f"{n}: {cluster.live_copies(n)}" for n in names)


async def test_partition_reports_node_down_across_the_cut_and_node_up_after_the_heal(cluster: Cluster) -> None:
    a, b, c = await cluster.start(3)
    cut = await split(cluster, [a, b], [c])
    for node, lost in ((a, [c]), (b, [c]), (c, [a, b])):
        downs = {e.node for e in cluster.events(node) if isinstance(e, NodeDown)}
        assert downs == {n.name for n in lost}, f"{node.name} reported {downs}"
    assert a.nodes() == [b.name]
    assert c.nodes() == []

    await cut.heal()
    await cluster.wait_joined()
    for node, lost in ((a, [c]), (b, [c]), (c, [a, b])):
        ups = [e.node for e in cluster.events(node) if isinstance(e, NodeUp)]
        assert all(ups.count(n.name) >= 2 for n in lost), f"{node.name}: NodeUp events {ups}"


async def test_ring_netsplit_heal_keeps_the_owner_copy_which_gets_the_other_copy_state(cluster: Cluster) -> None:
    a, b, c = await cluster.start(3, strategy=Ring())
    everyone = [a.name, b.name, c.name]
    # Names owned (in the whole ring) by the lone node, and by the majority side.
    names = [first_owned(c.name, everyone, "lone"), first_owned(c.name, everyone, "lone2")]
    names += [first_owned(a.name, everyone, "major"), first_owned(b.name, everyone, "major2")]
    cut = await split(cluster, [a, b], [c])

    # The same names registered on both sides; each side's copy gets its own state.
    copies: dict[Any, dict[str, Pid]] = {}
    for name in names:
        on_ab = await a.register(name, apps.Counter, key=name)
        on_c = await c.register(name, apps.Counter, key=name)
        assert on_ab.node in (a.name, b.name)
        assert on_c.node == c.name
        copies[name] = {"ab": on_ab, "c": on_c}
        a.cast(name, ("add", 10))
        c.cast(name, ("add", 20))
        assert await a.call(name, "get") == (10, on_ab.node)
        assert await c.call(name, "get") == (20, c.name)

    await cut.heal()
    await cluster.wait_joined()
    survivors = await eventually(
        lambda: single_copies(cluster, names), timeout=20, message=lambda: describe_copies(cluster, names)
    )
    for name in names:
        owner = a.placement().owner(name)
        winner, loser = ("c", "ab") if owner == c.name else ("ab", "c")
        assert survivors[name] == copies[name][winner], f"{name}: the copy on the owner {owner} should survive"
        state = 10 if winner == "c" else 20
        # The survivor kept its own state and received the other copy's, once.
        assert await a.call(name, "get") == (30 - state, owner)
        assert await a.call(name, "conflicts") == [state]
        lost = copies[name][loser]
        assert cluster.node(lost.node).runtime.local(lost) is None, f"{name}: the losing copy was not stopped"
    resolved = [e for n in cluster.nodes for e in cluster.events(n) if isinstance(e, ConflictResolved)]
    assert sorted((e.name, e.winner) for e in resolved) == sorted((n, survivors[n]) for n in names)
    # No node handed a copy to a healed peer that already ran its own: a peer is placed
    # only once its claims are known, so the duplicates meet as a conflict, not a handoff.
    aborted = [e for n in cluster.nodes for e in cluster.events(n) if isinstance(e, HandoffAborted)]
    assert aborted == []


async def test_quorum_split_stops_the_minority_keeps_the_majority_serving_and_heals_to_one_copy_each(
    cluster: Cluster,
) -> None:
    a, b, c = await cluster.start(3, strategy=StaticQuorumRing(quorum=2))
    everyone = [a.name, b.name, c.name]
    on_c = [first_owned(c.name, everyone, f"minor{i}") for i in range(3)]
    on_ab = [first_owned(a.name, everyone, "major-a"), first_owned(b.name, everyone, "major-b")]
    names = on_c + on_ab
    before = {name: await a.register(name, apps.Counter, key=name, restart="permanent") for name in names}
    assert all(before[name].node == c.name for name in on_c)
    await eventually(lambda: cluster.agreed() == before)

    cut = await split(cluster, [a, b], [c])
    # The minority owns nothing: its processes stop and it refuses registrations.
    await eventually(
        lambda: [p for p in c.runtime.processes() if isinstance(p, apps.Counter)] == [], message=cluster.describe
    )
    with pytest.raises(NoNodeAvailable):
        await c.register("refused", apps.Counter, key="refused")
    with pytest.raises(NoNodeAvailable):
        await c.whereis_or_register(on_c[0], apps.Counter, key=on_c[0])
    # The majority restarted what the minority hosted and serves everything.
    await eventually(
        lambda: (t := cluster.agreed([a, b])) is not None and sorted(t) == sorted(names), message=cluster.describe
    )
    for name in names:
        pid = a.whereis(name)
        assert pid is not None
        assert pid.node in (a.name, b.name)
        assert await b.call(name, "incr") == 1
    registered_in_split = await a.register("during-split", apps.Counter, key="during-split")
    assert registered_in_split.node in (a.name, b.name)

    await cut.heal()
    await cluster.wait_joined()
    final = [*names, "during-split"]
    await eventually(lambda: single_copies(cluster, final), timeout=20, message=lambda: describe_copies(cluster, final))
    assert all(host_of(a, name) == c.name for name in on_c)
    assert "refused" not in dict(a.registered())
    assert apps.INITS["refused"] == 0


async def test_the_losers_state_reaches_a_winner_that_was_handed_off_meanwhile(cluster: Cluster) -> None:
    # The resolution decided on the winner's pid, but the winner moved before the state
    # arrived: the state follows it to its successor instead of being dropped.
    a, b = await cluster.start(2)
    newcomer = await cluster.add("late", join=False)
    name = first_owned(newcomer.name, [a.name, b.name, newcomer.name], "moves-then-wins")
    old = await a.register(name, apps.Counter, key=name)
    await cluster.join(newcomer)
    await cluster.wait_joined()
    new = await eventually(lambda: (p := a.whereis(name)) is not None and p.node == newcomer.name and p)
    assert new != old
    for sender in (cluster.node(old.node), a if old.node != a.name else b):
        sender.registry._deliver_conflict_state(name, old, True, ("state from", sender.name), 0)
    expected = [("state from", old.node), ("state from", (a if old.node != a.name else b).name)]
    await eventually(lambda: _conflicts_of(newcomer, name, expected))


async def _conflicts_of(node: Node, name: str, expected: list[Any]) -> bool:
    return sorted(await node.call(name, "conflicts")) == sorted(expected)
