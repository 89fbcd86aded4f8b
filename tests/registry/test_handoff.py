"""Handoff: moving registered processes to their new owner when the cluster changes.

The key guarantee (docs/design.md, guarantees 3 and 5): messages sent to a name while it moves are
delivered to the new process, in order, none lost and none twice. Senders here are
processes on several nodes casting ``(sender, seq)`` by name, resolving the name at
every send as users do; receivers keep their record in their handoff state.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import random
from collections.abc import Sequence
from typing import Any

import pytest

from distable import (
    CallTimeout,
    HandoffAborted,
    HandoffCompleted,
    HandoffStateLost,
    NameNotFound,
    NameUnregistered,
    Node,
    Pid,
    ProcessExited,
    ProcessRestarted,
)
from distable.testing import eventually, intercept
from distable.wire._messages import HandoffRequest

from . import apps
from .conftest import Cluster, first_owned, host_of, log_records


async def settle(cluster: Cluster, names: Sequence[Any], timeout: float = 30.0) -> dict[Any, Pid]:
    """Wait until no handoff is in flight, every replica agrees and every name is on its owner."""

    def settled() -> dict[Any, Pid] | None:
        if not cluster.idle():
            return None
        agreed = cluster.agreed()
        if agreed is None or any(name not in agreed for name in names):
            return None
        return agreed if cluster.on_owners(names) else None

    result: dict[Any, Pid] = await eventually(settled, timeout=timeout, message=cluster.describe)
    return result


async def register_all(nodes: Sequence[Node], names: Sequence[Any], factory: Any, **kwargs: Any) -> dict[Any, Pid]:
    pids: dict[Any, Pid] = {}
    for start in range(0, len(names), 25):  # a few at a time: bounded concurrency
        chunk = names[start : start + 25]
        got = await asyncio.gather(
            *(nodes[i % len(nodes)].register(name, factory, key=name, **kwargs) for i, name in enumerate(chunk))
        )
        pids.update(zip(chunk, got, strict=True))
    return pids


async def test_adding_a_node_moves_about_a_quarter_of_the_names_with_their_state(
    cluster: Cluster, three: list[Node]
) -> None:
    names = [f"counter-{i}" for i in range(200)]
    before = await register_all(three, names, apps.Counter)
    for i, name in enumerate(names):
        three[i % 3].cast(name, ("add", i))
    await settle(cluster, names)
    for i, name in enumerate(names):  # from the node that cast: the same link, so after the cast
        assert await three[i % 3].call(name, "get") == (i, before[name].node)

    newcomer = await cluster.add("n3")
    after = await settle(cluster, names)

    moved = [name for name in names if after[name] != before[name]]
    assert 0.10 * len(names) <= len(moved) <= 0.45 * len(names), f"{len(moved)} of {len(names)} names moved"
    assert all(after[name].node == newcomer.name for name in moved), "only names the newcomer owns move"
    for i, name in enumerate(names):
        count, host = await three[i % 3].call(name, "get")
        assert (count, host) == (i, after[name].node), f"{name} lost its state: {count} on {host}"
        # Exactly one live process per name; moved names were started once more (on the newcomer).
        assert apps.INITS[name] == (2 if name in moved else 1)
        assert cluster.live_copies(name) == [after[name]]


async def test_end_handoff_is_the_first_message_the_new_process_handles(cluster: Cluster) -> None:
    a, b = await cluster.start(2)
    newcomer = await cluster.add("late", join=False)
    name = first_owned(newcomer.name, [a.name, b.name, newcomer.name], "first")
    pid = await a.register(name, apps.Counter, key=name)
    for _ in range(3):
        a.cast(name, ("add", 1))
    sender = await b.spawn(apps.Sender, "b", [name], 0.002, 2_000)
    b.cast(sender, "go")
    await eventually(lambda: cluster.process(sender).rounds > 20)

    await cluster.join(newcomer)
    await cluster.wait_joined()
    new = (await settle(cluster, [name]))[name]
    mark = cluster.process(sender).rounds
    await eventually(lambda: cluster.process(sender).rounds >= mark + 20)
    b.cast(sender, "stop")
    assert new != pid
    assert new.node == newcomer.name
    handled = await newcomer.call(new, "handled")
    assert handled[0][0] == "end_handoff", handled[:3]
    assert handled[0][1] >= 3  # the state it resumed from
    assert all(kind in ("cast", "call") for kind, _ in handled[1:])
    assert len(handled) > 2, "messages sent during the move reach the new process after end_handoff"


async def test_a_copy_that_exits_in_end_handoff_is_restarted_on_its_new_owner(
    cluster: Cluster, caplog: pytest.LogCaptureFixture
) -> None:
    # The copy handed in stops abnormally in end_handoff, before its claim (the gate holds
    # everything else). Its exit found no claim to end; the claim that followed left the
    # name on a dead pid for good, and so did the old host's removal naming it: its
    # restart (transient) was skipped as registered. A crash like any other: restarted.
    a, b = await cluster.start(2)
    newcomer = await cluster.add("late", join=False)
    name = first_owned(newcomer.name, [a.name, b.name, newcomer.name], "fragile")
    pid = await a.register(name, apps.Counter, key=name, mode="resume+crash")
    a.cast(name, ("add", 5))

    caplog.set_level(logging.INFO, logger="distable.registry")
    await cluster.join(newcomer)
    await cluster.wait_joined()

    def restarted() -> Pid | None:
        copies = cluster.live_copies(name)
        new = copies[0] if len(copies) == 1 else None
        if new is None or new == pid or new.node != newcomer.name:
            return None
        return new if all(n.whereis(name) == new for n in (a, b, newcomer)) else None

    new = await eventually(restarted, timeout=10, message=lambda: f"{cluster.describe()}; {cluster.live_copies(name)}")
    assert await a.call(name, "get") == (0, newcomer.name)  # a crash restart: fresh (no checkpoint)
    assert apps.INITS[name] == 3  # registered, handed in, restarted
    assert any(isinstance(e, ProcessRestarted) and e.pid == new for e in cluster.events(newcomer))
    # The node says why (a stop with a reason of the process's own is no crash, logged nowhere else).
    assert log_records(caplog, repr(name), "stopped with reason 'crashed on arrival'", level=logging.INFO)


async def test_restart_answer_starts_the_process_fresh_on_the_new_owner(cluster: Cluster) -> None:
    a, b = await cluster.start(2)
    newcomer = await cluster.add("late", join=False)
    name = first_owned(newcomer.name, [a.name, b.name, newcomer.name], "fresh")
    pid = await a.register(name, apps.Counter, key=name, start=1, mode="restart")
    a.cast(name, ("add", 41))
    assert await a.call(name, "get") == (42, pid.node)

    await cluster.join(newcomer)
    await cluster.wait_joined()
    new = (await settle(cluster, [name]))[name]
    assert new.node == newcomer.name
    assert await a.call(name, "get") == (1, newcomer.name)  # init's arguments, not the old count
    assert all(kind != "end_handoff" for kind, _ in await a.call(name, "handled"))
    assert apps.INITS[name] == 2
    assert cluster.live_copies(name) == [new]
    completed = [e for e in cluster.events(cluster.node(pid.node)) if isinstance(e, HandoffCompleted)]
    assert [(e.name, e.old_pid, e.new_pid, e.answer) for e in completed] == [(name, pid, new, "restart")]


async def test_ignore_answer_keeps_the_process_on_its_node_and_reachable_by_name(cluster: Cluster) -> None:
    a, b = await cluster.start(2)
    newcomer = await cluster.add("late", join=False)
    future = [a.name, b.name, newcomer.name]
    name = first_owned(newcomer.name, future, "stay")
    other = first_owned(newcomer.name, future, "go")
    pid = await a.register(name, apps.Counter, key=name, mode="ignore")
    await a.register(other, apps.Counter, key=other)

    await cluster.join(newcomer)
    await cluster.wait_joined()
    await settle(cluster, [other])  # the ordinary name moved: the rebalance ran
    host = cluster.node(pid.node)
    await eventually(
        lambda: any(isinstance(e, HandoffAborted) and e.name == name for e in cluster.events(host)),
        message=lambda: str(cluster.events(host)),
    )
    aborted = [e for e in cluster.events(host) if isinstance(e, HandoffAborted) and e.name == name]
    assert aborted[0].reason == "ignore"
    await eventually(lambda: cluster.idle() and all(n.whereis(name) == pid for n in cluster.nodes))
    assert pid.node != newcomer.name
    assert await newcomer.call(name, "incr") == 1
    assert apps.INITS[name] == 1
    assert cluster.live_copies(name) == [pid]


async def test_ignore_answer_on_a_leaving_node_restarts_the_process_on_its_new_owner(cluster: Cluster) -> None:
    # A leaving node cannot keep a process (guarantee 5): Ignore counts as Restart() then,
    # both for a name that answered Ignore before and for one asked during the leave.
    a, b = await cluster.start(2)
    name = first_owned(a.name, [a.name, b.name], "stays-then-leaves")
    pid = await a.register(name, apps.Counter, key=name, mode="ignore")
    assert await a.call(name, "incr") == 1
    await cluster.stop(a)
    new = await eventually(lambda: (p := b.whereis(name)) is not None and p.node == b.name and p)
    assert await b.call(name, "get") == (0, b.name)  # started afresh by its factory
    assert apps.INITS[name] == 2
    completed = [e for e in cluster.events(a) if isinstance(e, HandoffCompleted) and e.name == name]
    assert [(e.old_pid, e.new_pid, e.answer) for e in completed] == [(pid, new, "restart")]
    assert a.registry.drained


# --- the key guarantee: nothing lost, nothing reordered --------------------------------------


async def run_senders_through(
    cluster: Cluster,
    senders: list[tuple[Node, str]],
    names: list[Any],
    change: Any,
    seed: int,
) -> tuple[dict[str, dict[Any, int]], dict[str, list[Any]]]:
    """Start one ``Sender`` per (node, id), run ``change()`` while they cast, stop them.

    Returns what each sender sent per name and the names it could not resolve.
    """
    rng = random.Random(seed)
    pids: dict[str, tuple[Node, Pid]] = {}
    for node, sender_id in senders:
        order = list(names)
        rng.shuffle(order)  # each sender walks the names in its own order
        pids[sender_id] = (node, await node.spawn(apps.Sender, sender_id, order, 0.002, 5_000))
    for node, pid in pids.values():
        node.cast(pid, "go")
    # Let traffic flow before, during and after the change.
    await eventually(lambda: all(cluster.process(p).rounds >= 10 for _, p in pids.values()))
    await change()
    marks = {sid: cluster.process(p).rounds for sid, (_, p) in pids.items()}
    await eventually(lambda: all(cluster.process(p).rounds >= marks[sid] + 10 for sid, (_, p) in pids.items()))
    for node, pid in pids.values():
        node.cast(pid, "stop")
    await eventually(lambda: not any(cluster.process(p).running for _, p in pids.values()))
    for sid, (_, pid) in pids.items():
        assert cluster.process(pid).rounds < 5_000, f"sender {sid} ran out of rounds before the change was over"
    sent = {sid: dict(cluster.process(pid).sent) for sid, (_, pid) in pids.items()}
    misses = {sid: list(cluster.process(pid).misses) for sid, (_, pid) in pids.items()}
    return sent, misses


async def check_records(cluster: Cluster, node: Node, names: list[Any], sent: dict[str, dict[Any, int]]) -> None:
    """Every receiver got exactly 0..n-1 from every sender: no gap, no duplicate, in order."""

    async def complete() -> bool:
        for name in names:
            record = await node.call(name, "record")
            if any(len(record.get(sid, [])) < per_name[name] for sid, per_name in sent.items()):
                return False
        return True

    with contextlib.suppress(TimeoutError):  # the exact comparison below says what is missing
        await eventually(complete, timeout=20)
    for name in names:
        record = await node.call(name, "record")
        for sid, per_name in sent.items():
            got = record.get(sid, [])
            expected = list(range(per_name[name]))
            if got != expected:
                lost = sorted(set(expected) - set(got))
                dups = len(got) - len(set(got))
                out_of_order = [(x, y) for x, y in itertools.pairwise(got) if y <= x][:5]
                pytest.fail(
                    f"{name!r} from sender {sid}: {len(got)} of {len(expected)} received; "
                    f"lost {lost[:10]}{'...' if len(lost) > 10 else ''}, {dups} duplicates, "
                    f"out of order {out_of_order}"
                )


async def test_casts_by_name_during_a_join_are_neither_lost_nor_reordered(cluster: Cluster) -> None:
    seed = random.randrange(2**32)
    print(f"seed={seed}")
    a, b, c = await cluster.start(3)
    newcomer = await cluster.add("n3", join=False)
    future = [a.name, b.name, c.name, newcomer.name]
    ring = [first_owned(newcomer.name, future, f"rx{i}") for i in range(12)]  # all of these move
    names = sorted(set(ring)) + [f"stay-{i}" for i in range(8)]
    await register_all([a, b, c], names, apps.Receiver)

    async def join() -> None:
        await cluster.join(newcomer)
        await cluster.wait_joined()
        await settle(cluster, names)

    sent, misses = await run_senders_through(cluster, [(a, "a"), (b, "b"), (c, "c")], names, join, seed)
    moved = [name for name in names if host_of(a, name) == newcomer.name]
    assert len(moved) >= 10, f"seed={seed}: the join should have moved the rx names, moved {moved}"
    await check_records(cluster, a, names, sent)
    # And no send had to be retried: the name resolved on every node all along.
    assert misses == {"a": [], "b": [], "c": []}, f"seed={seed}: names not found while moving: {misses}"


async def test_casts_by_name_during_a_graceful_leave_are_neither_lost_nor_reordered(cluster: Cluster) -> None:
    seed = random.randrange(2**32)
    print(f"seed={seed}")
    a, b, c, leaving = await cluster.start(4)
    names = [first_owned(leaving.name, [a.name, b.name, c.name, leaving.name], f"rx{i}") for i in range(12)]
    names = sorted(set(names)) + [f"stay-{i}" for i in range(8)]
    await register_all([a, b, c], names, apps.Receiver)
    await settle(cluster, names)
    assert sum(1 for name in names if host_of(a, name) == leaving.name) >= 10

    async def leave() -> None:
        await cluster.stop(leaving)
        await settle(cluster, names)

    sent, misses = await run_senders_through(cluster, [(a, "a"), (b, "b"), (c, "c")], names, leave, seed)
    assert all(host_of(a, name) != leaving.name for name in names)
    await check_records(cluster, a, names, sent)
    assert misses == {"a": [], "b": [], "c": []}, f"seed={seed}: names not found while moving: {misses}"


async def test_calls_by_name_during_a_join_all_succeed_exactly_once(cluster: Cluster) -> None:
    a, b, c = await cluster.start(3)
    newcomer = await cluster.add("n3", join=False)
    future = [a.name, b.name, c.name, newcomer.name]
    names = sorted({first_owned(newcomer.name, future, f"callee{i}") for i in range(8)})
    await register_all([a, b, c], names, apps.Receiver)

    stop = asyncio.Event()
    not_found: list[tuple[str, Any]] = []
    failures: list[tuple[str, Any, BaseException]] = []
    done: dict[tuple[str, Any], int] = {}
    progress: dict[tuple[str, Any], int] = {}

    async def caller(node: Node, cid: str, name: Any) -> None:
        seq = 0
        for _ in range(5_000):  # bounded
            if stop.is_set():
                break
            try:
                await node.call(name, ("incr", cid, seq), timeout=10.0)
            except NameNotFound:  # must not happen; retried so the record check still runs
                not_found.append((cid, name))
                await asyncio.sleep(0.005)  # pace the retry of the same seq
                continue
            except (ProcessExited, CallTimeout) as exc:
                failures.append((cid, name, exc))
                break
            seq += 1
            progress[(cid, name)] = seq
        done[(cid, name)] = seq

    tasks = [asyncio.ensure_future(caller(node, node.short_name, name)) for node in (a, b, c) for name in names]
    try:
        await eventually(lambda: len(progress) == len(tasks) and min(progress.values()) >= 5)
        await cluster.join(newcomer)
        await cluster.wait_joined()
        await settle(cluster, names)
        marks = dict(progress)
        await eventually(lambda: all(progress[k] >= marks[k] + 5 for k in marks) or bool(failures))
    finally:
        stop.set()
        await asyncio.gather(*tasks)
    assert not failures, f"calls failed during the move: {failures[:5]}"
    assert all(host_of(a, name) == newcomer.name for name in names)
    for name in names:
        record = await a.call(name, "record")
        for node in (a, b, c):
            assert record.get(node.short_name, []) == list(range(done[(node.short_name, name)])), name
    assert not_found == [], f"names not found while moving (the calls were retried): {not_found[:5]}"


async def test_a_moving_name_stays_resolvable_on_every_replica(cluster: Cluster) -> None:
    a, b = await cluster.start(2)
    newcomer = await cluster.add("late", join=False)
    names = sorted({first_owned(newcomer.name, [a.name, b.name, newcomer.name], f"m{i}") for i in range(5)})
    await register_all([a, b], names, apps.Counter)
    await settle(cluster, names)
    await cluster.join(newcomer)
    await cluster.wait_joined()
    await settle(cluster, names)
    gaps = {node.name: [e.name for e in cluster.events(node) if isinstance(e, NameUnregistered)] for node in (a, b)}
    assert gaps == {a.name: [], b.name: []}


async def test_a_whole_cluster_stopping_at_once_finishes_every_drain(cluster: Cluster) -> None:
    # Every node refuses the others' handoffs while it drains itself: a wave of refusals.
    # They must lead to the names being stopped (there is nowhere left to go), not to a
    # retry scheduled past the drain's deadline.
    nodes = await cluster.start(3)
    for i in range(600):
        await nodes[0].register(("everyone-leaves", i), apps.Counter, ("everyone-leaves", i))
    await asyncio.gather(*(cluster.stop(node) for node in nodes))
    assert [node.registry.drained for node in nodes] == [True, True, True]


@pytest.mark.parametrize("mode", ["unencodable", "hang"])
async def test_a_leave_restarts_afresh_a_process_whose_state_cannot_go(
    cluster: Cluster, mode: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Guarantee 5 over the state: a leaving node that cannot send a process's state (it
    cannot be encoded, or begin_handoff never answers) starts it fresh on the new owner,
    says so, and loses no name."""
    caplog.set_level(logging.ERROR, logger="distable.registry")
    a, b = await cluster.start(2)
    name = first_owned(b.name, [a.name, b.name], f"stubborn-{mode}")
    pid = await a.register(name, apps.Stubborn, key=name, mode=mode, handoff_timeout=0.5)
    assert pid.node == b.name
    before = len(cluster.events(b))
    await cluster.stop(b)
    await eventually(lambda: (p := a.whereis(name)) is not None and p.node == a.name)
    assert await a.call(name, "where") == (name, a.name, False)  # running there, fresh
    assert apps.INITS[name] == 2
    lost = [e for e in cluster.events(b)[before:] if isinstance(e, HandoffStateLost)]
    assert [(e.name, e.pid) for e in lost] == [(name, pid)]
    assert log_records(caplog, b.name, repr(name), "starts afresh on its new owner", level=logging.ERROR)


