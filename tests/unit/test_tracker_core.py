"""The tracker core on its own: claims in, decisions out, no sockets, exact times.

Each test drives one or two ``TrackerCore`` objects by hand (``peer_up``, ``on_hello``,
``on_digest``, ``on_delta``, ``local_claim``, ``handle_timer``...) and reads what they
decide from ``take()``. Time starts at 0.0 and is passed explicitly; deadlines are
asserted exactly (a deadline is the time of its cause plus its delay, so it is written
that way). The configuration is ``RegistryConfig()``'s: a sync every 10 s, restarts
after 0.05 s doubled per crash up to 5 s and reset by a run of 30 s, orphan checks 2 s
after a node's death. The placement is ``Ring()`` over the placed server nodes.
"""

from __future__ import annotations

import random
from typing import Any, TypeVar

import msgspec
import pytest

from distable.registry import RegistryConfig
from distable.registry._core import (
    BUCKETS,
    Command,
    ResolveConflict,
    RestartElsewhere,
    RouteClosedNotice,
    StartHandoff,
    StartName,
    StopProcess,
    TrackerCore,
)
from distable.registry._events import (
    ConflictResolved,
    GroupJoined,
    GroupLeft,
    NameRegistered,
    NameUnregistered,
)
from distable.ring import DistributionStrategy, Ring, StaticQuorumRing, hash_name
from distable.wire import NORMAL, SHUTDOWN, Pid
from distable.wire._messages import (
    CLAIM_GROUP,
    CLAIM_NAME,
    Claim,
    Delta,
    Digest,
    FlushAsk,
    FlushMarker,
    Lineage,
    RegistryHello,
    RegistryLeaving,
    Removal,
    Spec,
    SyncReply,
    SyncRequest,
)

SPEC = Spec("tests.registry.apps:Counter", [], {}, "transient", 5.0)
C = TypeVar("C", bound=Command)


def core(node: str, strategy: DistributionStrategy | None = None) -> TrackerCore:
    return TrackerCore(
        node, role="server", strategy=strategy or Ring(), config=RegistryConfig(), rng=random.Random(0), now=0.0
    )


def joined(me: TrackerCore, *others: str) -> TrackerCore:
    """``me`` with ``others`` up, greeted, synced (their replicas empty) and placed."""
    empty = Digest([0] * 64)
    for other in others:
        me.peer_up(other, 0.0)
        me.on_hello(other, RegistryHello("server", False), 0.0)
        me.on_digest(other, empty, 0.0)
    me.take()
    return me


def sent(me: TrackerCore) -> list[tuple[str, Any]]:
    return me.take().send


def answered(a: TrackerCore, b: TrackerCore, to_a: list[tuple[str, Any]], now: float) -> list[tuple[str, Any]]:
    """Give ``a`` the hello and digest ``b`` sent it, and ``b`` the digests ``a`` answers
    with; what ``a`` answered."""
    for _, msg in to_a:
        if isinstance(msg, RegistryHello):
            a.on_hello(b.node, msg, now)
        else:
            a.on_digest(b.node, msg, now)
    out = sent(a)
    for _, msg in out:
        assert isinstance(msg, Digest)
        b.on_digest(a.node, msg, now)
    return out


def commands(me: TrackerCore, kind: type[C]) -> list[C]:
    """The commands of type ``kind`` in ``me``'s output (taken)."""
    return [c for c in me.take().commands if isinstance(c, kind)]


def claim(name: Any, pid: Pid, clock: int, spec: Spec | None = SPEC, kind: int = CLAIM_NAME) -> Claim:
    """The claim ``pid``'s host makes of ``name`` (a group, with ``kind=CLAIM_GROUP``)."""
    return Claim(kind, name, pid, clock, hash_name(name), spec)


def name_placed(*owners: tuple[str, list[str]]) -> str:
    """A name each ``(owner, nodes)`` pair's owner owns among its nodes."""
    rings = [(owner, Ring().place(nodes)) for owner, nodes in owners]
    return next(n for i in range(10_000) if all(r.owner(n := f"name-{i}") == o for o, r in rings))


def names_in_distinct_buckets(count: int) -> list[str]:
    names: list[str] = []
    buckets: set[int] = set()
    for i in range(10_000):
        name = f"spread-{i}"
        if hash_name(name) % BUCKETS not in buckets:
            buckets.add(hash_name(name) % BUCKETS)
            names.append(name)
            if len(names) == count:
                return names
    raise AssertionError("not enough buckets")


def name_owned_by(owner: str, nodes: list[str], then: str | None = None, after: list[str] | None = None) -> str:
    """A name ``owner`` owns among ``nodes`` (and ``then`` owns among ``after``, if given)."""
    return name_placed((owner, nodes), *([(then, after or nodes)] if then is not None else []))


# --- claims and deltas ------------------------------------------------------------------------


def test_the_claims_of_one_turn_go_to_every_peer_in_one_delta() -> None:
    a = joined(core("a"), "b", "c")
    x, y = Pid("a", 1, 1), Pid("a", 1, 2)
    a.local_claim("x", x, None, 1.0)
    a.local_claim("y", y, None, 1.0)
    assert a.pids == {"x": x, "y": y}  # read-your-writes: before anything is sent
    out = a.take()
    delta = Delta([claim("x", x, 1, None), claim("y", y, 2, None)], [])
    assert out.send == [("b", delta), ("c", delta)]
    assert out.events == [NameRegistered("x", x), NameRegistered("y", y)]
    assert a.local_unclaim("x", x)
    assert not a.local_unclaim("x", x)  # gone already
    assert a.take().send == [(peer, Delta([], [Removal(CLAIM_NAME, "x", x, 3)])) for peer in ("b", "c")]


def test_a_delta_applies_a_hosts_newer_changes_and_ignores_older_ones() -> None:
    b = joined(core("b"), "a")
    new, old = Pid("a", 1, 2), Pid("a", 1, 1)
    b.on_delta("a", Delta([claim("x", new, 5, None)], []), 1.0)
    assert b.take().events == [NameRegistered("x", new)]
    b.on_delta("a", Delta([claim("x", old, 4, None)], [Removal(CLAIM_NAME, "x", new, 3)]), 1.0)
    assert b.pids == {"x": new}  # a claim and a removal older than the entry: ignored
    assert not b.take().events
    b.on_delta("a", Delta([], [Removal(CLAIM_NAME, "x", new, 6)]), 2.0)
    assert b.pids == {}
    assert b.take().events == [NameUnregistered("x", new)]


def test_a_delta_from_a_host_that_is_not_up_here_is_ignored() -> None:
    """Its claims would stay forever: no peer_down would ever drop them."""
    b = joined(core("b"), "a")
    b.on_delta("z", Delta([claim("x", Pid("z", 1, 1), 1, None)], []), 1.0)
    assert b.pids == {}
    assert "z" not in b.claims


def test_a_moved_claim_sends_a_flush_marker_to_its_old_host_only_when_that_host_is_up_here() -> None:
    """A claim keeps its moved_from for life: a node that syncs it long after the move
    (a client node that joins) must not dial an old host that has left or died."""
    b = joined(core("b"), "a", "c")
    came = Claim(CLAIM_NAME, "x", Pid("a", 1, 1), 1, hash_name("x"), None, moved_from=Pid("c", 1, 7), handoff=3)
    gone = Claim(CLAIM_NAME, "y", Pid("a", 1, 2), 2, hash_name("y"), None, moved_from=Pid("z", 1, 8), handoff=4)
    b.on_delta("a", Delta([came, gone], []), 1.0)
    assert [(node, m) for node, m in sent(b) if isinstance(m, FlushMarker)] == [("c", FlushMarker(3))]


