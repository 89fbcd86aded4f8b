"""The tracker core on its own: claims in, decisions out, no sockets, exact times.

Each test drives one or two ``TrackerCore`` objects by hand (``peer_up``, ``on_hello``,
``on_digest``, ``on_delta``, ``local_claim``) and reads what they decide from ``take()``.
"""

from __future__ import annotations

import random
from typing import Any

from distable.registry import RegistryConfig
from distable.registry._core import HandOff, ResolveConflict, StartName, TrackerCore
from distable.ring import Ring, hash_name
from distable.wire import Pid
from distable.wire._messages import CLAIM_NAME, Claim, Delta, Digest, RegistryHello, Removal, Spec

SPEC = Spec("tests.registry.apps:Counter", [], {}, "transient", 5.0)


def core(node: str) -> TrackerCore:
    return TrackerCore(node, role="server", strategy=Ring(), config=RegistryConfig(), rng=random.Random(0), now=0.0)


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


def name_owned_by(owner: str, nodes: list[str], then: str | None = None, after: list[str] | None = None) -> str:
    """A name ``owner`` owns among ``nodes`` (and ``then`` owns among ``after``, if given)."""
    placement = Ring().place(nodes)
    later = Ring().place(after or nodes)
    return next(
        n
        for i in range(10_000)
        if placement.owner(n := f"name-{i}") == owner and (then is None or later.owner(n) == then)
    )


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
    """The rule the test above relies on: a claim x cannot tell is newer loses to x's."""
    w = joined(core("w"), "x")
    name = name_owned_by("x", ["w", "x"])
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
    assert not [c for c in a.take().commands if isinstance(c, HandOff)]
    # b's copy retires (its host removes its claim): the move goes ahead now.
    a.on_delta("b", Delta([], [_removal(name, theirs, 3)]), 3.0)
    assert [c.name for c in a.take().commands if isinstance(c, HandOff)] == [name]


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
    assert [c.name for c in a.take().commands if isinstance(c, StartName)] == names
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
