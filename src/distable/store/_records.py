"""How a record's parts are encoded, the same for every engine.

A name is stored as ``encode_value(name)``: the bytes the ring hashes to place it, so a
name is one key whatever node writes it (strings, ints, tuples of those; a frozenset's
encoding follows its iteration order and is not stable across processes, as for the
ring). A spec is stored with its user argument values encoded the same way; a lineage as
its ``encode_value`` form, and, for engines that compare in the database, as fixed-width
fields that compare bytewise in the order ``Lineage`` compares (see ``version_fields``).
"""

from __future__ import annotations

from typing import Any

from .._errors import DecodeError
from ..wire._codec import decode_value, encode_value
from ..wire._messages import Lineage, Spec
from ..wire._types import Pid

#: Ints in a version are at most this (20 decimal digits: every unsigned 64-bit value).
_MAX_INT = 10**20 - 1


def name_key(name: Any) -> bytes:
    """The stored form of ``name``.

    Raises:
        TypeError: ``name`` is not hashable (names must be).
        UnencodableValue: the codec does not carry ``name`` (a ``TypeError`` too).
    """
    hash(name)  # a name is a dict key everywhere in the registry
    return encode_value(name)


def encode_spec(spec: Spec) -> bytes:
    """``spec`` with the user's argument values (``Claim.spec``, not ``wire_spec``'s)."""
    return encode_value([spec.factory, spec.args, spec.kwargs, spec.restart, spec.handoff_timeout])


def decode_spec(data: bytes) -> Spec:
    fields = decode_value(data)
    if not isinstance(fields, list) or len(fields) != 5:
        raise DecodeError(f"malformed stored spec: {fields!r}")
    return Spec(*fields)


def encode_lineage(lineage: Lineage) -> bytes:
    return encode_value([lineage.epoch, lineage.origin])


def decode_lineage(data: bytes) -> Lineage:
    fields = decode_value(data)
    if not isinstance(fields, list) or len(fields) != 2 or not isinstance(fields[1], Pid):
        raise DecodeError(f"malformed stored lineage: {fields!r}")
    return Lineage(fields[0], fields[1])


def _pad(value: int, what: str) -> bytes:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= _MAX_INT:
        raise ValueError(f"{what} must be an int in [0, {_MAX_INT}], not {value!r}")
    return b"%020d" % value


def version_fields(lineage: Lineage, seq: int) -> list[bytes]:
    """``(lineage, seq)`` as five byte strings that compare bytewise, one after the other,
    exactly as ``(lineage, seq)`` compares in Python: the epoch, the origin's node name
    (UTF-8, whose byte order is the code point order Python compares strings by), its
    incarnation and id, and the seq; the ints zero-padded to 20 digits.

    Raises:
        ValueError: an int outside ``[0, 10**20)``.
    """
    origin = lineage.origin
    return [
        _pad(lineage.epoch, "a lineage's epoch"),
        origin.node.encode(),
        _pad(origin.incarnation, "a pid's incarnation"),
        _pad(origin.id, "a pid's id"),
        _pad(seq, "a checkpoint's seq"),
    ]


def check_write(lineage: Lineage, seq: int = 0, replicas: int = 1) -> None:
    """The checks every engine makes before a write, so that all refuse the same input.

    Raises:
        ValueError: a negative or too large int, or fewer than 0 replicas.
    """
    version_fields(lineage, seq)
    if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
        raise ValueError(f"replicas must be an int of at least 0, not {replicas!r}")
