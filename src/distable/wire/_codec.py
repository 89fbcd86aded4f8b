"""The value codec: what user payloads may contain and how they cross the wire.

Rules:
    * Decoding never runs code: it builds only built-in containers and scalars, pids,
      refs, crash reasons, and the user types an application registered explicitly
      with ``register_type`` (whose constructors the application wrote).
    * Tuples stay tuples, sets stay sets: msgpack has only arrays, so these ride as
      extension types, and names such as ``("worker", 7)`` stay hashable.
    * A value of any other type is refused at send time with ``UnencodableValue``,
      never silently turned into a dict.

Theory of operation: ``to_wire`` walks a payload once, replacing tuples, sets, pids,
refs, crashes and registered types by ``msgspec.msgpack.Ext`` values; the envelope
is then encoded by msgspec in C. On the way in, msgspec calls ``ext_hook`` for each
extension value inside ``Any`` fields, so decoding is a single C pass plus one hook
call per extension value. Scalars take a single set lookup.

Extension codes are append-only: never reuse or renumber one.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import msgspec
from msgspec.msgpack import Ext

from .._apps import main_module_name
from .._errors import DecodeError, UnencodableValue
from ._types import Crash, Pid, Ref

EXT_TUPLE = 1
EXT_PID = 2
EXT_REF = 3
EXT_SET = 4
EXT_FROZENSET = 5
EXT_CRASH = 6
EXT_MAP = 7  # a dict with a key that is not a scalar (msgpack maps want hashable keys)
EXT_USER = 16

_encoder = msgspec.msgpack.Encoder()
_encode = _encoder.encode
_pid_decoder = msgspec.msgpack.Decoder(Pid)
_ref_decoder = msgspec.msgpack.Decoder(Ref)
_crash_decoder = msgspec.msgpack.Decoder(tuple[str, str, str])

_PASSTHROUGH: frozenset[type] = frozenset({str, int, float, bool, type(None), bytes})

# name <-> class of user types registered for the wire, and each class's field names.
_user_by_name: dict[str, type] = {}
_user_by_type: dict[type, tuple[str, tuple[str, ...]]] = {}


def register_type(cls: type, name: str | None = None) -> type:
    """Allow instances of a dataclass or msgspec Struct to cross the wire.

    Every node that receives the type must register it under the same name (the
    default is ``module.QualName``; for a class of the script being run, ``__main__``,
    the module name other nodes import that script by, when it has one: see
    ``factory_ref``). Usable as a class decorator.

    Raises:
        TypeError: ``cls`` is neither a dataclass nor a msgspec Struct, or the name is
            taken by another class.
    """
    if dataclasses.is_dataclass(cls):
        fields = tuple(f.name for f in dataclasses.fields(cls) if f.init)
    elif isinstance(cls, type) and issubclass(cls, msgspec.Struct):
        fields = tuple(cls.__struct_fields__)
    else:
        raise TypeError(f"register_type needs a dataclass or msgspec.Struct, got {cls!r}")
    module = cls.__module__
    if module == "__main__":
        module = main_module_name() or module
    wire_name = name or f"{module}.{cls.__qualname__}"
    existing = _user_by_name.get(wire_name)
    if existing is not None and existing is not cls:
        raise TypeError(f"wire name {wire_name!r} is already registered to {existing!r}")
    _user_by_name[wire_name] = cls
    _user_by_type[cls] = (wire_name, fields)
    return cls


# Each container says, on the error's way out only, which of its items could not be sent
# (a try block costs nothing until it raises): "cannot send a value of type lock ... (at
# ['session'][2].lock in the value)", not the type alone, in a state of a hundred fields.


def _seq(items: Any) -> list[Any]:
    try:
        return [to_wire(x) for x in items]
    except UnencodableValue as exc:
        raise _located(exc, _items(items)) from None


# The parts of each container, each with the step that leads to it (apart from the
# converters: a generator built inside one would make its locals cells, on the hot path).


def _items(items: Any) -> Iterator[tuple[str, Any]]:
    ordered = isinstance(items, list | tuple)
    return ((f"[{i}]" if ordered else "{...}", x) for i, x in enumerate(items))


def _entries(d: dict[Any, Any]) -> Iterator[tuple[str, Any]]:
    return (part for k, v in d.items() for part in (("[<a key>]", k), (f"[{k!r}]", v)))


def _fields(obj: Any, fields: tuple[str, ...]) -> Iterator[tuple[str, Any]]:
    return ((f".{f}", getattr(obj, f)) for f in fields)


def _located(exc: UnencodableValue, parts: Iterable[tuple[str, Any]]) -> UnencodableValue:
    """``exc``, raised by one of a container's ``parts`` (each with the step that leads to
    it), one step further out: at the first part that cannot be sent."""
    for step, part in parts:
        try:
            to_wire(part)
        except UnencodableValue:
            return exc.within(step)
    return exc


def _map(d: dict[Any, Any]) -> Any:
    passthrough = _PASSTHROUGH
    try:
        if all(type(k) in passthrough for k in d):
            return {k: to_wire(v) for k, v in d.items()}
        flat: list[Any] = []
        for k, v in d.items():
            flat.append(to_wire(k))
            flat.append(to_wire(v))
    except UnencodableValue as exc:
        raise _located(exc, _entries(d)) from None
    return Ext(EXT_MAP, _encode(flat))


def _user(obj: Any, spec: tuple[str, tuple[str, ...]]) -> Ext:
    name, fields = spec
    try:
        return Ext(EXT_USER, _encode([name, [to_wire(getattr(obj, f)) for f in fields]]))
    except UnencodableValue as exc:
        raise _located(exc, _fields(obj, fields)) from None


_CONVERTERS: dict[type, Callable[[Any], Any]] = {
    list: _seq,
    dict: _map,
    tuple: lambda t: Ext(EXT_TUPLE, _encode(_seq(t))),
    Pid: lambda p: Ext(EXT_PID, _encode(p)),
    Ref: lambda r: Ext(EXT_REF, _encode(r)),
    set: lambda s: Ext(EXT_SET, _encode(_seq(s))),
    frozenset: lambda s: Ext(EXT_FROZENSET, _encode(_seq(s))),
    Crash: lambda c: Ext(EXT_CRASH, _encode(c.to_fields())),
    bytearray: bytes,
    memoryview: bytes,
}


def to_wire(obj: Any) -> Any:
    """Return ``obj`` in the form the msgpack encoder carries faithfully.

    Raises:
        UnencodableValue: some part of ``obj`` has a type the codec does not carry.
    """
    t = type(obj)
    if t in _PASSTHROUGH:
        return obj
    conv = _CONVERTERS.get(t)
    if conv is not None:
        return conv(obj)
    spec = _user_by_type.get(t)
    if spec is not None:
        return _user(obj, spec)
    raise UnencodableValue(
        f"cannot send a value of type {t.__qualname__}: use built-in types, pids, "
        "or a dataclass registered with distable.register_type"
    )


def ext_hook(code: int, data: memoryview) -> Any:
    """Rebuild an extension value; raises ``DecodeError`` for anything unknown."""
    if code == EXT_TUPLE:
        return tuple(_any_decoder.decode(data))
    if code == EXT_PID:
        return _pid_decoder.decode(data)
    if code == EXT_REF:
        return _ref_decoder.decode(data)
    if code == EXT_SET:
        return set(_any_decoder.decode(data))
    if code == EXT_FROZENSET:
        return frozenset(_any_decoder.decode(data))
    if code == EXT_MAP:
        flat = _any_decoder.decode(data)
        if not isinstance(flat, list) or len(flat) % 2:
            raise DecodeError("malformed map extension")
        return dict(zip(flat[::2], flat[1::2], strict=True))
    if code == EXT_CRASH:
        return Crash(*_crash_decoder.decode(data))
    if code == EXT_USER:
        name, values = _any_decoder.decode(data)
        if not isinstance(name, str) or not isinstance(values, list):
            raise DecodeError("malformed user type extension")
        cls = _user_by_name.get(name)
        if cls is None:
            raise DecodeError(f"unregistered user type {name!r}", name)
        fields = _user_by_type[cls][1]
        if len(values) != len(fields):
            raise DecodeError(f"user type {name!r}: expected {len(fields)} fields, got {len(values)}", name)
        try:
            return cls(**dict(zip(fields, values, strict=True)))
        except Exception as exc:  # the application's constructor refused the fields
            raise DecodeError(f"user type {name!r} could not be rebuilt: {exc}", name) from exc
    raise DecodeError(f"unknown extension type {code}")


_any_decoder = msgspec.msgpack.Decoder(ext_hook=ext_hook)


def lists_as_tuples(value: Any) -> Any:
    """``value`` read from JSON, which has no tuples, with every list (at any depth) a
    tuple: the registered name it stands for (``["worker", 7]`` is ``("worker", 7)``)."""
    if isinstance(value, list):
        return tuple(lists_as_tuples(v) for v in value)
    return value


def encode_value(obj: Any) -> bytes:
    """Encode one payload value on its own (tests, checkpoints, placement hashing).

    Raises:
        UnencodableValue: a type the codec does not carry, or an int outside 64 bits.
    """
    try:
        return _encode(to_wire(obj))
    except OverflowError as exc:
        raise UnencodableValue(f"cannot send an integer outside the 64-bit range: {exc}") from exc


def decode_value(data: bytes | memoryview) -> Any:
    """Decode what ``encode_value`` made.

    Raises:
        DecodeError: the bytes are not a valid value.
    """
    try:
        return _any_decoder.decode(data)
    except DecodeError:
        raise
    except (msgspec.DecodeError, msgspec.ValidationError, ValueError, TypeError, RecursionError) as exc:
        raise DecodeError(str(exc)) from exc
