"""The registry layer: the replicated tracker, handoff, conflicts, restarts and groups."""

from ._core import RegistryConfig, RegistryStatistics, TrackerCore
from ._events import (
    ConflictResolved,
    GroupJoined,
    GroupLeft,
    HandoffAborted,
    HandoffCompleted,
    HandoffStarted,
    HandoffStateLost,
    NameRegistered,
    NameUnregistered,
    ProcessRestarted,
)
from ._factory import factory_ref, import_factory, run_factory
from ._service import REGISTRY_SERVER_ID, RegistryService, Reply

__all__ = [
    "REGISTRY_SERVER_ID",
    "ConflictResolved",
    "GroupJoined",
    "GroupLeft",
    "HandoffAborted",
    "HandoffCompleted",
    "HandoffStarted",
    "HandoffStateLost",
    "NameRegistered",
    "NameUnregistered",
    "ProcessRestarted",
    "RegistryConfig",
    "RegistryService",
    "RegistryStatistics",
    "Reply",
    "TrackerCore",
    "factory_ref",
    "import_factory",
    "run_factory",
]