def test_a_moved_claim_sends_its_flush_marker_once_its_old_host_comes_up() -> None:
    """A node that sees a moved claim before the old host is up there (a heal or a join
    where the new host's sync came first) sends the marker when that host comes up: the
    new host may hold this node's direct messages for it (rule 4 of the handoff), until
    its handoff_timeout otherwise. Once only."""
    b = joined(core("b"), "a")
    moved = Claim(CLAIM_NAME, "x", Pid("a", 1, 1), 1, hash_name("x"), None, moved_from=Pid("c", 1, 7), handoff=3)
    b.on_delta("a", Delta([moved], []), 1.0)
    assert not [m for _, m in sent(b) if isinstance(m, FlushMarker)]
    b.peer_up("c", 2.0, 1)
    assert [(node, m) for node, m in sent(b) if isinstance(m, FlushMarker)] == [("c", FlushMarker(3))]
    b.peer_down("c", 3.0)
    b.peer_up("c", 4.0, 1)
    assert not [m for _, m in sent(b) if isinstance(m, FlushMarker)]
    # A move from a host that comes back as another incarnation: that life knows no such
    # handoff; one that comes back after forward_ttl has forgotten it; and a move from this
    # node is flushed by its own handoff (nothing kept for it).
    again = Claim(CLAIM_NAME, "y", Pid("a", 1, 2), 2, hash_name("y"), None, moved_from=Pid("z", 1, 8), handoff=4)
    late = Claim(CLAIM_NAME, "z", Pid("a", 1, 3), 3, hash_name("z"), None, moved_from=Pid("w", 1, 9), handoff=5)
    mine = Claim(CLAIM_NAME, "v", Pid("a", 1, 4), 4, hash_name("v"), None, moved_from=Pid("b", 1, 6), handoff=6)
    b.on_delta("a", Delta([again, late, mine], []), 5.0)
    b.peer_up("z", 6.0, 2)
    b.peer_up("w", 5.0 + RegistryConfig().forward_ttl, 1)
    assert not [m for _, m in sent(b) if isinstance(m, FlushMarker)]
    assert not b._flush_due  # nothing kept for this node's own moves


def test_a_moved_claim_from_an_old_host_down_here_tells_the_new_host_once_that_no_route_is_left() -> None:
    """The marker waits for the old host to be up here (above); the new host is told at
    once (the shell sends ``RouteClosed`` if no link to the old host is up and nothing is
    queued for it), once per move unless the new host asks for the marker, and only for
    a claim that came as a change: a sync repairs claims that may have moved long ago."""
    b = joined(core("b"), "a")
    moved = Claim(CLAIM_NAME, "x", Pid("a", 1, 1), 1, hash_name("x"), None, moved_from=Pid("c", 1, 7), handoff=3)
    b.on_delta("a", Delta([moved], []), 1.0)
    out = b.take()
    assert not [m for _, m in out.send if isinstance(m, FlushMarker)]
    assert out.commands == [RouteClosedNotice("a", "c", 3)]
    again = Claim(CLAIM_NAME, "x", Pid("a", 1, 1), 2, hash_name("x"), None, moved_from=Pid("c", 1, 7), handoff=3)
    b.on_delta("a", Delta([again], []), 1.5)  # the same move, a later change of its claim
    assert not b.take().commands
    synced = Claim(CLAIM_NAME, "y", Pid("a", 1, 2), 3, hash_name("y"), None, moved_from=Pid("z", 1, 8), handoff=4)
    b.on_sync_reply("a", SyncReply([synced.position % BUCKETS], [again, synced]), 2.0)
    assert b.pids["y"] == synced.pid
    assert not b.take().commands  # its marker is due all the same
    assert set(b._flush_due) == {"c", "z"}
    b.on_flush_ask("a", FlushAsk(3, Pid("c", 1, 7), "x"), 3.0)  # asked: told again
    assert b.take().commands == [RouteClosedNotice("a", "c", 3)]
    b.peer_up("c", 4.0, 1)
    assert [(node, m) for node, m in sent(b) if isinstance(m, FlushMarker)] == [("c", FlushMarker(3))]


def test_a_node_asked_for_its_flush_marker_sends_it_again() -> None:
    """A new host that let this node through without its marker asks for it (``FlushAsk``)
    when it holds this node again (9L): the marker goes again to the old host, although
    one went when the claim came (it may have been lost with a link); to one not up here,
    once it comes up; none before the claim came (it goes then, even if one went for an
    earlier sight of it), for a move from this node or from an old host that is gone."""
    b = joined(core("b"), "a")
    b.peer_up("c", 0.5, 1)
    b.on_hello("c", RegistryHello("server", False), 0.5)
    b.take()
    # Asked before it saw the claim: nothing yet (it may still send to the old pid by name).
    b.on_flush_ask("a", FlushAsk(3, Pid("c", 1, 7), "x"), 0.9)
    assert not [m for _, m in sent(b) if isinstance(m, FlushMarker)]
    moved = Claim(CLAIM_NAME, "x", Pid("a", 1, 1), 1, hash_name("x"), None, moved_from=Pid("c", 1, 7), handoff=3)
    b.on_delta("a", Delta([moved], []), 1.0)
    assert [(node, m) for node, m in sent(b) if isinstance(m, FlushMarker)] == [("c", FlushMarker(3))]
    b.on_flush_ask("a", FlushAsk(3, Pid("c", 1, 7), "x"), 2.0)
    assert [(node, m) for node, m in sent(b) if isinstance(m, FlushMarker)] == [("c", FlushMarker(3))]
    b.peer_down("c", 3.0)
    b.on_flush_ask("a", FlushAsk(3, Pid("c", 1, 7), "x"), 3.5)  # c is down here: sent once it is up
    assert not [m for _, m in sent(b) if isinstance(m, FlushMarker)]
    b.peer_up("c", 4.0, 1)
    assert [(node, m) for node, m in sent(b) if isinstance(m, FlushMarker)] == [("c", FlushMarker(3))]
    mine = Claim(CLAIM_NAME, "y", Pid("a", 1, 2), 2, hash_name("y"), None, moved_from=Pid("b", 1, 9), handoff=4)
    earlier = Claim(CLAIM_NAME, "z", Pid("a", 1, 3), 3, hash_name("z"), None, moved_from=Pid("c", 0, 9), handoff=5)
    b.on_delta("a", Delta([mine, earlier], []), 5.0)
    sent(b)
    b.on_flush_ask("a", FlushAsk(4, Pid("b", 1, 9), "y"), 5.0)  # moved from this node: flushed by its own handoff
    b.on_flush_ask("a", FlushAsk(5, Pid("c", 0, 9), "z"), 5.0)  # from an earlier life of c: it forwards nothing
    b.on_flush_ask("a", FlushAsk(3, Pid("c", 1, 7), ["x"]), 5.0)  # an unhashable name: no claim has it
    assert not [m for _, m in sent(b) if isinstance(m, FlushMarker)]
    # Asked while its sight of the claim was lost (a's claims dropped with a verdict): the
    # marker goes again when the claim comes again, though one went for the first sight.
    b.peer_down("a", 6.0)
    b.on_flush_ask("a", FlushAsk(3, Pid("c", 1, 7), "x"), 6.1)
    assert not [m for _, m in sent(b) if isinstance(m, FlushMarker)]
    b.peer_up("a", 6.2, 1)
    b.on_delta("a", Delta([moved], []), 6.3)
    assert [(node, m) for node, m in sent(b) if isinstance(m, FlushMarker)] == [("c", FlushMarker(3))]
    assert not [m for _, m in sent(b) if isinstance(m, FlushMarker)]


def test_two_views_of_a_name_handed_off_twice_pick_the_same_line_after_one_moves_on() -> None:
    """s3 handed the name to s0, and, read late after s3's verdict, to s4 too; s0's copy then
    moved on to s6. A node that sees {s0, s4}'s copies and one that sees {s6, s4}'s must pick
    the same line. With the handoff ids of the line's moves (version 6) the later move's line
    wins; without them (claims made through older nodes), s3 (the ring's owner over the
    claimants' hosts, theirs included) stands for the line whose first pid after s3 is the
    smaller, s0's, in both. It stood for the copy with the smaller pid now, s0's in one view
    and s4's in the other: each retired its own copy to the other's, and the name was lost
    (the campaign's seed 5900000001)."""
    s0, s3, s4, s6 = (
        f"{n}@127.0.0.1:{port}" for n, port in (("s0", 51259), ("s3", 39415), ("s4", 52471), ("s6", 42925))
    )
    name = "c0778"
    assert Ring().place([s0, s3, s4, s6]).owner(name) == s3 == Ring().place([s0, s3, s4]).owner(name)
    first = Pid(s3, 1, 169)
    for hid_s0, hid_s4 in ((0, 0), (2, 1), (1, 2)):  # no ids; s0's line the later; s4's
        at_s0 = Claim(CLAIM_NAME, name, Pid(s0, 1, 210), 1, hash_name(name), None, moved_from=first, handoff=hid_s0)
        at_s4 = Claim(CLAIM_NAME, name, Pid(s4, 1, 194), 1, hash_name(name), None, moved_from=first, handoff=hid_s4)
        at_s6 = Claim(
            CLAIM_NAME,
            name,
            Pid(s6, 1, 191),
            1,
            hash_name(name),
            None,
            moved_from=at_s0.pid,
            handoff=3,
            ancestors=(first,),
            ancestor_handoffs=(hid_s0,) if hid_s0 else (),
        )
        before = joined(core("v"), s0, s4)
        before.on_delta(s0, Delta([at_s0], []), 1.0)
        before.on_delta(s4, Delta([at_s4], []), 1.0)
        after = joined(core("w"), s6, s4)
        after.on_delta(s6, Delta([at_s6], []), 1.0)
        after.on_delta(s4, Delta([at_s4], []), 1.0)
        expected = (at_s4.pid, at_s4.pid) if hid_s4 > hid_s0 else (at_s0.pid, at_s6.pid)
        assert (before.pids[name], after.pids[name]) == expected, (hid_s0, hid_s4)


