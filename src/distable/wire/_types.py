"""Values that name things across the cluster: pids, references, crash reasons.

Pure data: no I/O, no event loop. Pids and refs are msgspec Structs so that wire
envelopes encode them in C; inside user payloads the codec carries them as msgpack
extension types (see ``_codec``).
"""

from __future__ import annotations

import traceback as _traceback
from typing import Any

import msgspec


class Pid(msgspec.Struct, frozen=True, order=True, array_like=True, gc=False):
    """The address of one process: its node's name, that node's incarnation, a local id.

    Hashable, ordered, printable and serializable. A node restarted under the same name
    has a new incarnation, so a pid of the old node never reaches a process of the new.
    """

    node: str
    incarnation: int
    id: int

    def __repr__(self) -> str:
        return f"<pid {self.node}/{self.id}>"

    __str__ = __repr__


class Ref(msgspec.Struct, frozen=True, order=True, array_like=True, gc=False):
    """A unique reference made by a node (monitor references, call tags)."""

    node: str
    incarnation: int
    id: int

    def __repr__(self) -> str:
        return f"<ref {self.node}/{self.id}>"

    __str__ = __repr__


class Crash:
    """The exit reason of a process whose handler raised.

    ``exception_type``, ``message`` and ``traceback`` travel across the wire;
    ``exception`` is the original exception object on the node where it was raised
    and ``None`` elsewhere (decoding never rebuilds arbitrary exception classes).
    """

    __slots__ = ("exception", "exception_type", "message", "traceback")

    def __init__(
        self,
        exception_type: str,
        message: str,
        traceback: str = "",
        exception: BaseException | None = None,
    ) -> None:
        self.exception_type = exception_type
        self.message = message
        self.traceback = traceback
        self.exception = exception

    @classmethod
    def from_exception(cls, exc: BaseException) -> Crash:
        tb = "".join(_traceback.format_exception(exc))
        return cls(type(exc).__qualname__, str(exc), tb, exc)

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Crash) and other.exception_type == self.exception_type and other.message == self.message
        )

    def __hash__(self) -> int:
        return (self.exception_type, self.message).__hash__()

    def __repr__(self) -> str:
        return f"Crash({self.exception_type}: {self.message})"

    def to_fields(self) -> list[Any]:
        return [self.exception_type, self.message, self.traceback]


#: Exit reasons a process may see besides a ``Crash``.
NORMAL = "normal"
SHUTDOWN = "shutdown"
NOPROC = "noproc"
NOCONNECTION = "noconnection"
KILLED = "killed"
