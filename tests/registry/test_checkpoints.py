"""Replicated checkpoints with real nodes in this event loop (docs/internals.md, "Checkpoints").

A ``Counter`` registered through a factory checkpoints its count (``("checkpoint",
wait)``); its ``handled`` log shows what its process handled first, so a restart that
delivered a checkpoint shows ``("end_handoff", state)`` at its head.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

import pytest

from distable import DistableError, HandoffAborted, Node, Pid, RegistryConfig
from distable.registry._standby import CheckpointRefused
from distable.ring import Ring, preference
from distable.testing import crash, eventually, handoffs_in_flight, intercept
from distable.wire import encode_value
from distable.wire._messages import (
    Checkpoint,
    CheckpointFetch,
    CheckpointPut,
    HandoffAccepted,
    HandoffCancel,
    HandoffRequest,
    Lineage,
)

from . import apps
from .conftest import Cluster, first_owned, log_records
from .test_verdicts import NO_SYNC, owned_by


def records(nodes: list[Node]) -> int:
    """Checkpoint records the nodes hold for others, plus their own hosted ones."""
    stats = [n.statistics().registry for n in nodes]
    return sum(s.checkpoint_records + s.checkpoint_hosted for s in stats)


async def restarted(cluster: Cluster, name: str, old_node: str, nodes: list[Node]) -> Any:
    """Wait until ``name`` runs again off ``old_node``, everywhere agreed; return its pid."""
    await eventually(
        lambda: (
            (p := nodes[0].whereis(name)) is not None
            and p.node != old_node
            and all(n.whereis(name) == p for n in nodes)
        ),
        timeout=20,
        message=cluster.describe,
    )
    return nodes[0].whereis(name)


async def test_a_crashed_hosts_name_restarts_with_its_last_acknowledged_checkpoint_first(
    cluster: Cluster, three: list[Node]
) -> None:
    a, b, victim = three
    name = first_owned(victim.name, [n.name for n in three], "ckpt-crash")
    pid = await a.register(name, apps.Counter, key=name)
    assert pid.node == victim.name
    for _ in range(5):
        await a.call(name, "incr")
    assert await a.call(name, ("checkpoint", True)) == 5
    await a.call(name, "incr")  # 6, never checkpointed: lost with the node, by design
    [standby] = preference(victim.placement(), name, 2)[1:]
    assert cluster.node(standby).statistics().registry.checkpoint_records == 1

    await cluster.crash(victim)
    new = await restarted(cluster, name, victim.name, [a, b])

    assert new.node == standby  # the standby was the next owner
    handled = await a.call(name, "handled")
    assert handled[0] == ("end_handoff", 5), handled
    assert [h for h in handled if h[0] == "end_handoff"] == [("end_handoff", 5)]  # exactly once
    assert await a.call(name, "get") == (5, new.node)
    # The restarted process's first act: the restored state under a new lineage, replicated.
    await eventually(lambda: records([a, b]) == 2, message=lambda: f"{records([a, b])} records")


async def test_unregister_and_a_normal_exit_delete_the_checkpoints_everywhere(
    cluster: Cluster, three: list[Node]
) -> None:
    a, b, _ = three
    names = [first_owned(n.name, [m.name for m in three], f"ckpt-del-{n.name}") for n in three]
    for name in names:
        await a.register(name, apps.Counter, key=name, replicas=2)
        await a.call(name, "incr")
        await a.call(name, ("checkpoint", True))
    # Each name: its host's copy and two standbys' records.
    assert sum(n.statistics().registry.checkpoint_hosted for n in three) == 3
    assert sum(n.statistics().registry.checkpoint_records for n in three) == 6

    await a.unregister(names[0])
    await a.call(names[1], ("stop", "normal"))  # transient: not restarted, its name ends
    await eventually(lambda: records(three) == 3, message=lambda: f"{records(three)} records")  # names[2]'s
    await eventually(lambda: a.whereis(names[1]) is None)

    await b.unregister(names[2])
    await eventually(lambda: records(three) == 0, message=lambda: f"{records(three)} records")


async def test_a_graceful_handoffs_resume_state_supersedes_the_last_checkpoint(cluster: Cluster) -> None:
    a, b, c = await cluster.start(3)
    name = first_owned(c.name, [a.name, b.name, c.name], "ckpt-resume")
    await a.register(name, apps.Counter, key=name)
    await a.call(name, "incr")
    await a.call(name, ("checkpoint", True))  # 1
    for _ in range(4):
        await a.call(name, "incr")  # 5, carried by the handoff's Resume only

    await cluster.stop(c)  # hands it off with Resume(5)
    moved = await restarted(cluster, name, c.name, [a, b])
    assert await a.call(name, "get") == (5, moved.node)
    # The new host wrote the Resume state as the next checkpoint: a crash now restores 5.
    survivor = a if moved.node == b.name else b
    standby = cluster.node(moved.node).registry.standby
    await eventually(lambda: standby.replicated(name) and standby.standbys_of(name) == [survivor.name])
    await cluster.crash(cluster.node(moved.node))
    again = await restarted(cluster, name, moved.node, [survivor])
    assert again.node == survivor.name
    handled = await survivor.call(name, "handled")
    assert handled[0] == ("end_handoff", 5), handled


async def test_replicas_2_survive_the_host_and_a_standby_killed_at_once(cluster: Cluster) -> None:
    nodes = await cluster.start(4)
    names = [n.name for n in nodes]
    name = first_owned(names[0], names, "ckpt-two")
    host, first, second = preference(Ring().place(names), name, 3)
    await nodes[1].register(name, apps.Counter, key=name, replicas=2)
    await nodes[1].call(name, "incr")
    await nodes[1].call(name, "incr")
    assert await nodes[1].call(name, ("checkpoint", True)) == 2
    assert cluster.node(first).statistics().registry.checkpoint_records == 1
    assert cluster.node(second).statistics().registry.checkpoint_records == 1

    await cluster.crash(cluster.node(host))
    await cluster.crash(cluster.node(first))
    left = [n for n in nodes if n.name not in (host, first)]
    new = await restarted(cluster, name, host, left)
    assert new.node != first
    handled = await left[0].call(name, "handled")
    assert handled[0] == ("end_handoff", 2), handled


async def test_a_crash_restarts_on_the_same_node_from_the_latest_checkpoint(
    cluster: Cluster, three: list[Node], caplog: pytest.LogCaptureFixture
) -> None:
    a, b, _ = three
    name = first_owned(b.name, [n.name for n in three], "ckpt-same")
    old = await a.register(name, apps.Counter, key=name)
    await a.call(name, "incr")
    await a.call(name, ("checkpoint", True))
    await a.call(name, "incr")
    await a.call(name, ("checkpoint", False))  # write-behind: sent within 5 ms
    await eventually(lambda: b.registry.standby.replicated(name) and b.registry.standby.replicated_seq(name) == 2)
    with caplog.at_level(logging.INFO, logger="distable.registry"):
        with pytest.raises(Exception, match="crash"):
            await a.call(name, "crash")
        new = await eventually(lambda: (p := a.whereis(name)) is not None and p != old and p)
    assert new.node == b.name
    handled = await a.call(name, "handled")
    assert handled[0] == ("end_handoff", 2), handled
    assert log_records(caplog, "restarts from its latest checkpoint", level=logging.INFO)


async def test_bad_checkpoints_raise_typed_errors_and_the_node_keeps_running(
    cluster: Cluster, caplog: pytest.LogCaptureFixture
) -> None:
    a, b = await cluster.start(2, registry=RegistryConfig(checkpoint_max_bytes=1000))
    name = first_owned(b.name, [a.name, b.name], "ckpt-bad")
    await a.register(name, apps.Counter, key=name)
    assert await a.call(name, ("checkpoint_bad", "unencodable")) == "UnencodableValue"
    assert await a.call(name, ("checkpoint_bad", ("bytes", 2000))) == "CheckpointTooLarge"
    assert await a.call(name, ("checkpoint_bad", ("bytes", 100))) == "ok"
    by_hand = await b.spawn(apps.Counter, "by-hand")
    await a.register_name("by-hand", by_hand)
    assert await a.call("by-hand", ("checkpoint_bad", "count")) == "DistableError"
    # A peer's malformed checkpoint message (a name that is no hashable value) is a log line.
    with caplog.at_level(logging.WARNING, logger="distable.registry"):
        b.transport.dispatch(a.name, [CheckpointFetch(1, [[1, 2]])])
    assert log_records(caplog, "malformed CheckpointFetch", a.name)
    assert await a.call(name, "incr") == 1
    assert await a.call(name, ("checkpoint", True)) == 1


async def test_a_peer_of_an_older_protocol_is_never_a_standby(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    a = await cluster.add("old-a", join=False)
    b = await cluster.add("old-b", join=False)
    for node in (a, b):  # each speaks to the other as to a peer that agreed on version 3
        monkeypatch.setattr(node.transport, "peer_version", lambda peer: 3)
    await cluster.join(a)
    await cluster.join(b)
    await cluster.wait_joined()
    name = first_owned(a.name, [a.name, b.name], "ckpt-old")
    await b.register(name, apps.Counter, key=name)
    await b.call(name, "incr")
    # No standby: it completes at once (as with no other node), and nothing reaches b.
    assert await b.call(name, ("checkpoint", True)) == 1
    assert a.registry.standby.up == set()
    assert b.statistics().registry.checkpoint_records == 0
    assert a.statistics().registry.checkpoint_hosted == 1


async def split_counts_and_heal(cluster: Cluster, key: str, mode: str = "resume") -> tuple[list[Node], str, int]:
    """Four nodes; a Counter (``mode``) registered on one side of a split that each side
    then runs, counting 3 on one side and 7 on the other, each checkpointed; the heal, until
    one copy is left. The nodes, the name, and the survivor's count (3 or 7)."""
    nodes = await cluster.start(4)
    side_a, side_b = nodes[:2], nodes[2:]
    names = [n.name for n in nodes]
    name = first_owned(side_a[0].name, names, key)
    await side_a[0].register(name, apps.Counter, key=name, mode=mode)
    await side_a[0].call(name, ("checkpoint", True))  # 0, everywhere its standby is
    cut = cluster.partition(side_a, side_b)

    def isolated(side: list[Node]) -> bool:
        return all(n.placement().nodes == sorted(m.name for m in side) for n in side)

    await eventually(lambda: isolated(side_a) and isolated(side_b), timeout=15, message=cluster.describe)
    await eventually(lambda: side_b[0].whereis(name) is not None, timeout=15, message=cluster.describe)
    for side, count in ((side_a, 3), (side_b, 7)):
        for _ in range(count):
            await side[0].call(name, "incr")
        assert await side[0].call(name, ("checkpoint", True)) == count

    await cut.heal()
    await cluster.wait_joined()
    await eventually(
        lambda: (p := cluster.agreed()) is not None and cluster.live_copies(name) == [p[name]],
        timeout=20,
        message=lambda: f"{cluster.describe()}; copies {cluster.live_copies(name)}",
    )
    survivor, _ = await nodes[0].call(name, "get")
    assert survivor in (3, 7)
    return nodes, name, survivor


