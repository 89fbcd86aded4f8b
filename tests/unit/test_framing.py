"""Framing: length-prefixed frames in, bodies out; batches of messages in one frame.

Hypothesis runs derandomized (reproducible; the falsifying example is printed on failure).
"""

from __future__ import annotations

import struct
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from distable._errors import FrameTooLarge, MessageTooLarge
from distable.wire import DEFAULT_MAX_FRAME_SIZE, BatchWriter, FrameDecoder, encode_frame
from distable.wire._framing import FRAME_HEADER

SETTINGS = settings(derandomize=True, deadline=None, database=None, print_blob=True, max_examples=200)


def as_kind(kind: str, data: bytes) -> bytes | bytearray | memoryview:
    if kind == "bytearray":
        return bytearray(data)
    if kind == "memoryview":
        return memoryview(bytearray(data))
    return data


def header(length: int) -> bytes:
    return struct.pack(">I", length)


# --- FrameDecoder -------------------------------------------------------------------------


bodies = st.lists(st.binary(max_size=64), max_size=12)


@SETTINGS
@given(bodies, st.data())
def test_frames_split_anywhere_come_out_whole_and_in_order(frames: list[bytes], data: st.DataObject) -> None:
    stream = b"".join(encode_frame(b) for b in frames)
    cuts = sorted(data.draw(st.sets(st.integers(0, len(stream)), max_size=20), label="cuts"))
    kinds = st.sampled_from(["bytes", "bytearray", "memoryview"])
    decoder = FrameDecoder()
    received: list[memoryview | bytes] = []
    start = 0
    for end in [*cuts, len(stream)]:
        received.extend(decoder.feed(as_kind(data.draw(kinds, label="kind"), stream[start:end])))
        start = end
    # Compared only at the end: bodies handed out earlier must stay valid after later feeds.
    assert [bytes(f) for f in received] == frames
    assert decoder.buffered == 0


def test_every_single_split_point_yields_the_same_frames() -> None:
    frames = [b"", b"a", b"hello", b"\x00" * 10, b""]
    stream = b"".join(encode_frame(b) for b in frames)
    for cut in range(len(stream) + 1):
        decoder = FrameDecoder()
        out = decoder.feed(stream[:cut]) + decoder.feed(stream[cut:])
        assert [bytes(f) for f in out] == frames, f"split at byte {cut}"
        assert decoder.buffered == 0


def test_every_pair_of_split_points_yields_the_same_frames() -> None:
    frames = [b"xy", b"", b"abc"]
    stream = b"".join(encode_frame(b) for b in frames)
    for i in range(len(stream) + 1):
        for j in range(i, len(stream) + 1):
            decoder = FrameDecoder()
            out = decoder.feed(stream[:i]) + decoder.feed(stream[i:j]) + decoder.feed(stream[j:])
            assert [bytes(f) for f in out] == frames, f"split at bytes {i} and {j}"


def test_byte_by_byte_feeding_yields_each_frame_once_complete() -> None:
    stream = encode_frame(b"abc") + encode_frame(b"de")
    decoder = FrameDecoder()
    outputs = [decoder.feed(stream[i : i + 1]) for i in range(len(stream))]
    completed_at = [i for i, out in enumerate(outputs) if out]
    assert completed_at == [FRAME_HEADER + 3 - 1, len(stream) - 1]
    assert [bytes(f) for out in outputs for f in out] == [b"abc", b"de"]


def test_partial_frame_is_held_back_and_counted() -> None:
    decoder = FrameDecoder()
    assert decoder.feed(header(5) + b"ab") == []
    assert decoder.buffered == FRAME_HEADER + 2
    assert [bytes(f) for f in decoder.feed(b"cde")] == [b"abcde"]
    assert decoder.buffered == 0


def test_zero_length_frames() -> None:
    decoder = FrameDecoder()
    out = decoder.feed(encode_frame(b"") * 3)
    assert [bytes(f) for f in out] == [b"", b"", b""]
    assert decoder.buffered == 0


