"""The membership core, driven by hand with explicit time (aioquic style).

Time starts at 0.0 and every deadline is asserted exactly. The core runs with the LAN
preset: ``protocol_period`` 1.0, ``probe_timeout`` 0.5, 3 indirect probes, suspicion
``max(2.0, 4.0 * max(1, log10 n) * 1.0)``, push-pull every 30 s, tombstones kept 60 s
(a dead member) or 30 s (one that left).
The rng is seeded (each test says which seed), so probe orders and helpers are fixed.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Iterable
from typing import Any

import msgspec
import pytest

from distable.membership import MemberInfo, MembershipConfig, MembershipCore, MembershipOutput, NodeDown, NodeUp
from distable.membership._core import ALIVE, DEAD, LEFT, SUSPECT
from distable.wire._messages import Ack, MemberSync, Ping, PingReq, Rumor

CFG = MembershipConfig.lan()
ME = "me@127.0.0.1:4000"
ME_INCARNATION = 7
A, B, C, D, E, F = (f"{x}@127.0.0.1:{4000 + i}" for i, x in enumerate("abcdef", 1))


def make_core(*, seed: int = 0, allow: tuple[str, ...] = (), deny: tuple[str, ...] = ()) -> MembershipCore:
    return MembershipCore(ME, ME_INCARNATION, CFG, random.Random(seed), 0.0, allow=allow, deny=deny)


def linked(*names: str, seed: int = 0) -> MembershipCore:
    """A core at 0.0 with a link to each of ``names`` (incarnation 1), output taken."""
    core = make_core(seed=seed)
    for name in names:
        core.link_up(name, 1, 0.0)
    core.take()
    return core


def sent(out: MembershipOutput, kind: type[Any]) -> list[tuple[str, Any]]:
    return [(dst, msg) for dst, msg in out.send if isinstance(msg, kind)]


def alive(name: str, refutation: int = 0, incarnation: int = 1) -> Rumor:
    return Rumor(name, incarnation, refutation, ALIVE)


def advance(core: MembershipCore, until: float, answer: Iterable[str] = ()) -> list[tuple[float, NodeUp | NodeDown]]:
    """Fire every deadline up to ``until``; members in ``answer`` ack pings at once.

    Returns the events with the time they happened.
    """
    answering = set(answer)
    events: list[tuple[float, NodeUp | NodeDown]] = []
    while (now := core.next_deadline()) <= until:
        core.handle_timer(now)
        while out := core.take():
            events += [(now, e) for e in out.events]
            for dst, msg in out.send:
                if isinstance(msg, Ping) and dst in answering:
                    core.receive(dst, Ack(msg.seq, []), now)
                elif isinstance(msg, PingReq) and msg.target in answering:
                    core.receive(dst, Ack(msg.seq, []), now)  # the helper's relayed ack
    return events


# --- links and announcements --------------------------------------------------------------


def test_link_up_announces_node_up_once_and_sends_member_sync() -> None:
    core = make_core()
    core.link_up(A, 1, 0.0)
    out = core.take()
    assert out.events == [NodeUp(A, 1)]
    assert out.send == [(A, MemberSync([Rumor(ME, ME_INCARNATION, 0, ALIVE), alive(A)], True))]
    assert core.up_members() == [A]
    core.link_up(A, 1, 0.5)  # the same incarnation again (a replaced connection)
    out = core.take()
    assert out.events == []
    assert sent(out, MemberSync) == [(A, MemberSync([Rumor(ME, ME_INCARNATION, 0, ALIVE), alive(A)], True))]


def test_a_fresh_core_is_due_at_once_then_every_protocol_period() -> None:
    core = make_core()
    assert core.next_deadline() == 0.0
    core.handle_timer(0.0)
    assert not core.take()  # nobody to probe yet
    assert core.next_deadline() == 1.0


def test_a_probe_goes_out_at_the_next_period_to_a_linked_member() -> None:
    core = make_core()
    core.handle_timer(0.0)
    core.link_up(A, 1, 0.25)
    core.take()
    assert core.next_deadline() == 1.0
    core.handle_timer(0.999)
    assert not core.take()
    core.handle_timer(1.0)
    ((dst, ping),) = core.take().send
    assert dst == A
    assert isinstance(ping, Ping)
    assert ping.seq == 1
    assert core.next_deadline() == 1.5  # the indirect-probe deadline
    core.receive(A, Ack(ping.seq, []), 1.01)
    assert not core.take()
    assert core.next_deadline() == 2.0  # acked: only the next period remains
    assert core.statistics().probes == 1
    assert core.statistics().probe_failures == 0


def test_missing_ack_sends_ping_req_at_probe_timeout_and_suspects_at_period_end() -> None:
    everyone = {A, B, C, D, E, F}
    core = linked(*sorted(everyone), seed=1)
    core.handle_timer(0.0)
    ((target, ping),) = core.take().send
    assert isinstance(ping, Ping)
    assert core.next_deadline() == 0.5
    core.handle_timer(0.499)
    assert not core.take()
    core.handle_timer(0.5)
    out = core.take()
    reqs = sent(out, PingReq)
    assert len(out.send) == len(reqs) == CFG.indirect_probes == 3  # k of the 5 possible helpers
    helpers = {dst for dst, _ in reqs}
    assert len(helpers) == 3
    assert helpers <= everyone - {target}
    assert all(req.seq == ping.seq and req.target == target for _, req in reqs)
    assert core.next_deadline() == 1.0
    core.handle_timer(1.0)
    out = core.take()
    m = core.member(target)
    assert m is not None
    assert m.status == SUSPECT
    assert m.suspect_deadline == 1.0 + CFG.suspicion_timeout(7) == 5.0
    assert out.events == []  # a suspect is still up
    assert core.up_members() == sorted(everyone)
    stats = core.statistics()
    assert (stats.probe_failures, stats.suspicions) == (1, 1)


def test_a_member_without_link_is_probed_indirectly_at_once() -> None:
    core = linked(A, B)
    core.receive(A, MemberSync([alive(C)], False), 0.0)
    assert core.take().connect == [C]
    # The shuffled round-robin reaches C within one round of the three members.
    for now in (0.0, 1.0, 2.0):
        core.handle_timer(now)
        out = core.take()
        pings = sent(out, Ping)
        if not pings:
            break
        ((dst, ping),) = pings
        core.receive(dst, Ack(ping.seq, []), now)
    reqs = sent(out, PingReq)
    assert sorted(dst for dst, _ in reqs) == [A, B]
    assert all(req.target == C for _, req in reqs)
    assert core.next_deadline() == now + CFG.protocol_period  # no second deadline for the indirect probes


@pytest.mark.parametrize(
    ("preset", "members", "expected"),
    [
        (CFG, 1, 4.0),
        (CFG, 10, 4.0),
        (CFG, 100, 8.0),
        (CFG, 1000, 12.0),
        (MembershipConfig.local(), 5, 0.6),
        (MembershipConfig.local(), 1000, 1.8),
        (MembershipConfig(suspicion_mult=1.0), 10, 2.0),  # suspicion_min is the floor
    ],
)
def test_suspicion_timeout_formula(preset: MembershipConfig, members: int, expected: float) -> None:
    # suspicion_mult * max(1, log10 n) * protocol_period, at least suspicion_min
    assert preset.suspicion_timeout(members) == pytest.approx(expected)
    assert preset.suspicion_timeout(members) == max(
        preset.suspicion_min, preset.suspicion_mult * max(1.0, math.log10(members)) * preset.protocol_period
    )


def test_the_core_scales_suspicion_by_its_member_count_including_itself() -> None:
    names = [f"n{i:03d}@127.0.0.1:5000" for i in range(99)]
    core = linked(*names)
    core.link_down(names[0], 3.0)
    m = core.member(names[0])
    assert m is not None
    assert m.suspect_deadline == 3.0 + CFG.suspicion_timeout(100) == 11.0


def suspected(seed: int = 1) -> tuple[MembershipCore, str]:
    """A core (members A-D) that suspected the member it probed first, at 1.0."""
    core = linked(A, B, C, D, seed=seed)
    core.handle_timer(0.0)
    ((target, _),) = core.take().send
    others = {A, B, C, D} - {target}
    advance(core, 1.0, answer=others)
    m = core.member(target)
    assert m is not None
    assert m.status == SUSPECT
    assert m.suspect_deadline == 5.0
    return core, target


def test_a_suspect_that_refutes_is_alive_again_without_events() -> None:
    core, target = suspected()
    helper = min({A, B, C, D} - {target})
    core.receive(helper, MemberSync([alive(target, refutation=1)], False), 2.0)
    out = core.take()
    assert out.events == []
    m = core.member(target)
    assert m is not None
    assert (m.status, m.refutation, m.suspect_deadline) == (ALIVE, 1, math.inf)
    assert advance(core, 20.0, answer=[A, B, C, D]) == []
    assert core.up_members() == sorted([A, B, C, D])


def test_an_alive_rumor_of_the_same_refutation_does_not_clear_a_suspicion() -> None:
    core, target = suspected()
    core.receive(A if target != A else B, MemberSync([alive(target, refutation=0)], False), 2.0)
    m = core.member(target)
    assert m is not None
    assert m.status == SUSPECT


def test_a_suspect_that_does_not_refute_is_declared_dead_at_the_exact_deadline() -> None:
    core, target = suspected()
    others = {A, B, C, D} - {target}
    assert advance(core, 4.999, answer=others) == []
    assert core.next_deadline() == 5.0
    events = advance(core, 5.0, answer=others)
    assert events == [(5.0, NodeDown(target, "failed"))]
    m = core.member(target)
    assert m is not None
    assert m.status == DEAD
    assert target not in core.up_members()
    assert core.statistics().failures == 1


def test_link_flapping_inside_the_suspicion_timeout_produces_no_events() -> None:
    core = linked(A, B)
    core.link_down(A, 0.5)
    out = core.take()
    assert out.events == []
    m = core.member(A)
    assert m is not None
    assert (m.status, m.link, m.suspect_deadline) == (SUSPECT, False, 0.5 + CFG.suspicion_timeout(3))
    assert core.up_members() == [A, B]  # still up: the suspicion may yet be refuted
    core.link_up(A, 1, 1.5)
    out = core.take()
    assert out.events == []
    # The push on the new link tells A it is suspected; A refutes in its reply.
    push = MemberSync([Rumor(ME, ME_INCARNATION, 0, ALIVE), Rumor(A, 1, 0, SUSPECT), alive(B)], True)
    assert sent(out, MemberSync) == [(A, push)]
    core.receive(A, MemberSync([alive(A, refutation=1)], False), 1.51)
    assert not core.take().events
    assert (m.status, m.refutation, m.link) == (ALIVE, 1, True)
    assert advance(core, 30.0, answer=[A, B]) == []
    assert core.up_members() == [A, B]


def test_a_newer_incarnation_replaces_the_old_one_with_down_restarted_then_up() -> None:
    core = linked(A)
    core.link_up(A, 2, 3.0)
    assert core.take().events == [NodeDown(A, "restarted"), NodeUp(A, 2)]
    m = core.member(A)
    assert m is not None
    assert (m.incarnation, m.refutation, m.status) == (2, 0, ALIVE)


def test_a_rumor_of_a_newer_incarnation_downs_the_old_one_and_dials_the_new() -> None:
    core = linked(A, B)
    core.receive(B, MemberSync([alive(A, incarnation=2)], False), 3.0)
    out = core.take()
    assert out.events == [NodeDown(A, "restarted")]
    assert out.connect == [A]
    core.link_up(A, 2, 3.1)
    assert core.take().events == [NodeUp(A, 2)]


def test_rumors_and_links_of_an_older_incarnation_are_ignored() -> None:
    core = make_core()
    core.link_up(A, 2, 0.0)
    core.take()
    core.receive(B, MemberSync([Rumor(A, 1, 9, DEAD), Rumor(A, 1, 9, LEFT)], False), 1.0)
    core.link_up(A, 1, 1.0)
    core.discovered(A, 1.0, incarnation=1)
    out = core.take()
    assert out.events == []
    assert out.connect == []
    m = core.member(A)
    assert m is not None
    assert (m.incarnation, m.refutation, m.status) == (2, 0, ALIVE)


def test_a_left_member_is_reported_down_left_and_disconnected() -> None:
    core = linked(A, B)
    core.receive(A, MemberSync([Rumor(A, 1, 0, LEFT)], False), 2.0)
    out = core.take()
    assert out.events == [NodeDown(A, "left")]
    assert out.disconnect == [A]
    assert core.up_members() == [B]
    # Leaving is final for that incarnation: not even a higher refutation number brings it back.
    core.receive(B, MemberSync([alive(A, refutation=5)], False), 3.0)
    core.link_down(A, 3.0)
    assert not core.take().events
    m = core.member(A)
    assert m is not None
    assert m.status == LEFT


def test_leave_tells_every_linked_member_then_ignores_everything() -> None:
    core = linked(A, B)
    core.receive(A, MemberSync([alive(C)], False), 0.0)
    core.take()
    core.leave(1.0)
    out = core.take()
    goodbye = MemberSync([Rumor(ME, ME_INCARNATION, 0, LEFT)], False)
    assert out.send == [(A, goodbye), (B, goodbye)]  # C has no link
    core.receive(A, Ping(1, []), 1.5)
    core.handle_timer(5.0)
    assert not core.take()


@pytest.mark.parametrize("status", [SUSPECT, DEAD])
def test_the_node_refutes_rumors_about_itself_by_bumping_its_refutation(status: int) -> None:
    core = linked(A)
    core.receive(A, MemberSync([Rumor(ME, ME_INCARNATION, 0, status)], False), 1.0)
    assert core.refutation == 1
    assert core.statistics().refutations == 1
    core.receive(A, Ping(5, []), 1.1)
    ((_, ack),) = core.take().send
    assert isinstance(ack, Ack)
    assert Rumor(ME, ME_INCARNATION, 1, ALIVE) in ack.rumors
    core.receive(A, MemberSync([Rumor(ME, ME_INCARNATION, 3, status)], False), 1.2)
    assert core.refutation == 4  # always above what was said
    # Old news, another incarnation's news, and good news need no refutation.
    core.receive(
        A,
        MemberSync(
            [
                Rumor(ME, ME_INCARNATION, 2, status),
                Rumor(ME, ME_INCARNATION - 1, 9, status),
                Rumor(ME, ME_INCARNATION, 9, ALIVE),
            ],
            False,
        ),
        1.3,
    )
    assert core.refutation == 4
    assert ME not in core.members


def test_an_older_suspicion_about_itself_makes_the_node_repeat_its_refutation() -> None:
    core = linked(A, B)
    core.receive(A, MemberSync([Rumor(ME, ME_INCARNATION, 0, SUSPECT)], False), 1.0)
    assert core.refutation == 1
    for seq in range(1, 20):  # A and others hear the refutation until its retransmits are spent
        core.receive(A, Ping(seq, []), 1.0)
        core.take()
    # B never heard it and still suspects it at refutation 0: its ping gets the refutation back.
    core.receive(B, Ping(99, [Rumor(ME, ME_INCARNATION, 0, SUSPECT)]), 2.0)
    ((_, ack),) = core.take().send
    assert isinstance(ack, Ack)
    assert Rumor(ME, ME_INCARNATION, 1, ALIVE) in ack.rumors
    assert core.refutation == 1  # nothing new to refute
    assert core.statistics().refutations == 1


def test_allow_and_deny_globs_deny_wins_and_self_is_never_allowed() -> None:
    core = make_core(allow=("*@127.0.0.1:*",), deny=("b@*",))
    assert core.allowed(A)
    assert not core.allowed(B)  # allowed by the glob, but denied
    assert not core.allowed("x@10.0.0.1:4000")  # not in the allow list
    assert not core.allowed(ME)
    assert make_core().allowed(A)  # no allow list: everyone but denied names and self
    assert not make_core().allowed(ME)
    core.link_up(B, 1, 0.0)
    out = core.take()
    assert (out.disconnect, out.events, out.send) == ([B], [], [])
    core.discovered(B, 0.0)
    core.discovered("x@10.0.0.1:4000", 0.0)
    core.discovered(ME, 0.0)
    core.link_up(A, 1, 0.0)
    core.receive(A, MemberSync([alive(B), alive("x@10.0.0.1:4000"), alive(C)], False), 0.0)
    out = core.take()
    assert out.connect == [C]
    assert sorted(core.members) == [A, C]


def test_a_member_denied_since_it_joined_is_not_redialed_when_its_link_drops() -> None:
    """``deny`` changed while B was a member: its next link is dropped as it comes up, and
    redialing it at each drop made the two nodes link and drop thousands of times a second
    (each handshake that completes resets the transport's back-off). A member still
    allowed is redialed."""
    core = linked(A, B)
    core.deny = (B,)
    core.link_down(B, 1.0)
    core.link_down(A, 1.0)
    assert core.take().connect == [A]
    core.link_up(B, 1, 1.1)
    assert core.take().disconnect == [B]
    core.link_down(B, 1.1)
    assert core.take().connect == []


def dead_without_link(at: float) -> MembershipCore:
    """A core whose link to A dropped at 1.0 and which heard at ``at`` that A is dead."""
    core = linked(A, B)
    advance(core, 1.0, answer=[A, B])
    core.link_down(A, 1.0)
    advance(core, at, answer=[B])
    core.receive(B, MemberSync([Rumor(A, 1, 0, DEAD)], False), at)
    assert core.take().events == [NodeDown(A, "failed")]
    return core


def test_tombstones_are_reclaimed_after_reclaim_after() -> None:
    core = dead_without_link(2.0)
    # While the tombstone stands, neither a rediscovery (incarnation unknown) nor stale news revives A.
    advance(core, 10.0, answer=[B])
    core.discovered(A, 10.0)
    core.receive(B, MemberSync([alive(A, refutation=0)], False), 10.0)
    out = core.take()
    assert (out.connect, out.events) == ([], [])
    assert advance(core, 61.999, answer=[B]) == []
    m = core.member(A)
    assert m is not None
    assert m.status == DEAD
    assert core.next_deadline() == 62.0 == 2.0 + CFG.reclaim_after
    core.handle_timer(62.0)
    assert core.member(A) is None
    core.discovered(A, 62.5)
    assert core.take().connect == [A]


def test_a_left_member_is_forgotten_at_forget_left_after_and_stale_news_cannot_revive_it() -> None:
    core = linked(A, B)
    advance(core, 2.5, answer=[A, B])
    core.receive(A, MemberSync([Rumor(A, 1, 3, LEFT)], False), 2.5)
    out = core.take()
    assert (out.events, out.disconnect) == ([NodeDown(A, "left")], [A])
    core.link_down(A, 2.5)
    # The tombstone stands (and rides on probes and push-pulls) until 2.5 + forget_left_after.
    assert advance(core, 32.499, answer=[B]) == []
    m = core.member(A)
    assert m is not None
    assert m.status == LEFT
    assert core.next_deadline() == 32.5 == 2.5 + CFG.forget_left_after
    core.handle_timer(32.5)
    out = core.take()
    assert (out.events, out.disconnect) == ([], [A])  # the transport may drop it too
    assert core.member(A) is None
    assert [m.name for m in core.statistics().members] == [B]
    # Stale news of that incarnation, whatever its refutation number, brings nothing back: no
    # entry, no dial; a late heartbeat dials nothing and a late link is hung up.
    stale = [alive(A, refutation=9), Rumor(A, 1, 9, SUSPECT), Rumor(A, 1, 9, DEAD), Rumor(A, 1, 3, LEFT)]
    core.receive(B, MemberSync(stale, False), 33.0)
    core.discovered(A, 33.0, incarnation=1)
    core.link_up(A, 1, 33.0)
    out = core.take()
    assert (out.connect, out.events, out.disconnect) == ([], [], [A])
    assert core.member(A) is None
    core.receive(B, Ping(1, []), 33.0)
    ((_, ack),) = core.take().send
    assert A not in {r.name for r in ack.rumors}  # and nothing about it is gossiped on
    # A restart under the same name (a newer incarnation) joins as usual.
    core.receive(B, MemberSync([alive(A, incarnation=2)], False), 34.0)
    assert core.take().connect == [A]
    core.link_up(A, 2, 34.1)
    assert core.take().events == [NodeUp(A, 2)]
    assert A not in core.forgotten


def test_the_forgotten_record_lasts_as_long_again_then_nothing_of_the_member_is_left() -> None:
    core = linked(A, B)
    core.receive(A, MemberSync([Rumor(A, 1, 0, LEFT)], False), 2.5)
    core.link_down(A, 2.5)
    advance(core, 32.5, answer=[B])
    assert core.member(A) is None
    assert core.forgotten[A].until == 62.5 == 32.5 + CFG.forget_left_after
    advance(core, 62.499, answer=[B])
    core.discovered(A, 62.499, incarnation=1)  # a heartbeat of the incarnation that left
    assert core.take().connect == []
    # At 62.5 the record no longer counts (it is checked where used, so it needs no
    # deadline of its own) and the next timer drops it.
    core.discovered(A, 62.5, incarnation=1)
    assert core.take().connect == [A]
    assert core.next_deadline() == 63.0
    advance(core, 63.0, answer=[B])
    assert core.forgotten == {}


def test_a_suspect_is_kept_while_suspected_and_for_reclaim_after_once_dead() -> None:
    core, target = suspected()
    others = {A, B, C, D} - {target}
    advance(core, 5.0, answer=others)  # declared dead at 5.0, the end of its suspicion
    assert advance(core, 64.999, answer=others) == []
    m = core.member(target)
    assert m is not None
    assert m.status == DEAD
    assert core.next_deadline() == 65.0 == 5.0 + CFG.reclaim_after
    core.handle_timer(65.0)
    assert core.member(target) is None
    assert core.take().disconnect == [target]  # no more redials
    assert core.forgotten[target].until == 125.0


@pytest.mark.parametrize("how", ["verdict", "heartbeat", "refutation", "restart"])
def test_a_forgotten_dead_member_comes_back_by_fresh_evidence_only(how: str) -> None:
    core = dead_without_link(2.0)
    advance(core, 62.0, answer=[B])
    assert core.member(A) is None
    # Stale news (at the refutation number declared dead) makes no entry and wants no
    # link. As the tombstone's push-pull would have, it sends A its verdict, once (one
    # dial): if A still runs (a partition outlasted the tombstone), the link brings it up
    # and A refutes.
    core.receive(B, MemberSync([alive(A, refutation=0), Rumor(A, 1, 0, SUSPECT)], False), 63.0)
    out = core.take()
    assert (out.connect, out.events) == ([], [])
    assert out.send == [(A, MemberSync([Rumor(A, 1, 0, DEAD)], False))]
    assert core.member(A) is None
    core.receive(B, MemberSync([alive(A, refutation=0)], False), 63.5)
    assert not core.take()
    if how == "verdict":  # it ran: the verdict's link comes up, and from now on it is wanted
        core.link_up(A, 1, 63.6)
        out = core.take()
        assert (out.events, out.connect) == ([NodeUp(A, 1)], [A])
        assert A not in core.forgotten
        return
    incarnation = 2 if how == "restart" else 1
    if how == "heartbeat":  # it still runs: a partition healed
        core.discovered(A, 64.0, incarnation=1)
    else:
        core.receive(B, MemberSync([alive(A, refutation=1, incarnation=incarnation)], False), 64.0)
    assert core.take().connect == [A]
    core.link_up(A, incarnation, 64.1)
    assert core.take().events == [NodeUp(A, incarnation)]
    assert A not in core.forgotten


def test_news_that_an_unknown_member_is_dead_or_left_makes_no_entry() -> None:
    # Such news only leaves a record: a tombstone made from it would be handed back and
    # forth in push-pulls between nodes that forget at slightly different times.
    core = linked(B)
    core.receive(B, MemberSync([Rumor(A, 1, 2, DEAD), Rumor(C, 1, 0, LEFT)], False), 5.0)
    out = core.take()
    assert (out.connect, out.events) == ([], [])
    assert sorted(core.members) == [B]
    core.receive(B, Ping(1, []), 5.0)
    ((_, ack),) = core.take().send
    assert {r.name for r in ack.rumors} <= {ME, B}  # not gossiped on either
    assert (core.forgotten[A].until, core.forgotten[C].until) == (65.0, 35.0)
    # The record filters stale news as a tombstone would; A's refutation passes.
    core.receive(B, MemberSync([alive(A, refutation=2), alive(C, refutation=7)], False), 6.0)
    out = core.take()
    assert (out.connect, out.events) == ([], [])
    assert out.send == [(A, MemberSync([Rumor(A, 1, 2, DEAD)], False))]  # its verdict, once
    assert sorted(core.members) == [B]
    core.receive(B, MemberSync([Rumor(A, 1, 2, DEAD)], False), 30.0)  # the same news again
    assert core.forgotten[A].until == 65.0  # does not extend the record
    core.receive(B, MemberSync([alive(A, refutation=3)], False), 31.0)
    assert core.take().connect == [A]
    assert A in core.members
    advance(core, 35.0, answer=[B])
    assert C not in core.forgotten


def test_a_dead_member_that_refutes_is_dialed_and_comes_back_up() -> None:
    core = dead_without_link(2.0)
    core.receive(B, MemberSync([alive(A, refutation=1)], False), 3.0)
    out = core.take()
    assert (out.connect, out.events) == ([A], [])
    core.link_up(A, 1, 3.1)
    assert core.take().events == [NodeUp(A, 1)]  # NodeUp carries the incarnation


def test_piggyback_respects_max_piggyback_and_retransmit_counts() -> None:
    names = [f"p{i:02d}@127.0.0.1:6000" for i in range(20)]
    core = linked(A)
    core.receive(A, MemberSync([alive(n) for n in names], False), 0.0)
    core.take()
    # Each rumor is queued for retransmits(n) sends, n counting the members (and self)
    # when it was queued: the self rumor at start, A's at link_up, p00.. as they came.
    expected = Counter({ME: CFG.retransmits(1), A: CFG.retransmits(2)})
    expected.update({n: CFG.retransmits(i + 3) for i, n in enumerate(names)})
    transmitted: Counter[str] = Counter()
    for seq in range(1, 1000):
        core.receive(A, Ping(seq, []), 1.0)
        ((_, ack),) = core.take().send
        assert isinstance(ack, Ack)
        assert len(ack.rumors) == min(CFG.max_piggyback, len(expected - transmitted))
        transmitted.update(r.name for r in ack.rumors)
        if not ack.rumors:
            break
    assert transmitted == expected
    assert core.statistics().rumors_sent == sum(expected.values())


def test_ping_req_relays_the_ack_with_the_requesters_seq() -> None:
    core = linked(A, B)
    core.receive(A, PingReq(41, B, []), 0.0)
    ((dst, ping),) = core.take().send
    assert dst == B
    assert isinstance(ping, Ping)
    core.receive(B, Ack(ping.seq, []), 0.2)
    assert core.take().send == [(A, Ack(41, []))]
    core.receive(B, Ack(ping.seq, []), 0.3)  # a duplicate is not relayed twice
    assert not core.take().send


def test_ping_req_relays_expire_after_a_period_and_need_a_linked_target() -> None:
    core = linked(A, B)
    core.handle_timer(0.0)
    ((dst, probe),) = core.take().send
    core.receive(dst, Ack(probe.seq, []), 0.0)
    core.receive(A, PingReq(41, C, []), 0.2)  # C is unknown: nothing to do
    assert not core.take().send
    core.receive(A, PingReq(42, B, []), 0.2)
    ((_, ping),) = core.take().send
    assert core.next_deadline() == 1.0
    advance(core, 1.0, answer=[A, B])
    assert core.next_deadline() == 1.2  # the relay expires one period after the request
    core.handle_timer(1.2)
    core.receive(B, Ack(ping.seq, []), 1.25)  # too late
    assert not core.take().send
    assert core.next_deadline() == 2.0


def test_push_pull_goes_to_one_linked_member_every_interval() -> None:
    core = linked(A, B)
    advance(core, 29.999, answer=[A, B])
    core.take()
    core.handle_timer(30.0)
    syncs = sent(core.take(), MemberSync)
    assert len(syncs) == 1
    dst, sync = syncs[0]
    assert dst in (A, B)
    assert sync.reply is True
    assert {r.name for r in sync.rumors} == {ME, A, B}


# --- a refused address: the process is gone ---------------------------------------------


def test_two_refused_redials_after_a_link_drop_fail_the_member_at_once_and_tell_everyone() -> None:
    core = linked(A, B, C)
    core.link_down(A, 0.2)
    out = core.take()
    assert A in out.connect  # redialed: a live member's link comes back
    assert not out.events  # suspected, not failed
    assert not core.dial_refused(A, 0.25)  # one refusal may be a race with its listener
    assert core.take().connect == [A]
    assert core.dial_refused(A, 0.35)
    out = core.take()
    assert out.events == [NodeDown(A, "failed")]
    verdict = MemberSync([Rumor(A, 1, 0, DEAD)], False)
    assert sorted(sent(out, MemberSync)) == [(B, verdict), (C, verdict)]
    assert core.member(A).status == DEAD  # type: ignore[union-attr]
    assert core.statistics().refused == 1


def test_a_refused_member_that_was_never_linked_is_left_to_the_failure_detector() -> None:
    core = make_core()
    core.receive(B, MemberSync([alive(A)], False), 0.0)  # heard of, dialed, never linked
    core.take()
    for t in (0.1, 0.2, 0.3):
        assert not core.dial_refused(A, t)
    assert core.member(A).status == ALIVE  # type: ignore[union-attr]
    assert core.statistics().refused == 0


def test_a_link_in_between_resets_the_refusals_and_a_linked_member_is_never_failed_by_them() -> None:
    core = linked(A)
    assert not core.dial_refused(A, 0.1)  # the link is up: a stale report
    core.link_down(A, 0.2)
    assert not core.dial_refused(A, 0.3)
    core.link_up(A, 1, 0.4)  # it was its listener restarting, say
    core.link_down(A, 0.5)
    assert not core.dial_refused(A, 0.6)  # the count started again
    core.take()
    assert core.member(A).status == SUSPECT  # type: ignore[union-attr]
    assert core.dial_refused(A, 0.7)


def test_refusals_to_fail_zero_leaves_refused_members_to_suspicion() -> None:
    core = MembershipCore(ME, ME_INCARNATION, MembershipConfig(refusals_to_fail=0), random.Random(0), 0.0)
    core.link_up(A, 1, 0.0)
    core.link_down(A, 0.1)
    for t in (0.2, 0.3, 0.4):
        assert not core.dial_refused(A, t)
    assert core.member(A).status == SUSPECT  # type: ignore[union-attr]


# --- client nodes: linked with, not members -----------------------------------------------


def test_a_client_is_announced_flagged_never_gossiped_or_probed_and_forgotten_when_its_link_drops() -> None:
    core = linked(A)
    core.link_up(C, 1, 0.0, client=True)
    out = core.take()
    assert out.events == [NodeUp(C, 1, client=True)]
    assert core.up_members() == [A]  # not a member
    assert all(r.name != C for r in core._piggyback())
    core.receive(A, Ping(1, []), 0.1)
    [(_, ack)] = sent(core.take(), Ack)
    assert all(r.name != C for r in ack.rumors)
    core.link_up(B, 1, 0.2)
    syncs = sent(core.take(), MemberSync)
    [sync] = [msg for dst, msg in syncs if dst == B]
    assert C not in [r.name for r in sync.rumors]
    assert (C, MemberSync([alive(B)], False)) in syncs  # news goes to clients at once (they are not probed)
    assert all(dst != C for _, e in advance(core, 5.0, answer=[A, B]) for dst in [e.node])
    assert [m.role for m in core.statistics().members if m.name == C] == ["client"]
    assert core.statistics().peers() == 2
    core.link_down(C, 5.5)
    out = core.take()
    assert out.events == [NodeDown(C, "left", client=True)]
    assert core.member(C) is None  # no tombstone left behind
    assert C in out.disconnect


def test_a_statistics_row_as_plain_data_keeps_the_names_earlier_versions_use() -> None:
    # Node.statistics_of sends it as a dict keyed by field name, to nodes of any version.
    core = linked(A)
    (row,) = core.statistics().members
    data = msgspec.to_builtins(row)
    assert data == {
        "name": A,
        "creation": 1,
        "incarnation": 0,
        "status": "alive",
        "link": True,
        "up": True,
        "role": "server",
    }
    assert msgspec.convert(data, MemberInfo) == row
