"""Typed exceptions of the public API and of the wire layer.

This module depends on nothing else in distable, so every layer may raise these.
"""

from __future__ import annotations

from typing import Any


class DistableError(Exception):
    """Base class of every error distable raises on purpose."""


class AlreadyRegistered(DistableError):
    """The name is registered already; ``pid`` is the process that holds it, ``name`` the
    name (None where the raiser did not say)."""

    def __init__(self, pid: Any, name: Any = None) -> None:
        what = "name" if name is None else repr(name)
        super().__init__(f"{what} already registered to {pid!r}")
        self.pid = pid
        self.name = name


class NoNodeAvailable(DistableError):
    """No node may own the name now (no nodes, or no quorum)."""


class InvalidFactoryReturn(DistableError):
    """A factory returned something that is not the pid of a process on its node."""


class FactoryError(DistableError):
    """A factory could not be imported on the owner node, or raised while starting."""


class NameNotFound(DistableError):
    """No process is registered under the name."""

    def __init__(self, name: Any) -> None:
        super().__init__(f"no process registered as {name!r}")
        self.name = name


class CallTimeout(DistableError):
    """A ``call`` got no reply within its timeout."""


class UndecodableMessage(DistableError):
    """A call's message, or its reply, could not be decoded by the node that received it.

    Usually a value of a type that node does not know: a dataclass registered with
    ``register_type`` on the sending node only (every node must import the code that
    registers it), or registered with other fields there. ``node`` is the node that could
    not decode, ``type_name`` the wire name of the type (None when the problem was not a
    user type), ``part`` is ``"message"`` (the callee's node could not decode the call)
    or ``"reply"`` (the caller's node could not decode the answer), ``detail`` says what
    went wrong.
    """

    def __init__(self, node: str, type_name: str | None, detail: str, part: str = "message") -> None:
        hint = (
            "; every node must register that type (distable.register_type) with the same fields"
            if type_name is not None
            else ""
        )
        super().__init__(f"node {node} could not decode the call's {part}: {detail}{hint}")
        self.node = node
        self.type_name = type_name
        self.detail = detail
        self.part = part


class ProcessExited(DistableError):
    """The called process exited (or did not exist) before it replied.

    ``reason`` is an exit reason: ``"normal"``, ``"shutdown"``, ``"noproc"`` (no such
    process), ``"noconnection"`` (its node is unreachable) or a ``Crash``.
    """

    def __init__(self, reason: Any) -> None:
        super().__init__(f"process exited: {reason!r}")
        self.reason = reason


class CheckpointTooLarge(DistableError):
    """A checkpoint's encoded state is larger than the node allows; nothing was sent.

    ``size`` is the encoded state's length in bytes, ``limit`` the most a node keeps.
    """

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"checkpoint of {size} bytes is larger than the limit of {limit} bytes")
        self.size = size
        self.limit = limit


class StoreUnavailable(DistableError):
    """The durable store could not be reached, or did not answer within its timeout.

    ``address`` is the store's (``redis://127.0.0.1:6379/0``, without a password),
    ``detail`` what went wrong. Nothing was written, or it is not known whether it was.
    """

    def __init__(self, address: str, detail: str) -> None:
        super().__init__(f"store {address} unavailable: {detail}")
        self.address = address
        self.detail = detail


class MessageTooLarge(DistableError):
    """An encoded message is larger than the peer link's maximum frame size."""


class UnencodableValue(DistableError, TypeError):
    """A value has a type the wire codec does not carry (see ``register_type``).

    ``path``: where in the value it is, outermost first (``['lock']``, ``[2]``, ``.field``),
    empty for the value itself; the message ends with it."""

    def __init__(self, message: str, path: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.path = path

    def __str__(self) -> str:
        return f"{self.message} (at {''.join(self.path)} in the value)" if self.path else self.message

    def within(self, step: str) -> UnencodableValue:
        """The same error one container out: ``step`` leads to where it was."""
        return UnencodableValue(self.message, (step, *self.path))


class ProtocolError(DistableError):
    """A peer sent bytes that break the wire protocol."""


class FrameTooLarge(ProtocolError):
    """A frame header announced more bytes than the maximum frame size."""


class DecodeError(ProtocolError):
    """A frame's body is not a valid message.

    ``type_name`` is the wire name of the user type that could not be rebuilt (not
    registered on this node, other fields, or its constructor refused them), else None.
    """

    def __init__(self, message: str, type_name: str | None = None) -> None:
        super().__init__(message)
        self.type_name = type_name


class HandshakeError(ProtocolError):
    """The node-to-node handshake failed (wrong cookie, wrong node, bad version...)."""


class MissingExtra(DistableError, ImportError):
    """A feature needs an optional package that is not installed.

    ``extra`` is the pip extra that installs it (``pip install 'distable[web]'``),
    ``packages`` the missing packages' names on the package index, ``feature`` what
    needs them. Also an ``ImportError``, which is what it is.
    """

    def __init__(self, feature: str, extra: str, packages: tuple[str, ...]) -> None:
        super().__init__(f"{feature} needs {' and '.join(packages)}: pip install 'distable[{extra}]'")
        self.feature = feature
        self.extra = extra
        self.packages = packages
