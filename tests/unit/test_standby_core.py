"""The standby core on its own: checkpoints in, puts, acknowledgements and restores out,
no sockets, exact times.

Each test drives a few ``StandbyCore`` objects by hand (``host_started``,
``host_checkpoint``, ``placement_changed``, ``on_put``...) and reads what they decide
from ``take()``; ``pump`` carries their messages between them, in order, when a test does
not look at each one. Time starts at 0.0 and is passed explicitly; deadlines are asserted
exactly (a deadline is the time of its cause plus its delay, so it is written that way).
The configuration is ``StandbyConfig()``'s: at most 1 MiB per state, write-behind every
5 ms, retries after 0.5 s doubling to 5 s, restores waiting at most 10 s, tombstones and
drops to a node that is down kept 30 s. The placement is ``Ring()`` over the nodes.
"""

from __future__ import annotations

from typing import Any

import pytest

from distable._errors import CheckpointTooLarge
from distable.registry._standby import (
    CheckpointDone,
    CheckpointRefused,
    Restored,
    StandbyConfig,
    StandbyCore,
    StandbyOutput,
)
from distable.ring import Ring
from distable.wire import Pid
from distable.wire._messages import (
    Checkpoint,
    CheckpointAck,
    CheckpointDrop,
    CheckpointFetch,
    CheckpointHandover,
    CheckpointHave,
    CheckpointPut,
    Holder,
    Lineage,
    Spec,
)

SPEC = Spec("tests.registry.apps:Counter", [], {}, "transient", 5.0)
NODES = ["a", "b", "c", "d"]


def core(node: str, nodes: list[str] = NODES, **config: Any) -> StandbyCore:
    """``node``'s core with every other node of ``nodes`` up and placed."""
    me = StandbyCore(node, config=StandbyConfig(**config), placement=Ring().place(nodes), now=0.0)
    for other in nodes:
        if other != node:
            me.peer_up(other, 0.0)
    return me


def name_with(first: list[str], nodes: list[str] = NODES) -> str:
    """A name whose preference list among ``nodes`` starts with ``first``."""
    ring = Ring().place(nodes)
    return next(n for i in range(10_000) if ring.preference(n := f"name-{i}", len(first)) == first)


def pid(node: str, i: int = 1) -> Pid:
    return Pid(node, 1, i)


def sent(me: StandbyCore) -> list[tuple[str, Any]]:
    return me.take().send


class Pump:
    """Carries the cores' messages to each other in order until none is left, and keeps
    what else they output."""

    def __init__(self, *cores: StandbyCore) -> None:
        self.cores = {c.node: c for c in cores}
        self.out: dict[str, StandbyOutput] = {c.node: StandbyOutput() for c in cores}
        self.lost: set[str] = set()  # nodes whose messages, both ways, go nowhere

    def __call__(self, now: float) -> None:
        for _ in range(1000):
            moved = False
            for node, me in self.cores.items():
                out = me.take()
                kept = self.out[node]
                kept.done += out.done
                kept.restored += out.restored
                kept.refused += out.refused
                for dst, msg in out.send:
                    moved = True
                    if dst in self.cores and node not in self.lost and dst not in self.lost:
                        self.cores[dst].on_message(node, msg, now)
            if not moved:
                return
        raise AssertionError("the cores never stopped sending")

    def done(self, node: str) -> list[CheckpointDone]:
        found, self.out[node].done = self.out[node].done, []
        return found

    def restored(self, node: str) -> list[Restored]:
        found, self.out[node].restored = self.out[node].restored, []
        return found


def put(name: str, lineage: Lineage, seq: int, state: bytes = b"s", base: Lineage | None = None) -> CheckpointPut:
    return CheckpointPut(Checkpoint(name, lineage, base, seq, lineage.origin, state, SPEC))


# --- the host's side: puts and waits ----------------------------------------------------------------


def test_a_checkpoint_goes_to_the_successors_and_completes_when_every_one_holds_it() -> None:
    name = name_with(["a", "b", "c"])
    a = core("a")
    a.host_started(name, pid("a"), SPEC, 2, 0.0)
    assert a.standbys_of(name) == ["b", "c"]
    a.host_checkpoint(name, pid("a"), b"one", 1.0, token=7)
    out = a.take()
    line = Lineage(0, pid("a"))
    cp = Checkpoint(name, line, None, 1, pid("a"), b"one", SPEC)
    assert out.send == [("b", CheckpointPut(cp)), ("c", CheckpointPut(cp))]
    assert not out.done
    a.on_ack("b", CheckpointAck(name, line, 1), 1.1)
    assert not a.take().done  # c does not hold it yet
    a.on_ack("c", CheckpointAck(name, line, 1), 1.2)
    assert a.take().done == [CheckpointDone(name, 7, True, "acked")]
    assert a.replicated(name)
    assert a.lineage_of(name) == (line, None)


def test_with_no_other_node_placed_a_checkpoint_completes_at_once() -> None:
    name = "alone"
    a = core("a", ["a"])
    a.host_started(name, pid("a"), SPEC, 1, 0.0)
    a.host_checkpoint(name, pid("a"), b"x", 1.0, token=1)
    out = a.take()
    assert out.send == []
    assert out.done == [CheckpointDone(name, 1, True, "acked")]


def test_with_a_node_up_but_not_placed_yet_a_checkpoint_waits_for_the_placement() -> None:
    """A node that joined a moment ago places nobody else until it has synced: its waits
    do not complete as if it were alone."""
    name = "early"
    a = StandbyCore("a", config=StandbyConfig(), placement=Ring().place(["a"]), now=0.0)
    a.peer_up("b", 0.0)
    a.host_started(name, pid("a"), SPEC, 1, 0.0)
    a.host_checkpoint(name, pid("a"), b"x", 1.0, token=1)
    assert a.take() == StandbyOutput()
    a.placement_changed(Ring().place(["a", "b"]), 2.0)
    ((to, msg),) = sent(a)
    a.on_ack(to, CheckpointAck(name, msg.checkpoint.lineage, 1), 2.1)
    assert a.take().done == [CheckpointDone(name, 1, True, "acked")]


def test_the_standbys_of_a_name_hosted_off_its_owner_start_with_the_owner() -> None:
    """The placement moved the name away and its handoff has not happened yet: the owner,
    where it is going, holds its checkpoints already."""
    name = name_with(["b", "c", "a"])
    a = core("a")
    a.host_started(name, pid("a"), SPEC, 2, 0.0)
    assert a.standbys_of(name) == ["b", "c"]
    name = name_with(["b", "a", "c"])
    a.host_started(name, pid("a", 2), SPEC, 2, 0.0)
    assert a.standbys_of(name) == ["b", "c"]