async def test_after_a_netsplit_heal_the_winner_takes_the_checkpoints_over(cluster: Cluster) -> None:
    # Each side of a split runs a copy of the name and checkpoints its own count. After the
    # heal, the surviving copy takes the checkpoints over (a lineage above both) and gets
    # the other copy's state in resolve_conflict; a crash of its host then restores the
    # survivor's count, never the loser's.
    nodes, name, count = await split_counts_and_heal(cluster, "ckpt-split")
    winner = nodes[0].whereis(name)
    assert winner is not None
    assert await nodes[0].call(name, "conflicts") == [10 - count]  # the loser's state
    host = cluster.node(winner.node)
    standby = host.registry.standby
    lineage = standby.lineage_of(name)
    assert lineage is not None
    assert lineage[0].epoch >= 1  # taken over: above both copies' lines
    await eventually(lambda: standby.replicated(name), message=lambda: f"{host.name}: {host.statistics().registry}")
    await eventually(lambda: all(claim_lineage(n, name) == lineage[0] for n in cluster.nodes))

    await cluster.crash(host)
    left = [n for n in nodes if n is not host]
    await restarted(cluster, name, host.name, left)
    handled = await left[0].call(name, "handled")
    assert handled[0] == ("end_handoff", count), handled


async def test_a_conflict_loser_that_gives_no_state_passes_its_last_checkpoint_to_the_winner(cluster: Cluster) -> None:
    # A loser that answers begin_handoff with anything but Resume (here Restart(); or one
    # that does not answer within 5 s: busy in a handler, its node paused) gave no state,
    # and the winner's resolve_conflict got None: the writes the loser had acknowledged
    # with a checkpoint were lost (the fault campaign: seed 1525232722, a copy on a node
    # that thought its handoff had failed, busy in a checkpoint when it lost). Its last
    # checkpoint reaches resolve_conflict instead, as a handoff's Restart() gets the new
    # host its last checkpoint.
    nodes, name, count = await split_counts_and_heal(cluster, "ckpt-split-restart", mode="restart")
    assert await nodes[0].call(name, "conflicts") == [10 - count]  # the loser's last checkpoint, not None


