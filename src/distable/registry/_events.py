"""Registry events: past-tense, frozen, published through ``events()``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..wire._types import Pid


@dataclass(frozen=True, slots=True)
class NameRegistered:
    """``name`` now resolves to ``pid`` (a new registration, a restart or a handoff)."""

    name: Any
    pid: Pid


@dataclass(frozen=True, slots=True)
class NameUnregistered:
    """``name`` no longer resolves (unregistered, its process exited, or its node died)."""

    name: Any
    pid: Pid


@dataclass(frozen=True, slots=True)
class HandoffStarted:
    """This node began moving ``name`` from ``pid`` to ``target``."""

    name: Any
    pid: Pid
    target: str


@dataclass(frozen=True, slots=True)
class HandoffCompleted:
    """``name`` moved from ``old_pid`` to ``new_pid``; ``answer`` is "restart" or "resume"."""

    name: Any
    old_pid: Pid
    new_pid: Pid
    answer: str
    duration: float


@dataclass(frozen=True, slots=True)
class HandoffAborted:
    """The move of ``name`` did not happen; ``reason`` says why ("ignore" if the process
    chose to stay)."""

    name: Any
    pid: Pid
    reason: str


@dataclass(frozen=True, slots=True)
class HandoffStateLost:
    """A leaving node handed ``name`` (its process ``pid``) off without its state: the
    process starts afresh on its new owner. ``cause``: why the state could not go (it
    cannot cross the wire, ``begin_handoff`` did not answer in time)."""

    name: Any
    pid: Pid
    cause: str


@dataclass(frozen=True, slots=True)
class ProcessRestarted:
    """``name`` was restarted on this node as ``pid``; ``reason`` is "nodedown" (its node
    died), "exit" (its process exited and its restart policy says so) or "store" (started
    from the durable store when this node started)."""

    name: Any
    pid: Pid
    reason: str


@dataclass(frozen=True, slots=True)
class ConflictResolved:
    """After a netsplit ``name`` had two processes: ``winner`` stays, ``loser`` stops."""

    name: Any
    winner: Pid
    loser: Pid


@dataclass(frozen=True, slots=True)
class GroupJoined:
    group: Any
    pid: Pid


@dataclass(frozen=True, slots=True)
class GroupLeft:
    group: Any
    pid: Pid


RegistryEvent = (
    NameRegistered
    | NameUnregistered
    | HandoffStarted
    | HandoffCompleted
    | HandoffAborted
    | HandoffStateLost
    | ProcessRestarted
    | ConflictResolved
    | GroupJoined
    | GroupLeft
)