def test_an_oversized_state_is_refused_before_anything_changes() -> None:
    name = name_with(["a", "b"])
    a = core("a", max_bytes=4)
    a.host_started(name, pid("a"), SPEC, 1, 0.0)
    with pytest.raises(CheckpointTooLarge) as raised:
        a.host_checkpoint(name, pid("a"), b"12345", 1.0, token=1)
    assert (raised.value.size, raised.value.limit) == (5, 4)
    assert a.take() == StandbyOutput()
    assert a.hosted(name) is None
    a.host_checkpoint(name, pid("a"), b"1234", 1.0, token=2)  # at the limit: fine
    assert [to for to, _ in sent(a)] == ["b"]


def test_a_checkpoint_of_a_process_not_hosted_here_fails_at_once() -> None:
    a = core("a")
    a.host_checkpoint("nobody", pid("a"), b"x", 1.0, token=3)
    assert a.take().done == [CheckpointDone("nobody", 3, False, "removed")]


def test_write_behind_sends_only_the_latest_state_at_most_every_interval_exactly() -> None:
    name = name_with(["a", "b"])
    a = core("a")
    a.host_started(name, pid("a"), SPEC, 1, 0.0)
    a.host_checkpoint(name, pid("a"), b"1", 1.0)
    assert [m.checkpoint.state for _, m in sent(a)] == [b"1"]  # the first goes at once
    a.host_checkpoint(name, pid("a"), b"2", 1.001)
    a.host_checkpoint(name, pid("a"), b"3", 1.002)
    assert sent(a) == []
    assert a.next_deadline() == 1.0 + 0.005
    a.handle_timer(1.0 + 0.005 - 1e-9)
    assert sent(a) == []
    a.handle_timer(1.0 + 0.005)
    ((to, msg),) = sent(a)
    assert (to, msg.checkpoint.state, msg.checkpoint.seq) == ("b", b"3", 2)  # "2" never went
    a.host_checkpoint(name, pid("a"), b"4", 1.0 + 0.005 + 0.005)  # an interval later: at once
    assert [m.checkpoint.seq for _, m in sent(a)] == [3]


def test_a_waiting_checkpoint_replaces_a_pending_write_behind_state_and_goes_at_once() -> None:
    name = name_with(["a", "b"])
    a = core("a")
    a.host_started(name, pid("a"), SPEC, 1, 0.0)
    a.host_checkpoint(name, pid("a"), b"1", 1.0)
    a.host_checkpoint(name, pid("a"), b"2", 1.001)
    sent(a)
    a.host_checkpoint(name, pid("a"), b"3", 1.002, token=9)
    assert [(m.checkpoint.state, m.checkpoint.seq) for _, m in sent(a)] == [(b"3", 2)]
    a.handle_timer(1.0 + 0.005)
    assert sent(a) == []  # the write-behind state it replaced is not sent after it


def test_unanswered_puts_are_sent_again_after_a_doubling_delay_exactly() -> None:
    name = name_with(["a", "b"])
    a = core("a")
    a.host_started(name, pid("a"), SPEC, 1, 0.0)
    a.host_checkpoint(name, pid("a"), b"x", 1.0, token=1)
    sent(a)
    times = []
    now = 1.0
    for _ in range(6):
        now = a.next_deadline()
        a.handle_timer(now)
        assert [to for to, _ in sent(a)] == ["b"]
        times.append(round(now - 1.0, 9))
    assert times == [0.5, 0.5 + 1, 0.5 + 1 + 2, 0.5 + 1 + 2 + 4, 0.5 + 1 + 2 + 4 + 5, 0.5 + 1 + 2 + 4 + 5 + 5]
    a.on_ack("b", CheckpointAck(name, Lineage(0, pid("a")), 1), now)
    assert a.take().done == [CheckpointDone(name, 1, True, "acked")]
    a.handle_timer(a.next_deadline())
    assert sent(a) == []  # answered: no more retries
    assert a.next_deadline() == float("inf")
    assert a.statistics().retransmits == 6


# --- the standby's side ------------------------------------------------------------------------


def test_a_standby_keeps_the_newest_lineage_and_in_it_the_highest_seq() -> None:
    b = core("b")
    old, new = Lineage(0, pid("a")), Lineage(1, pid("c"))
    b.on_put("a", put("n", old, 1, b"1"), 0.0)
    b.on_put("a", put("n", old, 3, b"3"), 0.0)
    b.on_put("a", put("n", old, 2, b"2"), 0.0)  # a straggler: kept out, answered with what is held
    assert [m for _, m in sent(b)] == [
        CheckpointAck("n", old, 1),
        CheckpointAck("n", old, 3),
        CheckpointAck("n", old, 3),
    ]
    assert b.records["n"].state == b"3"
    b.on_put("c", put("n", new, 4, b"4", base=old), 0.0)  # a newer lineage replaces it
    assert b.records["n"].lineage == new
    b.on_put("a", put("n", old, 5, b"5"), 0.0)  # the older lineage, even at a higher seq: refused
    assert sent(b) == [
        ("c", CheckpointAck("n", new, 4)),
        ("a", CheckpointAck("n", old, 5, False, new, pid("c"))),
    ]
    assert b.records["n"].state == b"4"
    stats = b.statistics()
    assert (stats.records, stats.record_bytes, stats.refusals, stats.puts_received) == (1, 1, 1, 5)


def test_a_drop_removes_only_its_lineage_up_to_its_seq_and_leaves_a_tombstone_for_30_s() -> None:
    b = core("b")
    line, other = Lineage(0, pid("a")), Lineage(0, pid("c"))
    b.on_put("a", put("n", line, 5), 0.0)
    b.on_drop("c", CheckpointDrop("n", other, 9), 1.0)  # another lineage: kept
    b.on_drop("a", CheckpointDrop("n", line, 4), 1.0)  # below what is held: kept
    assert "n" in b.records
    b.on_drop("a", CheckpointDrop("n", line, 5), 2.0)
    assert "n" not in b.records
    assert sent(b)[-1] == ("a", CheckpointAck("n", line, 5, dropped=True))
    b.on_put("x", put("n", line, 4), 2.5)  # a straggler its own line's drop overtook: ignored
    assert "n" not in b.records
    assert sent(b) == []
    b.on_put("a", put("n", line, 5), 2.5)  # the host's own re-put at that seq is a new put
    assert b.records["n"].seq == 5
    b.on_drop("a", CheckpointDrop("n", line, 6), 3.0)
    assert b.next_deadline() == 1.0 + 30.0  # the first tombstone's end
    b.handle_timer(3.0 + 30.0 - 1e-9)
    b.on_put("x", put("n", line, 4), 3.0 + 30.0 - 1e-9)
    assert "n" not in b.records
    b.handle_timer(3.0 + 30.0)
    b.on_put("x", put("n", line, 4), 3.0 + 30.0)  # the tombstone is gone
    assert b.records["n"].seq == 4


