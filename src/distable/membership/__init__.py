"""The membership layer: discovery strategies, failure detection, NodeUp/NodeDown."""

from ._config import MembershipConfig
from ._core import MemberInfo, MembershipCore, MembershipOutput, MembershipStatistics
from ._events import NodeDown, NodeUp
from ._packet import GossipCodec, Heartbeat, PacketRejected
from ._service import MembershipService
from ._strategies import DNSPoll, Gossip, Static, Strategy, as_strategies

__all__ = [
    "DNSPoll",
    "Gossip",
    "GossipCodec",
    "Heartbeat",
    "MemberInfo",
    "MembershipConfig",
    "MembershipCore",
    "MembershipOutput",
    "MembershipService",
    "MembershipStatistics",
    "NodeDown",
    "NodeUp",
    "PacketRejected",
    "Static",
    "Strategy",
    "as_strategies",
]
