"""Public test helpers: polling with a deadline, nodes in separate OS processes, a crash
of an in-process node, and a
deterministic simulator (jumping clock, seeded network) for membership cores, and real
nodes over an in-memory network on an event loop whose clock jumps.
"""

from ._cluster import NodeProcess
from ._crash import crash
from ._eventually import eventually
from ._memnet import (
    MemoryDiscovery,
    MemoryNetwork,
    MemoryNetworkStatistics,
    MemoryTransport,
    VirtualTimeDeadlock,
    VirtualTimeLoop,
)
from ._ports import free_gossip_port, free_tcp_ports
from ._sim import Observed, SimClock, SimCluster, SimNetwork, SimNode

__all__ = [
    "MemoryDiscovery",
    "MemoryNetwork",
    "MemoryNetworkStatistics",
    "MemoryTransport",
    "NodeProcess",
    "Observed",
    "SimClock",
    "SimCluster",
    "SimNetwork",
    "SimNode",
    "VirtualTimeDeadlock",
    "VirtualTimeLoop",
    "crash",
    "eventually",
    "free_gossip_port",
    "free_tcp_ports",
]