def test_a_node_hosting_the_name_takes_a_straggler_refuses_an_older_lineage_and_keeps_a_newer() -> None:
    name = name_with(["b", "c"])
    b = core("b")
    mine, _ = b.host_started(name, pid("b"), SPEC, 1, 0.0)
    assert mine == Lineage(0, pid("b"))
    b.on_put("a", put(name, mine, 1), 0.0)  # its own lineage, from the old host of a handoff
    assert name not in b.records
    assert sent(b) == [("a", CheckpointAck(name, mine, 1))]
    older, newer = Lineage(0, pid("a")), Lineage(1, pid("a"))
    b.on_put("a", put(name, older, 1), 0.0)  # a host that slept while b restarted the name
    assert sent(b) == [("a", CheckpointAck(name, older, 1, False, mine, pid("b")))]
    b.on_put("a", put(name, newer, 1), 0.0)  # another copy's (a conflict): a standby's record
    assert b.records[name].lineage == newer


def test_a_fetch_is_answered_with_the_record_and_the_host_copy_held_here() -> None:
    b = core("b")
    b.on_put("a", put("n", Lineage(0, pid("a")), 2), 0.0)
    mine = name_with(["b", "c"])
    b.host_started(mine, pid("b"), SPEC, 1, 0.0)
    b.host_checkpoint(mine, pid("b"), b"m", 0.0)
    sent(b)
    b.on_fetch("c", CheckpointFetch(5, ["n", mine, "none"]), 1.0)
    ((to, have),) = sent(b)
    assert to == "c"
    assert isinstance(have, CheckpointHave)
    assert have.ref == 5
    assert [(cp.name, cp.seq, cp.writer) for cp in have.checkpoints] == [("n", 2, pid("a")), (mine, 1, pid("b"))]


# --- refusals and takeovers ------------------------------------------------------------------------


def test_a_refused_host_reports_it_at_each_retry_and_its_wait_completes_only_after_it_takes_over() -> None:
    name = name_with(["a", "b"])
    a, b = core("a"), core("b")
    newer = Lineage(3, pid("c"))
    b.on_put("c", put(name, newer, 9, b"theirs"), 0.0)
    sent(b)
    a.host_started(name, pid("a"), SPEC, 1, 0.0)
    pump = Pump(a, b)
    a.host_checkpoint(name, pid("a"), b"mine", 1.0, token=1)
    pump(1.0)
    a.host_checkpoint(name, pid("a"), b"mine2", 2.0, token=2)
    pump(2.0)
    refusal = CheckpointRefused(name, pid("a"), "b", newer, pid("c"))
    assert pump.out["a"].refused == [refusal]  # once for both puts
    assert pump.done("a") == []
    a.handle_timer(a.next_deadline())  # asked again: the newer record may have gone
    pump(a.next_deadline())
    assert pump.out["a"].refused == [refusal, refusal]  # and told again: the shell decides anew
    taken = a.host_takeover(name, pid("a"), 3.0)
    assert taken == Lineage(4, pid("a"))  # above every epoch heard of
    pump(3.0)
    assert pump.done("a") == [CheckpointDone(name, 1, True, "acked"), CheckpointDone(name, 2, True, "acked")]
    assert b.records[name].lineage == taken
    assert b.records[name].state == b"mine2"
    assert a.lineage_of(name) == (taken, Lineage(0, pid("a")))


def test_a_woken_host_cannot_overwrite_the_lineage_that_replaced_it() -> None:
    """a was paused, declared failed; c restarted the name from a's checkpoint under a newer
    lineage, on b. a wakes and checkpoints again: b keeps c's."""
    name = name_with(["a", "b"])
    a, b = core("a"), core("b")
    a.host_started(name, pid("a"), SPEC, 1, 0.0)
    pump = Pump(a, b)
    a.host_checkpoint(name, pid("a"), b"7", 1.0, token=1)
    pump(1.0)
    assert pump.done("a") == [CheckpointDone(name, 1, True, "acked")]
    restarted = Lineage(1, pid("c"))
    b.on_put("c", put(name, restarted, 2, b"7", base=Lineage(0, pid("a"))), 5.0)
    sent(b)
    a.host_checkpoint(name, pid("a"), b"8", 9.0, token=2)
    pump(9.0)
    assert b.records[name].lineage == restarted
    assert b.records[name].state == b"7"
    assert [r.held for r in pump.out["a"].refused] == [restarted]
    assert pump.done("a") == []


def test_a_conflicts_winner_takes_over_the_losers_holders_and_drops_them_after_its_put() -> None:
    name = name_with(["a", "b", "c"])
    a, b, c = core("a"), core("b"), core("c")
    loser = Lineage(1, pid("c", 5))
    c.on_put("x", put(name, loser, 3), 0.0)
    sent(c)
    a.host_started(name, pid("a"), SPEC, 1, 0.0)
    pump = Pump(a, b, c)
    a.host_checkpoint(name, pid("a"), b"w", 1.0, token=1)
    pump(1.0)
    # The loser's host retired its copy and handed over where its records are (on c).
    new = a.host_takeover(name, pid("a"), 2.0, absorbed=[Holder("c", loser, 3)])
    assert new == Lineage(2, pid("a"))
    out = a.take()
    assert [(to, type(m).__name__) for to, m in out.send] == [("b", "CheckpointPut")]  # no drop yet
    for _to, msg in out.send:
        b.on_message("a", msg, 2.0)
    pump(2.0)
    assert name not in c.records  # dropped once b held the new lineage
    assert b.records[name].lineage == new


# --- re-replication -------------------------------------------------------------------------------