def test_empty_feed_yields_nothing() -> None:
    decoder = FrameDecoder()
    assert decoder.feed(b"") == []
    assert decoder.feed(header(2)) == []
    assert decoder.feed(b"") == []
    assert [bytes(f) for f in decoder.feed(b"ok")] == [b"ok"]


def test_header_announcing_too_much_raises_before_the_body_arrives() -> None:
    decoder = FrameDecoder(max_frame_size=100)
    with pytest.raises(FrameTooLarge, match="101"):
        decoder.feed(header(101))  # the header alone, no body byte yet


def test_header_announcing_too_much_split_across_reads_raises_once_complete() -> None:
    decoder = FrameDecoder(max_frame_size=100)
    assert decoder.feed(header(2**32 - 1)[:2]) == []
    with pytest.raises(FrameTooLarge):
        decoder.feed(header(2**32 - 1)[2:])


def test_oversized_header_after_a_good_frame_raises() -> None:
    decoder = FrameDecoder(max_frame_size=100)
    with pytest.raises(FrameTooLarge):
        decoder.feed(encode_frame(b"fine") + header(1000))


def test_frame_of_exactly_max_size_is_accepted() -> None:
    decoder = FrameDecoder(max_frame_size=100)
    body = bytes(range(100))
    assert decoder.feed(encode_frame(body)[:50]) == []
    assert [bytes(f) for f in decoder.feed(encode_frame(body)[50:])] == [body]


def test_a_read_of_exactly_one_whole_frame_yields_its_body_and_keeps_nothing() -> None:
    # The usual read between two nodes taking turns, which feed takes on a shorter path.
    decoder = FrameDecoder(max_frame_size=16)
    assert [bytes(f) for f in decoder.feed(encode_frame(b"abc"))] == [b"abc"]
    assert [bytes(f) for f in decoder.feed(encode_frame(b""))] == [b""]
    assert decoder.buffered == 0
    with pytest.raises(FrameTooLarge):
        decoder.feed(encode_frame(b"x" * 17))


def test_default_max_frame_size_is_enforced() -> None:
    with pytest.raises(FrameTooLarge):
        FrameDecoder().feed(header(DEFAULT_MAX_FRAME_SIZE + 1))


@pytest.mark.parametrize("kind", ["bytearray", "memoryview"])
def test_mutable_inputs_are_copied_so_bodies_do_not_change(kind: str) -> None:
    backing = bytearray(encode_frame(b"first") + encode_frame(b"sec"))
    data: bytearray | memoryview = backing if kind == "bytearray" else memoryview(backing)
    decoder = FrameDecoder()
    out = decoder.feed(data)
    backing[:] = b"\xff" * len(backing)  # the transport may reuse its read buffer
    assert [bytes(f) for f in out] == [b"first", b"sec"]


@pytest.mark.parametrize("kind", ["bytearray", "memoryview"])
def test_mutable_inputs_completing_a_buffered_frame(kind: str) -> None:
    decoder = FrameDecoder()
    assert decoder.feed(as_kind(kind, header(4) + b"ab")) == []
    backing = bytearray(b"cd" + encode_frame(b"ef"))
    out = decoder.feed(backing if kind == "bytearray" else memoryview(backing))
    backing[:] = b"\x00" * len(backing)
    assert [bytes(f) for f in out] == [b"abcd", b"ef"]


# --- BatchWriter --------------------------------------------------------------------------

messages = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.text(max_size=20) | st.binary(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
    max_leaves=10,
)


def parse_batch(frame: bytearray, max_frame_size: int = DEFAULT_MAX_FRAME_SIZE) -> list[Any]:
    """The receiving side: a FrameDecoder yields one body, a msgpack array of messages."""
    bodies = FrameDecoder(max_frame_size).feed(frame)
    assert len(bodies) == 1
    decoded = msgspec.msgpack.decode(bodies[0])
    assert isinstance(decoded, list)
    return decoded