def claim_lineage(node: Node, name: Any) -> Any:
    winner = node.registry.core.winners.get(name)
    return None if winner is None else winner.lineage


async def test_write_behind_sends_only_the_latest_state_and_a_crash_restores_it(cluster: Cluster) -> None:
    a, b = await cluster.start(2)
    name = first_owned(b.name, [a.name, b.name], "ckpt-burst")
    await a.register(name, apps.Counter, key=name)
    assert await a.call(name, ("burst", 1000)) == 1000  # 1000 checkpoints in one handler

    standby = b.registry.standby
    await eventually(lambda: standby.replicated(name) and standby.replicated_seq(name) == 2)
    stats = standby.statistics()
    # The first state went at once, the other 999 replaced each other: one more put.
    assert stats.puts_sent - stats.retransmits == 2
    assert a.registry.standby.records[name].state == encode_value(1000)

    await cluster.crash(b)
    await restarted(cluster, name, b.name, [a])
    handled = await a.call(name, "handled")
    assert handled[0] == ("end_handoff", 1000), handled


async def test_a_handed_in_process_may_checkpoint_in_end_handoff(cluster: Cluster) -> None:
    # It came without checkpoints (it never made one): its first, before its claim exists
    # here, begins them, and the claim carries their lineage.
    a, b, c = await cluster.start(3)
    name = first_owned(c.name, [a.name, b.name, c.name], "ckpt-in")
    await a.register(name, apps.Counter, key=name, mode="resume+checkpoint")
    for _ in range(4):
        await a.call(name, "incr")

    await cluster.stop(c)
    moved = await restarted(cluster, name, c.name, [a, b])
    host = cluster.node(moved.node)
    await eventually(lambda: host.registry.standby.replicated_seq(name) == 1)
    await eventually(lambda: all(claim_lineage(n, name) == Lineage(0, moved) for n in (a, b)))

    await cluster.crash(host)
    survivor = a if host is b else b
    await restarted(cluster, name, host.name, [survivor])
    handled = await survivor.call(name, "handled")
    assert handled[0] == ("end_handoff", 4), handled


