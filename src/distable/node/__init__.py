"""The node layer: wires the layers together and offers the public API."""

from ..membership import NodeDown, NodeUp
from ._events import EventStream
from ._node import (
    Node,
    NodeStatistics,
    call,
    cast,
    current_node,
    demonitor,
    events,
    monitor,
    nodes,
    run,
    send,
)

__all__ = [
    "EventStream",
    "Node",
    "NodeDown",
    "NodeStatistics",
    "NodeUp",
    "call",
    "cast",
    "current_node",
    "demonitor",
    "events",
    "monitor",
    "nodes",
    "run",
    "send",
]
