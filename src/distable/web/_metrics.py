"""Prometheus metrics of one node, read from its ``statistics()`` snapshot at scrape time.

Rules:
    * Each ``WebServer`` has its own ``CollectorRegistry``: several nodes in one OS
      process (tests, the demo) never share or clash on series, and nothing is added
      to prometheus_client's global default registry.
    * Every series carries a ``node`` label (the node's full name), so scrapes of many
      nodes merge without relabelling.
    * Counters and gauges that the node already counts are read from one
      ``node.statistics()`` call per scrape (``NodeCollector``): nothing is counted
      twice and a scrape costs what a snapshot costs.
    * What a snapshot cannot say, a duration per handoff, is fed from the node's
      ``events()`` stream (``EventMetrics``): the handoff-duration histogram and a
      counter of events by type, both counted from the moment the server started.

Everything here runs on the node's event loop (the scrape handler and the event task).
"""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ..registry import HandoffCompleted

if TYPE_CHECKING:
    from ..node import EventStream, Node, NodeStatistics

#: Membership statuses, always all reported (0 when none), so a series never vanishes.
MEMBER_STATUSES = ("alive", "suspect", "dead", "left")

#: Event types whose counter series exist from the start (0 until one happens).
COUNTED_EVENTS = (
    "NodeUp",
    "NodeDown",
    "HandoffStarted",
    "HandoffCompleted",
    "HandoffAborted",
    "ProcessRestarted",
    "ConflictResolved",
)

#: Handoffs take milliseconds on a LAN and up to ``handoff_timeout`` (5 s by default).
HANDOFF_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