def test_a_copy_that_displaced_the_later_lines_copy_stands_for_its_move_and_its_next_copy_wins() -> None:
    """The campaign's seed 7000000005: s5 handed a pid to s0 (paused: handoff 1) and, having
    given that up, to s1 (handoff 2), whose copy moved on to s0 too; s0 then committed the
    stale request as well, and that copy displaced the other on s0 (its state came along).
    The survivor left s5's pid by both moves, so it stands for the later one (2); it moved
    on to s5 and then s1, and s1's copy must win against its own old pid, still held there
    while s5 leaves. The survivor's line used to say it left s5's pid by 1 and by 2: judged
    stale against itself, every copy was, the ring picked the old pid, and the copy retired
    into it as it went: the name was lost."""
    s0, s1, s5 = "s0@127.0.0.1:1", "s1@127.0.0.1:2", "s5@127.0.0.1:3"
    at_s5, at_s1, first = Pid(s5, 1, 8), Pid(s1, 1, 245), Pid(s0, 1, 35)
    later, stale = Pid(s0, 1, 315), Pid(s0, 1, 268)
    a = joined(core(s0), s1, s5)
    a.local_claim(
        "c", later, None, 1.0, moved_from=at_s1, handoff=3, ancestors=(at_s5, first), ancestor_handoffs=(2, 4)
    )
    a.local_claim("c", stale, None, 1.0, moved_from=at_s5, handoff=1, ancestors=(first,), ancestor_handoffs=(4,))
    survivor = a.claims[s0]["c"]
    assert (survivor.ancestors, survivor.ancestor_handoffs) == ((later, at_s1, at_s5, first), (0, 3, 2, 4))
    assert a.ancestry("c", stale) == ((at_s5, later, at_s1, first), (2, 0, 3, 4))  # s5's pid: the later move
    # On to s5 (handoff 9), then to s1 (handoff 10): s1 holds both claims while s5 leaves.
    ancestors, handoffs = a.ancestry("c", stale)
    on_s5 = Claim(
        CLAIM_NAME, "c", Pid(s5, 1, 3), 1, hash_name("c"), None, stale, 9, ancestors, ancestor_handoffs=handoffs
    )
    old_shape = msgspec.structs.replace(  # as the survivor's line used to be sent on: s5's pid twice
        on_s5, ancestors=(at_s5, later, at_s1, at_s5), ancestor_handoffs=(1, 0, 3, 2)
    )
    for held in (on_s5, old_shape):
        b = joined(core(s1), s5)
        b.on_delta(s5, Delta([held], []), 1.0)
        pids, hids = (stale, *held.ancestors)[:4], (9, *held.ancestor_handoffs)[:4]
        mine = b.local_claim(
            "c", Pid(s1, 1, 112), None, 2.0, moved_from=held.pid, handoff=10, ancestors=pids, ancestor_handoffs=hids
        )
        assert b.pids["c"] == mine.pid
        assert not [c for c in b.take().commands if isinstance(c, ResolveConflict)]


def test_group_members_come_and_go_with_their_claims() -> None:
    a = joined(core("a"), "b")
    mine, theirs = Pid("a", 1, 1), Pid("b", 1, 1)
    a.local_join("g", mine)
    a.local_join("g", mine)  # once only
    a.on_delta("b", Delta([claim("g", theirs, 1, None, kind=CLAIM_GROUP)], []), 1.0)
    assert a.members("g") == [mine, theirs]
    assert a.take().events == [GroupJoined("g", mine), GroupJoined("g", theirs)]
    assert a.local_leave("g", mine)
    a.peer_down("b", 2.0)
    assert a.members("g") == []
    assert a.take().events == [GroupLeft("g", mine), GroupLeft("g", theirs)]


# --- digests and syncs ------------------------------------------------------------------------


def test_every_peer_gets_a_hello_and_a_digest_at_each_sync_interval_exactly() -> None:
    a = joined(core("a"), "b", "c")
    a.local_claim("x", Pid("a", 1, 1), None, 1.0)
    a.take()
    assert a.next_deadline() == 10.0
    a.handle_timer(10.0 - 1e-9)
    assert not a.take().send
    a.handle_timer(10.0)
    hello, digest = RegistryHello("server", False), Digest(a.digest("a"))
    assert a.take().send == [("b", hello), ("b", digest), ("c", hello), ("c", digest)]
    assert a.next_deadline() == 10.0 + 10.0
    assert a.statistics().syncs_sent == 2


def test_a_peer_is_placed_once_every_bucket_that_differed_has_come_back_in_a_sync() -> None:
    x, y = names_in_distinct_buckets(2)
    a = core("a")
    a.local_claim(x, Pid("a", 1, 1), None, 0.0)
    a.local_claim(y, Pid("a", 1, 2), None, 0.0)
    b = core("b")
    b.peer_up("a", 0.0)
    b.on_hello("a", RegistryHello("server", False), 0.0)
    b.take()
    b.on_digest("a", Digest(a.digest("a")), 0.0)
    request = SyncRequest(sorted([hash_name(x) % BUCKETS, hash_name(y) % BUCKETS]))
    assert b.take().send == [("a", request)]
    assert not b.synced_with("a")
    assert b.placement.nodes == ["b"]  # greeted, but its claims are not in yet
    a.take()
    a.on_sync_request("b", request, 0.0)
    ((to, reply),) = a.take().send
    assert to == "b"
    assert isinstance(reply, SyncReply)
    assert reply.buckets == request.buckets
    assert sorted(c.key for c in reply.claims) == sorted([x, y])
    b.on_sync_reply("a", reply, 0.1)
    assert b.synced_with("a")
    assert b.placement.nodes == ["a", "b"]
    assert b.digest("a") == a.digest("a")
    assert set(b.pids) == {x, y}


def test_a_sync_request_is_answered_with_the_claims_in_those_buckets_only() -> None:
    x, y = names_in_distinct_buckets(2)
    a = joined(core("a"), "b")
    a.local_claim(x, Pid("a", 1, 1), None, 0.0)
    a.local_claim(y, Pid("a", 1, 2), None, 0.0)
    a.take()
    a.on_sync_request("b", SyncRequest([hash_name(x) % BUCKETS, BUCKETS, -1]), 0.0)
    assert a.take().send == [("b", SyncReply([hash_name(x) % BUCKETS], [claim(x, Pid("a", 1, 1), 1, None)]))]


def test_a_bucket_that_caught_up_through_a_delta_no_longer_holds_the_peer_back() -> None:
    """What differs in the latest digest is what is missing: a bucket that differed in an
    earlier one and caught up since would never come back in a SyncReply."""
    x = claim("x", Pid("a", 1, 1), 1, None)
    b = core("b")
    b.peer_up("a", 0.0)
    b.on_hello("a", RegistryHello("server", False), 0.0)
    a = core("a")
    a.local_claim("x", x.pid, None, 0.0)
    b.on_digest("a", Digest(a.digest("a")), 0.0)  # x's bucket differs: b asks for it
    assert not b.synced_with("a")
    b.on_delta("a", Delta([x], []), 0.5)  # ... and x arrives in a Delta first
    b.take()
    b.on_digest("a", Digest(a.digest("a")), 10.0)  # the next digest matches
    assert not [m for _, m in b.take().send if isinstance(m, SyncRequest)]
    assert b.synced_with("a")
    assert b.placement.nodes == ["a", "b"]


def test_a_sync_reply_replaces_the_replica_in_its_buckets_and_nowhere_else() -> None:
    stale, kept, missing = names_in_distinct_buckets(3)
    b = joined(core("b"), "a")
    b.on_delta("a", Delta([claim(stale, Pid("a", 1, 1), 1, None), claim(kept, Pid("a", 1, 2), 2, None)], []), 1.0)
    b.take()
    # a's table has no ``stale`` any more (b missed the removal: a one-sided verdict) and
    # has ``missing``; the reply covers those two buckets.
    fresh = claim(missing, Pid("a", 1, 3), 4, None)
    b.on_sync_reply("a", SyncReply([hash_name(stale) % BUCKETS, hash_name(missing) % BUCKETS], [fresh]), 2.0)
    assert b.pids == {kept: Pid("a", 1, 2), missing: Pid("a", 1, 3)}
    assert b.take().events == [NameUnregistered(stale, Pid("a", 1, 1)), NameRegistered(missing, Pid("a", 1, 3))]
    assert b.statistics().buckets_repaired == 2


