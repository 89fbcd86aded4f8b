"""distable: a smart distributed process registry for Python.

Everything a user needs is importable from here; the subpackages are layers of the
implementation (see docs/internals.md). ``tests/test_exports.py`` keeps this surface
deliberate.
"""

from ._errors import (
    AlreadyRegistered,
    CallTimeout,
    DistableError,
    InvalidFactoryReturn,
    MessageTooLarge,
    NameNotFound,
    NoNodeAvailable,
    ProcessExited,
    ProtocolError,
    UnencodableValue,
)
from .membership import DNSPoll, Gossip, MembershipConfig, Static
from .node import (
    EventStream,
    Node,
    NodeDown,
    NodeStatistics,
    NodeUp,
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
from .runtime import (
    NOREPLY,
    Caller,
    Down,
    Ignore,
    Process,
    Restart,
    Resume,
    Supervisor,
    run_blocking,
)
from .transport import TransportConfig
from .wire import Crash, Pid, Ref, register_type

__version__ = "0.1.0"

__all__ = [
    "NOREPLY",
    "AlreadyRegistered",
    "CallTimeout",
    "Caller",
    "Crash",
    "DNSPoll",
    "DistableError",
    "Down",
    "EventStream",
    "Gossip",
    "Ignore",
    "InvalidFactoryReturn",
    "MembershipConfig",
    "MessageTooLarge",
    "NameNotFound",
    "NoNodeAvailable",
    "Node",
    "NodeDown",
    "NodeStatistics",
    "NodeUp",
    "Pid",
    "Process",
    "ProcessExited",
    "ProtocolError",
    "Ref",
    "Restart",
    "Resume",
    "Static",
    "Supervisor",
    "TransportConfig",
    "UnencodableValue",
    "__version__",
    "call",
    "cast",
    "current_node",
    "demonitor",
    "events",
    "monitor",
    "nodes",
    "register_type",
    "run",
    "run_blocking",
    "send",
]
