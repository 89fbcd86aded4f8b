"""The ring layer: a pure consistent-hash ring and the distribution strategies."""

from ._ring import DEFAULT_VNODES, HashRing, hash_name
from ._strategy import DistributionStrategy, Placement, Ring, StaticQuorumRing, preference, standbys

__all__ = [
    "DEFAULT_VNODES",
    "DistributionStrategy",
    "HashRing",
    "Placement",
    "Ring",
    "StaticQuorumRing",
    "hash_name",
    "preference",
    "standbys",
]