async def test_a_process_whose_state_cannot_go_stays_on_its_node_and_the_logs_say_where_it_stays(
    cluster: Cluster, caplog: pytest.LogCaptureFixture
) -> None:
    """A join (not a leave): the move of a process whose state cannot be encoded is not
    retried with backoff, it stays where it runs until the cluster changes again. The
    error names the node it would have gone to, and the wave's summary says why it stays
    (it said "retried with backoff", and a new user waited for retries that never came)."""
    caplog.set_level(logging.INFO, logger="distable.registry")
    a, b = await cluster.start(2)
    late = await cluster.add("late", join=False)
    name = first_owned(late.name, [a.name, b.name, late.name], "unencodable-join")
    pid = await a.register(name, apps.Stubborn, key=name, mode="unencodable")
    await cluster.join(late)
    await cluster.wait_joined()
    host = cluster.node(pid.node)
    await eventually(lambda: log_records(caplog, host.name, "handoff wave over", level=logging.INFO))
    assert log_records(caplog, host.name, repr(name), f"off to {late.name}", "stays on this node", level=logging.ERROR)
    assert log_records(
        caplog,
        host.name,
        "handoff wave over: 0 completed, 1 aborted (1 stay on this node until the cluster changes)",
        level=logging.INFO,
    )
    assert all(node.whereis(name) == pid for node in cluster.nodes)
    assert cluster.live_copies(name) == [pid]