def test_empty_writer() -> None:
    writer = BatchWriter()
    assert writer.count == 0
    assert len(writer) == 0
    assert writer.take() is None
    assert writer.clear() == 0


def test_len_counts_the_encoded_bytes_of_waiting_messages() -> None:
    writer = BatchWriter()
    writer.add("hello")
    writer.add([1, 2, 3])
    assert writer.count == 2
    assert len(writer) == len(msgspec.msgpack.encode("hello")) + len(msgspec.msgpack.encode([1, 2, 3]))


def test_take_hands_over_the_frame_and_starts_a_new_batch() -> None:
    writer = BatchWriter()
    writer.add(1)
    writer.add("two")
    frame = writer.take()
    assert frame is not None
    assert parse_batch(frame) == [1, "two"]
    assert writer.count == 0
    assert len(writer) == 0
    assert writer.take() is None
    writer.add(3)
    second = writer.take()
    assert second is not None
    assert parse_batch(second) == [3]
    assert parse_batch(frame) == [1, "two"]  # the first frame is not reused


def test_clear_drops_waiting_messages_and_reports_how_many() -> None:
    writer = BatchWriter()
    for i in range(5):
        writer.add(i)
    assert writer.clear() == 5
    assert writer.count == 0
    assert len(writer) == 0
    assert writer.take() is None
    writer.add("after")
    frame = writer.take()
    assert frame is not None
    assert parse_batch(frame) == ["after"]


@SETTINGS
@given(st.lists(messages, min_size=1, max_size=20))
def test_frame_holds_a_msgpack_array_of_exactly_count_messages(batch: list[Any]) -> None:
    writer = BatchWriter()
    for message in batch:
        writer.add(message)
    assert writer.count == len(batch)
    frame = writer.take()
    assert frame is not None
    (length,) = struct.unpack_from(">I", frame)
    assert length == len(frame) - FRAME_HEADER
    assert parse_batch(frame) == batch


def test_message_larger_than_a_frame_raises_and_keeps_earlier_messages() -> None:
    writer = BatchWriter(max_frame_size=100)
    writer.add("early")
    writer.add([1, 2])
    size = len(writer)
    with pytest.raises(MessageTooLarge, match="100"):
        writer.add(b"x" * 200)
    assert writer.count == 2
    assert len(writer) == size
    writer.add("late")
    frame = writer.take()
    assert frame is not None
    assert parse_batch(frame, 100) == ["early", [1, 2], "late"]


def test_message_filling_the_frame_exactly_fits_and_the_receiver_accepts_it() -> None:
    max_size = 100
    array_header = 5  # the batch's msgpack array32 header is part of the frame body
    fitting = b"x" * (max_size - array_header - 2)  # bin8: 2 bytes of header
    assert len(msgspec.msgpack.encode(fitting)) == max_size - array_header
    writer = BatchWriter(max_frame_size=max_size)
    writer.add(fitting)
    frame = writer.take()
    assert frame is not None
    assert len(frame) == FRAME_HEADER + max_size
    assert parse_batch(frame, max_size) == [fitting]
    with pytest.raises(MessageTooLarge):
        writer.add(fitting + b"x")
    assert writer.count == 0


class NotEncodable:
    pass


@pytest.mark.parametrize("bad", [2**64, -(2**63) - 1, NotEncodable()], ids=["int > 2**64-1", "int < -2**63", "object"])
def test_message_that_fails_to_encode_leaves_the_batch_intact(bad: Any) -> None:
    writer = BatchWriter()
    writer.add("before")
    size = len(writer)
    with pytest.raises((OverflowError, TypeError)):
        writer.add(["partly encoded", bad])
    assert writer.count == 1
    assert len(writer) == size
    writer.add("after")
    frame = writer.take()
    assert frame is not None
    assert parse_batch(frame) == ["before", "after"]