def test_a_join_during_a_checkpoint_completes_it_on_the_new_standby_and_drops_the_old_one_after() -> None:
    name = name_with(["a", "j", "b"], [*NODES, "j"])
    assert Ring().place(NODES).preference(name, 2) == ["a", "b"]
    a, b, j = core("a"), core("b"), core("j", [*NODES, "j"])
    a.host_started(name, pid("a"), SPEC, 1, 0.0)
    a.host_checkpoint(name, pid("a"), b"x", 1.0, token=1)
    to_b = sent(a)
    assert [to for to, _ in to_b] == ["b"]
    a.peer_up("j", 1.1)
    a.placement_changed(Ring().place([*NODES, "j"]), 1.1)  # j joined in front of b
    ((to, msg),) = sent(a)
    assert to == "j"
    for _, m in to_b:
        b.on_message("a", m, 1.2)  # b gets it too, late
    a.on_message("b", sent(b)[0][1], 1.3)  # and its ack no longer counts
    assert a.take() == StandbyOutput()
    j.on_message("a", msg, 1.4)
    a.on_message("j", sent(j)[0][1], 1.5)
    out = a.take()
    assert out.done == [CheckpointDone(name, 1, True, "acked")]
    assert out.send == [("b", CheckpointDrop(name, Lineage(0, pid("a")), 1))]  # only now
    b.on_message("a", out.send[0][1], 1.6)
    assert name not in b.records
    a.on_message("b", sent(b)[0][1], 1.7)
    assert a.replicated(name)


def test_a_standby_that_dies_is_replaced_and_the_wait_completes_on_its_replacement() -> None:
    name = name_with(["a", "b", "c"])
    a, c = core("a"), core("c")
    a.host_started(name, pid("a"), SPEC, 1, 0.0)
    a.host_checkpoint(name, pid("a"), b"x", 1.0, token=1)
    assert [to for to, _ in sent(a)] == ["b"]
    a.peer_down("b", 2.0)
    a.placement_changed(Ring().place(["a", "c", "d"]), 2.0)
    pump = Pump(a, c)
    pump(2.0)
    assert pump.done("a") == [CheckpointDone(name, 1, True, "acked")]
    assert c.records[name].state == b"x"


def test_a_standby_that_comes_back_gets_the_latest_state_again() -> None:
    """It may be a new incarnation that holds nothing: what it acknowledged before it went
    down no longer counts."""
    name = name_with(["a", "b"])
    a, b = core("a"), core("b")
    a.host_started(name, pid("a"), SPEC, 1, 0.0)
    pump = Pump(a, b)
    a.host_checkpoint(name, pid("a"), b"x", 1.0, token=1)
    pump(1.0)
    a.peer_down("b", 2.0)
    assert not a.replicated(name)
    fresh = core("b")
    pump = Pump(a, fresh)
    a.peer_up("b", 3.0)
    pump(3.0)
    assert fresh.records[name].state == b"x"
    assert a.replicated(name)


# --- the end of a name -------------------------------------------------------------------------


def test_removing_a_name_drops_it_everywhere_and_a_drop_is_resent_until_answered() -> None:
    name = name_with(["a", "b", "c"])
    a, b, c = core("a"), core("b"), core("c")
    a.host_started(name, pid("a"), SPEC, 2, 0.0)
    a.host_checkpoint(name, pid("a"), b"x", 1.0, token=1)
    a.host_checkpoint(name, pid("a"), b"y", 1.0, token=2)
    pump = Pump(a, b, c)
    pump(1.0)
    pump.lost = {"c"}
    a.host_checkpoint(name, pid("a"), b"z", 2.0, token=3)
    a.host_removed(name, pid("a"), 2.0)
    pump(2.0)
    assert pump.done("a")[-1] == CheckpointDone(name, 3, False, "removed")
    assert name not in b.records
    assert c.records[name].seq == 2
    assert a.hosted(name) is None
    pump.lost = set()
    a.handle_timer(2.0 + 0.5)
    pump(2.0 + 0.5)
    assert name not in c.records
    a.handle_timer(a.next_deadline())
    assert sent(a) == []


def test_a_drop_to_a_node_that_is_down_goes_when_it_comes_back_within_30_s() -> None:
    name = name_with(["a", "b"])
    a, b = core("a"), core("b")
    a.host_started(name, pid("a"), SPEC, 1, 0.0)
    pump = Pump(a, b)
    a.host_checkpoint(name, pid("a"), b"x", 1.0)
    pump(1.0)
    a.peer_down("b", 2.0)  # paused, say
    a.host_removed(name, pid("a"), 3.0)
    assert sent(a) == []
    a.peer_up("b", 4.0)
    pump(4.0)
    assert name not in b.records


def checkpointed_once() -> tuple[Any, StandbyCore, StandbyCore, Pump]:
    """a hosts a name whose standby is b, with one checkpoint (b"1", token 1) held by b:
    the name, both cores and their pump."""
    name = name_with(["a", "b"])
    a, b = core("a"), core("b")
    a.host_started(name, pid("a"), SPEC, 1, 0.0)
    pump = Pump(a, b)
    a.host_checkpoint(name, pid("a"), b"1", 1.0, token=1)
    pump(1.0)
    return name, a, b, pump


def test_an_exited_process_keeps_its_copy_for_the_restart_and_its_waits_fail() -> None:
    name, a, _, pump = checkpointed_once()
    pump.lost = {"b"}
    a.host_checkpoint(name, pid("a"), b"2", 1.5, token=2)
    a.host_checkpoint(name, pid("a"), b"3", 1.5 + 0.001)  # write-behind, pending
    a.host_exited(name, pid("a"), 2.0)
    pump(2.0)
    assert pump.done("a") == [CheckpointDone(name, 1, True, "acked"), CheckpointDone(name, 2, False, "exited")]
    kept = a.hosted(name)
    assert kept is not None
    assert kept.state == b"3"


# --- restores ------------------------------------------------------------------------------------


def test_a_restart_after_a_crash_here_continues_the_lineage_at_once() -> None:
    name = name_with(["a", "b"])
    a = core("a")
    line, _ = a.host_started(name, pid("a"), SPEC, 1, 0.0)
    a.host_checkpoint(name, pid("a"), b"x", 1.0)
    a.host_exited(name, pid("a"), 2.0)
    sent(a)
    a.restart_starting(name, 11, line, None, 3.0)
    ((restored,),) = [a.take().restored]
    assert restored.continued
    assert restored.checkpoint is not None
    assert restored.checkpoint.state == b"x"
    assert a.host_started(name, pid("a", 2), SPEC, 1, 3.0, restored=restored) == (line, None)
    a.host_checkpoint(name, pid("a", 2), b"y", 4.0)
    assert [(m.checkpoint.lineage, m.checkpoint.seq, m.checkpoint.writer) for _, m in sent(a)] == [
        (line, 2, pid("a", 2))
    ]