async def test_a_call_waiting_behind_a_handoff_given_up_after_the_drain_timed_out_fails_instead_of_being_lost(
    cluster: Cluster,
) -> None:
    """The drain times out while the handoff waits for a new owner that never answers
    (the fault campaign: cut off, then paused); a call queued behind it meanwhile. When
    the handoff is given up, after the drain's end, the copy stops instead of resuming:
    the call fails. It used to be answered, and its write lost with the state moments
    later. The owner still restarts the name once the node has left."""
    a, b = await cluster.start(2)
    name = first_owned(a.name, [a.name, b.name], "abandoned")
    pid = await b.register(name, apps.Counter, key=name, handoff_timeout=3.0)
    assert pid.node == a.name
    a._drain_timeout = 1.0  # the node's --drain-timeout, shorter than the handoff's wait
    asked = asyncio.Event()
    with intercept(b, HandoffRequest, lambda node, msg, deliver: asked.set()):  # never answered
        stopping = asyncio.ensure_future(cluster.stop(a))
        await asyncio.wait_for(asked.wait(), 10)  # the copy is frozen for its handoff
        waiting = asyncio.ensure_future(b.call(pid, "incr", timeout=20))
        await stopping
    assert not a.registry.drained
    with pytest.raises(ProcessExited):
        await waiting
    restarted = await eventually(lambda: (p := b.whereis(name)) is not None and p.node == b.name and p)
    assert restarted != pid


async def test_a_name_a_leaving_node_could_not_hand_off_in_time_is_restarted_by_its_owner(cluster: Cluster) -> None:
    """Guarantee 5 when the drain times out: the new owner never answers the handoff (the
    fault campaign: it had just been cut off), the leaving node stops the process with the
    node, and the owner restarts the name once it sees the node leave, as the drain's
    warning says. The process's exit at the node's stop removed its claim first, and the
    name was gone for good."""
    a, b = await cluster.start(2)
    name = first_owned(a.name, [a.name, b.name], "undrained")
    pid = await b.register(name, apps.Counter, key=name, handoff_timeout=0.5)
    assert pid.node == a.name
    a._drain_timeout = 1.5  # the node's --drain-timeout, short for the test
    with intercept(b, HandoffRequest, lambda node, msg, deliver: None):  # never answered
        await cluster.stop(a)
    assert not a.registry.drained
    restarted = await eventually(lambda: (p := b.whereis(name)) is not None and p.node == b.name and p)
    assert restarted != pid
    assert await b.call(name, "get") == (0, b.name)  # fresh: the Counter checkpoints nothing