async def test_an_unconfirmed_checkpoint_raises_call_timeout_and_completes_later(cluster: Cluster) -> None:
    a, b = await cluster.start(2)
    name = first_owned(b.name, [a.name, b.name], "ckpt-slow")
    await a.register(name, apps.Counter, key=name)
    await a.call(name, "incr")
    dispatch = a.transport.dispatch

    def no_puts(sender: str, messages: list[Any]) -> None:  # a's standby side hears no put
        dispatch(sender, [m for m in messages if not isinstance(m, CheckpointPut)])

    a.transport.dispatch = no_puts
    try:
        assert await a.call(name, ("checkpoint_within", 0.3)) == "CallTimeout"
    finally:
        a.transport.dispatch = dispatch
    # The put is sent again (retry_interval), and held: the write completed after all.
    standby = b.registry.standby
    await eventually(lambda: standby.replicated(name) and standby.replicated_seq(name) == 1)
    assert await a.call(name, ("checkpoint_within", 10.0)) == "ok"


async def test_a_refusal_from_a_stale_record_makes_the_host_take_its_checkpoints_over(
    cluster: Cluster, caplog: pytest.LogCaptureFixture
) -> None:
    # b holds a newer line of the name that no claim names (written by a copy that died
    # unseen, say): it refuses a's puts; a's copy is the current one, so a takes over,
    # after giving that line's state to its resolve_conflict: the copy that wrote it
    # (restarted while a's node slept, say) acknowledged what it holds.
    a, b = await cluster.start(2)
    name = first_owned(a.name, [a.name, b.name], "ckpt-stale")
    await b.register(name, apps.Counter, key=name)
    ghost = Pid(b.name, b.incarnation, 999_999)
    stale = Checkpoint(name, Lineage(5, ghost), None, 3, ghost, encode_value(99))
    b.registry.standby._keep(name, stale, b.runtime.loop.time())
    await b.call(name, "incr")

    with caplog.at_level(logging.INFO, logger="distable.registry"):
        assert await b.call(name, ("checkpoint", True)) == 1
    assert log_records(caplog, "taking them over", level=logging.INFO)
    lineage = a.registry.standby.lineage_of(name)
    assert lineage is not None
    assert lineage[0].epoch == 6  # above the stale line
    assert await b.call(name, "conflicts") == [99]  # the stale line's state, merged
    await eventually(lambda: b.registry.standby.records[name].lineage == lineage[0])
    await eventually(lambda: claim_lineage(b, name) == lineage[0])