def test_a_restore_after_the_host_died_takes_the_claims_lineage_at_its_highest_seq() -> None:
    name = name_with(["b", "c", "d"])
    b, c, d = core("b"), core("c"), core("d")
    line = Lineage(2, pid("a"))
    b.on_put("a", put(name, line, 4, b"4"), 0.0)
    c.on_put("a", put(name, line, 5, b"5"), 0.0)
    d.on_put("x", put(name, Lineage(9, pid("x")), 1, b"stale"), 0.0)  # not the claim's: never chosen
    for me in (b, c, d):
        me.peer_down("a", 1.0)
        me.take()
    pump = Pump(b, c, d)
    b.restart_starting(name, 1, line, None, 1.0)
    assert b.restoring() == 1
    fetches = b.take().send
    assert fetches == [("c", CheckpointFetch(1, [name])), ("d", CheckpointFetch(2, [name]))]
    for to, msg in fetches:
        pump.cores[to].on_message("b", msg, 1.0)
    pump(1.0)
    (restored,) = pump.restored("b")
    assert restored.checkpoint is not None
    assert restored.checkpoint.state == b"5"
    assert (restored.continued, restored.epoch, restored.complete) == (False, 9, True)
    assert sorted(restored.holders, key=lambda h: h.node) == [Holder("b", line, 4), Holder("c", line, 5)]
    new, base = b.host_started(name, pid("b"), SPEC, 1, 1.0, restored=restored)
    assert (new, base) == (Lineage(10, pid("b")), line)
    assert name not in b.records  # its own record: superseded by its host copy
    pump(1.0)
    assert c.records[name].lineage == new
    assert c.records[name].seq == 6
    assert c.records[name].state == b"5"
    assert d.records[name].lineage == Lineage(9, pid("x"))  # not the restored line's: left alone


def test_a_restore_takes_a_lineage_based_on_the_claims_then_the_claims_base() -> None:
    """The claim can lag one takeover (its re-claim still on its way), and a restarted copy
    can die before its own first put was stored anywhere."""
    name = name_with(["b", "c"])
    claim, taken, base = Lineage(1, pid("a")), Lineage(2, pid("a")), Lineage(0, pid("z"))
    b = core("b")
    b.on_put("a", put(name, taken, 3, b"taken", base=claim), 0.0)
    b.restart_starting(name, 1, claim, base, 1.0)
    for peer in ["a", "c", "d"]:
        b.peer_down(peer, 1.0)  # nobody else answers: what b holds decides
    (restored,) = b.take().restored
    assert restored.checkpoint is not None
    assert restored.checkpoint.state == b"taken"
    b2 = core("b")
    b2.on_put("z", put(name, base, 7, b"base"), 0.0)
    for peer in ["a", "c", "d"]:
        b2.peer_down(peer, 0.0)
    b2.restart_starting(name, 1, claim, base, 1.0)
    (restored,) = b2.take().restored
    assert restored.checkpoint is not None
    assert restored.checkpoint.state == b"base"
    b2.restart_starting(name, 2, claim, None, 1.0)
    (restored,) = b2.take().restored
    assert restored.checkpoint is None  # neither: a fresh start


def test_a_restore_waits_for_every_peer_or_its_fall_then_at_most_10_s() -> None:
    name = name_with(["b", "c"])
    b = core("b")
    line = Lineage(0, pid("a"))
    b.restart_starting(name, 1, line, None, 1.0)
    assert [to for to, _ in sent(b)] == ["a", "c", "d"]
    b.on_have("c", CheckpointHave(2, [Checkpoint(name, line, None, 3, pid("a"), b"3")]), 1.1)
    b.peer_down("a", 1.2)
    assert b.take().restored == []  # d has not answered
    assert b.next_deadline() == 1.0 + 0.5
    b.handle_timer(1.0 + 0.5)
    assert sent(b) == [("d", CheckpointFetch(4, [name]))]  # asked again
    for _ in range(10):
        b.handle_timer(b.next_deadline())
        if b.restoring() == 0:
            break
    (restored,) = b.take().restored
    assert restored.complete is False
    assert restored.checkpoint is not None
    assert restored.checkpoint.seq == 3
    assert b.statistics().restores_incomplete == 1
    b.restart_starting(name, 2, None, None, 20.0)
    assert b.take().restored == [Restored(name, 2, None, False, -1, ())]  # nothing to restore: at once


def test_an_answer_to_an_older_fetch_does_not_count_for_a_newer_restore() -> None:
    name = name_with(["b", "c"])
    b = core("b", ["b", "c"])
    line = Lineage(0, pid("a"))
    b.restart_starting(name, 1, line, None, 1.0)
    (old,) = sent(b)
    b.restart_starting(name, 2, line, None, 2.0)
    sent(b)
    b.on_have("c", CheckpointHave(old[1].ref, []), 2.1)
    assert [r.token for r in b.take().restored] == [1]
    b.on_have("c", CheckpointHave(old[1].ref + 1, [Checkpoint(name, line, None, 4, pid("a"), b"4")]), 2.2)
    (restored,) = b.take().restored
    assert restored.token == 2
    assert restored.checkpoint is not None
    assert restored.checkpoint.seq == 4


def test_the_restores_of_one_turn_ask_each_peer_once() -> None:
    b = core("b")
    line = Lineage(0, pid("a"))
    b.restart_starting("x", 1, line, None, 1.0)
    b.restart_starting("y", 2, line, None, 1.0)
    assert sent(b) == [(peer, CheckpointFetch(i + 1, ["x", "y"])) for i, peer in enumerate(["a", "c", "d"])]


# --- handoffs ------------------------------------------------------------------------------------


def test_a_handoff_continues_the_lineage_and_the_resume_state_supersedes_the_checkpoint() -> None:
    name = name_with(["a", "b", "c"])
    a, b, c = core("a"), core("b"), core("c")
    line, _ = a.host_started(name, pid("a"), SPEC, 1, 0.0)
    pump = Pump(a, b, c)
    a.host_checkpoint(name, pid("a"), b"1", 1.0, token=1)
    pump(1.0)
    a.host_checkpoint(name, pid("a"), b"2", 2.0)  # write-behind: at once
    a.host_checkpoint(name, pid("a"), b"3", 2.001)  # pending, sent by the handover
    handover = a.handover(name, pid("a"), 2.002)
    assert handover is not None
    assert (handover.lineage, handover.seq, handover.state) == (line, 3, b"3")
    assert handover.holders == [Holder("a", line, 3), Holder("b", line, 3)]  # a stays one
    assert a.records[name].seq == 3
    straggler = a.take().send[:1]  # the put of seq 2 to b, delayed on its link
    assert [(to, m.checkpoint.seq) for to, m in straggler] == [("b", 2)]
    a.placement_changed(Ring().place(["c", "d"]), 2.002)  # a leaves: nothing more is sent
    assert sent(a) == []
    # c takes the name (in its view, only c and d are placed now): it continues the lineage,
    # writes the Resume state as seq 4 to its standby d, and drops b once d holds it.
    d = core("d")
    pump = Pump(b, c, d)
    for me in (c, d):
        me.peer_down("a", 2.1)
        me.placement_changed(Ring().place(["c", "d"]), 2.1)
    got = c.host_started(name, pid("c"), SPEC, 1, 2.1, resumed=handover, resume_state=b"resumed")
    assert got == (line, None)
    assert c.standbys_of(name) == ["d"]
    pump(2.1)
    held = d.records[name]
    assert (held.lineage, held.seq, held.state, held.writer) == (line, 4, b"resumed", pid("c"))
    assert name not in b.records
    for _to, msg in straggler:
        b.on_message("a", msg, 2.2)  # the old host's put arrives after the drop: the tombstone keeps it out
    assert name not in b.records
    assert c.replicated(name)  # a is down here: its drop waits for it (30 s at most)
    a.host_retired(name, pid("a"), 2.3)
    assert a.hosted(name) is None
    assert a.statistics().hosted_bytes == 0
    assert a.records[name].seq == 3  # a holder until c drops it
    c.peer_up("a", 2.4)
    a.on_message("c", sent(c)[0][1], 2.4)
    assert name not in a.records


