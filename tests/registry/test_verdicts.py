"""A failure verdict is an opinion (issue 9): a node declared failed that was only paused
wakes up and carries on from its old view. Each test here replays, in-process, one of the
schedules the fault-injection campaign found, at the registry's own inputs (a one-sided
``peer_down``/``peer_up``, a dropped handoff answer, a suspicion), and checks that no
registered name, acknowledged write or copy count goes wrong.

``RegistryConfig(sync_interval=3600)`` where the periodic anti-entropy round would
otherwise repair the damage before the test could see it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from distable import (
    Caller,
    ConflictResolved,
    DistableError,
    HandoffAborted,
    HandoffCompleted,
    Node,
    Pid,
    Process,
    ProcessExited,
    RegistryConfig,
    Resume,
)
from distable.membership._core import ALIVE, SUSPECT
from distable.registry._core import ResolveConflict
from distable.ring import Ring
from distable.runtime._process import Gate
from distable.testing import eventually, gate_of, handoffs_in_flight, intercept, is_frozen, queued, restarts_due
from distable.wire._messages import ConflictState, ConflictStateTaken, HandoffRequest, RouteClosed

from . import apps
from .conftest import Cluster, Partition, first_owned
from .test_netsplit import describe_copies, single_copies, split

NO_SYNC = RegistryConfig(sync_interval=3600)


def owned_by(owner: str, nodes: list[str], then: str, later_nodes: list[str], prefix: str) -> str:
    """The first name ``prefix-<i>`` that ``owner`` owns among ``nodes`` and ``then`` owns
    among ``later_nodes``."""
    ring, later = Ring().place(nodes), Ring().place(later_nodes)
    for i in range(10_000):
        name = f"{prefix}-{i}"
        if ring.owner(name) == owner and later.owner(name) == then:
            return name
    raise AssertionError(f"no name owned by {owner} in {nodes} and by {then} in {later_nodes}")


@contextlib.contextmanager
def dropping(node: Node, *kinds: str) -> Iterator[list[Any]]:
    """Lose every registry message of a type named in ``kinds`` that ``node`` posts (as the
    cut in conftest's ``Partition`` does, for these messages only); yields what was lost.
    By name, so that a type the code under test does not know yet needs no import."""
    transport = node.transport
    post = transport.post
    lost: list[Any] = []

    def post_but(dest: str, message: Any) -> asyncio.Future[None] | None:
        if type(message).__name__ in kinds:
            lost.append(message)
            return None
        return post(dest, message)

    transport.post = post_but  # type: ignore[method-assign,assignment]
    try:
        yield lost
    finally:
        with contextlib.suppress(AttributeError):
            del transport.post  # back to the class's method


def one_copy(cluster: Cluster, name: Any) -> Pid | None:
    """The only live copy of ``name``, if there is one, no handoff is in flight and every
    replica maps ``name`` to it."""
    copies = cluster.live_copies(name)
    if len(copies) != 1 or not cluster.idle():
        return None
    agreed = cluster.agreed()
    if agreed is None or agreed.get(name) != copies[0]:
        return None
    return copies[0]


def copies_of(cluster: Cluster, name: Any) -> str:
    return f"{cluster.describe()}\ncopies of {name!r}: {cluster.live_copies(name)}"


# --- 1. a one-sided failure verdict ------------------------------------------------------------


async def test_a_peer_that_heard_from_a_node_it_had_declared_failed_gets_its_claims_back_at_once(
    cluster: Cluster,
) -> None:
    # n1 alone declared n0 failed (n0 was paused, say) and took it back: n0 never saw
    # anything, so only a digest n1 asks for brings n0's claims back before the next sync.
    n0, n1, n2 = await cluster.start(3, registry=NO_SYNC)
    name = owned_by(n0.name, [n0.name, n1.name, n2.name], n1.name, [n1.name, n2.name], "verdict")
    original = await n2.register(name, apps.Counter, key=name)
    assert original.node == n0.name
    for _ in range(3):
        await n2.call(name, "incr")
    await eventually(lambda: cluster.agreed() == {name: original}, message=cluster.describe)

    n1.registry.peer_down(n0.name)
    # n1 dropped n0's claims and, owning the name without n0, restarted it.
    restarted = await eventually(
        lambda: (p := n1.whereis(name)) is not None and p.node == n1.name and p,
        message=lambda: copies_of(cluster, name),
    )
    n1.registry.peer_up(n0.name)

    await eventually(lambda: n1.whereis(name) == original, message=lambda: copies_of(cluster, name))
    assert await eventually(lambda: one_copy(cluster, name), message=lambda: copies_of(cluster, name)) == original
    await cluster.wait_joined()
    assert await n1.call(name, "get") == (3, n0.name)  # the original state, kept
    # The copy n1 restarted lost to the original and gave it its (fresh) state.
    assert await n0.call(name, "conflicts") == [0]
    assert n1.runtime.local(restarted) is None


# --- 2. a leaving node passes its owed restarts on -------------------------------------------------


async def test_a_leaving_node_passes_a_crash_restart_waiting_out_its_backoff_to_the_new_owner(
    cluster: Cluster,
) -> None:
    config = RegistryConfig(restart_backoff=30, restart_backoff_max=30)
    n0, n1, n2 = await cluster.start(3, registry=config)
    name = first_owned(n1.name, [n0.name, n1.name, n2.name], "owed")
    pid = await n0.register(name, apps.Counter, key=name, restart="transient")
    assert pid.node == n1.name
    with pytest.raises(ProcessExited):
        await n0.call(name, "crash")
    # The restart waits out its 30 s backoff on n1; nobody else will make it.
    await eventually(lambda: all(n.whereis(name) is None for n in cluster.nodes) and name in restarts_due(n1))

    await cluster.stop(n1)

    def restarted() -> Pid | None:
        pid = one_copy(cluster, name)
        return pid if pid is not None and pid.node in (n0.name, n2.name) else None

    new = await eventually(restarted, message=lambda: copies_of(cluster, name))
    assert await n0.call(name, "get") == (0, new.node)
    assert apps.INITS[name] == 2


# --- 3. a conflict's loser handles nothing once its state is taken ------------------------------

#: pid -> an Event that ``Ledger.begin_handoff`` waits for (see the test).
HOLD: dict[Pid, asyncio.Event] = {}
#: pids whose ``begin_handoff`` is waiting on their HOLD event.
ENTERED: set[Pid] = set()


class Ledger(Process):
    """A set of operation ids. Calls: ("op", id) adds it and acknowledges it; "ops" -> the
    sorted ids. Its handoff state is the set; ``resolve_conflict`` unions the loser's in."""

    async def init(self, key: Any = None) -> None:
        self.key = key
        self.ops: set[str] = set()
        self.merged: list[list[str]] = []

    async def handle_call(self, message: Any, caller: Caller) -> Any:
        match message:
            case ("op", str(op)):
                self.ops.add(op)
                return op
            case "ops":
                return sorted(self.ops)
            case "merged":
                return list(self.merged)
        raise ValueError(f"unexpected call {message!r}")

    async def begin_handoff(self) -> Resume:
        hold = HOLD.get(self.pid)
        if hold is not None:
            ENTERED.add(self.pid)
            await hold.wait()
        return Resume(sorted(self.ops))

    async def end_handoff(self, state: Any) -> None:
        self.ops = set(state)

    async def resolve_conflict(self, state: Any) -> None:
        self.merged.append(list(state))
        self.ops |= set(state)


async def test_calls_queued_at_a_conflict_loser_when_its_state_is_taken_reach_the_winner(cluster: Cluster) -> None:
    a, b, c = await cluster.start(3)
    name = first_owned(c.name, [a.name, b.name, c.name], "ledger")  # the lone side's copy wins
    cut = await split(cluster, [a, b], [c])
    loser = await a.register(name, Ledger, key=name)
    winner = await c.register(name, Ledger, key=name)
    assert loser.node in (a.name, b.name)
    assert winner.node == c.name
    before = {f"L{i}" for i in range(3)} | {f"W{i}" for i in range(3)}
    for i in range(3):
        await a.call(name, ("op", f"L{i}"))
        await c.call(name, ("op", f"W{i}"))
    hold = HOLD[loser] = asyncio.Event()

    acked: list[str] = []
    callers, rounds = 8, 5
    nodes = [a, b, c]

    async def caller(i: int) -> None:
        node = nodes[i % len(nodes)]
        for j in range(rounds):
            op = f"c{i}-{j}"
            with contextlib.suppress(DistableError):  # not acknowledged: nothing promised
                assert await node.call(loser, ("op", op), timeout=10.0) == op
                acked.append(op)

    try:
        await cut.heal()
        # The loser's node asks it for its state; it waits in begin_handoff...
        await eventually(lambda: loser in ENTERED, timeout=15, message=lambda: describe_copies(cluster, [name]))
        proc = cluster.process(loser)
        tasks = [asyncio.create_task(caller(i)) for i in range(callers)]
        # ...while every caller's next call queues up behind it.
        await eventually(lambda: queued(proc) >= callers, message=lambda: f"{queued(proc)} messages queued")
        hold.set()
        await asyncio.gather(*tasks)
    finally:
        hold.set()
        HOLD.clear()
        ENTERED.clear()

    await cluster.wait_joined()
    await eventually(
        lambda: single_copies(cluster, [name]), timeout=20, message=lambda: describe_copies(cluster, [name])
    )
    assert cluster.live_copies(name) == [winner]
    ops = set(await c.call(name, "ops"))
    assert ops >= before
    missing = sorted(set(acked) - ops)
    assert missing == [], f"acknowledged by the loser, then lost: {missing} (acknowledged: {len(acked)})"


async def _ledger_on_both_sides(cluster: Cluster, prefix: str) -> tuple[Node, Node, Any, Any, Pid, Pid]:
    """Three nodes cut into [a, b] and [c], a Ledger registered on each side under one name
    whose copy on c's side will win: (a, c, the cut, the name, the loser, the winner)."""
    a, b, c = await cluster.start(3)
    name = first_owned(c.name, [a.name, b.name, c.name], prefix)  # the lone side's copy wins
    cut = await split(cluster, [a, b], [c])
    loser = await a.register(name, Ledger, key=name)
    winner = await c.register(name, Ledger, key=name)
    assert (loser.node != c.name, winner.node) == (True, c.name)
    return a, c, cut, name, loser, winner


def _dropping_first() -> tuple[list[Any], list[Any], Callable[[str, Any, Callable[[str, Any], None]], None]]:
    """An ``intercept`` handler that drops the first message and delivers the others, with
    the lists it keeps them in: (dropped, delivered, handler)."""
    lost: list[Any] = []
    taken: list[Any] = []

    def drop_first(node: str, msg: Any, deliver: Callable[[str, Any], None]) -> None:
        if not lost:
            lost.append(msg)
            return
        taken.append(msg)
        deliver(node, msg)

    return lost, taken, drop_first


async def test_a_conflict_loser_whose_state_is_not_confirmed_stays_frozen_and_gives_it_again(cluster: Cluster) -> None:
    """The winner's node loses the first ConflictState (as when it closed the link, thinking
    the loser's node dead): the loser is not stopped with what it acknowledged; it stays
    frozen, its node sends the same state again under the same ref once the winner's node
    has been silent for 5 s, and the winner gets every acknowledged op, once. A call made
    to the loser meanwhile waits in its mailbox and is answered by the winner."""
    a, c, cut, name, loser, winner = await _ledger_on_both_sides(cluster, "unconfirmed")
    for i in range(3):
        await a.call(name, ("op", f"L{i}"))
        await c.call(name, ("op", f"W{i}"))
    host = cluster.node(loser.node)
    # The winner's node drops the first state it is sent (the heal lifts the cut's own
    # wrappers of the transport, so this one sits on the receiving node's handler).
    lost, taken, drop_first = _dropping_first()
    with intercept(c, ConflictState, drop_first):
        await cut.heal()
        await eventually(lambda: lost, timeout=15, message=lambda: describe_copies(cluster, [name]))
        assert is_frozen(cluster.process(loser))  # unconfirmed: it stays frozen
        late = asyncio.ensure_future(host.call(loser, ("op", "L-after"), timeout=20.0))
        await eventually(
            lambda: single_copies(cluster, [name]), timeout=20, message=lambda: describe_copies(cluster, [name])
        )
        assert await late == "L-after"  # answered by the winner, to which the loser's mailbox went
    assert {m.ref for m in taken} == {lost[0].ref}  # the same state again, not a new exchange
    assert cluster.live_copies(name) == [winner]
    assert await c.call(name, "ops") == sorted({"L0", "L1", "L2", "L-after", "W0", "W1", "W2"})
    assert await c.call(name, "merged") == [["L0", "L1", "L2"]]  # once: the lost one never came


async def test_a_conflict_state_lost_with_a_link_goes_again_once_a_new_link_comes_up(cluster: Cluster) -> None:
    """The loser's node sent its state into a link that was dead (the fault campaign: it was
    paused while the winner's node, cut off, closed it), and saw no verdict. When a new link
    comes up, the state goes again at once, under the same ref, not at the end of a silence
    (made longer than this test here; in the campaign it had doubled to 10 s)."""
    a, c, cut, name, loser, winner = await _ledger_on_both_sides(cluster, "renewed")
    await a.call(name, ("op", "L0"))
    host = cluster.node(loser.node)
    host.registry.conflict_outbox.timeout = 600.0  # its silence cannot be what sends it again
    lost, taken, drop_first = _dropping_first()
    with intercept(c, ConflictState, drop_first):
        await cut.heal()
        await eventually(lambda: lost, timeout=15, message=lambda: describe_copies(cluster, [name]))
        host.transport.disconnect(c.name)  # the link is replaced; no verdict on either side
        await host.connect(c.name, timeout=10.0)
        await eventually(
            lambda: single_copies(cluster, [name]), timeout=20, message=lambda: describe_copies(cluster, [name])
        )
    assert {m.ref for m in taken} == {lost[0].ref}  # the same state again
    assert cluster.live_copies(name) == [winner]
    assert await c.call(name, "merged") == [["L0"]]


# --- 4. an old host that timed out waiting for HandoffAccepted asks before resuming --------------


async def _to_be_moved(
    cluster: Cluster, prefix: str, factory: type[Process], **options: Any
) -> tuple[Node, Node, Node, Any, Pid]:
    """Nodes X and Z running a ``factory`` process (registered with ``options``) on X, and Y
    started but not joined yet: once it joins, the name is Y's and X hands it over.
    Returns (X, Y, Z, name, X's pid)."""
    x, z = await cluster.start(2, registry=NO_SYNC)
    y = await cluster.add("late", registry=NO_SYNC, join=False)
    name = owned_by(y.name, [x.name, y.name, z.name], x.name, [x.name, z.name], prefix)
    old = await z.register(name, factory, key=name, **options)
    assert old.node == x.name
    return x, y, z, name, old


async def _counter_to_be_moved(
    cluster: Cluster, prefix: str, handoff_timeout: float
) -> tuple[Node, Node, Node, Any, Pid]:
    """``_to_be_moved`` with a Counter, count 3."""
    x, y, z, name, old = await _to_be_moved(cluster, prefix, apps.Counter, handoff_timeout=handoff_timeout)
    for _ in range(3):
        await z.call(name, "incr")
    return x, y, z, name, old


async def _handoff_committed_one_sidedly(cluster: Cluster, *dropped: str) -> tuple[Node, Node, Any, Pid, Pid]:
    """X hands a Counter (count 3) to a joining Y whose HandoffAccepted (and whatever else
    ``dropped`` names) never reaches X; Y, having started the process, declares X failed,
    keeps it (a commit X does not know of), and takes X back. Returns (X, Y, name, X's pid,
    Y's pid), once a single copy is left."""
    x, y, _, name, old = await _counter_to_be_moved(cluster, "moved", handoff_timeout=1.0)
    with dropping(y, "HandoffAccepted", *dropped):
        await cluster.join(y)
        new = await eventually(
            lambda: next((pid for n, pid in handoffs_in_flight(y).incoming if n == name and pid is not None), None),
            message=lambda: copies_of(cluster, name),
        )
        y.registry.peer_down(x.name)  # the one-sided verdict: y keeps what it was handed
        assert y.whereis(name) == new
        y.registry.peer_up(x.name)
        await eventually(
            lambda: one_copy(cluster, name) is not None, timeout=20, message=lambda: copies_of(cluster, name)
        )
    assert one_copy(cluster, name) == new  # the copy y kept
    assert x.runtime.local(old) is None
    await cluster.wait_joined()
    assert await x.call(name, "get") == (3, y.name)  # its state kept
    return x, y, name, old, new


async def test_an_old_host_that_missed_the_acceptance_asks_and_commits_the_move_the_new_owner_kept(
    cluster: Cluster,
) -> None:
    x, y, name, old, new = await _handoff_committed_one_sidedly(cluster)
    # x learned that the move was committed and committed it too: no copy resumed.
    assert [(e.old_pid, e.new_pid) for e in cluster.events(x) if isinstance(e, HandoffCompleted)] == [(old, new)]
    assert [e for e in cluster.events(x) if isinstance(e, HandoffAborted | ConflictResolved)] == []
    assert await y.call(name, "conflicts") == []


async def test_an_old_host_that_resumed_a_copy_the_new_owner_kept_retires_it_into_the_winner(cluster: Cluster) -> None:
    # Its HandoffCancel goes unanswered too: it resumes its copy, which the new owner's
    # claim (moved from it) superseded. That copy must retire, its state reaching the winner.
    x, y, name, old, new = await _handoff_committed_one_sidedly(cluster, "HandoffCancelled")
    assert any(isinstance(e, HandoffAborted) and e.pid == old for e in cluster.events(x))
    retired = [(e.winner, e.loser) for e in cluster.events(x) if isinstance(e, ConflictResolved)]
    assert retired == [(new, old)]
    await eventually(lambda: _conflicts_are(y, name, [3]), message=lambda: copies_of(cluster, name))


async def test_a_new_owner_whose_acceptance_was_lost_after_the_old_host_gave_up_stops_its_copy(
    cluster: Cluster,
) -> None:
    # The campaign's seed 1170233669: Y was paused when X handed it a name; X declared Y
    # failed and gave up (its copy resumed), and the HandoffAccepted Y sent when it woke was
    # lost with the link. Y, which never saw X fail, kept its copy gated in ACCEPTED for
    # ever, beside the copy it took when X handed the name over again: two copies. Y now
    # says it accepted again until X answers; X, which gave that handoff up, withdraws it.
    x, y, z, name, old = await _counter_to_be_moved(cluster, "gave-up", handoff_timeout=5.0)
    with dropping(y, "HandoffAccepted") as lost:
        await cluster.join(y)
        stuck = await eventually(
            lambda: next((pid for n, pid in handoffs_in_flight(y).incoming if n == name and pid is not None), None),
            message=lambda: copies_of(cluster, name),
        )
        await eventually(lambda: lost)
        x.registry.peer_down(y.name)  # x's one-sided verdict: the handoff fails, its copy resumes
        await eventually(lambda: any(isinstance(e, HandoffAborted) and e.pid == old for e in cluster.events(x)))
    x.registry.peer_up(y.name)  # and x hands the name to y again
    await eventually(lambda: one_copy(cluster, name) is not None, timeout=20, message=lambda: copies_of(cluster, name))
    assert y.runtime.local(stuck) is None  # withdrawn
    assert await z.call(name, "get") == (3, y.name)  # on its owner, its state kept


async def _conflicts_are(node: Node, name: Any, expected: list[Any]) -> bool:
    return bool(await node.call(name, "conflicts") == expected)


# --- 5. a gate does not wait for a suspected peer ---------------------------------------------------


async def _joined_and_gated(cluster: Cluster, y: Node, z: Node, name: Any) -> tuple[Pid, Gate]:
    """Join ``y``, which takes ``name``; its new pid (as ``z`` sees it) and the gate it holds."""
    await cluster.join(y)
    await cluster.wait_joined()
    new = await eventually(
        lambda: (p := z.whereis(name)) is not None and p.node == y.name and p,
        message=lambda: copies_of(cluster, name),
    )
    gate = gate_of(cluster.process(new))
    assert gate is not None
    return new, gate


async def test_a_handed_in_process_does_not_hold_a_suspected_peers_messages_until_the_handoff_timeout(
    cluster: Cluster,
) -> None:
    _, y, z, name, _ = await _counter_to_be_moved(cluster, "gated", handoff_timeout=60.0)

    # z's flush marker for the move never comes (z paused, as far as y can tell).
    with dropping(z, "FlushMarker") as lost:
        _, gate = await _joined_and_gated(cluster, y, z, name)
        assert z.name in gate.waiting, f"gate waits for {gate.waiting}"
        assert any(type(m).__name__ == "FlushMarker" for m in lost)
        z.cast(name, ("add", 10))  # straight to the new pid: held for z's marker
        await eventually(lambda: gate.held.get(z.name), message=lambda: f"held: {gate.held}")

        # y's membership suspects z (no verdict yet: it would only come after a timeout).
        with suspecting(y, z):
            count = await eventually(
                lambda: _count_is(y, name, 13), timeout=10, message=lambda: f"held: {gate.held}, {gate.waiting}"
            )
    assert count
    stats = y.registry.statistics()
    assert stats.gate_releases >= 1, stats
    assert stats.gate_held_messages >= 1, stats


async def test_a_handed_in_copy_that_loses_a_conflict_sends_what_its_gate_held_to_the_winner_at_once(
    cluster: Cluster,
) -> None:
    """A copy just handed in, its gate holding z's messages (z's marker is lost), loses a
    conflict: once its state is taken, what the gate held goes to the winner with its
    mailbox, not when the gate would have opened (the handoff timeout: 60 s here, 5 s by
    default; the campaign's partitions, where copies handed in at a heal lose their
    conflicts at once, and z, which never saw their claims, sends no marker). Meanwhile
    z's later messages to the retired pid went straight to the winner, ahead of them."""
    _, y, z, name, _ = await _counter_to_be_moved(cluster, "lost-gated", handoff_timeout=60.0)
    with dropping(z, "FlushMarker"):
        new, gate = await _joined_and_gated(cluster, y, z, name)
        assert z.name in gate.waiting, f"gate waits for {gate.waiting}"
        z.cast(new, ("add", 10))  # straight to the new pid: held for z's marker
        await eventually(lambda: gate.held.get(z.name), message=lambda: f"held: {gate.held}")
        winner = await z.spawn(apps.Counter, key="winner", start=100)
        y.registry._command(ResolveConflict(name, new, winner))  # the copy loses to z's
        await eventually(lambda: cluster.live_copies(name) == [], message=lambda: copies_of(cluster, name))
        z.cast(new, ("add", 1))  # after: to the retired pid, which forwards to the winner
        assert await eventually(lambda: _count_is(z, winner, 111), timeout=10, message=lambda: f"held: {gate.held}")
    assert await z.call(winner, "conflicts") == [3]
    casts = [m for m in await z.call(winner, "handled") if m[0] == "cast"]
    assert casts == [("cast", ("add", 10)), ("cast", ("add", 1))]  # in the order z sent them


async def test_a_handed_in_process_opens_its_gate_when_the_old_host_that_relays_markers_is_suspected(
    cluster: Cluster,
) -> None:
    """The old host relays every node's marker, the new owner's own included: when it can
    relay nothing (paused, killed, restarted), waiting for the handoff timeout is for nothing."""
    x, y, z, name, _ = await _counter_to_be_moved(cluster, "relayed", handoff_timeout=60.0)
    with dropping(x, "Flushed") as lost:  # x relays nothing (paused, as far as y can tell)
        new, gate = await _joined_and_gated(cluster, y, z, name)
        await eventually(lambda: lost, message=lambda: f"gate waits for {gate.waiting}")
        z.cast(name, ("add", 10))  # straight to the new pid: held for z's marker, which x keeps
        await eventually(lambda: gate.held.get(z.name), message=lambda: f"held: {gate.held}")
        with suspecting(y, x):
            count = await eventually(
                lambda: _count_is(y, name, 13), timeout=10, message=lambda: f"held: {gate.held}, {gate.waiting}"
            )
    assert count
    assert gate_of(cluster.process(new)) is None


async def _counter_for_late_peer(cluster: Cluster, prefix: str, y_seeing_z: bool) -> tuple[Node, Node, Node, Any]:
    """X and Z running a Counter (count 3) on X, Y started but not joined: once it joins,
    the name is Y's, and X hands it over (also, unless ``y_seeing_z``, where Y places
    names seeing X only). Returns (X, Y, Z, name)."""
    x, z = await cluster.start(2, registry=NO_SYNC)
    y = await cluster.add("late", registry=NO_SYNC, join=False)
    views = [([x.name, y.name, z.name], y.name), ([x.name, z.name], x.name)]
    if not y_seeing_z:
        views.append(([x.name, y.name], y.name))
    placed = [(Ring().place(nodes), owner) for nodes, owner in views]
    name = next(f"{prefix}-{i}" for i in range(10_000) if all(r.owner(f"{prefix}-{i}") == o for r, o in placed))
    await z.register(name, apps.Counter, key=name, handoff_timeout=60.0)
    for _ in range(3):
        await z.call(name, "incr")
    return x, y, z, name


async def test_a_peer_that_comes_up_after_the_gate_was_made_is_held_until_its_marker(cluster: Cluster) -> None:
    """A joining node can read its handoff before its own NodeUp for some peer (here: a cut
    between the two). That peer may have sent to the old pid before it can reach the new
    one; once it can, its direct messages wait for its marker too (rule 4), or they could
    overtake its forwarded ones (the gate let them through at once)."""
    x, y, z, name = await _counter_for_late_peer(cluster, "late-peer", y_seeing_z=False)

    cut = cluster.partition([y], [z])  # y joins seeing x only: z comes up there later
    with dropping(x, "Flushed") as relayed:  # x's relays held back: the gate stays closed
        await cluster.join(y)
        new = await eventually(
            lambda: (p := x.whereis(name)) is not None and p.node == y.name and p,
            message=lambda: copies_of(cluster, name),
        )
        gate = gate_of(cluster.process(new))
        assert gate is not None
        assert z.name not in gate.waiting, f"gate waits for {gate.waiting}"

        await cut.heal()
        await eventually(lambda: z.whereis(name) == new, message=lambda: f"z sees {z.whereis(name)}")
        assert z.name in gate.waiting, f"gate waits for {gate.waiting}"
        z.cast(name, ("add", 10))  # straight to the new pid: held for z's marker
        await eventually(lambda: gate.held.get(z.name), message=lambda: f"held: {gate.held}, {gate.waiting}")
        await eventually(lambda: any(m.node == z.name for m in relayed), message=lambda: f"relayed: {relayed}")
    for flushed in relayed:  # x's relays go on their way: the gate opens
        x.transport.post(y.name, flushed)
    assert await eventually(lambda: _count_is(y, name, 13), timeout=10, message=lambda: f"held: {gate.held}")
    assert gate_of(cluster.process(new)) is None


async def test_a_peer_that_comes_up_after_the_gate_opened_is_held_until_its_marker(cluster: Cluster) -> None:
    """A peer cut off from the new host (not from the old one) through the whole move may
    have sent to the old pid; the gate opened without it. Once it comes up there (within
    forward_ttl, while the old pid forwards), the gate closes again for it (9L): what it
    sends to the new pid waits for its marker, behind what the old host forwards."""
    x, y, z, name = await _counter_for_late_peer(cluster, "after-open", y_seeing_z=False)

    cut = cluster.partition([y], [z])
    await cluster.join(y)
    new = await eventually(
        lambda: (p := x.whereis(name)) is not None and p.node == y.name and p,
        message=lambda: copies_of(cluster, name),
    )
    await eventually(lambda: gate_of(cluster.process(new)) is None, message=lambda: "the gate did not open")
    await _held_again_at_the_heal(cut, x, y, z, name, new)
    assert y.registry.handoff.gate_releases == 0  # z went through on its marker, not the gate check


async def _held_again_at_the_heal(cut: Partition, x: Node, y: Node, z: Node, name: Any, new: Pid) -> None:
    """Heal ``cut``: the gate of ``new`` (on ``y``, handed in from ``x``) closes again for
    ``z`` alone (9L) and holds what ``z`` sends it (a Counter at 3 gets 10 more) until
    ``x`` relays ``z``'s marker; then it opens."""
    proc = y.runtime.local(new)
    assert proc is not None
    with dropping(x, "Flushed") as relayed:  # x's relays held back: the gate stays closed
        await cut.heal()
        gate = await eventually(lambda: gate_of(proc), message=lambda: "the gate did not close again for z")
        assert gate.waiting == {z.name}, f"gate waits for {gate.waiting}"
        await eventually(lambda: z.whereis(name) == new, message=lambda: f"z sees {z.whereis(name)}")
        z.cast(name, ("add", 10))  # straight to the new pid: held for z's marker
        await eventually(lambda: gate.held.get(z.name), message=lambda: f"held: {gate.held}, {gate.waiting}")
        await eventually(lambda: any(m.node == z.name for m in relayed), message=lambda: f"relayed: {relayed}")
    assert await _count_is(y, name, 3)  # still held
    for flushed in relayed:  # x's relays go on their way: the gate opens
        x.transport.post(y.name, flushed)
    assert await eventually(lambda: _count_is(y, name, 13), timeout=10, message=lambda: f"held: {gate.held}")
    assert gate_of(proc) is None


async def test_a_peer_let_through_without_its_marker_is_held_again_and_asked_for_it_when_it_comes_back(
    cluster: Cluster,
) -> None:
    """A peer the gate waited for, cut off from the new host (not from the old one) while
    the move went on, is let through without its marker (suspected). What it sent to the
    old pid meanwhile is still on its way through the old host when it comes back: the
    gate closes again for it (9L) and asks it for its marker (``FlushAsk``), which it sends
    again, although it sent one before (lost here; it sends none twice unasked)."""
    x, y, z, name, _ = await _counter_to_be_moved(cluster, "asked", handoff_timeout=60.0)
    with dropping(z, "FlushMarker") as lost:  # z's marker is lost on its way to x
        new, gate = await _joined_and_gated(cluster, y, z, name)
        assert z.name in gate.waiting, f"gate waits for {gate.waiting}"
        await eventually(lambda: lost, message=lambda: "z sent no marker")
    cut = cluster.partition([y], [z])  # y suspects z, unlinked: the gate lets it through
    proc = cluster.process(new)
    await eventually(lambda: gate_of(proc) is None, message=lambda: f"gate waits for {gate.waiting}")
    assert y.registry.handoff.gate_releases >= 1
    await _held_again_at_the_heal(cut, x, y, z, name, new)


async def test_a_handoff_request_lost_with_its_link_is_sent_again_when_the_link_comes_back(cluster: Cluster) -> None:
    """X's request (2) is lost (posted while its link to Y was down, it went with the dial
    that failed): once a link to Y comes up again, X sends it again, and the move ends long
    before its handoff timeout, with the state; Y takes a repeated request once."""
    x, y, _, name, old = await _counter_to_be_moved(cluster, "resent", handoff_timeout=60.0)
    with dropping(x, "HandoffRequest") as lost:
        await cluster.join(y)
        await eventually(lambda: lost, message=lambda: "x sent no request")
    assert y.whereis(name) == old  # still on x, frozen, waiting for an answer
    x.transport.disconnect(y.name)  # a new link: membership redials at once
    new = await eventually(
        lambda: (p := x.whereis(name)) is not None and p.node == y.name and p,
        message=lambda: copies_of(cluster, name),
    )
    assert await _count_is(y, name, 3)
    coordinator = y.registry.handoff
    before = dict(coordinator.incoming)
    coordinator._on_handoff_request(x.name, lost[0])  # the first one, arriving late after all
    assert coordinator.incoming == before  # taken once: no second copy starts
    await eventually(lambda: cluster.live_copies(name) == [new], message=lambda: copies_of(cluster, name))


async def test_a_copy_that_is_being_handed_on_does_not_close_its_gate_again(cluster: Cluster) -> None:
    """A copy handed in moments ago, frozen now for its next move: a node that comes up
    here meanwhile does not get a new gate (9L) on it. The commit forwards the mailbox, not
    what a gate holds, which would follow later, behind what that node sent since."""
    x, y, z, name = await _counter_for_late_peer(cluster, "moving-on", y_seeing_z=True)
    await cluster.join(y)
    new = await eventually(lambda: (p := x.whereis(name)) is not None and p.node == y.name and p)
    proc = cluster.process(new)
    await eventually(lambda: gate_of(proc) is None, message=lambda: "the gate did not open")
    coordinator = y.registry.handoff
    coordinator.peer_up_incoming("ghost@127.0.0.1:9")  # a node never waited for: 9L
    gate = gate_of(proc)
    assert gate is not None, "premise: 9L closes an open gate"
    assert gate.waiting == {"ghost@127.0.0.1:9"}
    gate.release("ghost@127.0.0.1:9")

    y._drain_timeout = 1.0  # the node's --drain-timeout, short for the test
    asked = asyncio.Event()
    with (
        intercept(x, HandoffRequest, lambda node, msg, deliver: asked.set()),
        intercept(z, HandoffRequest, lambda node, msg, deliver: asked.set()),
    ):  # never answered: the copy stays frozen for its move
        stopping = asyncio.ensure_future(cluster.stop(y))
        await asyncio.wait_for(asked.wait(), 10)
        assert is_frozen(proc)
        coordinator.peer_up_incoming("phantom@127.0.0.1:9")
        assert gate_of(proc) is None
        await stopping


async def test_a_linked_peer_not_up_yet_is_held_until_its_marker(cluster: Cluster) -> None:
    """A peer linked to the new host but not up in its registry yet learns the new pid from
    the old host's removal, and sends to it directly: held until its marker too, which it
    sends once it is up there and sees the claim."""
    _, y, z, name = await _counter_for_late_peer(cluster, "linked", y_seeing_z=True)
    registry = y.registry
    deferred: list[tuple[str, int, bool]] = []

    def peer_up(node: str, incarnation: int = 0, client: bool = False) -> None:
        if node == z.name:
            deferred.append((node, incarnation, client))  # y's registry does not see z up yet
        else:
            type(registry).peer_up(registry, node, incarnation, client)

    registry.peer_up = peer_up  # type: ignore[method-assign]
    try:
        await cluster.join(y)
        await y.connect(z.name, timeout=10.0)
        new = await eventually(
            lambda: (p := z.whereis(name)) is not None and p.node == y.name and p,  # from x's removal
            message=lambda: copies_of(cluster, name),
        )
        assert z.name not in registry.core.peers
        gate = gate_of(cluster.process(new))
        assert gate is not None
        assert z.name in gate.waiting, f"gate waits for {gate.waiting}"
        z.cast(name, ("add", 10))  # straight to the new pid: held for z's marker
        await eventually(lambda: gate.held.get(z.name), message=lambda: f"held: {gate.held}, {gate.waiting}")
    finally:
        del registry.peer_up
    assert deferred
    registry.peer_up(*deferred[-1])  # z up at last: it gets the claim and sends its marker
    assert await eventually(lambda: _count_is(y, name, 13), timeout=10, message=lambda: f"held: {gate.held}")
    await eventually(lambda: gate_of(cluster.process(new)) is None, message=lambda: f"gate waits for {gate.waiting}")


async def test_a_peer_that_has_the_old_host_down_tells_the_new_host_and_is_not_held(cluster: Cluster) -> None:
    """After a cut, the old host X hands a name to Y while Z still has X down (the heal
    reached X and Y first: the checkpointed campaign's 5.60 s, seed 7200000005): Z
    defers its marker until X is up there, and Y's gate held Z's direct messages until
    the handoff timeout (60 s here, 5 s by default). Z, with no link to X and nothing
    queued for it, can send nothing along the old route: it says so to Y
    (``RouteClosed``), which lets it through."""
    x, z = await cluster.start(2, registry=NO_SYNC)
    y = await cluster.add("late", registry=NO_SYNC, join=False)
    views = [([x.name, y.name, z.name], y.name), ([x.name, z.name], x.name), ([y.name, z.name], y.name)]
    placed = [(Ring().place(nodes), owner) for nodes, owner in views]
    name = next(f"routed-{i}" for i in range(10_000) if all(r.owner(f"routed-{i}") == o for r, o in placed))
    old = await z.register(name, apps.Counter, key=name, handoff_timeout=60.0)
    assert old.node == x.name
    for _ in range(3):
        await z.call(name, "incr")

    told: list[tuple[str, RouteClosed]] = []

    def route_closed(sender: str, msg: RouteClosed, deliver: Callable[[str, Any], None]) -> None:
        told.append((sender, msg))
        deliver(sender, msg)

    with intercept(y, RouteClosed, route_closed):
        with dropping(x, "HandoffRequest") as lost:
            await cluster.join(y)  # x freezes the name for y; its request is lost
            await eventually(lambda: lost, message=lambda: "x sent no request")
            cut = cluster.partition([x], [z])
            await eventually(
                lambda: x.name not in z.registry.core.peers and not z.transport.is_connected(x.name),
                timeout=20,
                message=lambda: f"z sees {z.nodes()}",
            )
        x.transport.disconnect(y.name)  # a new link: x asks again, y takes the name
        new = await eventually(
            lambda: (p := z.whereis(name)) is not None and p.node == y.name and p,
            timeout=20,
            message=lambda: copies_of(cluster, name),
        )
        z.cast(name, ("add", 10))  # straight to the new pid, from a node that cannot reach x
        assert await eventually(
            lambda: _count_is(y, name, 13),
            timeout=10,
            message=lambda: f"gate: {gate_of(cluster.process(new))!r}, told: {told}",
        )
    assert [(sender, msg.old_host) for sender, msg in told] == [(z.name, x.name)]
    assert y.registry.handoff.gate_releases == 0  # let through on z's word, not by the gate check
    await cut.heal()
    await eventually(lambda: one_copy(cluster, name) == new, timeout=20, message=lambda: copies_of(cluster, name))
    assert await z.call(name, "get") == (13, y.name)


@contextlib.contextmanager
def suspecting(by: Node, who: Node) -> Iterator[None]:
    """``by``'s membership suspects ``who`` (set by hand: no deadline, no rumor, so it neither
    refutes nor turns into a verdict) until the block ends."""
    member = by.membership.core.member(who.name)
    assert member is not None
    assert member.status == ALIVE
    member.status = SUSPECT
    try:
        yield
    finally:
        member.status = ALIVE


async def _count_is(node: Node, name: Any, expected: int) -> bool:
    count, _ = await node.call(name, "get")
    return bool(count == expected)


async def test_unregister_of_a_name_whose_handoff_was_withdrawn_waits_for_the_answer(cluster: Cluster) -> None:
    # X timed out waiting for HandoffAccepted and withdrew the handoff (C1); the answer
    # (C2) is lost too. An unregister on X meanwhile waits for the outcome instead of
    # failing with the cancelled wait for the acceptance (it raised CancelledError). The
    # name is then gone everywhere; the process stays, unnamed, as after any unregister.
    x, y, _, name, old = await _counter_to_be_moved(cluster, "unreg", handoff_timeout=1.0)
    with dropping(y, "HandoffAccepted", "HandoffCancelled"):
        await cluster.join(y)
        await eventually(
            lambda: any(o.name == name and o.cancel_answer is not None for o in x.registry.handoff.outgoing.values()),
            timeout=10,
            message=lambda: copies_of(cluster, name),
        )
        await x.unregister(name)
    await eventually(
        lambda: cluster.live_copies(name) == [old] and all(n.whereis(name) is None for n in cluster.nodes),
        timeout=20,
        message=lambda: copies_of(cluster, name),
    )


# --- 6. a conflict's state reaches a winner that is being handed off ------------------------------


async def test_a_conflict_state_that_reaches_a_winner_frozen_for_its_handoff_follows_it_to_the_new_owner(
    cluster: Cluster,
) -> None:
    # The winner's node takes a loser's state (and says so: the loser retires) while the
    # winner is frozen in a handoff whose begin_handoff already gave its state. Its
    # resolve_conflict then waited in the mailbox behind the move and ran, after the
    # commit, in the retired copy: the loser's acknowledged ops were lost with it.
    x, y, z, name, old = await _to_be_moved(cluster, "frozen-winner", Ledger, handoff_timeout=5.0)
    await z.call(name, ("op", "W0"))
    with dropping(y, "HandoffAccepted") as lost:
        await cluster.join(y)
        await eventually(lambda: lost, message=lambda: copies_of(cluster, name))
        assert is_frozen(cluster.process(old))  # begin_handoff gave its state: ["W0"]
        answers: list[Any] = []
        with intercept(z, ConflictStateTaken, lambda node, msg, _: answers.append(msg)):
            z.transport.post(x.name, ConflictState(name, old, True, ["L0", "L1"], ref=7))
            await eventually(lambda: answers, message=lambda: copies_of(cluster, name))
    assert answers == [ConflictStateTaken(7)]  # taken: the loser would retire now
    # The acceptance is said again; x commits, and the new copy has the loser's ops.
    await eventually(lambda: one_copy(cluster, name) is not None, timeout=20, message=lambda: copies_of(cluster, name))
    assert one_copy(cluster, name) != old
    await eventually(
        lambda: _ops_are(z, name, ["L0", "L1", "W0"]), timeout=10, message=lambda: copies_of(cluster, name)
    )


async def _ops_are(node: Node, name: Any, expected: list[str]) -> bool:
    return bool(await node.call(name, "ops") == expected)


async def test_a_conflict_state_passed_on_to_a_successor_that_is_gone_leaves_the_loser_running(
    cluster: Cluster,
) -> None:
    # The campaign's seed 3481290329: a loser's node sent its state to the node of a winner
    # (a stale claim, there) that had been handed off; that node passed it on to the
    # successor's node and said "taken" at once. The successor was gone (its node had
    # restarted), the state was dropped there, and the loser had retired: the name had no
    # copy left. Now the node that passes a state on answers only when the successor's
    # node does, and a gone successor leaves the loser running.
    x, y, z, name, old = await _to_be_moved(cluster, "relayed", Ledger, restart="temporary")
    await cluster.join(y)
    new = await eventually(
        lambda: (p := z.whereis(name)) is not None and p.node == y.name and p, message=lambda: copies_of(cluster, name)
    )
    await y.stop_process(new)  # the successor is gone; x still forwards the old pid to it
    answers: list[Any] = []
    with intercept(z, ConflictStateTaken, lambda node, msg, _: answers.append(msg)):
        z.transport.post(x.name, ConflictState(name, old, True, ["L0"], ref=11))
        await eventually(lambda: answers, message=lambda: copies_of(cluster, name))
    assert answers == [ConflictStateTaken(11, winner_gone=True)]  # the loser stays


# --- 10. two moves of one pid: a stale request committed after its old host left ---------------


def _moved_twice(nodes: list[str], prefix: str) -> str:
    """The first name ``prefix-<i>`` that ``nodes[0]`` owns among ``nodes``, ``nodes[1]``
    without the first, and ``nodes[2]`` without the first two."""
    for i in range(10_000):
        name = f"{prefix}-{i}"
        owners = [Ring().place(nodes[k:]).owner(name) for k in range(3)]
        if owners == nodes[:3]:
            return name
    raise AssertionError(f"no name moving through {nodes[:3]}")


async def test_a_stale_request_committed_after_its_old_host_left_yields_to_the_later_move_of_the_same_pid(
    cluster: Cluster,
) -> None:
    """The campaign's seed 6800000005: X, leaving, hands a name to Y, which is paused (the
    request waits in its socket); X declares Y failed, aborts that move, its process
    resumes and answers more calls, and X hands it to W (committed, with the state) and
    leaves. Y wakes after X is gone, reads the stale request and commits it (rule 3: the
    old host is down there). Two copies then claim the name, both moved from X's pid by
    two handoffs: the later move's wins everywhere (it holds all the first one held, and
    more), the stale one retires into it, and the name then moves to its owner, Y, with
    every acknowledged increment. Before, the ring over the claimants' hosts picked the
    stale copy where it was seen (the later one's count reached only its resolve_conflict),
    while a node that had not seen it kept the later copy: in the campaign, both ran on."""
    x, y, w, z = await cluster.start(4, registry=NO_SYNC)
    name = _moved_twice([x.name, y.name, w.name, z.name], "twice")
    old = await z.register(name, apps.Counter, key=name, handoff_timeout=60.0)
    assert old.node == x.name
    for _ in range(3):
        await z.call(name, "incr")
    held: list[tuple[str, Any]] = []
    verdicts: list[str] = []
    registry = y.registry

    def peer_down(node: str) -> None:
        verdicts.append(node)  # y, paused, sees nothing go down until it wakes

    registry.peer_down = peer_down  # type: ignore[method-assign]
    try:
        with intercept(y, HandoffRequest, lambda node, msg, deliver: held.append((node, msg))):
            leaving = asyncio.ensure_future(cluster.stop(x))
            await eventually(lambda: held, message=lambda: "x sent y no request")
            for node in (x, w, z):
                node.registry.peer_down(y.name)  # the verdict on the paused y, everywhere
            later = await eventually(
                lambda: (p := z.whereis(name)) is not None and p.node == w.name and p,
                message=lambda: copies_of(cluster, name),
            )
            await leaving
        assert await _count_is(w, name, 3)
        assert await w.call(name, "incr") == 4  # acknowledged by the copy the later move made
        assert x.name in verdicts
        # y wakes: it reads the stale request, then sees x gone, and commits it (rule 3).
        with dropping(y, "HandoffAccepted"):
            registry.handoff._on_handoff_request(*held[0])
            stale = await eventually(
                lambda: next((p for n, p in handoffs_in_flight(y).incoming if n == name and p is not None), None),
                message=lambda: copies_of(cluster, name),
            )
    finally:
        del registry.peer_down
    registry.peer_down(x.name)
    await eventually(lambda: y.whereis(name) == stale, message=lambda: copies_of(cluster, name))
    for node in (w, z):
        node.registry.peer_up(y.name)  # y is back (it was only paused)
    await eventually(lambda: one_copy(cluster, name) is not None, timeout=20, message=lambda: copies_of(cluster, name))
    retired = [(e.winner, e.loser) for n in cluster.nodes for e in cluster.events(n) if isinstance(e, ConflictResolved)]
    assert retired == [(later, stale)]  # the later move's copy won, and the stale one retired into it
    count, _ = await z.call(name, "get")
    assert count == 4  # on its owner now (y, handed on from w), nothing acknowledged lost
