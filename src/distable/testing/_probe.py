"""Read-only probes of a node's registry, for cluster tests and benchmarks.

``registry_stats`` is cheap (constant time: sizes of tables and queues) and meant to be
polled; ``registry_check`` walks every name once (linear time) and confirms what the
counters suggest: every name on its placement owner, every local claim's process
alive, and a digest of the whole replica that equal replicas share.

Both run on the node's event loop and read its tracker core without changing anything.
"""

from __future__ import annotations

import gc
import os
from typing import TYPE_CHECKING, Any

import xxhash

from ..wire._messages import CLAIM_NAME

if TYPE_CHECKING:
    from ..node import Node


def registry_stats(node: Node) -> dict[str, Any]:
    """Sizes only: names in the replica, local claims, and work still in flight."""
    service = node.registry
    core = service.core
    return {
        "names": len(core.pids),
        "local": len(core.claims[core.node]),
        "placement": list(core.placement.nodes),
        "moving": len(core.moving),
        "outgoing": sum(1 for o in service._outgoing.values() if not o.committed),
        "incoming": len(service._incoming),
        "pending": len(service._pending),
        # restarts still to come (a check of a name that is back already is not one)
        "restarts_due": sum(1 for entry in core._restarts if entry[2] not in core.pids),
        "restarts": core._n_restarts,
        "handoffs": core._n_handoffs,
        "peers": len(core.peers),
    }


def replica_digest(node: Node) -> str:
    """A digest of every host's claims in this node's replica (equal replicas, equal digests)."""
    core = node.registry.core
    h = xxhash.xxh3_64()
    for host in sorted(core.claims):
        if not core.claims[host]:
            continue
        h.update(host.encode())
        for bucket in core.digest(host):
            h.update(bucket.to_bytes(8, "little"))
    return h.hexdigest()


def registry_check(node: Node) -> dict[str, Any]:
    """Walk every name: how many are on their owner, how many local ones are alive, the digest."""
    core = node.registry.core
    runtime = node.runtime
    owner_of_hash = core.placement.owner_of_hash
    on_owner = sum(1 for c in core.winners.values() if owner_of_hash(c.position) == c.pid.node)
    local = [c for c in core.claims[core.node].values() if c.kind == CLAIM_NAME]
    alive = sum(1 for c in local if runtime.local(c.pid) is not None)
    return {
        "names": len(core.pids),
        "on_owner": on_owner,
        "local": len(local),
        "local_alive": alive,
        "digest": replica_digest(node),
    }


def rss_bytes() -> int:
    """This process's resident set size after a full collection (and, on glibc, a trim)."""
    gc.collect()
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE")