def test_an_aborted_handoff_resumes_re_replication() -> None:
    name = name_with(["a", "b"])
    a = core("a")
    a.host_started(name, pid("a"), SPEC, 1, 0.0)
    a.host_checkpoint(name, pid("a"), b"1", 1.0)
    sent(a)
    a.handover(name, pid("a"), 1.5)
    a.peer_down("b", 1.6)
    a.peer_up("b", 1.7)
    assert sent(a) == []  # frozen for the handoff
    assert name in a.records  # a holder while the name moves
    a.handoff_aborted(name, pid("a"), 1.8)
    assert [to for to, _ in sent(a)] == ["b"]
    assert name not in a.records  # the host copy again


def test_a_restart_answer_hands_the_last_checkpoint_on() -> None:
    name = name_with(["b", "c"])
    line = Lineage(0, pid("a"))
    handover_state = b"last"
    b = core("b")
    got = b.host_started(name, pid("b"), SPEC, 1, 0.0, resumed=CheckpointHandover(line, None, 5, [], handover_state))
    assert got == (line, None)
    ((to, msg),) = sent(b)
    assert (to, msg.checkpoint.seq, msg.checkpoint.state) == ("c", 5, b"last")


def test_a_handed_in_copy_withdrawn_leaves_the_record_it_superseded() -> None:
    # b, a standby of a's name, is handed the name (it replaces b's record with a host
    # copy); the move is withdrawn (C2) before b claims it: b holds its record again, with
    # what it acknowledged meanwhile, and a crash of a then restores it.
    name = name_with(["a", "b"], ["a", "b"])
    a, b = core("a", ["a", "b"]), core("b", ["a", "b"])
    line, _ = a.host_started(name, pid("a"), SPEC, 1, 0.0)
    pump = Pump(a, b)
    a.host_checkpoint(name, pid("a"), b"1", 1.0, token=1)
    pump(1.0)
    assert b.records[name].seq == 1
    handover = a.handover(name, pid("a"), 2.0)
    assert handover is not None
    got = b.host_started(name, pid("b"), SPEC, 1, 2.1, resumed=handover, resume_state=b"resumed")
    assert got == (line, None)
    assert name not in b.records  # the host copy supersedes it
    # A straggler of a's (seq 1 again, say a retry) is acknowledged by the copy: noted.
    b.on_put("a", CheckpointPut(Checkpoint(name, line, None, 1, pid("a"), b"1", SPEC)), 2.2)
    b.handin_settled(name, pid("b"), False, 2.3)  # withdrawn
    assert b.hosted(name) is None
    held = b.records[name]
    assert (held.lineage, held.seq, held.state) == (line, 1, b"1")
    b.peer_down("a", 3.0)  # a crashes
    b.restart_starting(name, 1, line, None, 3.0)
    (restored,) = b.take().restored
    assert restored.checkpoint is not None
    assert restored.checkpoint.state == b"1"


def test_a_copy_handed_in_late_by_an_aborted_handoff_hides_no_newer_record_from_a_restore() -> None:
    """Seed 864894953 (checkpointed campaign): a handed b the name, the request was held up
    by a partition, a aborted the move and went on checkpointing to b. The stale request,
    read at last, started a copy on b from the older state, which superseded b's newer
    record of the same line; a died, and the name's restart on b found nothing (the live
    copy's record and the superseded one were both left out) and started fresh."""
    name, a, b, pump = checkpointed_once()
    line = b.records[name].lineage
    handover = a.handover(name, pid("a"), 2.0)
    assert handover is not None
    a.handoff_aborted(name, pid("a"), 2.5)  # the request never arrived in time
    a.host_checkpoint(name, pid("a"), b"3 ops", 3.0, token=2)
    pump(3.0)
    assert pump.done("a")[-1] == CheckpointDone(name, 2, True, "acked")
    # seq 2 is the withdrawn copy's (the handover's 1, and its Resume state): a goes above it
    assert (b.records[name].seq, b.records[name].state) == (3, b"3 ops")
    b.host_started(name, pid("b"), SPEC, 1, 4.0, resumed=handover, resume_state=b"stale")
    stale = b.hosted(name)
    assert stale is not None
    assert stale.seq == 2
    for peer in ["a", "c", "d"]:
        b.peer_down(peer, 5.0)  # a dies (and nobody else answers): b restarts the name
    b.restart_starting(name, 1, line, None, 5.0)
    (restored,) = b.take().restored
    assert restored.checkpoint is not None
    assert restored.checkpoint.state == b"3 ops"
    fetch = CheckpointFetch(7, [name])
    b.on_fetch("c", fetch, 5.0)  # and asked from elsewhere, b names that record too
    ((_, have),) = sent(b)
    assert b"3 ops" in [cp.state for cp in have.checkpoints]


def test_a_handed_in_copy_that_claims_the_name_forgets_the_record_it_superseded() -> None:
    name, a, b, _ = checkpointed_once()
    handover = a.handover(name, pid("a"), 2.0)
    assert handover is not None
    b.host_started(name, pid("b"), SPEC, 1, 2.1, resumed=handover)
    b.handin_settled(name, pid("b"), True, 2.2)  # claimed (step 6)
    b.handin_settled(name, pid("b"), False, 2.3)  # a late withdrawal changes nothing now
    assert b.hosted(name) is not None
    assert name not in b.records


# --- two live copies of one name on one node ---------------------------------------------------------


