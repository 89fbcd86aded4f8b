"""The wire layer: pure message types, the value codec and framing. No I/O."""

from ._codec import decode_value, encode_value, ext_hook, lists_as_tuples, register_type, to_wire
from ._framing import DEFAULT_MAX_FRAME_SIZE, BatchWriter, FrameDecoder, encode_frame
from ._messages import PROTOCOL_VERSION
from ._types import KILLED, NOCONNECTION, NOPROC, NORMAL, SHUTDOWN, Crash, Pid, Ref

__all__ = [
    "DEFAULT_MAX_FRAME_SIZE",
    "KILLED",
    "NOCONNECTION",
    "NOPROC",
    "NORMAL",
    "PROTOCOL_VERSION",
    "SHUTDOWN",
    "BatchWriter",
    "Crash",
    "FrameDecoder",
    "Pid",
    "Ref",
    "decode_value",
    "encode_frame",
    "encode_value",
    "ext_hook",
    "lists_as_tuples",
    "register_type",
    "to_wire",
]
