"""Public test helpers: polling with a deadline, nodes in separate OS processes, a crash
of an in-process node, probes of a node's inner state (handoffs in flight, restarts due,
a replica digest, a process's mailbox and gate...), a deterministic simulator (jumping
clock, seeded network) for membership cores, and real nodes over an in-memory network on
an event loop whose clock jumps.

Tests read a node's inner state through the probes here, never through private fields:
``distable.testing._probe`` is the one place that reads them.
"""

from ._cluster import NodeProcess, die_with_parent
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
from ._probe import (
    HandoffsInFlight,
    RegistryCheck,
    RegistryStats,
    abort,
    claim_hosts,
    claimants,
    close_listener,
    crash,
    event_streams,
    gate_of,
    handoffs_in_flight,
    intercept,
    is_frozen,
    is_running,
    local_names,
    on_node,
    pending_handshakes,
    queued,
    registry_check,
    registry_peers,
    registry_stats,
    replica_digest,
    restarts_due,
    rss_bytes,
    seed_membership,
    watchers,
)
from ._sim import Observed, SimClock, SimCluster, SimNetwork, SimNode

__all__ = [
    "HandoffsInFlight",
    "MemoryDiscovery",
    "MemoryNetwork",
    "MemoryNetworkStatistics",
    "MemoryTransport",
    "NodeProcess",
    "Observed",
    "RegistryCheck",
    "RegistryStats",
    "SimClock",
    "SimCluster",
    "SimNetwork",
    "SimNode",
    "VirtualTimeDeadlock",
    "VirtualTimeLoop",
    "abort",
    "claim_hosts",
    "claimants",
    "close_listener",
    "crash",
    "die_with_parent",
    "event_streams",
    "eventually",
    "free_gossip_port",
    "free_tcp_ports",
    "gate_of",
    "handoffs_in_flight",
    "intercept",
    "is_frozen",
    "is_running",
    "local_names",
    "on_node",
    "pending_handshakes",
    "queued",
    "registry_check",
    "registry_peers",
    "registry_stats",
    "replica_digest",
    "restarts_due",
    "rss_bytes",
    "seed_membership",
    "watchers",
]
