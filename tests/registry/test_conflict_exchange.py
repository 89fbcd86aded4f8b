"""The conflict exchange at scale, in one process: two nodes, each running its own copy of
the same thousands of names during a netsplit, heal; every name must end with one copy,
on its owner, and the winner's ``resolve_conflict`` must get the losing copy's state
exactly once (docs/internals.md, "Resolution" and "Conflicts at scale").

The copies on ``a``'s side count 1, those on ``b``'s side 2, so each winner's
``conflicts`` says which copy's state it got, and how often.

The first test is the issue's livelock, made certain instead of lucky: the winner's node
takes every state later than the loser's old fixed wait (5 s). A loser that resumed and
started the exchange over at each time-out made the winner take every state again and
again. The sizes of the last test are parameters (``DISTABLE_CONFLICTS``, default 2000
names per side): at tens of thousands it is a slow run, not for CI.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from typing import Any

import pytest

from distable import MembershipConfig, Node, Pid
from distable.testing import eventually, handoffs_in_flight, intercept
from distable.wire._messages import ConflictState

from . import apps
from .conftest import Cluster
from .test_netsplit import split

SIZE = int(os.environ.get("DISTABLE_CONFLICTS", "2000"))


async def two_sides(
    cluster: Cluster, n: int, *, checkpoints: bool = False, membership: MembershipConfig | None = None
) -> tuple[Node, Node, Any, list[str], dict[str, dict[str, Pid]]]:
    """Nodes a and b cut apart, each running its own copy of ``n`` names (a ``Counter`` at
    1 on a, at 2 on b, checkpointed if ``checkpoints``). Returns a, b, the cut, the names and
    name -> node -> the copy's pid."""
    a, b = await cluster.start(2, membership=membership)
    cut = await split(cluster, [a], [b])
    names = [f"c{i}" for i in range(n)]
    copies: dict[str, dict[str, Pid]] = {name: {} for name in names}
    gate = asyncio.Semaphore(200)

    async def one(node: Node, name: str, count: int) -> None:
        async with gate:
            pid = await node.register(name, apps.Counter, key=name)
            copies[name][node.name] = pid
            for _ in range(count):
                await node.call(pid, "incr")
            if checkpoints:
                await node.call(pid, ("checkpoint", True))

    await asyncio.gather(*(one(node, name, count) for node, count in ((a, 1), (b, 2)) for name in names))
    return a, b, cut, names, copies


def survivors(cluster: Cluster, names: list[str]) -> dict[str, Pid] | None:
    """name -> its one live copy, once every name has exactly one, every replica maps it
    there and no handoff is in flight; else None. One pass over the processes."""
    if not all(handoffs_in_flight(n).idle for n in cluster.nodes):
        return None
    live: dict[Any, list[Pid]] = {}
    for node in cluster.nodes:
        for proc in node.runtime.processes():
            if isinstance(proc, apps.Counter) and proc.alive:
                live.setdefault(getattr(proc, "key", None), []).append(proc.pid)
    tables = [dict(node.registered()) for node in cluster.nodes]
    one: dict[str, Pid] = {}
    for name in names:
        pids = live.get(name, [])
        if len(pids) != 1 or any(table.get(name) != pids[0] for table in tables):
            return None
        one[name] = pids[0]
    return one if len(live) == len(names) else None


def describe(cluster: Cluster, names: list[str]) -> Callable[[], str]:
    def text() -> str:
        live: dict[Any, int] = {}
        for node in cluster.nodes:
            for proc in node.runtime.processes():
                if isinstance(proc, apps.Counter) and proc.alive:
                    key = getattr(proc, "key", None)
                    live[key] = live.get(key, 0) + 1
        several = sum(1 for name in names if live.get(name, 0) > 1)
        missing = sum(1 for name in names if not live.get(name))
        waiting = {n.name: len(n.registry.conflict_outbox) for n in cluster.nodes}
        return f"{cluster.describe()}; {several} names with several copies, {missing} with none; waiting {waiting}"

    return text


async def check_states(
    cluster: Cluster, names: list[str], copies: dict[str, dict[str, Pid]], won: dict[str, Pid]
) -> None:
    """Each survivor is one of the two copies and got the other's state exactly once."""
    await eventually(lambda: all(cluster.process(pid).conflicts for pid in won.values()), timeout=10)
    bad = []
    for name in names:
        winner = won[name]
        (loser,) = [pid for pid in copies[name].values() if pid != winner]
        assert winner in copies[name].values(), f"{name}: survivor {winner} is neither copy {copies[name]}"
        expected = [1 if loser.node == cluster.nodes[0].name else 2]
        got = cluster.process(winner).conflicts
        if got != expected:
            bad.append((name, got, expected))
    assert bad == [], f"{len(bad)} winners did not get the loser's state exactly once: {bad[:5]}"


async def test_a_winner_node_slower_than_the_losers_wait_takes_each_state_once_and_the_heal_settles(
    cluster: Cluster,
) -> None:
    a, b, cut, names, copies = await two_sides(cluster, 300)
    loop = asyncio.get_running_loop()
    held = 0

    def late(sender: str, msg: Any, deliver: Callable[[str, Any], None]) -> None:
        nonlocal held
        held += 1
        loop.call_later(6.0, deliver, sender, msg)  # in order: the same delay for each

    with intercept(a, ConflictState, late), intercept(b, ConflictState, late):
        await cut.heal()
        won = await eventually(lambda: survivors(cluster, names), timeout=40, message=describe(cluster, names))
    await check_states(cluster, names, copies, won)
    assert held >= len(names)