def test_a_peer_that_greets_a_node_which_never_saw_it_down_gets_its_digest_and_a_request_back() -> None:
    """The first exchange after a one-sided verdict is symmetric (docs/internals.md)."""
    b = joined(core("b"), "a")
    # a declared b failed and now sees it again: a's greeting asks b for its digest.
    b.on_hello("a", RegistryHello("server", False, wants_digest=True), 1.0)
    out = sent(b)
    assert [type(m).__name__ for _, m in out] == ["RegistryHello", "Digest"]
    hello = out[0][1]
    assert isinstance(hello, RegistryHello)
    assert hello.wants_digest  # b asks back, ahead of its digest on the link


def test_a_greeting_that_came_before_its_sender_was_up_here_places_it_once_it_is() -> None:
    """a brought b up first (a partition healed, each side's verdict ending on its own): a's
    greeting reached b while b still held a down. When b brings a up, a answers b's request
    with its digest only (it awaits b's, and asks nothing back): the early greeting is all b
    ever gets from a until a's next periodic sync, 10 s later. b places a at once now."""
    a, b = core("a"), core("b")
    b.on_digest("a", Digest([0] * BUCKETS), 0.0)  # nothing yet: a is not up at b
    a.peer_up("b", 1.0)
    for _, msg in sent(a):
        b.on_hello("a", msg, 1.0)  # a down here: kept for when it is up
    assert sent(b) == []
    b.peer_up("a", 1.5)
    to_a = sent(b)
    assert [type(m).__name__ for _, m in to_a] == ["RegistryHello", "Digest"]  # the request, and the digest owed
    assert [type(m).__name__ for _, m in answered(a, b, to_a, 1.5)] == ["Digest"]  # a asks nothing back
    assert b.synced_with("a")
    assert a.synced_with("b")
    assert list(b.placement.nodes) == list(a.placement.nodes) == ["a", "b"]


def test_a_request_for_a_digest_lost_with_a_replaced_link_is_made_again_when_the_peer_greets() -> None:
    """b brought a up and asked for its digest on a link that was already dead (a healed
    partition: the link was replaced without a NodeDown here). Seconds later a brings b up
    and greets it: b asks again, instead of waiting for an answer that never comes (it
    kept a unplaced until its next periodic sync, 10 s later)."""
    a, b = core("a"), core("b")
    b.peer_up("a", 1.0)
    sent(b)  # lost with the link
    a.peer_up("b", 3.0)
    for _, msg in sent(a):
        b.on_hello("a", msg, 3.0)
    to_a = sent(b)
    assert [type(m).__name__ for _, m in to_a] == ["RegistryHello", "Digest"]  # asked again, and answered
    answered(a, b, to_a, 3.0)
    assert b.synced_with("a")
    assert a.synced_with("b")


def _pump(cores: dict[str, TrackerCore], now: float, limit: int = 50) -> list[str]:
    """Deliver what the cores send each other until none sends anything; the types sent."""
    handlers: dict[type, str] = {
        RegistryHello: "on_hello",
        Digest: "on_digest",
        SyncRequest: "on_sync_request",
        SyncReply: "on_sync_reply",
        Delta: "on_delta",
    }
    kinds: list[str] = []
    for _ in range(limit):
        batch = [(me.node, to, msg) for me in cores.values() for to, msg in me.take().send]
        if not batch:
            return kinds
        for frm, to, msg in batch:
            kinds.append(type(msg).__name__)
            getattr(cores[to], handlers[type(msg)])(frm, msg, now)
    raise AssertionError(f"still sending after {limit} rounds: {kinds[-10:]}")


def test_a_renewed_link_repairs_what_the_dead_one_lost_without_waiting_for_the_periodic_sync() -> None:
    """A partition black-holed the link between a and b and healed before either declared
    the other down: the Delta of b's new name and b's removal of another were lost with the
    link, which the transport then replaced (no NodeDown, so no greeting). Each side's
    ``link_renewed`` greets the other again: both replicas are whole after one exchange,
    at 1.5 s, not at the sync interval (10 s), and the exchange stops by itself."""
    a, b = core("a"), core("b")
    a.peer_up("b", 0.0, 1)
    b.peer_up("a", 0.0, 1)
    _pump({"a": a, "b": b}, 0.0)
    kept, gone = Pid("b", 1, 1), Pid("b", 1, 2)
    b.local_claim("gone", gone, None, 0.5)
    _pump({"a": a, "b": b}, 0.5)
    assert a.pids == {"gone": gone}
    b.local_unclaim("gone", gone)
    b.local_claim("kept", kept, None, 1.0)
    b.take()  # the Delta: lost with the link
    a.link_renewed("b", 1.5, 1)
    b.link_renewed("a", 1.5, 1)
    kinds = _pump({"a": a, "b": b}, 1.5)
    assert a.pids == b.pids == {"kept": kept}
    assert kinds.count("RegistryHello") == 2  # one greeting each: nobody asks back
    assert a.synced_with("b")
    assert b.synced_with("a")


def test_a_link_to_a_node_not_up_here_or_to_another_life_of_it_greets_nobody() -> None:
    """The first link to a node (membership greets it when it comes up) and a link to a
    restarted one (membership announces it down, then up) are not ``link_renewed``'s."""
    a = core("a")
    a.link_renewed("b", 1.0, 1)
    assert sent(a) == []
    a.peer_up("b", 1.0, 1)
    sent(a)
    a.link_renewed("b", 2.0, 2)
    assert sent(a) == []
    a.link_renewed("b", 2.0, 1)
    assert [type(m).__name__ for _, m in sent(a)] == ["RegistryHello"]


def test_both_sides_greeting_each_other_exchange_one_digest_each() -> None:
    a, b = core("a"), core("b")
    a.peer_up("b", 0.0)
    b.peer_up("a", 0.0)
    to_b = sent(a)
    to_a = sent(b)
    assert [type(m).__name__ for _, m in to_b] == ["RegistryHello"]
    for _, msg in to_b:
        b.on_hello("a", msg, 0.0)
    for _, msg in to_a:
        a.on_hello("b", msg, 0.0)
    # each answers the other's request with its digest, and asks nothing back
    assert [type(m).__name__ for _, m in sent(a)] == ["Digest"]
    assert [type(m).__name__ for _, m in sent(b)] == ["Digest"]


# --- placement and handoffs -------------------------------------------------------------------


def test_a_peer_placed_is_handed_the_local_names_it_owns_now_and_only_those() -> None:
    a = core("a")
    moves, stays = name_owned_by("b", ["a", "b"]), name_owned_by("a", ["a", "b"])
    a.local_claim(moves, Pid("a", 1, 1), SPEC, 0.0)
    a.local_claim(stays, Pid("a", 1, 2), SPEC, 0.0)
    a.local_claim("plain", Pid("a", 1, 3), None, 0.0)  # no factory: it stays wherever it is
    a.take()
    a.peer_up("b", 1.0)
    a.on_hello("b", RegistryHello("server", False), 1.0)
    assert a.placement.nodes == ["a"]  # greeted, not synced: not placed yet
    assert not a.take().commands
    a.on_digest("b", Digest([0] * BUCKETS), 1.0)
    assert a.placement.nodes == ["a", "b"]
    assert a.take().commands == [StartHandoff(moves, Pid("a", 1, 1), SPEC, "b")]
    assert a.moving == {moves}
    assert a.handoffs_started == 1
    a.rebalance()  # moving already: not again
    assert not a.take().commands


def test_a_failed_handoff_is_retried_by_rebalance_and_one_that_chose_to_stay_waits_for_a_new_placement() -> None:
    name = name_owned_by("b", ["a", "b"], then="b", after=["a", "b", "c"])
    a = core("a")
    pid = Pid("a", 1, 1)
    a.local_claim(name, pid, SPEC, 0.0)
    joined(a, "b")
    a.handoff_failed(name, ignore=False)
    assert a.moving == set()
    a.rebalance()  # the shell's retry
    assert a.take().commands == [StartHandoff(name, pid, SPEC, "b")]
    a.handoff_failed(name, ignore=True)  # the process answered Ignore
    assert a.pinned == {name}
    a.rebalance()
    a.handle_timer(10.0)  # the sync tick rebalances too
    assert not a.take().commands
    a.peer_up("c", 11.0)
    a.on_hello("c", RegistryHello("server", False), 11.0)
    a.on_digest("c", Digest([0] * BUCKETS), 11.0)  # c is placed: a new placement asks it again
    assert a.pinned == set()
    assert a.take().commands == [StartHandoff(name, pid, SPEC, "b")]
    assert a.statistics().handoffs_aborted == 2
    assert a.handoffs_started == 3


