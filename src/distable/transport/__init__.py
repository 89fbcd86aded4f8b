"""The transport layer: authenticated, ordered, batched links between nodes (TCP, or a Unix
domain socket between nodes on one host)."""

from ._handshake import HandshakeCore, derive_key
from ._transport import (
    PeerStatistics,
    Transport,
    TransportConfig,
    TransportStatistics,
    format_node_name,
    parse_node_name,
)

__all__ = [
    "HandshakeCore",
    "PeerStatistics",
    "Transport",
    "TransportConfig",
    "TransportStatistics",
    "derive_key",
    "format_node_name",
    "parse_node_name",
]