async def test_refusals_of_many_names_by_one_standby_log_one_warning(
    cluster: Cluster, caplog: pytest.LogCaptureFixture
) -> None:
    # After a heal every losing copy's checkpoints are refused by the standbys that hold
    # the winner's line, thousands at once: one warning per refusing node, not per name.
    a, b = await cluster.start(2)
    writer = Pid(b.name, b.incarnation, 999_998)
    with caplog.at_level(logging.INFO, logger="distable.registry"):
        for i in range(500):
            loser = Pid(a.name, a.incarnation, 1_000_000 + i)  # no copy of the name here: it waits
            a.registry._on_refused(CheckpointRefused(f"healed-{i}", loser, b.name, Lineage(2, writer), writer))
    warnings = log_records(caplog, "waiting for the registry to settle", level=logging.WARNING)
    assert len(warnings) == 1, warnings
    assert b.name in warnings[0]
    assert "'healed-0'" in warnings[0]


class HeldCut:
    """A cut between a leaving host and its name's standby (and new owner) ``to``, for
    the checkpoint and handoff messages only: what the host sends it of ``kinds`` waits
    in the cut (``hold``: as a TCP connection holds it across a partition that heals in
    time) or is lost (``drop``: a link lost with the cut); ``release()`` delivers what
    waits, in order. Membership and the rest of the registry's traffic still pass, so
    neither side declares the other failed: the handoff and the checkpoint's answer are
    what cannot pass."""

    KINDS = (CheckpointPut, HandoffRequest, HandoffCancel)

    def __init__(self, to: Node, drop: bool = False) -> None:
        self.drop = drop
        self.cutting = True
        self.waiting: list[tuple[type, str, Any, Callable[[str, Any], None]]] = []
        self.seen: list[type] = []
        self._blocks = contextlib.ExitStack()
        for kind in self.KINDS:
            self._blocks.enter_context(intercept(to, kind, self._arrive))

    def _arrive(self, sender: str, msg: Any, deliver: Callable[[str, Any], None]) -> None:
        if not self.cutting:
            deliver(sender, msg)
            return
        self.seen.append(type(msg))
        if not self.drop:
            self.waiting.append((type(msg), sender, msg, deliver))

    def release(self, *, heal: bool = True) -> None:
        """Deliver what waits, in order; ``heal``: and let everything through from now on."""
        waiting, self.waiting = self.waiting, []
        self.cutting = not heal
        for _, sender, msg, deliver in waiting:
            deliver(sender, msg)

    def close(self) -> None:
        self._blocks.close()