def test_a_completed_handoff_resolves_to_the_successor_until_its_own_claim_arrives() -> None:
    name = name_owned_by("b", ["a", "b"])
    a = core("a")
    old, new = Pid("a", 1, 1), Pid("b", 1, 7)
    a.local_claim(name, old, SPEC, 0.0)
    joined(a, "b")
    a.handoff_done(name, old, new)
    assert a.pids[name] == new  # the name never disappears while it moves
    out = a.take()
    assert out.events == [NameRegistered(name, new)]
    assert out.send == [("b", Delta([], [Removal(CLAIM_NAME, name, old, 2, successor=new)]))]
    b_claim = Claim(CLAIM_NAME, name, new, 1, hash_name(name), SPEC, old, 5)
    a.on_delta("b", Delta([b_claim], []), 1.0)
    assert a.pids[name] == new
    assert a.winners[name] == b_claim
    assert not a.take().events  # the same pid: nothing to announce
    assert a.statistics().handoffs_completed == 1


def test_without_a_quorum_every_local_factory_name_is_stopped() -> None:
    name = "job"
    a = joined(core("a", StaticQuorumRing(2)), "b")
    pid = Pid("a", 1, 1)
    a.local_claim(name, pid, SPEC, 0.0)
    a.local_claim("plain", Pid("a", 1, 2), None, 0.0)
    a.take()
    a.peer_down("b", 1.0)
    assert a.placement.owner(name) is None
    assert a.take().commands == [StopProcess(name, pid, "noquorum")]


# --- conflicts --------------------------------------------------------------------------------


def test_after_a_netsplit_both_sides_pick_the_copy_on_the_names_ring_owner() -> None:
    """Each side registered the name while apart; once the claims meet, both nodes pick the
    same winner (the claim on the ring owner among the claimants' hosts: here b, although
    a has the smaller name), and only the loser's host is told to retire its copy."""
    name = name_owned_by("b", ["a", "b"])
    a, b = joined(core("a"), "b"), joined(core("b"), "a")
    on_a, on_b = Pid("a", 1, 1), Pid("b", 1, 1)
    a.local_claim(name, on_a, None, 1.0)
    b.local_claim(name, on_b, None, 1.0)
    (_, from_a), *_ = a.take().send
    (_, from_b), *_ = b.take().send
    a.on_delta("b", from_b, 2.0)
    b.on_delta("a", from_a, 2.0)
    assert a.pids[name] == b.pids[name] == on_b
    out_a, out_b = a.take(), b.take()
    assert out_a.commands == [ResolveConflict(name, on_a, on_b)]
    assert ConflictResolved(name, on_b, on_a) in out_a.events
    assert NameRegistered(name, on_b) in out_a.events
    assert not out_b.commands
    assert a.statistics().conflicts == 1
    assert b.statistics().conflicts == 0


def test_when_no_claimant_host_owns_the_name_the_smallest_host_name_wins_on_every_node() -> None:
    """No owner among the claimants' hosts (a quorum of 3 over 2 hosts): the smallest host
    name decides, whichever node resolves and whatever order the claims came in."""
    on_a, on_c = Pid("a", 1, 1), Pid("c", 1, 1)
    winners = []
    for me, order in [("b", ["c", "a"]), ("b", ["a", "c"]), ("d", ["a", "c"])]:
        node = joined(core(me, StaticQuorumRing(3)), "a", "c")
        for host in order:
            node.on_delta(host, Delta([claim("x", on_a if host == "a" else on_c, 1, None)], []), 1.0)
        winners.append(node.pids["x"])
        assert not node.take().commands  # neither copy is local
    assert winners == [on_a, on_a, on_a]


def test_a_conflict_is_commanded_once_and_again_only_after_it_failed() -> None:
    name = name_owned_by("b", ["a", "b"], then="b", after=["a", "b", "c"])
    a = joined(core("a"), "b")
    mine, theirs = Pid("a", 1, 1), Pid("b", 1, 1)
    a.local_claim(name, mine, None, 1.0)
    a.on_delta("b", Delta([claim(name, theirs, 1, None)], []), 1.0)
    assert a.take().commands == [ResolveConflict(name, mine, theirs)]
    joined(a, "c")  # a new placement settles contested names again: nothing new to do
    assert not commands(a, ResolveConflict)
    a.conflict_failed(name, mine)  # the winner did not confirm it took the state
    assert a.take().commands == [ResolveConflict(name, mine, theirs)]
    a.conflict_done(name, mine)
    out = a.take()
    assert ("b", Delta([], [Removal(CLAIM_NAME, name, mine, 2)])) in out.send
    assert a.pids[name] == theirs
    assert name not in a.claims["a"]
    assert a.statistics().conflicts == 2


def test_a_handoff_claim_supersedes_every_pid_its_name_moved_through() -> None:
    """w slept through a move: it still holds x's claim of the name, which moved x -> y ->
    w. The claim w makes for the copy handed to it names y (moved_from) and x (ancestors):
    it wins, and w retires nothing, although x is the ring owner among {x, w}."""
    w = joined(core("w"), "x")
    name = name_owned_by("x", ["w", "x"])
    x_pid, y_pid, w_pid = Pid("x", 1, 7), Pid("y", 1, 8), Pid("w", 1, 9)
    stale = Claim(CLAIM_NAME, name, x_pid, 3, hash_name(name), SPEC)
    w.on_delta("x", Delta([stale], []), 1.0)
    w.take()
    w.local_claim(name, w_pid, SPEC, 2.0, moved_from=y_pid, handoff=4, ancestors=(x_pid,))
    out = w.take()
    assert w.pids[name] == w_pid
    assert not [c for c in out.commands if isinstance(c, ResolveConflict)]


def test_without_its_ancestors_the_same_claim_would_lose_to_the_ring_owner() -> None:
    """The rule the test above relies on: a claim x cannot tell is newer loses to x's when
    x owns the name among the hosts of both copies and of the pids they moved through
    (here w, x and y, the host w's copy was handed from)."""
    w = joined(core("w"), "x")
    name = name_owned_by("x", ["w", "x", "y"])
    x_pid, y_pid, w_pid = Pid("x", 1, 7), Pid("y", 1, 8), Pid("w", 1, 9)
    w.on_delta("x", Delta([Claim(CLAIM_NAME, name, x_pid, 3, hash_name(name), SPEC)], []), 1.0)
    w.take()
    w.local_claim(name, w_pid, SPEC, 2.0, moved_from=y_pid, handoff=4)
    out = w.take()
    assert w.pids[name] == x_pid
    assert [(c.loser, c.winner) for c in out.commands if isinstance(c, ResolveConflict)] == [(w_pid, x_pid)]


def test_a_winner_is_not_handed_off_while_its_conflict_is_being_settled() -> None:
    """Moving the winner mid-conflict changes the claimants, and with them the ring that
    picked it: another node could then pick the loser, and both copies would retire."""
    a = joined(core("a"), "b")
    name = name_owned_by("a", ["a", "b"], then="c", after=["a", "b", "c"])
    mine, theirs = Pid("a", 1, 5), Pid("b", 1, 6)
    a.local_claim(name, mine, SPEC, 1.0)
    a.on_delta("b", Delta([Claim(CLAIM_NAME, name, theirs, 2, hash_name(name), SPEC)], []), 1.0)
    a.take()
    a.peer_up("c", 2.0)  # c joins and owns the name: a would hand it to c
    a.on_hello("c", RegistryHello("server", False), 2.0)
    a.on_digest("c", Digest([0] * 64), 2.0)
    assert a.placement.owner(name) == "c"
    assert not [c for c in a.take().commands if isinstance(c, StartHandoff)]
    # b's copy retires (its host removes its claim): the move goes ahead now.
    a.on_delta("b", Delta([], [_removal(name, theirs, 3)]), 3.0)
    assert [c.name for c in a.take().commands if isinstance(c, StartHandoff)] == [name]


def _removal(name: str, pid: Pid, clock: int) -> Removal:
    return Removal(CLAIM_NAME, name, pid, clock)


# --- restarts ---------------------------------------------------------------------------------


