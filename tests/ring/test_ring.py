"""Properties of the consistent-hash ring: determinism, balance, minimal movement."""

from __future__ import annotations

import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from distable.ring import HashRing, Ring, StaticQuorumRing, hash_name

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
