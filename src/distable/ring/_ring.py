"""A consistent-hash ring with virtual nodes and weights. Pure and immutable.

Rules:
    * Hashing is stable across processes and machines: xxh3-64 over fixed bytes (the
      node name and vnode index for points; the codec's encoding for names), never
      Python's salted ``hash()``. Every node computes the same owner for every name.
    * A ring is immutable: ``with_node``/``without_node`` return a new ring, so readers
      hold a snapshot with no lock while one writer swaps in the next (libring's model).
    * A node of weight w gets ``vnodes * w`` points; adding or removing one of N equal
      nodes moves about 1/N of the names, and only names that move to or from that
      node (minimal movement).

Theory of operation: the points are kept sorted in one list with a parallel list of
owners; ``owner_of_hash`` is a ``bisect`` over the points (the first point clockwise,
wrapping around), and ``preference_of_hash`` walks on from there collecting distinct
owners. Point collisions between nodes are broken by node name, so the ring is a pure
function of its (node, weight) set.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping
from typing import Any

import xxhash

from ..wire import encode_value

DEFAULT_VNODES = 128


def hash_name(name: Any) -> int:
    """The stable 64-bit position of a registered name on the ring."""
    return xxhash.xxh3_64_intdigest(encode_value(name))


def _point(node: str, index: int) -> int:
    return xxhash.xxh3_64_intdigest(f"{node}\x00{index}".encode())


class HashRing:
    """An immutable consistent-hash ring. Safe to share between readers."""

    __slots__ = ("_owners", "_points", "vnodes", "weights")

    def __init__(self, nodes: Mapping[str, int] | Iterable[str] = (), vnodes: int = DEFAULT_VNODES) -> None:
        if vnodes < 1:
            raise ValueError("vnodes must be at least 1")
        weights = dict(nodes) if isinstance(nodes, Mapping) else dict.fromkeys(nodes, 1)
        for node, weight in weights.items():
            if not isinstance(weight, int) or weight < 1:
                raise ValueError(f"weight of {node!r} must be a positive integer, not {weight!r}")
        self.vnodes = vnodes
        self.weights: Mapping[str, int] = weights
        entries = sorted((_point(node, i), node) for node, weight in weights.items() for i in range(vnodes * weight))
        self._points = [p for p, _ in entries]
        self._owners = [n for _, n in entries]

    @property
    def nodes(self) -> list[str]:
        return sorted(self.weights)

    def __len__(self) -> int:
        return len(self.weights)

    def __contains__(self, node: object) -> bool:
        return node in self.weights

    def __eq__(self, other: object) -> bool:
        return isinstance(other, HashRing) and other.vnodes == self.vnodes and other.weights == self.weights

    def __hash__(self) -> int:
        return (self.vnodes, tuple(sorted(self.weights.items()))).__hash__()

    def __repr__(self) -> str:
        return f"HashRing({dict(sorted(self.weights.items()))!r}, vnodes={self.vnodes})"

    def with_node(self, node: str, weight: int = 1) -> HashRing:
        return HashRing({**self.weights, node: weight}, self.vnodes)

    def without_node(self, node: str) -> HashRing:
        return HashRing({n: w for n, w in self.weights.items() if n != node}, self.vnodes)

    def owner_of_hash(self, position: int) -> str | None:
        """The node owning a 64-bit position, or None on an empty ring."""
        points = self._points
        if not points:
            return None
        i = bisect.bisect_left(points, position)
        return self._owners[i if i < len(points) else 0]

    def owner(self, name: Any) -> str | None:
        """The node that owns ``name``, or None on an empty ring."""
        return self.owner_of_hash(hash_name(name))

    def preference_of_hash(self, position: int, n: int) -> list[str]:
        """The first ``n`` distinct nodes clockwise from ``position``: its owner first, then
        the nodes that own it once the ones before them are gone (fewer on a smaller ring)."""
        points = self._points
        if not points or n < 1:
            return []
        n = min(n, len(self.weights))
        owners, size = self._owners, len(points)
        start = bisect.bisect_left(points, position)
        found: list[str] = []
        for j in range(start, start + size):
            node = owners[j % size]
            if node not in found:
                found.append(node)
                if len(found) == n:
                    break
        return found

    def preference(self, name: Any, n: int) -> list[str]:
        """``name``'s preference list: its owner, then its successors, ``n`` nodes at most.

        Removing a node leaves every other node's points in place, so the owner of ``name``
        on this ring without its first ``j`` nodes is the preference list's node ``j``: the
        successors are the nodes that own the name after one, two... failures (the standbys
        of its checkpoints, docs/internals.md, "Checkpoints")."""
        return self.preference_of_hash(hash_name(name), n)

    def successors(self, name: Any, k: int) -> list[str]:
        """The ``k`` nodes after ``name``'s owner in its preference list."""
        return self.preference(name, k + 1)[1:]

    def shares(self) -> dict[str, float]:
        """The fraction of the hash space each node owns (for the dashboard and tests)."""
        points = self._points
        if not points:
            return {}
        space = float(1 << 64)
        share = dict.fromkeys(self.weights, 0.0)
        previous = points[-1] - (1 << 64)
        for p, owner in zip(points, self._owners, strict=True):
            share[owner] += (p - previous) / space
            previous = p
        return share