def test_the_backoff_of_a_name_that_went_is_forgotten_once_it_would_reset_anyway() -> None:
    """The backoffs of names that crashed once and went (handed off, unregistered,
    restarted elsewhere) do not pile up: the sync tick after ``restart_reset`` drops them."""
    a = core("a")
    names = [f"crashed-{i}" for i in range(3)]
    for i, name in enumerate(names):
        a.local_claim(name, Pid("a", 1, i), SPEC, 0.0)
        a.local_exit(Pid("a", 1, i), "boom", 1.0)
    a.handle_timer(1.05)
    assert [c.name for c in commands(a, StartName)] == names
    # The restarts never claim (say their factory failed for good): the names are gone.
    assert set(a._backoff) == set(names)
    a.handle_timer(30.0)  # a sync tick 28.95 s after the restarts started: kept
    assert set(a._backoff) == set(names)
    a.handle_timer(40.0)  # the first tick 30 s after: dropped
    assert a._backoff == {}
    # A name that crashes again starts from restart_backoff, as it would have anyway.
    a.local_claim(names[0], Pid("a", 1, 9), SPEC, 41.0)
    a.local_exit(Pid("a", 1, 9), "boom", 42.0)
    assert a.next_deadline() == 42.05


def test_a_crashed_process_restarts_after_a_backoff_that_doubles_per_crash() -> None:
    a = core("a")
    pid = Pid("a", 1, 1)
    a.local_claim("job", pid, SPEC, 0.0)
    a.take()
    assert a.next_deadline() == 10.0  # only the sync
    for i, (crash, delay) in enumerate([(1.0, 0.05), (2.0, 0.1), (3.0, 0.2), (4.0, 0.4)]):
        a.local_exit(pid, "boom", crash)
        out = a.take()
        assert out.events == [NameUnregistered("job", pid)]
        assert a.restarts_owed()
        assert a.restarts_due() == ["job"]
        assert a.next_deadline() == crash + delay
        a.handle_timer(crash + delay - 1e-9)
        assert not a.take().commands
        a.handle_timer(crash + delay)
        assert a.take().commands == [StartName("job", SPEC, "exit")]
        assert a.restarts_made == i + 1
        assert not a.restarts_owed()
        pid = Pid("a", 1, 10 + i)
        a.local_claim("job", pid, SPEC, crash + delay)  # the shell started it again
        a.take()


def test_a_process_that_ran_restart_reset_restarts_after_restart_backoff_again() -> None:
    a = core("a")
    pids = iter(Pid("a", 1, i) for i in range(10))
    pid = next(pids)
    a.local_claim("job", pid, SPEC, 0.0)
    for crash, delay in [(1.0, 0.05), (2.0, 0.1), (31.0, 0.2), (62.0, 0.05)]:
        # The restart at 2.0 + 0.1 ran 28.9 s until 31.0: the backoff doubles. The one at
        # 31.0 + 0.2 ran 30.8 s until 62.0: it starts over.
        a.handle_timer(crash)  # the sync ticks meanwhile
        a.local_exit(pid, "boom", crash)
        assert a.next_deadline() == crash + delay
        a.handle_timer(crash + delay)
        a.take()
        pid = next(pids)
        a.local_claim("job", pid, SPEC, crash + delay)


@pytest.mark.parametrize(
    ("policy", "reason", "restarts"),
    [
        ("transient", "boom", True),
        ("transient", NORMAL, False),
        ("transient", SHUTDOWN, False),
        ("temporary", "boom", False),
        ("permanent", NORMAL, True),
        ("permanent", SHUTDOWN, True),
    ],
)
def test_an_exit_restarts_the_name_by_its_specs_policy(policy: str, reason: str, restarts: bool) -> None:
    spec = Spec("tests.registry.apps:Counter", [], {}, policy, 5.0)
    a = core("a")
    a.local_claim("job", Pid("a", 1, 1), spec, 0.0)
    a.local_exit(Pid("a", 1, 1), reason, 1.0)
    assert a.restarts_owed() == restarts
    a.handle_timer(1.0 + 0.05)
    assert commands(a, StartName) == ([StartName("job", spec, "exit")] if restarts else [])


def test_a_name_registered_without_a_factory_is_never_restarted() -> None:
    a = core("a")
    a.local_claim("plain", Pid("a", 1, 1), None, 0.0)
    a.local_exit(Pid("a", 1, 1), "boom", 1.0)
    assert not a.restarts_owed()
    assert a.pids == {}


def test_a_restart_due_when_another_node_owns_the_name_goes_to_that_owner() -> None:
    a = core("a")
    name = name_owned_by("b", ["a", "b"])
    a.local_claim(name, Pid("a", 1, 1), SPEC, 0.0)
    a.local_exit(Pid("a", 1, 1), "boom", 1.0)
    joined(a, "b")  # b joins while the restart waits out its backoff
    a.handle_timer(1.0 + 0.05)
    assert a.take().commands == [RestartElsewhere(name, SPEC, "b")]
    assert a.restarts_made == 1


def test_a_dead_hosts_name_is_restarted_at_once_by_its_new_owner_and_checked_by_the_others() -> None:
    """The owner in the new placement restarts the name at once; every other node that
    knew the claim checks on it exactly ``orphan_check`` later and asks the owner then."""
    name = name_owned_by("b", ["a", "b", "c"], then="a", after=["a", "c"])
    a, c = joined(core("a"), "b", "c"), joined(core("c"), "a", "b")
    lost = claim(name, Pid("b", 1, 1), 1)
    for node in (a, c):
        node.on_delta("b", Delta([lost], []), 1.0)
        node.take()
        node.peer_down("b", 5.0)
    out = a.take()
    assert out.commands == [StartName(name, SPEC, "nodedown", "b")]
    assert NameUnregistered(name, lost.pid) in out.events
    assert a.restarts_made == 1
    assert not c.take().commands
    assert c.restarts_due() == [name]
    assert c.next_deadline() == 5.0 + 2.0
    c.handle_timer(5.0 + 2.0 - 1e-9)
    assert not c.take().commands
    c.handle_timer(5.0 + 2.0)
    assert c.take().commands == [RestartElsewhere(name, SPEC, "a")]
    assert c.restarts_made == 1


def test_the_lineages_of_the_restarts_owed_indexed_at_once_are_those_claimed_lineages_scans() -> None:
    """A sweep asks ``claimed_lineages`` of thousands of records while thousands of orphan
    checks are owed: with ``restart_lineages()`` (one pass) it answers as without."""
    names = [name_owned_by("b", ["a", "b", "c"], then="a", after=["a", "c"])]
    names.append(next(n for i in range(10_000) if (n := f"other-{i}") not in names))
    c = joined(core("c"), "a", "b")
    lines = {name: Lineage(i + 1, Pid("b", 1, i + 1)) for i, name in enumerate(names)}
    base = Lineage(0, Pid("a", 1, 7))
    claims = [
        msgspec.structs.replace(claim(n, Pid("b", 1, i + 1), i + 1), lineage=lines[n], base=base)
        for i, n in enumerate(names)
    ]
    c.on_delta("b", Delta(claims, []), 1.0)
    c.take()
    c.peer_down("b", 5.0)
    c.take()
    index = c.restart_lineages()
    for name in [*names, "never-claimed"]:
        assert c.claimed_lineages(name, index) == c.claimed_lineages(name)
    owed = set(c.restarts_due())
    assert owed
    assert all(c.claimed_lineages(n, index) == {lines[n], base} for n in owed)


def test_an_orphan_check_of_a_name_that_is_back_makes_no_restart() -> None:
    name = name_owned_by("b", ["a", "b", "c"], then="a", after=["a", "c"])
    c = joined(core("c"), "a", "b")
    c.on_delta("b", Delta([claim(name, Pid("b", 1, 1), 1)], []), 1.0)
    c.peer_down("b", 5.0)
    c.on_delta("a", Delta([claim(name, Pid("a", 1, 1), 1)], []), 5.5)  # a restarted it
    assert c.restarts_owed()
    assert c.restarts_due() == []  # still queued, but no restart is to come
    c.take()
    c.handle_timer(5.0 + 2.0)
    assert not c.take().commands
    assert not c.restarts_owed()
    assert c.restarts_made == 0


# --- leaving (drain) --------------------------------------------------------------------------