async def ckpt_on_leaver(cluster: Cluster, mode: str) -> tuple[Node, Node, str]:
    """Two nodes; a name hosted on the first (``a``, which will leave) with ``mode``'s
    ``begin_handoff``, a short ``handoff_timeout``, and a count of 5 in a checkpoint the
    second (``b``: its standby, and its owner once ``a`` is gone) acknowledged."""
    a, b = await cluster.start(2)
    name = first_owned(a.name, [a.name, b.name], f"ckpt-leave-{mode}")
    pid = await b.register(name, apps.Counter, key=name, mode=mode, handoff_timeout=0.5)
    assert pid.node == a.name
    for _ in range(5):
        await b.call(name, "incr")
    assert await b.call(name, ("checkpoint", True)) == 5
    assert b.registry.standby.records[name].state == encode_value(5)
    return a, b, name


async def checkpoint_under_way(b: Node, name: str, cut: HeldCut) -> asyncio.Future[Any]:
    """An ``incr`` of ``name`` (on ``b``), then its checkpoint (the 6th) under way, its put
    held or dropped by ``cut``: the call's future."""
    await b.call(name, "incr")
    sixth = asyncio.ensure_future(b.call(name, ("checkpoint", True), timeout=20))
    await eventually(lambda: CheckpointPut in cut.seen)
    return sixth


async def back_on(cluster: Cluster, name: str, a: Node, b: Node, count: int) -> None:
    """``name`` runs again on ``b``, no longer on ``a``, from the count ``count``, which its
    ``end_handoff`` got first."""
    await restarted(cluster, name, a.name, [b])
    assert await b.call(name, "get") == (count, b.name)
    handled = await b.call(name, "handled")
    assert handled[0] == ("end_handoff", count), handled


async def test_a_leaving_hosts_restart_handoff_after_a_cut_carries_its_last_checkpoint(cluster: Cluster) -> None:
    # The fault campaign's loss (seed 1525232718, docs/performance.md "At 2a39578"): the
    # copy on the leaving node awaits a checkpoint that its standby, cut off, cannot answer,
    # so begin_handoff cannot run; after handoff_timeout the leaving node hands the name on
    # with Restart() (its state is lost), and the cut heals: the checkpoint is acknowledged
    # and the request arrives. The new owner must start the copy from the handover's last
    # checkpoint (6, acknowledged), not afresh: it was handed the lineage's seq without its
    # state, and it had dropped its own record of that lineage for the copy it hosted.
    a, b, name = await ckpt_on_leaver(cluster, "resume")
    cut = HeldCut(b)
    try:
        sixth = await checkpoint_under_way(b, name, cut)
        leaving = asyncio.ensure_future(cluster.stop(a))
        await eventually(lambda: HandoffRequest in cut.seen, timeout=5)
        cut.release()
        assert await sixth == 6  # acknowledged: b holds it
        await leaving
    finally:
        cut.close()
    await back_on(cluster, name, a, b, 6)


async def test_a_leaving_hosts_restart_request_lost_in_a_cut_restarts_from_the_checkpoint(cluster: Cluster) -> None:
    # The same, with the Restart() request (and its cancel, and the checkpoint's put) lost in
    # the cut: the drain times out, the copy stops with the node, and the owner restarts the
    # name from its own record of the last acknowledged checkpoint (5).
    a, b, name = await ckpt_on_leaver(cluster, "resume")
    a._drain_timeout = 2.0
    cut = HeldCut(b, drop=True)
    try:
        sixth = await checkpoint_under_way(b, name, cut)
        await cluster.stop(a)
        assert HandoffRequest in cut.seen
        with contextlib.suppress(DistableError):
            await sixth  # never acknowledged (the copy stopped first)
    finally:
        cut.close()
    await back_on(cluster, name, a, b, 5)