def handed(line: Lineage, seq: int, state: bytes | None, *holders: Holder) -> CheckpointHandover:
    return CheckpointHandover(line, None, seq, list(holders), state)


def test_two_copies_handed_in_at_once_keep_a_record_each_and_the_winners_merge_is_held() -> None:
    """The checkpoint campaign's loss (seed 1718318914, docs/performance.md "At 04cdff9",
    run 1): b is handed two copies of one name 20 ms apart, d's and a's, the first not
    claimed yet when the second comes. The second claims first, then the first, whose
    claim wins the tracker's conflict (the later local claim). The loser retires into it;
    the winner takes the name over and checkpoints the merged state: that checkpoint must
    complete, and b's death (one failure) must not lose it. With one record per name, the
    second copy's start forgot the first's, the loser's retirement removed the only one,
    and the winner's checkpoint failed ("removed")."""
    name = name_with(["b", "c"])
    a, b, c, d = core("a"), core("b"), core("c"), core("d")
    pump = Pump(a, b, c, d)
    first, second = pid("b", 30), pid("b", 134)
    first_line, second_line = Lineage(3, pid("d", 614)), Lineage(2, pid("a", 222))
    b.host_started(name, first, SPEC, 1, 1.0, resumed=handed(first_line, 1, b"fresh", Holder("d", first_line, 1)))
    pump(1.0)
    resumed = handed(second_line, 13, None, Holder("a", second_line, 13))
    b.host_started(name, second, SPEC, 1, 1.02, resumed=resumed, resume_state=b"13 ops")
    pump(1.02)
    b.handin_settled(name, second, True, 1.03)  # the second claims the name first...
    pump(1.03)
    b.handin_settled(name, first, True, 1.05)  # ... then the first, whose claim wins
    pump(1.05)
    taken = b.host_takeover(name, first, 1.06, absorbed=b.holders_of(name, second))
    assert taken == Lineage(4, first)
    b.host_retired(name, second, 1.07)
    b.host_checkpoint(name, first, b"merged", 1.08, token=1)
    pump(1.08)
    assert pump.done("b") == [CheckpointDone(name, 1, True, "acked")]
    held = c.records[name]
    assert (held.lineage, held.state, held.writer) == (taken, b"merged", first)
    assert b.statistics().hosted == 1

    for me in (a, c, d):
        me.peer_down("b", 2.0)
    c.restart_starting(name, 7, taken, first_line, 2.0)
    pump(2.0)
    (restored,) = pump.restored("c")
    assert restored.checkpoint is not None
    assert restored.checkpoint.state == b"merged"


def test_a_copy_withdrawn_beside_another_leaves_the_other_its_record() -> None:
    # b is handed two copies of one name; the second is withdrawn (C2: its old host keeps
    # its own), the first claims: its record, the name's, is the one it had.
    name = name_with(["b", "c"])
    b, c = core("b"), core("c")
    pump = Pump(b, c)
    first, second = pid("b", 1), pid("b", 2)
    first_line = Lineage(0, pid("a"))
    b.host_started(name, first, SPEC, 1, 1.0, resumed=handed(first_line, 4, b"first"))
    pump(1.0)
    b.host_started(name, second, SPEC, 1, 1.1, resumed=handed(Lineage(1, pid("d")), 2, b"second"))
    pump(1.1)
    b.handin_settled(name, second, False, 1.2)
    b.handin_settled(name, first, True, 1.3)
    b.host_checkpoint(name, first, b"first+1", 1.4, token=1)
    pump(1.4)
    assert pump.done("b") == [CheckpointDone(name, 1, True, "acked")]
    assert (c.records[name].lineage, c.records[name].state) == (first_line, b"first+1")


def test_a_copy_handed_in_beside_a_claimed_one_waits_aside_until_the_registry_chooses() -> None:
    # A copy handed in while the name's claimed copy runs here (a restart beside it, say)
    # has a record of its own, quiet: the claimed copy's checkpoints go on completing. When
    # the registry chooses the other copy (a takeover), that copy's record is the name's,
    # above the displaced copy's epoch too, and the retired copy's waits fail.
    name = name_with(["b", "c"])
    b, c = core("b"), core("c")
    pump = Pump(b, c)
    claimed, handed_in = pid("b", 1), pid("b", 2)
    mine = b.host_started(name, claimed, SPEC, 1, 0.0)[0]
    b.host_checkpoint(name, claimed, b"one", 1.0, token=1)
    pump(1.0)
    theirs = Lineage(4, pid("a"))
    assert b.host_started(name, handed_in, SPEC, 1, 1.1, resumed=handed(theirs, 7, b"theirs")) == (theirs, None)
    b.host_checkpoint(name, handed_in, b"theirs+1", 1.2, token=2)  # kept, not sent
    b.on_put("a", put(name, theirs, 7, b"theirs"), 1.2)  # its old host's straggler: the copy here continues it
    assert name not in b.records
    b.host_checkpoint(name, claimed, b"two", 1.3, token=3)
    pump(1.3)
    assert pump.done("b") == [CheckpointDone(name, 1, True, "acked"), CheckpointDone(name, 3, True, "acked")]
    assert c.records[name].lineage == mine  # nothing of the other copy reached the standby
    stats = b.statistics()
    assert (stats.hosted, stats.hosted_bytes) == (2, len(b"two") + len(b"theirs+1"))
    assert b.hosted(name, handed_in) == Checkpoint(name, theirs, None, 8, handed_in, b"theirs+1", SPEC)
    assert b.holders_of(name, claimed) == [Holder("c", mine, 2)]

    # The handed-in copy claims the name: its record is the name's, and its state goes out.
    b.handin_settled(name, handed_in, True, 1.4)
    pump(1.4)
    assert pump.done("b") == [CheckpointDone(name, 2, True, "acked")]
    assert (c.records[name].lineage, c.records[name].state) == (theirs, b"theirs+1")
    # The registry chooses the claimed copy after all: it takes over above both epochs
    # (c holds the other copy's lineage 4: a lineage below it would be refused).
    b.host_checkpoint(name, claimed, b"three", 1.5, token=4)  # the displaced copy waits
    pump(1.5)
    assert pump.done("b") == []
    taken = b.host_takeover(name, claimed, 1.6)
    assert taken == Lineage(5, claimed)
    b.host_retired(name, handed_in, 1.7)
    pump(1.7)
    assert pump.done("b") == [CheckpointDone(name, 4, True, "acked")]
    assert (c.records[name].lineage, c.records[name].state) == (taken, b"three")
    assert b.statistics().hosted == 1