def test_a_leaving_node_tells_every_peer_and_hands_every_local_name_off() -> None:
    a = joined(core("a"), "b", "c")
    names = [name_owned_by("a", ["a", "b", "c"], then=owner, after=["b", "c"]) for owner in ("b", "c")]
    for i, name in enumerate(names):
        a.local_claim(name, Pid("a", 1, i), SPEC, 0.0)
    a.take()
    a.start_leaving(1.0)
    out = a.take()
    assert [(to, m) for to, m in out.send if isinstance(m, RegistryLeaving)] == [
        ("b", RegistryLeaving()),
        ("c", RegistryLeaving()),
    ]
    assert a.placement.nodes == ["b", "c"]
    assert out.commands == [
        StartHandoff(names[0], Pid("a", 1, 0), SPEC, "b"),
        StartHandoff(names[1], Pid("a", 1, 1), SPEC, "c"),
    ]


def test_a_leaving_node_passes_every_restart_it_owes_to_the_owner_at_once() -> None:
    """A crash waiting out its backoff and the orphan check of a dead node's name fall due
    when the leave starts: this node may be the last that knows of them."""
    crashed = name_placed(("a", ["a", "b", "c", "d"]), ("a", ["a", "b", "c"]), ("b", ["b", "c"]))
    orphan = name_placed(("d", ["a", "b", "c", "d"]), ("c", ["a", "b", "c"]))
    a = joined(core("a"), "b", "c", "d")
    a.local_claim(crashed, Pid("a", 1, 1), SPEC, 0.0)
    a.on_delta("d", Delta([claim(orphan, Pid("d", 1, 1), 1)], []), 0.0)
    a.local_exit(Pid("a", 1, 1), "boom", 1.0)  # due at 1.05
    a.peer_down("d", 1.0)  # checked at 3.0
    a.take()
    assert a.restarts_due() == [crashed, orphan]
    a.start_leaving(1.01)
    assert commands(a, RestartElsewhere) == [
        RestartElsewhere(crashed, SPEC, "b"),
        RestartElsewhere(orphan, SPEC, "c"),
    ]
    assert not a.restarts_owed()
    assert a.restarts_made == 2


def test_a_leaving_node_passes_a_crash_on_within_a_tenth_of_a_second() -> None:
    a = joined(core("a"), "b")
    a.start_leaving(0.0)
    a.take()
    for now, delay in [(1.0, 0.05), (2.0, 0.1), (3.0, 0.1), (4.0, 0.1)]:  # not 0.2, 0.4
        a.schedule_restart("job", SPEC, now)
        assert a.next_deadline() == now + delay
        a.handle_timer(now + delay)
        assert a.take().commands == [RestartElsewhere("job", SPEC, "b")]


def test_the_last_server_to_leave_stops_its_names() -> None:
    a = core("a")
    a.local_claim("job", Pid("a", 1, 1), SPEC, 0.0)
    a.take()
    a.start_leaving(1.0)
    assert a.take().commands == [StopProcess("job", Pid("a", 1, 1), "lastnode")]


def test_a_leaving_node_that_has_not_synced_with_a_peer_yet_keeps_its_names_until_it_has() -> None:
    a = core("a")
    a.local_claim("job", Pid("a", 1, 1), SPEC, 0.0)
    a.peer_up("b", 0.0)
    a.on_hello("b", RegistryHello("server", False), 0.0)
    a.take()
    assert a.servers_not_placed_yet()
    a.start_leaving(1.0)
    assert not a.take().commands  # not a loss of quorum: b is about to be placed
    a.on_digest("b", Digest([0] * BUCKETS), 1.5)
    assert a.take().commands == [StartHandoff("job", Pid("a", 1, 1), SPEC, "b")]


def test_a_peer_that_leaves_is_left_out_of_the_placement() -> None:
    a = joined(core("a"), "b")
    name = name_owned_by("b", ["a", "b"])
    assert a.owner(name) == "b"
    a.on_leaving("b", RegistryLeaving(), 1.0)
    assert a.placement.nodes == ["a"]
    assert a.owner(name) == "a"
    a.on_leaving("z", RegistryLeaving(), 1.0)  # not up here: ignored
    assert "z" not in a.peers


# --- peers down -------------------------------------------------------------------------------


def test_a_peer_down_takes_its_claims_with_it_and_only_factory_names_come_back() -> None:
    name = name_owned_by("b", ["a", "b", "c"], then="c", after=["a", "c"])
    a = joined(core("a"), "b", "c")
    held = [claim(name, Pid("b", 1, 1), 1), claim("plain", Pid("b", 1, 2), 2, None)]
    a.on_delta("b", Delta([*held, claim("g", Pid("b", 1, 3), 3, None, kind=CLAIM_GROUP)], []), 1.0)
    a.take()
    a.peer_down("b", 5.0)
    out = a.take()
    assert set(out.events) == {
        NameUnregistered(name, Pid("b", 1, 1)),
        NameUnregistered("plain", Pid("b", 1, 2)),
        GroupLeft("g", Pid("b", 1, 3)),
    }
    assert a.pids == {}
    assert "b" not in a.claims
    assert "b" not in a.peers
    assert a.placement.nodes == ["a", "c"]
    assert not out.commands  # c owns the name: a checks on it later, for the factory name only
    assert a.restarts_due() == [name]
    assert a.next_deadline() == 5.0 + 2.0


def test_a_peer_declared_down_is_placed_again_only_once_its_claims_are_back() -> None:
    """A suspicion that turned into a verdict while the peer was only paused: its claims
    were dropped here; when it comes back, it is greeted, and placed once synced again."""
    name = name_owned_by("b", ["a", "b"])
    a = joined(core("a"), "b")
    theirs = claim(name, Pid("b", 1, 1), 1)
    a.on_delta("b", Delta([theirs], []), 1.0)
    a.peer_down("b", 2.0)
    a.take()
    a.peer_up("b", 3.0)
    assert a.take().send == [("b", RegistryHello("server", False, wants_digest=True))]
    a.on_hello("b", RegistryHello("server", False), 3.1)
    digest = [0] * BUCKETS
    digest[theirs.position % BUCKETS] = 1  # any difference
    a.on_digest("b", Digest(digest), 3.1)
    assert a.take().send == [("b", SyncRequest([theirs.position % BUCKETS]))]
    assert a.placement.nodes == ["a"]
    a.on_sync_reply("b", SyncReply([theirs.position % BUCKETS], [theirs]), 3.2)
    assert a.placement.nodes == ["a", "b"]
    assert a.pids == {name: theirs.pid}
    assert not a.take().commands  # b runs it: nothing to restart or move


def test_a_digest_asked_for_before_the_peer_is_up_here_goes_out_when_it_comes_up() -> None:
    a = core("a")
    a.on_hello("b", RegistryHello("server", False, wants_digest=True), 0.0)
    assert not a.take().send
    assert "b" not in a.peers
    a.peer_up("b", 0.5)
    assert a.take().send == [("b", RegistryHello("server", False, wants_digest=True)), ("b", Digest(a.digest("a")))]


def test_a_name_handed_to_a_node_that_died_before_claiming_it_is_restarted() -> None:
    name = name_owned_by("b", ["a", "b"])
    a = core("a")
    old = Pid("a", 1, 1)
    a.local_claim(name, old, SPEC, 0.0)
    joined(a, "b")
    a.handoff_done(name, old, Pid("b", 1, 7))
    a.take()
    a.peer_down("b", 1.0)  # before b's claim came
    out = a.take()
    assert out.commands == [StartName(name, SPEC, "nodedown", "b")]
    assert NameUnregistered(name, Pid("b", 1, 7)) in out.events


def test_a_successor_whose_node_died_before_claiming_is_forgotten_and_checked_later() -> None:
    """b handed the name to c; c died before its claim reached a: a forgets the pid, and
    checks after ``orphan_check`` that the name is back (b, which handed it and owns it
    now, restarts it: see the test above)."""
    name = name_owned_by("b", ["a", "b"])
    a = joined(core("a"), "b", "c")
    old, new = Pid("b", 1, 1), Pid("c", 1, 1)
    a.on_delta("b", Delta([claim(name, old, 1)], []), 1.0)
    a.on_delta("b", Delta([], [Removal(CLAIM_NAME, name, old, 2, successor=new)]), 2.0)
    assert a.pids == {name: new}
    a.take()
    a.peer_down("c", 3.0)
    assert a.pids == {}
    out = a.take()
    assert NameUnregistered(name, new) in out.events
    assert out.commands == []
    a.on_delta("b", Delta([claim(name, Pid("b", 1, 2), 3)], []), 4.0)  # b restarted it
    a.handle_timer(3.0 + RegistryConfig().orphan_check)
    assert a.take().commands == []  # back: no restart
    assert not a.restarts_owed()


