"""The value codec: what goes in comes out, with the same types; hostile bytes only fail.

Hypothesis runs derandomized (its seed is derived from each test, so a run is
reproducible) and prints the falsifying example on failure; ``deadline=None`` because
the machine is shared and timings are not what these tests assert.
"""

from __future__ import annotations

import dataclasses
import datetime
import math
from typing import Any, get_args

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from distable._errors import DecodeError, ProtocolError, UnencodableValue
from distable.wire import (
    BatchWriter,
    Crash,
    Pid,
    Ref,
    decode_value,
    encode_value,
    lists_as_tuples,
    register_type,
    to_wire,
)
from distable.wire._codec import EXT_CRASH, EXT_MAP, EXT_PID, EXT_SET, EXT_TUPLE, EXT_USER
from distable.wire._framing import FRAME_HEADER
from distable.wire._messages import (
    REGISTRY_ERROR,
    REGISTRY_OK,
    ConflictStateTaken,
    GroupJoinRequest,
    GroupLeaveRequest,
    PeerMessage,
    RegisterNameRequest,
    RegisterRequest,
    RegistryReply,
    Send,
    Spec,
    UnregisterRequest,
    batch_decoder,
    single_decoder,
)

SETTINGS = settings(derandomize=True, deadline=None, database=None, print_blob=True, max_examples=200)

INT64_MIN = -(2**63)
UINT64_MAX = 2**64 - 1


# --- registered user types ------------------------------------------------------------


@register_type
@dataclasses.dataclass(frozen=True)
class Point:
    x: int
    y: int
    label: str = ""


@register_type
class Order(msgspec.Struct, frozen=True):
    item: str
    quantity: int


@register_type
@dataclasses.dataclass
class Envelope:
    """A registered type whose fields hold values the codec must carry faithfully."""

    key: tuple[Any, ...]
    owner: Pid
    tags: frozenset[str]
    body: Any


@dataclasses.dataclass
class Unregistered:
    value: int


REGISTERED: tuple[type, ...] = (Point, Order, Envelope)


# --- a nan-aware, type-exact equality ---------------------------------------------------