# (name, help, read from a NodeStatistics) for every one-value-per-node series.
_GAUGES: tuple[tuple[str, str, Any], ...] = (
    ("distable_uptime_seconds", "Seconds since the node started.", lambda s: s.uptime),
    ("distable_processes", "Live processes on the node (system processes not counted).", lambda s: s.runtime.processes),
    ("distable_registered_names", "Names in the node's registry replica.", lambda s: s.registry.names),
    ("distable_local_names", "Registered names whose process runs on the node.", lambda s: s.registry.local_names),
    ("distable_groups", "Process groups in the node's replica.", lambda s: s.registry.groups),
    ("distable_group_members", "Group memberships in the node's replica.", lambda s: s.registry.group_members),
    (
        "distable_placement_nodes",
        "Server nodes the node's ring places names on.",
        lambda s: len(s.registry.placement_nodes),
    ),
    ("distable_registry_peers", "Peers the node's registry replicates with.", lambda s: s.registry.peers),
    (
        "distable_checkpoint_records",
        "Checkpoint records the node holds for other nodes' names (it is their standby).",
        lambda s: s.registry.checkpoint_records,
    ),
    (
        "distable_checkpoint_record_bytes",
        "Bytes of the checkpoint states the node holds for other nodes' names.",
        lambda s: s.registry.checkpoint_record_bytes,
    ),
    (
        "distable_checkpoint_hosted",
        "Local names with a checkpoint record (running, or exited awaiting a restart).",
        lambda s: s.registry.checkpoint_hosted,
    ),
    (
        "distable_checkpoint_hosted_bytes",
        "Bytes of the latest checkpoint states of the node's own names.",
        lambda s: s.registry.checkpoint_hosted_bytes,
    ),
    (
        "distable_store_up",
        "1 if the node's last attempt to reach its durable store succeeded (0 too when it has none).",
        lambda s: int(s.registry.store_up),
    ),
    ("distable_store_queued", "Writes queued for the durable store.", lambda s: s.registry.store_queued),
    (
        "distable_store_queued_bytes",
        "Bytes of the checkpoint states queued for the durable store.",
        lambda s: s.registry.store_queued_bytes,
    ),
    (
        "distable_store_lag_seconds",
        "Age of the oldest write queued for the durable store (0 when none waits).",
        lambda s: s.registry.store_lag,
    ),
    ("distable_loop_lag_seconds", "Event-loop lag at the last measurement.", lambda s: s.runtime.last_loop_lag),
    ("distable_loop_lag_max_seconds", "Largest event-loop lag measured.", lambda s: s.runtime.max_loop_lag),
)
_COUNTERS: tuple[tuple[str, str, Any], ...] = (
    (
        "distable_handoffs_started",
        "Handoffs the node began (names moving off it).",
        lambda s: s.registry.handoffs_started,
    ),
    ("distable_handoffs_completed", "Handoffs from the node that completed.", lambda s: s.registry.handoffs_completed),
    ("distable_handoffs_aborted", "Handoffs from the node that did not happen.", lambda s: s.registry.handoffs_aborted),
    (
        "distable_restarts",
        "Names the node restarted (their node died or process exited).",
        lambda s: s.registry.restarts,
    ),
    ("distable_conflicts", "Duplicate registrations the node resolved.", lambda s: s.registry.conflicts),
    (
        "distable_gate_releases",
        "Senders a handed-in process's gate let through without their flush marker "
        "(down, suspected, unlinked, timed out).",
        lambda s: s.registry.gate_releases,
    ),
    (
        "distable_gate_held_messages",
        "Messages such gates had held until then.",
        lambda s: s.registry.gate_held_messages,
    ),
    (
        "distable_checkpoint_refusals",
        "Checkpoints the node refused as a standby (it holds a newer line of the name).",
        lambda s: s.registry.checkpoint_refusals,
    ),
    (
        "distable_checkpoint_restores",
        "Restarts that looked for their name's latest checkpoint.",
        lambda s: s.registry.checkpoint_restores,
    ),
    (
        "distable_checkpoint_restores_incomplete",
        "Such restores cut short by their timeout (a node did not answer).",
        lambda s: s.registry.checkpoint_restores_incomplete,
    ),
    ("distable_store_written", "Writes the durable store applied.", lambda s: s.registry.store_written),
    (
        "distable_store_refused",
        "Writes the durable store refused (it holds a newer line of the name, or does not remember it).",
        lambda s: s.registry.store_refused,
    ),
    (
        "distable_store_failed",
        "Attempts to write to the durable store that failed (unreachable, or past the timeout).",
        lambda s: s.registry.store_failed,
    ),
    (
        "distable_store_dropped",
        "Writes not queued for the durable store because its queue was full.",
        lambda s: s.registry.store_dropped,
    ),
    (
        "distable_store_restored",
        "Names the node started from the durable store at its cold start.",
        lambda s: s.registry.store_restored,
    ),
    ("distable_syncs_sent", "Anti-entropy sync rounds (digests) the node sent.", lambda s: s.registry.syncs_sent),
    (
        "distable_buckets_repaired",
        "Replica buckets repaired by anti-entropy sync.",
        lambda s: s.registry.buckets_repaired,
    ),
    ("distable_probes", "Failure-detector probes sent.", lambda s: s.membership.probes),
    ("distable_probe_failures", "Probes that got no answer in time.", lambda s: s.membership.probe_failures),
    ("distable_suspicions", "Members the node suspected.", lambda s: s.membership.suspicions),
    ("distable_refutations", "Suspicions of the node that it refuted.", lambda s: s.membership.refutations),
    ("distable_member_failures", "Members the node declared dead.", lambda s: s.membership.failures),
    ("distable_rumors_sent", "Membership rumors the node sent.", lambda s: s.membership.rumors_sent),
    (
        "distable_local_messages",
        "Messages delivered between processes of the node.",
        lambda s: s.runtime.local_messages,
    ),
    (
        "distable_remote_messages",
        "Messages the node's processes sent to other nodes.",
        lambda s: s.runtime.remote_messages,
    ),
    (
        "distable_dropped_messages",
        "Messages the runtime dropped (dead or unknown pid).",
        lambda s: s.runtime.dropped_messages,
    ),
    (
        "distable_undecodable_received",
        "Messages from other nodes the node could not decode (a user type it does not know).",
        lambda s: s.runtime.undecodable_received,
    ),
    (
        "distable_undecodable_sent",
        "Messages of the node that another node could not decode.",
        lambda s: s.runtime.undecodable_sent,
    ),
    ("distable_calls", "Calls made by the node's processes.", lambda s: s.runtime.calls),
    ("distable_process_crashes", "Processes that exited by raising.", lambda s: s.runtime.crashes),
    ("distable_handshake_failures", "Link handshakes that failed.", lambda s: s.transport.handshake_failures),
    ("distable_protocol_errors", "Links closed for malformed input.", lambda s: s.transport.protocol_errors),
    ("distable_transport_dropped_messages", "Messages the links dropped.", lambda s: s.transport.dropped_messages),
)
# (name, help, read from a PeerStatistics) for every per-peer counter.
_PEER_COUNTERS: tuple[tuple[str, str, Any], ...] = (
    ("distable_peer_messages_received", "Messages received from the peer.", lambda p: p.messages_in),
    ("distable_peer_messages_sent", "Messages sent to the peer.", lambda p: p.messages_out),
    ("distable_peer_bytes_received", "Bytes received from the peer.", lambda p: p.bytes_in),
    ("distable_peer_bytes_sent", "Bytes sent to the peer.", lambda p: p.bytes_out),
    ("distable_peer_connects", "Links established with the peer.", lambda p: p.connects),
)