def up(me: TrackerCore, node: str, incarnation: int, now: float = 0.0) -> None:
    """``node`` (as ``incarnation``) comes up at ``me``, greets it and is synced (empty)."""
    me.peer_up(node, now, incarnation)
    me.on_hello(node, RegistryHello("server", False), now)
    me.on_digest(node, Digest([0] * BUCKETS), now)


def b_hosts_a_name_of(owner: str, nodes: list[str]) -> tuple[TrackerCore, str, Pid, Pid]:
    """a, with b and c up (incarnation 1), sees b claim a name that ``owner`` owns among
    ``nodes``: a, the name, b's pid of it, and the pid c would get (c's first)."""
    old, new = Pid("b", 1, 1), Pid("c", 1, 1)
    name = name_owned_by(owner, nodes)
    a = core("a")
    up(a, "b", 1)
    up(a, "c", 1)
    a.on_delta("b", Delta([claim(name, old, 1)], []), 1.0)
    return a, name, old, new


def test_a_removal_naming_a_successor_already_down_here_leaves_an_orphan_its_owner_restarts() -> None:
    """The chaos campaign's lost names (seed 4229829435): b (leaving) handed x to c while a
    was cut off; a declared c failed; c died; b's removal reached a only after the heal.
    Kept, the successor made a resolve x to c's dead pid for good, and answer the restart
    b asked of it (b saw c die) "registered already": nobody restarted x. a owns x now, so
    it restarts it; and a registration asked of it finds the name free."""
    a, name, old, new = b_hosts_a_name_of("a", ["a", "c"])
    a.on_leaving("b", RegistryLeaving(), 1.0)
    a.peer_down("c", 2.0)
    a.take()
    a.on_delta("b", Delta([], [Removal(CLAIM_NAME, name, old, 2, successor=new)]), 3.0)
    assert name not in a.pids
    out = a.take()
    assert NameUnregistered(name, old) in out.events
    assert out.commands == [StartName(name, SPEC, "nodedown", "c")]


def test_a_removal_naming_a_dead_incarnation_of_a_node_up_again_is_no_successor() -> None:
    a, name, old, new = b_hosts_a_name_of("c", ["a", "b", "c"])  # c's new incarnation owns it: a checks later
    a.peer_down("c", 2.0)
    up(a, "c", 2, 2.5)  # c restarted: its first incarnation's pids are gone
    a.take()
    a.on_delta("b", Delta([], [Removal(CLAIM_NAME, name, old, 2, successor=new)]), 3.0)
    assert name not in a.pids
    assert a.take().commands == []
    assert a.restarts_due() == [name]  # the orphan check: c is asked if the name is not back
    a.handle_timer(3.0 + RegistryConfig().orphan_check)
    assert a.take().commands == [RestartElsewhere(name, SPEC, "c")]


def test_a_removal_naming_a_node_not_seen_yet_still_resolves_to_the_successor() -> None:
    """A joiner that the old host placed before this node linked to it: its claim is on its
    way, the name must not disappear meanwhile."""
    a = joined(core("a"), "b")
    old, new = Pid("b", 1, 1), Pid("j", 7, 1)
    a.on_delta("b", Delta([claim("x", old, 1)], []), 1.0)
    a.on_delta("b", Delta([], [Removal(CLAIM_NAME, "x", old, 2, successor=new)]), 2.0)
    assert a.pids == {"x": new}
    assert not a.take().commands


def test_a_successor_that_dies_before_its_claim_arrives_is_restarted_by_the_owner() -> None:
    """The same loss the other way round: a resolved x to c's pid (c's claim not there
    yet), answered b's restart request "registered already" (b saw c die first), and then
    forgot x at c's death. The owner restarts what it forgets; the others check later."""
    a, name, old, new = b_hosts_a_name_of("a", ["a", "c"])
    a.on_leaving("b", RegistryLeaving(), 1.0)
    a.on_delta("b", Delta([], [Removal(CLAIM_NAME, name, old, 2, successor=new)]), 2.0)
    assert a.pids == {name: new}
    a.take()
    a.peer_down("c", 3.0)
    out = a.take()
    assert NameUnregistered(name, new) in out.events
    assert out.commands == [StartName(name, SPEC, "nodedown", "c")]


def test_a_moved_copy_stands_for_the_host_it_moved_from_so_two_views_pick_the_same_copy() -> None:
    """The chaos test's lost name: x's copy moved to y (y's claim says so), and z woke from
    a pause with a copy of its own. z, not having seen y's claim yet, sees {x, z}; y sees
    {y (moved from x), z}. Both must pick the same copy, or each retires its copy to the
    other's and the name is lost: the ring is over x, y and z at y, over x and z at z, and
    whichever of those owns the name, the two views agree on the copy it stands for."""
    x_pid, y_pid, z_pid = Pid("x", 1, 7), Pid("y", 1, 8), Pid("z", 1, 9)
    for owner in ("x", "y", "z"):
        name = name_owned_by(owner, ["x", "y", "z"])
        at_y = joined(core("y"), "z")
        at_y.local_claim(name, y_pid, SPEC, 1.0, moved_from=x_pid, handoff=4)
        at_y.on_delta("z", Delta([Claim(CLAIM_NAME, name, z_pid, 3, hash_name(name), SPEC)], []), 1.0)
        at_y.take()
        at_z = joined(core("z"), "x")
        at_z.local_claim(name, z_pid, SPEC, 1.0)
        at_z.on_delta("x", Delta([Claim(CLAIM_NAME, name, x_pid, 3, hash_name(name), SPEC)], []), 1.0)
        at_z.take()
        kept_at_y, kept_at_z = at_y.pids[name], at_z.pids[name]
        # the same copy: z's, or y's (x's pid forwards to y's copy)
        assert (kept_at_y, kept_at_z) in ((z_pid, z_pid), (y_pid, x_pid), (y_pid, z_pid)), (owner, kept_at_y, kept_at_z)
        assert not (kept_at_y == z_pid and kept_at_z == x_pid), owner  # each retiring its copy to the other's


def test_a_removal_naming_a_successor_whose_claim_came_and_went_sets_no_pointer() -> None:
    """c's copy of x (handed in from b) claimed, then exited and ended its claim before
    b's removal naming it reached a (another link): a pointer to it left x on a dead pid,
    for good if its exit ended the name. The same on c itself (its claim came first)."""
    a = joined(core("a"), "b", "c")
    old, new = Pid("b", 1, 1), Pid("c", 1, 1)
    a.on_delta("b", Delta([claim("x", old, 1)], []), 1.0)
    a.on_delta("c", Delta([msgspec.structs.replace(claim("x", new, 1), moved_from=old)], []), 2.0)
    a.on_delta("c", Delta([], [Removal(CLAIM_NAME, "x", new, 2)]), 2.1)  # it exited: no successor
    a.on_delta("b", Delta([], [Removal(CLAIM_NAME, "x", old, 2, successor=new)]), 2.2)
    assert "x" not in a.pids

    c = joined(core("c"), "b")
    c.on_delta("b", Delta([claim("x", old, 1)], []), 1.0)
    c.local_claim("x", new, SPEC, 2.0, moved_from=old, handoff=1)
    c.local_exit(new, "crashed", 2.1)
    c.on_delta("b", Delta([], [Removal(CLAIM_NAME, "x", old, 2, successor=new)]), 2.2)
    assert "x" not in c.pids
    c.take()
    c.handle_timer(10.0)
    restarts = [cmd for cmd in c.take().commands if isinstance(cmd, StartName | RestartElsewhere)]
    assert [cmd.name for cmd in restarts] == ["x"]  # the crash's restart, not skipped as registered


def test_a_copy_that_displaces_another_here_stands_for_the_pids_that_one_superseded() -> None:
    """Two copies of x handed in here at once (seed 350371859): the first's claim superseded
    b's pid, the second displaced it. Its claim must supersede b's pid too: b's removal has
    not come yet, and b's pid, live to the ring, took x from both copies here, which then
    retired to it (it had moved on to the first): x was gone for good."""
    a = joined(core("a"), "b", "c")
    name = name_owned_by("b", ["a", "b"])
    old_b, old_c = Pid("b", 1, 1), Pid("c", 1, 9)
    a.on_delta("b", Delta([claim(name, old_b, 1)], []), 1.0)
    first, second = Pid("a", 1, 5), Pid("a", 1, 6)
    a.local_claim(name, first, SPEC, 2.0, moved_from=old_b, handoff=1)
    a.local_claim(name, second, SPEC, 2.1, moved_from=old_c, handoff=2)
    assert a.pids[name] == second
    assert commands(a, ResolveConflict) == [ResolveConflict(name, first, second)]  # the first's state goes to it
    assert {first, old_b} <= set(a.claims["a"][name].ancestors)