async def test_a_handed_in_copy_withdrawn_leaves_its_owner_holding_the_checkpoint(cluster: Cluster) -> None:
    # The request reaches the new owner only after the old host gave up waiting for it, and
    # the cancel right behind it: the copy started there is withdrawn (C2), and the old host
    # resumes its own. The new owner, a standby of the name, had dropped its record of the
    # lineage for that copy; withdrawn, the copy must leave the record behind, or a crash
    # of the old host (one failure) restarts the name afresh.
    a, b, name = await ckpt_on_leaver(cluster, "resume")
    cut = HeldCut(b)
    try:
        leaving = asyncio.ensure_future(a.stop())
        await eventually(lambda: HandoffCancel in cut.seen, timeout=5)
        cut.release(heal=False)  # the first request and its cancel; the next ones wait
        await eventually(lambda: not b.registry.handoff.incoming and cluster.live_copies(name) == [a.whereis(name)])
        cluster.nodes.remove(a)
        await crash(a)  # during its drain: one failure
        leaving.cancel()
        with contextlib.suppress(BaseException):
            await leaving
    finally:
        cut.close()
    await back_on(cluster, name, a, b, 5)


@pytest.mark.parametrize("sent", [(HandoffRequest,), (HandoffRequest, HandoffCancel)], ids=["request", "cancel"])
async def test_a_handoff_request_read_after_its_old_hosts_verdict_is_kept(
    cluster: Cluster, sent: tuple[type, ...]
) -> None:
    # The checkpoint campaign's loss (seed 4229829433, 63 acknowledged ops of 17 names): a
    # leaving node handed its names to a node that was paused, and was killed before any
    # was accepted; woken, that node read the requests only after its verdict on the old
    # host (they waited in the socket behind it). Its copies, accepted, waited for a commit
    # that could not come, and the acceptance they repeated reached the old host's next
    # incarnation, which cancelled them: the old host's last state died with them. Read
    # after the verdict, a request is committed at once, as one read before it: its copy
    # claims the name with the state it brought (6; the checkpoint b holds says 5). The
    # same when the old host timed out and sent its cancel before it died ("cancel"): read
    # after the verdict too, it must not withdraw the only copy of that state.
    a, b, name = await ckpt_on_leaver(cluster, "resume")
    assert await b.call(name, "incr") == 6  # in the Resume state only
    cut = HeldCut(b)
    down = b.registry.peer_down

    def verdict_first(node: str) -> None:
        down(node)
        if node == a.name:
            cut.release()  # what a sent before it died, read now

    b.registry.peer_down = verdict_first  # type: ignore[method-assign]
    try:
        leaving = asyncio.ensure_future(a.stop())
        await eventually(lambda: sent[-1] in cut.seen, timeout=5)
        cluster.nodes.remove(a)
        await crash(a)  # before anything more left it (its cancel's answer is due in 0.5 s)
        leaving.cancel()
        with contextlib.suppress(BaseException):
            await leaving
        assert tuple(cut.seen) == sent
        await eventually(lambda: not cut.cutting, timeout=10, message="b never saw a go down")
    finally:
        cut.close()
        del b.registry.peer_down
    pid = await restarted(cluster, name, a.name, [b])
    # the handed-in copy settled (claimed, or withdrawn): one left unclaimed stays listed
    await eventually(
        lambda: not b.registry.handoff.incoming, timeout=10, message=lambda: f"{b.registry.handoff.incoming}"
    )
    assert cluster.live_copies(name) == [pid]
    assert await b.call(name, "get") == (6, b.name)
    handled = await b.call(name, "handled")
    assert handled[0] == ("end_handoff", 6), handled


async def test_a_handoff_request_read_after_its_names_restart_here_gives_its_state_to_the_restarted_copy(
    cluster: Cluster,
) -> None:
    # As above, but b restarted the name (from its record: 5) before it read the request:
    # a claimed copy runs here, so the request is refused, and its old host is dead. The
    # state it brought (6, acknowledged to the caller) was held nowhere else: it goes to
    # the running copy's resolve_conflict, as a conflict loser's state would.
    a, b, name = await ckpt_on_leaver(cluster, "resume")
    assert await b.call(name, "incr") == 6  # in the Resume state only
    cut = HeldCut(b)
    try:
        leaving = asyncio.ensure_future(a.stop())
        await eventually(lambda: HandoffRequest in cut.seen, timeout=5)
        cluster.nodes.remove(a)
        await crash(a)
        leaving.cancel()
        with contextlib.suppress(BaseException):
            await leaving
        pid = await restarted(cluster, name, a.name, [b])
        assert await b.call(name, "get") == (5, b.name)
        cut.release()  # the request, read only now
    finally:
        cut.close()
    await eventually(lambda: not b.registry.handoff.incoming, timeout=10)
    assert await b.call(name, "conflicts") == [6]
    assert cluster.live_copies(name) == [pid]


