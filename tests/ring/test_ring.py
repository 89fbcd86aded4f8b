"""Properties of the consistent-hash ring: determinism, balance, minimal movement."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from distable.ring import HashRing, Ring, StaticQuorumRing, hash_name, preference, standbys

NAMES = [("worker", i) for i in range(20_000)]
node_names = st.lists(
    st.from_regex(r"[a-z]{1,8}@127\.0\.0\.1:[1-9][0-9]{3}", fullmatch=True), min_size=1, max_size=12, unique=True
)


def test_empty_ring_has_no_owner() -> None:
    assert HashRing().owner("x") is None


def test_owner_is_stable_across_processes() -> None:
    # Python's hash() is salted per process; ours must not be.
    code = "from distable.ring import HashRing; print(HashRing(['a@h:1','b@h:2','c@h:3']).owner(('w', 7)))"
    outputs = {
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
        for _ in range(2)
    }
    here = HashRing(["a@h:1", "b@h:2", "c@h:3"]).owner(("w", 7))
    assert outputs == {f"{here}\n"}


def test_hash_name_distinguishes_tuples_lists_and_strings() -> None:
    assert len({hash_name(("a", 1)), hash_name(["a", 1]), hash_name("a1"), hash_name(("a", "1"))}) == 4


@settings(max_examples=30, deadline=None)
@given(node_names)
def test_ring_is_a_function_of_its_node_set(nodes: list[str]) -> None:
    forward = HashRing(nodes)
    backward = HashRing(list(reversed(nodes)))
    assert forward == backward
    assert all(forward.owner(n) == backward.owner(n) for n in NAMES[:500])


@pytest.mark.parametrize("count", [3, 5, 10])
def test_balance_within_a_reasonable_spread(count: int) -> None:
    ring = HashRing([f"n{i}@127.0.0.1:{4000 + i}" for i in range(count)])
    owned: dict[str, int] = {}
    for name in NAMES:
        owner = ring.owner(name)
        assert owner is not None
        owned[owner] = owned.get(owner, 0) + 1
    fair = len(NAMES) / count
    # 128 vnodes per node: each node's share stays within ±30 % of fair.
    assert all(0.7 * fair <= c <= 1.3 * fair for c in owned.values()), owned
    shares = ring.shares()
    assert abs(sum(shares.values()) - 1.0) < 1e-9


@settings(max_examples=25, deadline=None)
@given(node_names, st.from_regex(r"new[a-z]{0,4}@127\.0\.0\.2:[1-9][0-9]{3}", fullmatch=True))
def test_adding_a_node_moves_only_names_to_it(nodes: list[str], newcomer: str) -> None:
    before = HashRing(nodes)
    after = before.with_node(newcomer)
    moved = [n for n in NAMES[:3000] if before.owner(n) != after.owner(n)]
    assert all(after.owner(n) == newcomer for n in moved)


@settings(max_examples=25, deadline=None)
@given(node_names.filter(lambda ns: len(ns) >= 2))
def test_removing_a_node_moves_only_its_names(nodes: list[str]) -> None:
    before = HashRing(nodes)
    gone = nodes[0]
    after = before.without_node(gone)
    for name in NAMES[:3000]:
        if before.owner(name) != gone:
            assert after.owner(name) == before.owner(name)


@pytest.mark.parametrize("count", [3, 4, 8])
def test_adding_one_of_n_nodes_moves_about_one_nth(count: int) -> None:
    nodes = [f"n{i}@127.0.0.1:{4000 + i}" for i in range(count)]
    before = HashRing(nodes)
    after = before.with_node(f"n{count}@127.0.0.1:{4000 + count}")
    moved = sum(before.owner(n) != after.owner(n) for n in NAMES) / len(NAMES)
    expected = 1 / (count + 1)
    assert 0.6 * expected <= moved <= 1.4 * expected, moved


def test_weights_scale_the_share() -> None:
    ring = HashRing({"heavy@h:1": 3, "light@h:2": 1})
    shares = ring.shares()
    assert 2.0 < shares["heavy@h:1"] / shares["light@h:2"] < 4.5


def test_invalid_weights_and_vnodes_are_refused() -> None:
    with pytest.raises(ValueError, match="weight"):
        HashRing({"a@h:1": 0})
    with pytest.raises(ValueError, match="vnodes"):
        HashRing(["a@h:1"], vnodes=0)


def test_static_quorum_ring_has_no_owner_below_quorum() -> None:
    strategy = StaticQuorumRing(quorum=2)
    assert strategy.place(["a@h:1"]).owner("x") is None
    majority = strategy.place(["a@h:1", "b@h:2"])
    assert majority.owner("x") == Ring().place(["a@h:1", "b@h:2"]).owner("x")
    with pytest.raises(ValueError, match="quorum"):
        StaticQuorumRing(quorum=0)


# --- preference lists (the standbys of checkpoints) ------------------------------------------


@settings(max_examples=30, deadline=None)
@given(node_names, st.integers(1, 14))
def test_a_preference_list_starts_with_the_owner_and_names_distinct_nodes(nodes: list[str], n: int) -> None:
    ring = HashRing(nodes)
    for name in NAMES[:200]:
        found = ring.preference(name, n)
        assert found[0] == ring.owner(name)
        assert len(found) == len(set(found)) == min(n, len(nodes))
        assert found == ring.preference(name, n + 3)[: len(found)]  # a longer list extends it
        assert ring.successors(name, n) == ring.preference(name, n + 1)[1:]


@settings(max_examples=30, deadline=None)
@given(node_names.filter(lambda ns: len(ns) >= 2))
def test_the_successors_are_the_owners_after_one_two_failures(nodes: list[str]) -> None:
    """What makes them the standbys: without its first j nodes, the ring gives the name to
    node j of its preference list."""
    ring = HashRing(nodes)
    for name in NAMES[:200]:
        found = ring.preference(name, len(nodes))
        smaller = ring
        for j in range(len(nodes) - 1):
            smaller = smaller.without_node(found[j])
            assert smaller.owner(name) == found[j + 1]


def test_a_preference_walk_wraps_around_the_ring() -> None:
    ring = HashRing(["a@h:1", "b@h:2", "c@h:3"], vnodes=1)
    # Past the last point, the walk goes on from the first one, as from position 0.
    assert ring.preference_of_hash(2**64 - 1, 3) == ring.preference_of_hash(0, 3)
    assert sorted(ring.preference_of_hash(2**64 - 1, 3)) == ["a@h:1", "b@h:2", "c@h:3"]


def test_an_empty_ring_or_no_quorum_gives_no_preference() -> None:
    assert HashRing().preference("x", 3) == []
    assert HashRing(["a@h:1"]).preference("x", 0) == []
    below = StaticQuorumRing(quorum=2).place(["a@h:1"])
    assert preference(below, "x", 3) == []
    assert standbys(below, "x", "a@h:1", 1) == []
    quorum = StaticQuorumRing(quorum=2).place(["a@h:1", "b@h:2", "c@h:3"])
    assert preference(quorum, "x", 3) == HashRing(["a@h:1", "b@h:2", "c@h:3"]).preference("x", 3)


def test_the_standbys_of_a_name_are_its_successors_on_its_owner_and_start_with_the_owner_elsewhere() -> None:
    nodes = [f"n{i}@h:{i}" for i in range(5)]
    ring = HashRing(nodes)
    for name in NAMES[:100]:
        owner, *successors = ring.preference(name, 5)
        assert standbys(ring, name, owner, 2) == successors[:2]
        assert standbys(ring, name, successors[0], 2) == [owner, successors[1]]
        assert standbys(ring, name, "elsewhere@h:9", 2) == [owner, successors[0]]  # a host being drained
        assert standbys(ring, name, owner, 9) == successors  # every other node, no more
        assert standbys(ring, name, owner, 0) == []


class _Custom:
    """A placement of a user's own strategy, without a preference method."""

    def __init__(self, nodes: list[str]) -> None:
        self._nodes = sorted(nodes)

    def owner(self, name: Any) -> str | None:
        return self.owner_of_hash(hash_name(name))

    def owner_of_hash(self, position: int) -> str | None:
        return self._nodes[position % len(self._nodes)] if self._nodes else None

    @property
    def nodes(self) -> list[str]:
        return self._nodes


def test_a_custom_placement_gets_its_owner_then_a_rendezvous_order() -> None:
    nodes = [f"n{i}@h:{i}" for i in range(6)]
    forward, backward = _Custom(nodes), _Custom(list(reversed(nodes)))
    orders = set()
    for name in NAMES[:100]:
        found = preference(forward, name, 6)
        assert found[0] == forward.owner(name)
        assert sorted(found) == sorted(nodes)
        assert found == preference(backward, name, 6)  # a function of the node set, as on every node
        assert preference(forward, name, 3) == found[:3]
        orders.add(tuple(found[1:]))
    assert len(orders) > 50  # not one fixed order: the load of standbys spreads
    assert preference(_Custom([]), "x", 2) == []
