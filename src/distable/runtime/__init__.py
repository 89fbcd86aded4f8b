"""The runtime layer: processes, mailboxes, monitors, supervisors, on one event loop."""

from ._context import current_process, current_runtime
from ._process import (
    NOREPLY,
    Caller,
    Down,
    HandoffAnswer,
    Ignore,
    Process,
    Restart,
    Resume,
)
from ._runtime import RemoteRouter, Runtime, RuntimeStatistics, run_blocking
from ._supervisor import RestartPolicy, Supervisor

__all__ = [
    "NOREPLY",
    "Caller",
    "Down",
    "HandoffAnswer",
    "Ignore",
    "Process",
    "RemoteRouter",
    "Restart",
    "RestartPolicy",
    "Resume",
    "Runtime",
    "RuntimeStatistics",
    "Supervisor",
    "current_process",
    "current_runtime",
    "run_blocking",
]