async def test_two_copies_handed_in_at_once_keep_their_records_and_the_winners_checkpoint_survives(
    cluster: Cluster,
) -> None:
    # The checkpoint campaign's loss (seed 1718318914, docs/performance.md "At 04cdff9", run
    # 1): y was handed two copies of one name, the first accepted and not claimed yet when
    # the second came. The second claimed first, then the first, whose claim (the later)
    # won the conflict between them. The standby core kept one host record per name: the
    # second copy's start forgot the first's, the loser's retirement removed the only one,
    # and the winner's checkpoint failed ("it was removed"): what it held lived only in
    # its memory, and the next failure lost it. Here x hands the name to y twice: the first
    # handoff's acceptance is lost and x gives it up (its copy resumes, counts 4), the
    # second is committed, and y's verdict on x then commits the first.
    x, z = await cluster.start(2, registry=NO_SYNC)
    y = await cluster.add("late", registry=NO_SYNC, join=False)
    name = owned_by(y.name, [x.name, y.name, z.name], x.name, [x.name, z.name], "ckpt-two-in")
    old = await z.register(name, apps.Counter, key=name, handoff_timeout=5.0)
    assert old.node == x.name
    for _ in range(3):
        await z.call(name, "incr")
    assert await z.call(name, ("checkpoint", True)) == 3
    lost: list[int] = []  # the first handoff's id: y's acceptance of it never reaches x

    def lose_first(sender: str, msg: HandoffAccepted, deliver: Callable[[str, Any], None]) -> None:
        if not lost:
            lost.append(msg.hid)
        if msg.hid not in lost:
            deliver(sender, msg)

    with intercept(x, HandoffAccepted, lose_first):
        await cluster.join(y)
        first = await eventually(
            lambda: next((pid for n, pid in handoffs_in_flight(y).incoming if n == name and pid is not None), None),
            message=lambda: f"{cluster.describe()}; copies {cluster.live_copies(name)}",
        )
        await eventually(lambda: lost)
        x.registry.peer_down(y.name)  # x's one-sided verdict: its handoff fails, its copy resumes
        await eventually(lambda: any(isinstance(e, HandoffAborted) and e.pid == old for e in cluster.events(x)))
        assert await z.call(name, "incr") == 4
        x.registry.peer_up(y.name)  # ... and x hands the name to y again: a second copy there
        second = await eventually(
            lambda: (p := y.whereis(name)) is not None and p.node == y.name and p,
            message=lambda: f"{cluster.describe()}; copies {cluster.live_copies(name)}",
        )
        assert second != first
        assert first in cluster.live_copies(name)  # still waiting for its commit
        y.registry.peer_down(x.name)  # y's verdict on x commits the first: its claim wins
        y.registry.peer_up(x.name)
        await eventually(
            lambda: cluster.live_copies(name) == [first] and all(n.whereis(name) == first for n in (x, y, z)),
            timeout=15,
            message=lambda: f"{cluster.describe()}; copies {cluster.live_copies(name)}",
        )
    assert await z.call(name, "conflicts") == [4]  # the loser's state
    assert await z.call(name, "incr") == 4
    assert await z.call(name, ("checkpoint_within", 10.0)) == "ok"  # before the fix: "DistableError"
    lineage = y.registry.standby.lineage_of(name)
    assert lineage is not None
    await eventually(lambda: all(claim_lineage(n, name) == lineage[0] for n in (x, z)))

    await cluster.crash(y)  # one failure
    await restarted(cluster, name, y.name, [x, z])
    handled = await x.call(name, "handled")
    assert handled[0] == ("end_handoff", 4), handled