def same(a: Any, b: Any) -> bool:
    """``a == b`` recursively, with exact types, nan equal to nan, and -0.0 apart from 0.0."""
    if type(a) is not type(b):
        return False
    if type(a) is float:
        if math.isnan(a):
            return math.isnan(b)
        return bool(a == b) and math.copysign(1.0, a) == math.copysign(1.0, b)
    if type(a) in (list, tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if type(a) is dict:
        if len(a) != len(b):
            return False
        b_keys = {k: k for k in b}  # finds b's own key object equal to a's key
        return all(k in b_keys and same(k, b_keys[k]) and same(v, b[k]) for k, v in a.items())
    if type(a) in (set, frozenset):
        if len(a) != len(b):
            return False
        b_items = {x: x for x in b}
        return all(x in b_items and same(x, b_items[x]) for x in a)
    if type(a) is Crash:
        return (a.exception_type, a.message, a.traceback) == (b.exception_type, b.message, b.traceback)
    if dataclasses.is_dataclass(a) and not isinstance(a, type):
        return all(same(getattr(a, f.name), getattr(b, f.name)) for f in dataclasses.fields(a))
    if isinstance(a, msgspec.Struct) and type(a) in REGISTERED:
        return all(same(getattr(a, f), getattr(b, f)) for f in a.__struct_fields__)
    return bool(a == b)


def test_same_is_strict_about_types_and_nan() -> None:
    # The oracle itself: it must tell apart exactly what the codec could confuse.
    assert same(float("nan"), float("nan"))
    assert not same(0.0, -0.0)
    assert not same((1, 2), [1, 2])
    assert not same({1}, frozenset({1}))
    assert not same({True}, {1})
    assert not same({(1,): "a"}, {(True,): "a"})
    assert not same(Pid("n", 1, 2), Ref("n", 1, 2))
    assert not same(Crash("E", "m", "tb1"), Crash("E", "m", "tb2"))
    assert same({"a": [float("nan")]}, {"a": [float("nan")]})


# --- strategies -------------------------------------------------------------------------

ints = st.integers(min_value=INT64_MIN, max_value=UINT64_MAX)
small_ints = st.integers(min_value=INT64_MIN, max_value=2**63 - 1)
hashable_scalars = st.none() | st.booleans() | ints | st.floats(allow_nan=False) | st.text() | st.binary()
pids = st.builds(Pid, st.text(max_size=20), small_ints, small_ints)
refs = st.builds(Ref, st.text(max_size=20), small_ints, small_ints)
crashes = st.builds(Crash, st.text(max_size=20), st.text(max_size=40), st.text(max_size=40))
points = st.builds(Point, small_ints, small_ints, st.text(max_size=10))
orders = st.builds(Order, st.text(max_size=10), small_ints)

hashables = st.recursive(
    hashable_scalars | pids | refs | crashes | points | orders,
    lambda inner: st.tuples(inner) | st.lists(inner, max_size=4).map(tuple) | st.frozensets(inner, max_size=4),
    max_leaves=12,
)

leaves: st.SearchStrategy[Any] = st.one_of(
    st.none(), st.booleans(), ints, st.floats(), st.text(), st.binary(), pids, refs, crashes, points, orders
)

values = st.recursive(
    leaves,
    lambda inner: (
        st.lists(inner, max_size=5)
        | st.lists(inner, max_size=5).map(tuple)
        | st.dictionaries(st.text(max_size=8), inner, max_size=5)
        | st.dictionaries(hashables, inner, max_size=5)
        | st.sets(hashables, max_size=5)
        | st.frozensets(hashables, max_size=5)
        | st.builds(Envelope, st.lists(hashables, max_size=3).map(tuple), pids, st.frozensets(st.text()), inner)
    ),
    max_leaves=30,
)


def roundtrip(value: Any) -> Any:
    return decode_value(encode_value(value))


# --- round trips ------------------------------------------------------------------------


@SETTINGS
@given(values)
def test_any_value_round_trips_with_its_types(value: Any) -> None:
    decoded = roundtrip(value)
    assert same(value, decoded), f"{value!r} came back as {decoded!r}"


@SETTINGS
@given(hashables)
def test_hashable_values_round_trip_and_stay_hashable(value: Any) -> None:
    decoded = roundtrip(value)
    assert same(value, decoded)
    assert hash(decoded) == hash(value)


@pytest.mark.parametrize(
    "value",
    [
        None,
        True,
        False,
        0,
        INT64_MIN,
        UINT64_MAX,
        -1,
        1.5,
        float("inf"),
        float("-inf"),
        -0.0,
        "",
        "naïve ✓",
        b"",
        b"\x00\xff",
        [],
        (),
        {},
        set(),
        frozenset(),
        ("worker", 7),
        ((),),
        [(), [()]],
        {("worker", 7): "a", "plain": 1, 3: (4,)},
        {frozenset({1, 2}): {1, 2}, Pid("a@h:1", 9, 3): Ref("a@h:1", 9, 4)},
        {None: 1, True: 2, b"k": 3, 2.5: 4, "s": 5},
        {(1, ("nested", (2,))): [{(3,): frozenset({(4, 5)})}]},
        Crash("ValueError", "bad input", "Traceback ...\n"),
        {Crash("E", "m"): [Crash("F", "n")]},
    ],
    ids=repr,
)
def test_examples_round_trip_with_their_types(value: Any) -> None:
    assert same(value, roundtrip(value))


def test_nan_round_trips_as_nan() -> None:
    decoded = roundtrip([float("nan"), {"k": float("nan")}, (float("nan"),)])
    assert math.isnan(decoded[0])
    assert math.isnan(decoded[1]["k"])
    assert type(decoded[2]) is tuple
    assert math.isnan(decoded[2][0])


def test_tuple_names_stay_hashable_dict_keys() -> None:
    decoded = roundtrip({("worker", 7): Pid("a@h:1", 1, 2)})
    assert decoded[("worker", 7)] == Pid("a@h:1", 1, 2)


def test_bytearray_and_memoryview_are_sent_as_bytes() -> None:
    assert same(roundtrip([bytearray(b"ab"), memoryview(b"cd")]), [b"ab", b"cd"])


def test_crash_drops_the_local_exception_object() -> None:
    try:
        raise KeyError("gone")
    except KeyError as exc:
        crash = Crash.from_exception(exc)
    decoded = roundtrip(crash)
    assert same(crash, decoded)
    assert crash.exception is not None
    assert decoded.exception is None


# --- registered user types -------------------------------------------------------------


def test_registered_dataclass_round_trips() -> None:
    value = Point(1, -2, "p")
    decoded = roundtrip(value)
    assert type(decoded) is Point
    assert decoded == value


def test_registered_struct_round_trips() -> None:
    value = Order("tea", 3)
    decoded = roundtrip(value)
    assert type(decoded) is Order
    assert decoded == value


def test_registered_type_fields_keep_their_types() -> None:
    value = Envelope(("k", 1), Pid("a@h:1", 1, 2), frozenset({"x"}), {("t",): {Point(0, 0)}})
    decoded = roundtrip(value)
    assert type(decoded) is Envelope
    assert same(value, decoded)


def test_unregistered_dataclass_is_refused_naming_its_type() -> None:
    with pytest.raises(UnencodableValue, match="Unregistered"):
        encode_value(Unregistered(1))


def test_unregistered_type_nested_deep_is_refused_saying_where_it_is() -> None:
    # A state of a hundred fields with one lock in it: the type alone sends the user
    # looking; the path says which field.
    with pytest.raises(UnencodableValue, match="Unregistered") as caught:
        encode_value({"a": [(1, {"b": Unregistered(1)})]})
    assert caught.value.path == ("['a']", "[0]", "[1]", "['b']")
    assert str(caught.value).endswith("(at ['a'][0][1]['b'] in the value)")
    with pytest.raises(UnencodableValue) as caught:
        encode_value([Envelope(("k", 1), Pid("a@h:1", 1, 2), frozenset({"x"}), {("t",): {Point(0, 0), object()}})])
    assert caught.value.path == ("[0]", ".body", "[('t',)]", "{...}")
    with pytest.raises(UnencodableValue) as caught:
        encode_value({(1, object()): "v"})
    assert caught.value.path == ("[<a key>]", "[1]")
    with pytest.raises(UnencodableValue) as caught:
        encode_value(object())
    assert caught.value.path == ()
    assert "(at" not in str(caught.value)


@pytest.mark.parametrize("value", [object(), 2 + 3j, range(3), datetime.date(2020, 1, 1), type], ids=repr)
def test_other_types_are_refused_not_coerced(value: Any) -> None:
    with pytest.raises(UnencodableValue):
        encode_value(value)


def test_unencodable_value_is_a_type_error() -> None:
    # Callers that catch TypeError (as json.dumps users do) keep working.
    assert issubclass(UnencodableValue, TypeError)


def test_two_classes_under_one_wire_name_raise_type_error() -> None:
    @dataclasses.dataclass
    class First:
        a: int

    @dataclasses.dataclass
    class Second:
        a: int

    register_type(First, "distable-tests.codec.duplicate")
    register_type(First, "distable-tests.codec.duplicate")  # the same class again is fine
    with pytest.raises(TypeError, match="already registered"):
        register_type(Second, "distable-tests.codec.duplicate")
    assert type(roundtrip(First(1))) is First


def test_register_type_refuses_plain_classes() -> None:
    class Plain:
        pass

    with pytest.raises(TypeError, match=r"dataclass or msgspec\.Struct"):
        register_type(Plain)


# --- hostile and broken input -----------------------------------------------------------


def ext(code: int, payload: Any) -> bytes:
    """Raw msgpack for an extension value whose data is ``payload`` packed as msgpack."""
    return msgspec.msgpack.encode(msgspec.msgpack.Ext(code, msgspec.msgpack.encode(payload)))


def ext_raw(code: int, data: bytes) -> bytes:
    return msgspec.msgpack.encode(msgspec.msgpack.Ext(code, data))


def nested_arrays(depth: int) -> bytes:
    return b"\x91" * depth + b"\xc0"  # fixarray of one element, ``depth`` times, then nil


def nested_tuples(depth: int) -> bytes:
    data = msgspec.msgpack.encode(None)
    for _ in range(depth):
        data = ext_raw(EXT_TUPLE, b"\x91" + data)
    return data


HOSTILE: dict[str, bytes] = {
    "unknown extension code": ext(99, [1]),
    "negative extension code": ext(-5, [1]),
    "EXT_USER naming an unregistered type": ext(EXT_USER, ["os.system", ["echo hi"]]),
    "EXT_USER naming a builtin": ext(EXT_USER, ["builtins.object", []]),
    "EXT_USER with a non-string name": ext(EXT_USER, [["x"], []]),
    "EXT_USER with fields not a list": ext(EXT_USER, [f"{Point.__module__}.Point", {"x": 1}]),
    "EXT_USER with too few fields": ext(EXT_USER, [f"{Point.__module__}.Point", [1]]),
    "EXT_USER with too many fields": ext(EXT_USER, [f"{Point.__module__}.Point", [1, 2, "", 4]]),
    "EXT_USER not a pair": ext(EXT_USER, 7),
    "EXT_USER of three items": ext(EXT_USER, ["a", [], 3]),
    "EXT_MAP of odd length": ext(EXT_MAP, [1, 2, 3]),
    "EXT_MAP not an array": ext(EXT_MAP, {"a": 1}),
    "EXT_MAP with an unhashable key": ext(EXT_MAP, [[1], 2]),
    "EXT_MAP with garbage data": ext_raw(EXT_MAP, b"\xc1"),
    "EXT_SET with unhashable members": ext(EXT_SET, [[1]]),
    "EXT_SET of a scalar": ext(EXT_SET, 5),
    "EXT_TUPLE of a scalar": ext(EXT_TUPLE, 5),
    "EXT_TUPLE with trailing bytes": ext_raw(EXT_TUPLE, msgspec.msgpack.encode([1]) + b"\x01"),
    "EXT_PID of the wrong shape": ext(EXT_PID, ["n", "not an int", 3]),
    "EXT_PID too short": ext(EXT_PID, ["n", 1]),
    "EXT_CRASH of the wrong shape": ext(EXT_CRASH, [1, 2, 3]),
    "EXT_CRASH empty": ext_raw(EXT_CRASH, b""),
    "truncated array": msgspec.msgpack.encode([1, 2, 3])[:-1],
    "truncated str": msgspec.msgpack.encode("hello")[:-2],
    "truncated extension": ext(EXT_TUPLE, [1, 2])[:-1],
    "empty input": b"",
    "reserved byte 0xc1": b"\xc1",
    "trailing bytes": msgspec.msgpack.encode(1) + b"\x01",
    "array announcing 2**32-1 items": b"\xdd\xff\xff\xff\xff",
    "bin announcing 4 GiB": b"\xc6\xff\xff\xff\xff",
    "map with an unhashable key": b"\x81\x81\x01\x02\x03",
    "100k nested arrays": nested_arrays(100_000),
    "2k nested tuple extensions": nested_tuples(2_000),
}


@pytest.mark.parametrize("data", list(HOSTILE.values()), ids=list(HOSTILE))
def test_hostile_input_raises_decode_error_only(data: bytes) -> None:
    with pytest.raises(DecodeError):
        decode_value(data)


def test_decode_error_is_a_protocol_error() -> None:
    assert issubclass(DecodeError, ProtocolError)


def test_deep_nesting_is_refused_not_a_crash() -> None:
    with pytest.raises(DecodeError, match="recursion"):
        decode_value(nested_arrays(100_000))
    # The interpreter is fine afterwards.
    assert roundtrip([[[1]]]) == [[[1]]]


def check_built_only_allowed_types(value: Any) -> None:
    """Assert that ``value`` holds only what decoding is allowed to build."""
    allowed: tuple[type, ...] = (
        type(None),
        bool,
        int,
        float,
        str,
        bytes,
        list,
        tuple,
        dict,
        set,
        frozenset,
        Pid,
        Ref,
        Crash,
        *REGISTERED,
        # msgspec always decodes the msgpack timestamp extension (-1) as an aware
        # datetime; it cannot be turned off. Plain data, no user code runs.
        datetime.datetime,
    )
    assert type(value) in allowed, f"decoding built a {type(value)!r}"
    if type(value) in (list, tuple, set, frozenset):
        for item in value:
            check_built_only_allowed_types(item)
    elif type(value) is dict:
        for k, v in value.items():
            check_built_only_allowed_types(k)
            check_built_only_allowed_types(v)
    elif type(value) is Crash:
        assert value.exception is None


@SETTINGS
@given(st.binary(max_size=200))
def test_random_bytes_decode_or_raise_decode_error(data: bytes) -> None:
    try:
        value = decode_value(data)
    except DecodeError:
        return
    check_built_only_allowed_types(value)


ext_codes = st.sampled_from([EXT_TUPLE, EXT_PID, 3, EXT_SET, 5, EXT_CRASH, EXT_MAP, EXT_USER, 0, 8, 127, -1, -128])


@SETTINGS
@given(st.lists(st.tuples(ext_codes, st.binary(max_size=40)), min_size=1, max_size=4))
def test_random_extension_payloads_decode_or_raise_decode_error(parts: list[tuple[int, bytes]]) -> None:
    # Random bytes rarely form a valid extension header; build the headers and fuzz the data.
    data = msgspec.msgpack.encode([msgspec.msgpack.Ext(code, body) for code, body in parts])
    try:
        value = decode_value(data)
    except DecodeError:
        return
    check_built_only_allowed_types(value)


@SETTINGS
@given(values, st.data())
def test_corrupted_encodings_decode_or_raise_decode_error(value: Any, data: st.DataObject) -> None:
    encoded = bytearray(encode_value(value))
    for _ in range(data.draw(st.integers(1, 4), label="flips")):
        pos = data.draw(st.integers(0, len(encoded) - 1), label="position")
        encoded[pos] = data.draw(st.integers(0, 255), label="byte")
    cut = data.draw(st.integers(0, len(encoded)), label="cut")
    try:
        decoded = decode_value(bytes(encoded[:cut]))
    except DecodeError:
        return
    check_built_only_allowed_types(decoded)


# --- the batch path ---------------------------------------------------------------------


@settings(SETTINGS, max_examples=100)
@given(st.lists(values, min_size=1, max_size=8))
def test_send_envelopes_in_a_batch_decode_to_equal_payloads(payloads: list[Any]) -> None:
    dest = Pid("b@127.0.0.1:4370", 17, 5)
    writer = BatchWriter()
    for payload in payloads:
        writer.add(Send(dest, to_wire(payload)))
    frame = writer.take()
    assert frame is not None
    messages = batch_decoder.decode(memoryview(frame)[FRAME_HEADER:])
    assert len(messages) == len(payloads)
    for message, payload in zip(messages, payloads, strict=True):
        assert type(message) is Send
        assert message.to == dest
        assert same(payload, message.payload), f"{payload!r} came back as {message.payload!r}"


# --- the messages ------------------------------------------------------------------------


def test_every_peer_message_has_its_own_tag() -> None:
    tags = [cls.__struct_config__.tag for cls in get_args(PeerMessage)]
    assert len(tags) == len(set(tags)), sorted(tags)


def test_registry_requests_and_replies_keep_their_types_in_a_batch() -> None:
    pid = Pid("b@127.0.0.1:4370", 17, 5)
    name = ("worker", 7)
    spec = Spec("pkg.mod:Worker", to_wire([(1, 2), pid]), to_wire({"key": name}), "transient", 2.5)
    messages = [
        RegisterRequest(1, to_wire(name), spec),
        RegisterNameRequest(2, to_wire(name), pid),
        UnregisterRequest(3, "plain", pid),
        GroupJoinRequest(4, to_wire(frozenset({"g"})), pid),
        GroupLeaveRequest(5, "g", pid),
        RegistryReply(6, REGISTRY_OK, pid),
        RegistryReply(7, REGISTRY_ERROR, None, "FactoryError", "no such factory"),
    ]
    writer = BatchWriter()
    for message in messages:
        writer.add(message)
    frame = writer.take()
    assert frame is not None
    decoded: list[Any] = batch_decoder.decode(memoryview(frame)[FRAME_HEADER:])
    assert [type(m) for m in decoded] == [type(m) for m in messages]
    register, by_hand, _, join, _, ok, error = decoded
    assert register.name == name
    assert type(register.name) is tuple
    assert (register.spec.args, register.spec.kwargs) == ([(1, 2), pid], {"key": name})
    assert by_hand == RegisterNameRequest(2, name, pid)
    assert join.group == frozenset({"g"})
    assert (ok, error) == (messages[5], messages[6])


@pytest.mark.parametrize(
    "fields",
    [
        [46, "1", "name", ["f:g", [], {}, "transient", 1.0]],  # ref not an int
        [46, 1, "name", "not a spec"],
        [47, 1, "name", "not a pid"],
        [51, 1, "ok"],  # status not an int
    ],
)
def test_a_registry_message_with_fields_of_the_wrong_types_is_refused(fields: list[Any]) -> None:
    with pytest.raises(msgspec.ValidationError):
        single_decoder.decode(msgspec.msgpack.encode(fields))


def test_a_name_read_from_json_has_tuples_for_lists_at_any_depth() -> None:
    assert lists_as_tuples(["worker", [1, ["a"]], {"k": [2]}]) == ("worker", (1, ("a",)), {"k": [2]})
    assert lists_as_tuples("plain") == "plain"


def test_a_conflict_answer_that_says_the_winner_is_gone_reads_as_a_plain_answer_on_an_older_node() -> None:
    # ConflictStateTaken.winner_gone is appended: an older node's decoder (the message as
    # it was, ref only) ignores it, and retires its loser as it always did.
    class OldConflictStateTaken(msgspec.Struct, array_like=True, tag_field="t", tag=45):
        ref: int

    data = msgspec.msgpack.encode(ConflictStateTaken(7, winner_gone=True))
    assert msgspec.msgpack.decode(data, type=OldConflictStateTaken) == OldConflictStateTaken(7)
    assert single_decoder.decode(data) == ConflictStateTaken(7, winner_gone=True)
    assert single_decoder.decode(msgspec.msgpack.encode(OldConflictStateTaken(7))) == ConflictStateTaken(7)
