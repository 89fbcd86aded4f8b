"""Length-prefixed frames, and batches of messages packed into one frame.

Rules:
    * A frame is a 4-byte big-endian length followed by that many bytes of body.
    * A frame longer than the receiver's ``max_frame_size`` is a protocol error: the
      receiver refuses it from the header alone, before buffering the body.
    * After the handshake, a frame's body is one msgpack array of messages (a batch):
      the sender appends each message as it is sent (so the message is copied at send
      time, as in Erlang) and writes the whole batch once per event-loop turn.

Theory of operation: ``BatchWriter`` keeps one ``bytearray`` that starts with 9
reserved bytes (frame length, msgpack ``array32`` header) and appends each encoded
message with ``Encoder.encode_into``: no per-message bytes objects. ``take()``
patches the header and hands the buffer over. ``FrameDecoder.feed`` slices whole
frames out of arriving bytes without copying when a read holds only whole frames.
"""

from __future__ import annotations

import struct
from typing import Any

import msgspec

from .._errors import FrameTooLarge, MessageTooLarge

FRAME_HEADER = 4
_BATCH_HEADER = FRAME_HEADER + 5  # frame length + msgpack array32 header (0xdd + u32)
_LEN = struct.Struct(">I")
_BATCH = struct.Struct(">IBI")
DEFAULT_MAX_FRAME_SIZE = 8 * 1024 * 1024


def encode_frame(body: bytes) -> bytes:
    """Prefix ``body`` with its length."""
    return _LEN.pack(len(body)) + body


class BatchWriter:
    """Accumulates encoded messages into batch frames.

    Normally everything waiting goes out as one batch frame; a message that fits a frame
    on its own but not in the current batch seals that batch and starts the next one, so
    a backlog (a paused or not yet connected link) may span several frames.

    Not thread-safe; owned by one peer link on the event loop.
    """

    __slots__ = ("_batch_count", "_buf", "_encode_into", "_sealed", "count", "max_frame_size")

    def __init__(self, max_frame_size: int = DEFAULT_MAX_FRAME_SIZE) -> None:
        self._encode_into = msgspec.msgpack.Encoder().encode_into
        self.max_frame_size = max_frame_size
        self._buf = bytearray(_BATCH_HEADER)
        self._batch_count = 0  # messages in ``_buf``
        self._sealed = bytearray()  # whole frames finished before ``_buf`` was started
        self.count = 0  # messages waiting in all

    def add(self, message: Any) -> int:
        """Append one message; return the bytes now waiting (``len(self)``).

        Raises:
            MessageTooLarge: the message alone would not fit in a frame; the batch is
                left as it was.
        """
        buf = self._buf
        before = len(buf)
        try:
            self._encode_into(message, buf, -1)
        except BaseException:
            del buf[before:]  # a failed encode leaves part of the message behind: drop it
            raise
        if len(buf) - FRAME_HEADER > self.max_frame_size:
            size = len(buf) - before
            if not self._batch_count or size + _BATCH_HEADER - FRAME_HEADER > self.max_frame_size:
                del buf[before:]
                raise MessageTooLarge(f"message of {size} bytes exceeds the maximum frame size {self.max_frame_size}")
            # It fits a frame of its own: seal the current batch, start the next with it.
            encoded = buf[before:]
            del buf[before:]
            self._seal()
            self._buf += encoded
        self._batch_count += 1
        self.count += 1
        return len(self._sealed) + len(self._buf) - _BATCH_HEADER

    def _seal(self) -> None:
        buf = self._buf
        _BATCH.pack_into(buf, 0, len(buf) - FRAME_HEADER, 0xDD, self._batch_count)
        self._sealed += buf
        self._buf = bytearray(_BATCH_HEADER)
        self._batch_count = 0

    def __len__(self) -> int:
        """Bytes waiting (0 when no message is waiting)."""
        return len(self._sealed) + (len(self._buf) - _BATCH_HEADER if self._batch_count else 0)

    def take(self) -> bytearray | None:
        """Return the finished frame (or frames, back to back) and start anew, or None when empty."""
        if not self.count:
            return None
        self.count = 0
        if not self._sealed:  # the usual case: one batch, handed over without a copy
            buf = self._buf
            _BATCH.pack_into(buf, 0, len(buf) - FRAME_HEADER, 0xDD, self._batch_count)
            self._buf = bytearray(_BATCH_HEADER)
            self._batch_count = 0
            return buf
        if self._batch_count:
            self._seal()
        frames, self._sealed = self._sealed, bytearray()
        return frames

    def clear(self) -> int:
        """Drop every waiting message; return how many there were."""
        dropped = self.count
        self._buf = bytearray(_BATCH_HEADER)
        self._sealed = bytearray()
        self._batch_count = 0
        self.count = 0
        return dropped


class FrameDecoder:
    """Splits a byte stream into frame bodies.

    Raises ``FrameTooLarge`` from ``feed`` as soon as a header announces an oversized
    frame; the stream is then unusable and the caller closes the connection.
    """

    __slots__ = ("_buf", "max_frame_size")

    def __init__(self, max_frame_size: int = DEFAULT_MAX_FRAME_SIZE) -> None:
        self.max_frame_size = max_frame_size
        self._buf = bytearray()

    @property
    def buffered(self) -> int:
        """Bytes of an incomplete frame held back."""
        return len(self._buf)

    def feed(self, data: bytes | bytearray | memoryview) -> list[memoryview | bytes]:
        """Consume ``data``; return the bodies of every frame it completed."""
        if not self._buf and type(data) is bytes and len(data) >= FRAME_HEADER:
            # The usual read between two nodes that take turns: exactly one whole frame.
            (length,) = _LEN.unpack_from(data)
            if length + FRAME_HEADER == len(data) and length <= self.max_frame_size:
                return [memoryview(data)[FRAME_HEADER:]]
        if self._buf:
            self._buf += data
            source: bytes | bytearray = self._buf
        else:
            source = bytes(data) if not isinstance(data, bytes) else data
        frames: list[memoryview | bytes] = []
        pos = 0
        end = len(source)
        limit = self.max_frame_size
        view = memoryview(source) if source is not self._buf else None
        while end - pos >= FRAME_HEADER:
            (length,) = _LEN.unpack_from(source, pos)
            if length > limit:
                raise FrameTooLarge(f"frame of {length} bytes announced; the maximum is {limit}")
            start = pos + FRAME_HEADER
            if end - start < length:
                break
            if view is not None:
                frames.append(view[start : start + length])
            else:
                frames.append(bytes(source[start : start + length]))
            pos = start + length
        if source is self._buf:
            del self._buf[:pos]
        elif pos < end:
            self._buf += source[pos:]
        return frames
