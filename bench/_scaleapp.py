"""The app of bench/scale.py's ``distable node`` processes (``--app _scaleapp:start``).

``start`` spawns a ``Probe`` and prints its pid (``scale-probe [node, incarnation, id]``)
before the node's "up" line, so that the benchmark's client node can call it. The probe
answers the calls ``"registry_stats"``, ``"registry_check"`` and ``"rss"`` (what
``NodeProcess`` answers on its standard input, see ``distable.testing``) and
``"traffic"``: the node's counters of what it sent and received, per peer and in all.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from distable import Caller, Node, Process
from distable.testing import registry_check, registry_stats, rss_bytes


def traffic(node: Node) -> dict[str, Any]:
    """Bytes and messages in and out per peer (``[bytes_in, bytes_out, messages_in,
    messages_out]``), and the membership's and the registry's counters."""
    stats = node.statistics()
    peers = {p.name: [p.bytes_in, p.bytes_out, p.messages_in, p.messages_out] for p in stats.transport.peers}
    m, r = stats.membership, stats.registry
    return {
        "peers": peers,
        "membership": {"probes": m.probes, "probe_failures": m.probe_failures, "rumors_sent": m.rumors_sent},
        "registry": {"syncs_sent": r.syncs_sent, "buckets_repaired": r.buckets_repaired},
    }


class Probe(Process):
    """Answers the benchmark's questions about this node (see the module's docstring)."""

    async def handle_call(self, message: Any, caller: Caller) -> Any:
        node = self.node
        if message == "registry_stats":
            return dict(registry_stats(node))
        if message == "registry_check":
            return dict(registry_check(node))
        if message == "rss":
            return rss_bytes()
        if message == "traffic":
            return traffic(node)
        raise ValueError(f"unexpected call {message!r}")


async def start(node: Node) -> None:
    pid = await node.spawn(Probe)
    sys.stdout.write("scale-probe " + json.dumps([pid.node, pid.incarnation, pid.id]) + "\n")
    sys.stdout.flush()