class NodeCollector(Collector):
    """Turns one ``node.statistics()`` snapshot into metric families at each scrape.

    Called by prometheus_client on the thread that generates the exposition: here the
    event loop (``generate_latest`` in the ``/metrics`` handler); must not block.
    """

    def __init__(self, node: Node, events: EventStream | None = None) -> None:
        self._node = node
        self._events = events

    def describe(self) -> Iterable[Metric]:
        """The families (without samples), so the registry can refuse a clashing name."""
        for name, doc, _ in _GAUGES:
            yield GaugeMetricFamily(name, doc, labels=["node"])
        yield GaugeMetricFamily("distable_node_info", "The node's role and incarnation.", labels=["node"])
        yield GaugeMetricFamily("distable_members", "Members in the node's view, by status.", labels=["node"])
        yield GaugeMetricFamily("distable_peer_connected", "1 while a link to the peer is up.", labels=["node"])
        for name, doc, _ in (*_COUNTERS, *_PEER_COUNTERS):
            yield CounterMetricFamily(name, doc, labels=["node"])
        yield CounterMetricFamily("distable_events_dropped", "Events the metrics missed.", labels=["node"])

    def collect(self) -> Iterator[Metric]:
        stats = self._node.statistics()
        yield from node_families(stats)
        if self._events is not None:
            dropped = CounterMetricFamily(
                "distable_events_dropped",
                "Events the metrics stream missed because it fell behind (its queue was full).",
                labels=["node"],
            )
            dropped.add_metric([stats.name], self._events.dropped)
            yield dropped


def node_families(stats: NodeStatistics) -> Iterator[Metric]:
    """The metric families of one ``NodeStatistics`` snapshot (a pure function)."""
    node = stats.name
    labels = [node]
    info = GaugeMetricFamily(
        "distable_node_info", "The node's role and incarnation (always 1).", labels=["node", "role", "incarnation"]
    )
    info.add_metric([node, stats.role, str(stats.incarnation)], 1)
    yield info
    for name, doc, read in _GAUGES:
        yield _gauge(name, doc, labels, read(stats))
    statuses = Tally(m.status for m in stats.membership.members)
    members = GaugeMetricFamily("distable_members", "Members in the node's view, by status.", labels=["node", "status"])
    for status in (*MEMBER_STATUSES, *sorted(set(statuses) - set(MEMBER_STATUSES))):
        members.add_metric([node, status], statuses.get(status, 0))
    yield members
    for name, doc, read in _COUNTERS:
        counter = CounterMetricFamily(name, doc, labels=["node"])
        counter.add_metric(labels, read(stats))
        yield counter
    peers = sorted(stats.transport.peers, key=lambda p: p.name)
    connected = GaugeMetricFamily(
        "distable_peer_connected", "1 while a link to the peer is up.", labels=["node", "peer"]
    )
    for peer in peers:
        connected.add_metric([node, peer.name], 1 if peer.connected else 0)
    yield connected
    for name, doc, read in _PEER_COUNTERS:
        counter = CounterMetricFamily(name, doc, labels=["node", "peer"])
        for peer in peers:
            counter.add_metric([node, peer.name], read(peer))
        yield counter


def _gauge(name: str, doc: str, labels: list[str], value: float) -> GaugeMetricFamily:
    gauge = GaugeMetricFamily(name, doc, labels=["node"])
    gauge.add_metric(labels, value)
    return gauge


class EventMetrics:
    """The metrics fed by the node's events: a handoff-duration histogram and a count of
    events by type, since the web server started.

    ``observe`` is called for each event by the web server's event task, on the loop.
    """

    def __init__(self, registry: CollectorRegistry, node: str) -> None:
        self.node = node
        self.handoff_duration = Histogram(
            "distable_handoff_duration_seconds",
            "Duration of the handoffs from this node that completed (since the metrics started).",
            ["node", "answer"],
            registry=registry,
            buckets=HANDOFF_BUCKETS,
        )
        self.events = Counter(
            "distable_events",
            "Events the node published, by type (since the metrics started).",
            ["node", "type"],
            registry=registry,
        )
        for answer in ("resume", "restart"):
            self.handoff_duration.labels(node, answer)
        for kind in COUNTED_EVENTS:
            self.events.labels(node, kind)

    def observe(self, event: Any) -> None:
        """Count ``event``; a ``HandoffCompleted`` also adds its duration to the histogram."""
        self.events.labels(self.node, type(event).__name__).inc()
        if isinstance(event, HandoffCompleted):
            self.handoff_duration.labels(self.node, event.answer).observe(max(0.0, event.duration))