async def test_a_losers_exchange_outlives_a_one_sided_verdict_on_the_winners_node(cluster: Cluster) -> None:
    a, b, cut, names, copies = await two_sides(cluster, 200)
    parked: list[tuple[str, Any, Callable[[str, Any], None]]] = []

    def park(sender: str, msg: Any, deliver: Callable[[str, Any], None]) -> None:
        parked.append((sender, msg, deliver))

    with intercept(a, ConflictState, park), intercept(b, ConflictState, park):
        await cut.heal()
        await eventually(lambda: len(a.registry.conflict_outbox) > 0 and len(b.registry.conflict_outbox) > 0)
        # b thinks a failed for a moment (a stalled loop), and sees it back: a verdict is an opinion.
        incarnation = a.incarnation
        b.registry.peer_down(a.name)
        b.registry.peer_up(a.name, incarnation)
        await asyncio.sleep(0)
        for sender, msg, deliver in parked:
            deliver(sender, msg)
        parked.clear()
    won = await eventually(lambda: survivors(cluster, names), timeout=40, message=describe(cluster, names))
    await check_states(cluster, names, copies, won)


@pytest.mark.parametrize("checkpoints", [False, True], ids=["plain", "checkpointed"])
async def test_thousands_of_conflicts_after_a_heal_settle_to_one_copy_each_with_each_state_taken_once(
    cluster: Cluster, checkpoints: bool
) -> None:
    # A failure detector that a loop busy with the heal does not fool: this test is about
    # the exchange; a verdict during it (which restarts the names it drops) has its own test.
    _, _, cut, names, copies = await two_sides(
        cluster, SIZE, checkpoints=checkpoints, membership=MembershipConfig.lan()
    )
    await cut.heal(timeout=30)
    won = await eventually(lambda: survivors(cluster, names), timeout=120, message=describe(cluster, names))
    await check_states(cluster, names, copies, won)
    for node in cluster.nodes:
        assert len(node.registry.conflict_outbox) == 0
        if checkpoints:
            # The winners took the names' checkpoints over: one lineage each, held here.
            assert node.statistics().registry.checkpoint_hosted == sum(1 for p in won.values() if p.node == node.name)


async def _winner_gone_before_the_state(
    cluster: Cluster, restart: str, remove: Callable[[Node, Pid], Any]
) -> tuple[Node, Node, Pid, Pid]:
    """One name with a copy on each side of a healed cut (1 on a, 2 on b); the loser's state
    is held back at the winner's node until ``remove(node, winner)`` made the winner go.
    Returns the winner's node, the loser's node, the winner and the loser."""
    a, b = await cluster.start(2)
    cut = await split(cluster, [a], [b])
    copies: dict[str, Pid] = {}
    for node, count in ((a, 1), (b, 2)):
        pid = copies[node.name] = await node.register("n", apps.Counter, key="n", restart=restart)
        for _ in range(count):
            await node.call(pid, "incr")
    parked: list[tuple[str, Any, Callable[[str, Any], None]]] = []

    def park(sender: str, msg: Any, deliver: Callable[[str, Any], None]) -> None:
        parked.append((sender, msg, deliver))

    with intercept(a, ConflictState, park), intercept(b, ConflictState, park):
        await cut.heal()
        await eventually(lambda: parked)
        ((_, msg, _),) = parked
        winner: Pid = msg.winner
        there = a if winner.node == a.name else b
        loser = copies[(b if there is a else a).name]
        await remove(there, winner)
        await eventually(lambda: there.runtime.local(winner) is None)
        for sender, message, deliver in parked:
            deliver(sender, message)
    return there, (b if there is a else a), winner, loser


async def _stop(node: Node, pid: Pid) -> None:
    await node.call(pid, ("stop", "normal"))


async def test_a_loser_whose_winner_is_gone_when_its_state_arrives_keeps_the_name(cluster: Cluster) -> None:
    # The winner exits (temporary: nothing restarts it) while the loser's state is on its
    # way: the winner's node cannot deliver it. The loser, a live copy that was frozen
    # and acknowledged nothing since, must not retire: the name would have no copy at all.
    _, here, _, loser = await _winner_gone_before_the_state(cluster, "temporary", _stop)
    won = await eventually(lambda: survivors(cluster, ["n"]), timeout=15, message=describe(cluster, ["n"]))
    # The loser itself, or, handed off to the name's owner (the winner's node), its successor.
    count, _ = await here.call(won["n"], "get")
    assert count == (1 if loser.node == cluster.nodes[0].name else 2)  # the loser's own state
    assert len(here.registry.conflict_outbox) == 0


async def test_a_crashed_winner_restarted_by_its_node_and_the_loser_settle_to_one_copy(cluster: Cluster) -> None:
    # Permanent: the winner's node restarts it while the loser resumes; the two copies
    # meet as a conflict again, and exactly one stays.
    async def crash(node: Node, pid: Pid) -> None:
        with pytest.raises(Exception, match="crash"):
            await node.call(pid, "crash")

    await _winner_gone_before_the_state(cluster, "permanent", crash)
    await eventually(lambda: survivors(cluster, ["n"]), timeout=20, message=describe(cluster, ["n"]))


async def test_a_loser_whose_winner_was_unregistered_does_not_bring_the_name_back(cluster: Cluster) -> None:
    # The user removed the name (and stopped its process): the loser's state is dropped and
    # the loser retires, as before; it does not register the name again.
    async def unregister(node: Node, pid: Pid) -> None:
        await node.unregister("n")
        await node.call(pid, ("stop", "normal"))

    _, here, _, loser = await _winner_gone_before_the_state(cluster, "permanent", unregister)
    await eventually(lambda: here.runtime.local(loser) is None, timeout=15)
    await eventually(lambda: all(dict(n.registered()).get("n") is None for n in cluster.nodes))
    assert len(here.registry.conflict_outbox) == 0
