"""Distribution strategies: who owns a name, given the nodes that are up.

A strategy turns the set of visible server nodes into a ``Placement``. It is chosen
with ``Node(strategy=...)`` and must be the same on every node of a cluster.

``preference()`` and ``standbys()`` give a name's preference list and the standbys of its
checkpoints for any placement: the ring's own walk for ``Ring`` and ``StaticQuorumRing``
(nothing below quorum), and for a custom placement without a ``preference`` method, the
owner followed by the other nodes in rendezvous-hash order.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

import xxhash

from ._ring import DEFAULT_VNODES, HashRing, hash_name


class Placement(Protocol):
    """An immutable answer to "who owns this name?" for one membership view."""

    def owner(self, name: Any) -> str | None:
        """The owner node of ``name``, or None if no node may own it now."""
        ...

    def owner_of_hash(self, position: int) -> str | None:
        """The owner of a ring position (``hash_name(name)``), or None."""
        ...

    @property
    def nodes(self) -> list[str]: ...


class DistributionStrategy(Protocol):
    def place(self, nodes: Iterable[str]) -> Placement:
        """The placement for this set of visible server nodes (this node included)."""
        ...


@dataclass(frozen=True, slots=True)
class Ring:
    """Consistent hashing over every visible node. Favours availability: while any node
    is visible, every name has an owner (both sides of a netsplit keep serving)."""

    vnodes: int = DEFAULT_VNODES

    def place(self, nodes: Iterable[str]) -> HashRing:
        return HashRing(nodes, self.vnodes)


class _NoQuorum:
    """The placement of a minority: nobody owns anything."""

    def __init__(self, nodes: list[str]) -> None:
        self._nodes = nodes

    def owner(self, name: Any) -> str | None:
        return None

    def owner_of_hash(self, position: int) -> str | None:
        return None

    def preference(self, name: Any, n: int) -> list[str]:
        return []

    def preference_of_hash(self, position: int, n: int) -> list[str]:
        return []

    def successors(self, name: Any, k: int) -> list[str]:
        return []

    @property
    def nodes(self) -> list[str]:
        return self._nodes


@dataclass(frozen=True, slots=True)
class StaticQuorumRing:
    """Consistent hashing, but only while at least ``quorum`` nodes are visible.

    On the minority side of a netsplit there is no owner for any name: processes there
    are stopped and ``register`` raises ``NoNodeAvailable``. Set ``quorum`` to a strict
    majority of the cluster's intended size (e.g. 2 of 3, 3 of 5).
    """

    quorum: int
    vnodes: int = DEFAULT_VNODES

    def __post_init__(self) -> None:
        if self.quorum < 1:
            raise ValueError("quorum must be at least 1")

    def place(self, nodes: Iterable[str]) -> HashRing | _NoQuorum:
        nodes = sorted(nodes)
        if len(nodes) < self.quorum:
            return _NoQuorum(nodes)
        return HashRing(nodes, self.vnodes)


def preference(placement: Placement, name: Any, n: int, position: int | None = None) -> list[str]:
    """``name``'s preference list in ``placement``: its owner first, then its successors,
    ``n`` nodes at most (``position``: ``hash_name(name)``, when the caller has it).

    A placement with a ``preference_of_hash`` method (``HashRing``, and below quorum the
    empty answer) gives its own; any other gives the owner, then the other nodes in
    rendezvous-hash order (xxh3 over the node's name and the name's position): the same
    list on every node, though not necessarily the nodes that own the name after a failure.
    """
    if position is None:
        position = hash_name(name)
    own = getattr(placement, "preference_of_hash", None)
    if own is not None:
        found: list[str] = own(position, n)
        return found
    owner = placement.owner_of_hash(position)
    if owner is None or n < 1:
        return []
    key = position.to_bytes(8, "big")
    rest = sorted(
        (node for node in placement.nodes if node != owner),
        key=lambda node: (xxhash.xxh3_64_intdigest(node.encode() + key), node),
    )
    return [owner, *rest][:n]


def standbys(placement: Placement, name: Any, host: str, k: int, position: int | None = None) -> list[str]:
    """The ``k`` standbys of ``name`` hosted on ``host``: the first ``k`` nodes of its
    preference list other than ``host`` (its successors when ``host`` owns it; else the
    owner first, where the name is about to move)."""
    if k < 1:
        return []
    return [node for node in preference(placement, name, k + 1, position) if node != host][:k]
