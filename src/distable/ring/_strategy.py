"""Distribution strategies: who owns a name, given the nodes that are up.

A strategy turns the set of visible server nodes into a ``Placement``. It is chosen
with ``Node(strategy=...)`` and must be the same on every node of a cluster.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from ._ring import DEFAULT_VNODES, HashRing


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