# --- statistics --------------------------------------------------------------------------------


def test_statistics_count_what_a_node_holds_and_hosts_in_bytes() -> None:
    name = name_with(["a", "b"])
    a = core("a")
    a.host_started(name, pid("a"), SPEC, 1, 0.0)
    a.host_checkpoint(name, pid("a"), b"12345", 1.0)
    a.on_put("c", put("other", Lineage(0, pid("c")), 1, b"123"), 1.0)
    stats = a.statistics()
    assert (stats.hosted, stats.hosted_bytes, stats.records, stats.record_bytes) == (1, 5, 1, 3)
    assert stats.puts_sent == 1
    a.host_checkpoint(name, pid("a"), b"12", 1.0 + 0.005)
    assert a.statistics().hosted_bytes == 2
    a.host_removed(name, pid("a"), 2.0)
    a.on_drop("c", CheckpointDrop("other", Lineage(0, pid("c")), 1), 2.0)
    stats = a.statistics()
    assert (stats.hosted, stats.hosted_bytes, stats.records, stats.record_bytes) == (0, 0, 0, 0)


# --- incarnations, learning peers, sweeping -------------------------------------------------------


def test_an_answer_from_an_incarnation_that_is_not_the_one_up_here_does_not_count() -> None:
    name = name_with(["a", "b"])
    a = StandbyCore("a", incarnation=1, config=StandbyConfig(), placement=Ring().place(NODES), now=0.0)
    for other, inc in [("b", 7), ("c", 3), ("d", 4)]:
        a.peer_up(other, 0.0, inc)
    a.host_started(name, pid("a"), SPEC, 1, 0.0)
    a.host_checkpoint(name, pid("a"), b"x", 1.0, token=1)
    line = Lineage(0, pid("a"))
    a.on_ack("b", CheckpointAck(name, line, 1, incarnation=6), 1.1)  # the b that died: it held it, b/7 does not
    assert a.take().done == []
    a.on_ack("b", CheckpointAck(name, line, 1, incarnation=7), 1.2)
    assert a.take().done == [CheckpointDone(name, 1, True, "acked")]
    b = StandbyCore("b", incarnation=7, config=StandbyConfig(), placement=Ring().place(NODES), now=0.0)
    b.on_put("a", put(name, line, 1), 0.0)
    assert sent(b) == [("a", CheckpointAck(name, line, 1, incarnation=7))]


def test_a_restore_also_asks_the_nodes_an_answer_names_that_it_did_not_know() -> None:
    """A node that joined a moment ago may hold the only copy (its host re-replicated to it
    and dropped the old standby, then died), before the restarting node sees it."""
    name = name_with(["b", "c"])
    b = core("b", ["b", "c"])
    line = Lineage(0, pid("a"))
    b.peer_up("gone", 0.0)
    b.peer_down("gone", 0.5)
    b.restart_starting(name, 1, line, None, 1.0)
    ((_, fetch),) = sent(b)
    b.on_have("c", CheckpointHave(fetch.ref, [], ["b", "j", "gone"]), 1.1)  # c sees j; "gone" went here
    assert b.take().send == [("j", CheckpointFetch(fetch.ref + 1, [name]))]
    assert b.restoring() == 1
    b.on_have("j", CheckpointHave(fetch.ref + 1, [Checkpoint(name, line, None, 9, pid("a"), b"9")], ["b", "c"]), 1.2)
    (restored,) = b.take().restored
    assert restored.checkpoint is not None
    assert restored.checkpoint.seq == 9


def test_the_copy_of_a_process_that_exited_goes_when_a_newer_lineage_of_it_arrives() -> None:
    name = name_with(["a", "b"])
    a = core("a")
    line, _ = a.host_started(name, pid("a"), SPEC, 1, 0.0)
    a.host_checkpoint(name, pid("a"), b"x", 1.0)
    a.host_exited(name, pid("a"), 2.0)
    sent(a)
    a.on_put("c", put(name, Lineage(1, pid("c")), 2, base=line), 3.0)  # restarted on c meanwhile
    assert a.hosted(name) is None
    assert a.records[name].lineage == Lineage(1, pid("c"))


def test_a_sweep_forgets_what_no_claim_needs_once_it_was_not_written_for_30_s() -> None:
    b = core("b")
    live, dead, base = Lineage(3, pid("a")), Lineage(0, pid("x")), Lineage(2, pid("a"))
    b.on_put("a", put("kept", live, 1), 0.0)
    b.on_put("a", put("based", base, 1), 0.0)
    b.on_put("x", put("stale", dead, 1), 0.0)
    b.on_put("x", put("young", dead, 1), 5.0)
    claims = {"kept": {live}, "based": {live, base}}
    assert b.sweep(30.0 - 1e-9, lambda name: claims.get(name, set())) == 0
    assert b.sweep(30.0, lambda name: claims.get(name, set())) == 1
    assert sorted(b.records) == ["based", "kept", "young"]
    assert b.sweep(35.0, lambda name: claims.get(name, set())) == 1
    assert sorted(b.records) == ["based", "kept"]
    assert b.statistics().record_bytes == 2
    mine = name_with(["b", "c"])
    line, _ = b.host_started(mine, pid("b"), SPEC, 1, 40.0)
    b.host_checkpoint(mine, pid("b"), b"z", 40.0)
    b.host_exited(mine, pid("b"), 41.0)  # its restart is owed: the shell counts its lineage
    assert b.sweep(100.0, lambda name: {line} if name == mine else claims.get(name, set())) == 0
    assert b.sweep(100.0, lambda name: claims.get(name, set())) == 1
    assert b.hosted(mine) is None


def test_a_restore_asks_the_node_that_asked_for_it_even_before_it_sees_it_up() -> None:
    """The old host of a crashed process asks the name's owner to restart it; the owner may
    not see it up yet, and it holds the copy."""
    name = name_with(["b", "a"])
    b = StandbyCore("b", config=StandbyConfig(), placement=Ring().place(["b"]), now=0.0)
    line = Lineage(0, pid("a"))
    b.restart_starting(name, 1, line, None, 1.0, also=["a", "b"])
    assert sent(b) == [("a", CheckpointFetch(1, [name]))]
    b.on_have("a", CheckpointHave(1, [Checkpoint(name, line, None, 4, pid("a"), b"4")], ["c"]), 1.1)
    assert sent(b) == [("c", CheckpointFetch(2, [name]))]  # and whoever it sees
    b.on_have("c", CheckpointHave(2, [], ["a", "b"]), 1.2)
    (restored,) = b.take().restored
    assert restored.checkpoint is not None
    assert restored.checkpoint.seq == 4
