"""Wire messages between nodes: the handshake and the post-handshake envelopes.

Rules:
    * Message types are append-only: a tag is never reused or renumbered, a field is
      only ever appended with a default.
    * ``PROTOCOL_VERSION`` is agreed in the handshake (the lower of the two sides); a
      peer sends no message type newer than the agreed version.
    * Handshake messages are decoded by a strictly typed decoder with no extension
      hook, from frames of at most ``HANDSHAKE_MAX_FRAME`` bytes: nothing a peer
      sends before it authenticates can build anything but these few structs.
    * Payload fields are ``Any`` and hold values prepared by ``_codec.to_wire``.
"""

from __future__ import annotations

from typing import Any

import msgspec

from ._codec import ext_hook
from ._types import Pid, Ref

#: 1: everything up to tag 42. 2: ``CallReply`` status ``REPLY_UNDECODABLE`` and
#: ``DropNotice`` (tag 43); a node sends neither to a peer that agreed on 1. Also 2:
#: ``RegistryHello.wants_digest`` (a trailing field a version-1 decoder ignores) and
#: ``HandoffCancelled`` (tag 44: a version-1 peer never sends it, so a cancel to one is
#: answered by nothing, and its outcome stays unknown, as before version 2).
#: 3: the registry server's requests and replies (tags 46 to 51); to a peer that agreed
#: on 1 or 2 they travel as before, as lists in a ``CallRequest`` to its registry server
#: (local id 1), which still serves such lists from any peer.
#: 4: checkpoints (tags 52 to 56), and the fields appended for them (``Spec.replicas``,
#: ``Claim.lineage`` and ``base``, ``HandoffRequest.checkpoint``, ``ConflictState.holders``,
#: ``RegisterRequest.lineage`` and ``base``: an older decoder ignores trailing fields). A
#: node sends no checkpoint message to a peer that agreed on less, and never makes it a
#: standby (docs/internals.md, "Checkpoints").
#: 5: ``FlushAsk`` (tag 57): a new host asks a node it let through without a marker for
#: one, when that node comes back while the old pid still forwards; a node that agreed on
#: less is not asked (its gate is not closed again).
#: 6: ``Claim.ancestor_handoffs`` and ``HandoffRequest.ancestor_handoffs``, trailing fields
#: an older decoder ignores (an older peer's claims have none: its moves are told apart as
#: before); nothing is gated on it.
#: 7: ``RouteClosed`` (tag 58): a node that sees a handoff's claim while the old host is
#: down in its view (no link to it, nothing queued for it) tells the new host so at once,
#: instead of a marker relayed by the old host once that host is up there again; a new
#: host that agreed on less is told nothing (its gate waits as before).
PROTOCOL_VERSION = 7
MIN_PROTOCOL_VERSION = 1
HANDSHAKE_MAX_FRAME = 4096


class _Msg(msgspec.Struct, array_like=True, gc=False, tag_field="t"):
    pass


# --- handshake (before authentication) -------------------------------------------


class Hello(_Msg, tag=1):
    """Dialer -> acceptor: who I am, which versions I speak, my nonce."""

    version: int
    min_version: int
    name: str
    incarnation: int
    nonce: bytes
    expected: str  # the node name the dialer means to reach
    role: str = "server"  # appended: "client" nodes (tools) are linked with, not members


class Challenge(_Msg, tag=2):
    """Acceptor -> dialer: who I am, the agreed version, my nonce."""

    version: int
    name: str
    incarnation: int
    nonce: bytes
    role: str = "server"  # appended, as in Hello


class Proof(_Msg, tag=3):
    """Dialer -> acceptor: HMAC over both nonces and both identities."""

    mac: bytes


class Welcome(_Msg, tag=4):
    """Acceptor -> dialer: the acceptor's own HMAC; the link is up."""

    mac: bytes


class Reject(_Msg, tag=5):
    """Either side: the handshake is refused. ``reason`` is text (for people, and all a
    node before ``code`` was appended reads); ``code`` says which refusal (``REJECT_*``),
    so the dialer can tell a wrong cookie from a wrong node name at once."""

    reason: str
    code: int = 0


REJECT_OTHER = 0  # or a node that sends no code: read ``reason``
REJECT_NOT_AUTHORIZED = 1  # the dialer's proof of the cookie is wrong (nothing more is said)
REJECT_WRONG_NODE = 2  # the acceptor is not the node the dialer named
REJECT_VERSION = 3  # no protocol version in common
REJECT_DUPLICATE = 4  # a simultaneous dial or a duplicate link: benign, the other link wins


HandshakeMessage = Hello | Challenge | Proof | Welcome | Reject
handshake_decoder = msgspec.msgpack.Decoder(HandshakeMessage)
handshake_encoder = msgspec.msgpack.Encoder()

# --- after authentication ----------------------------------------------------------


class Send(_Msg, tag=16):
    """Deliver ``payload`` to ``to`` as an info message."""

    to: Pid
    payload: Any


class Cast(_Msg, tag=17):
    """Deliver ``payload`` to ``to``'s ``handle_cast``."""

    to: Pid
    payload: Any


class CallRequest(_Msg, tag=18):
    """Ask ``to`` for a reply; ``ref`` is the caller node's tag for it."""

    ref: int
    to: Pid
    sender: Pid | None
    payload: Any


class CallReply(_Msg, tag=19):
    """Answer to a ``CallRequest``: ``status`` says what ``payload`` is."""

    ref: int
    status: int
    payload: Any


REPLY_OK = 0
REPLY_EXIT = 1  # payload is the callee's exit reason (or "noproc")
REPLY_UNDECODABLE = 2  # (version 2) payload is [node, type name or None, detail]: see DropNotice


class MonitorRequest(_Msg, tag=20):
    """``watcher`` (on the sending node) monitors ``target`` (on the receiving node)."""

    ref: Ref
    watcher: Pid
    target: Pid


class DemonitorRequest(_Msg, tag=21):
    ref: Ref
    target: Pid


class DownNotice(_Msg, tag=22):
    """``target`` exited with ``reason``; tell the watcher registered under ``ref``."""

    ref: Ref
    watcher: Pid
    target: Pid
    reason: Any


class Tick(_Msg, tag=23):
    """Keep-alive sent on an idle link."""


# --- membership (SWIM-style probing and gossip over the links) ------------------------

MEMBER_ALIVE = 0
MEMBER_SUSPECT = 1
MEMBER_DEAD = 2
MEMBER_LEFT = 3


class Rumor(msgspec.Struct, array_like=True, gc=False, frozen=True):
    """What one node says about one member: its name, incarnation, refutation and status."""

    name: str
    incarnation: int
    refutation: int
    status: int


class Ping(_Msg, tag=24):
    """Direct probe; answered by ``Ack`` with the same ``seq``."""

    seq: int
    rumors: list[Rumor]


class Ack(_Msg, tag=25):
    seq: int
    rumors: list[Rumor]


class PingReq(_Msg, tag=26):
    """Probe ``target`` on my behalf; send me ``Ack(seq)`` if it answers."""

    seq: int
    target: str
    rumors: list[Rumor]


class MemberSync(_Msg, tag=27):
    """Push-pull: the sender's whole member table; ``reply`` asks for the receiver's."""

    rumors: list[Rumor]
    reply: bool


# --- registry: replicated claims, anti-entropy, handoff, conflicts -----------------------

CLAIM_NAME = 0
CLAIM_GROUP = 1


class Spec(msgspec.Struct, array_like=True, gc=False, frozen=True):
    """How to start a registered process: an importable factory and its arguments."""

    factory: str
    args: Any  # a list, prepared by to_wire
    kwargs: Any  # a dict with str keys, prepared by to_wire
    restart: str
    handoff_timeout: float
    replicas: int = 0  # (version 4) standbys of its checkpoints; 0: the hosting node's default


class Claim(msgspec.Struct, array_like=True, gc=False, frozen=True):
    """A host node's claim: ``pid`` (on the host) holds ``key`` (a name, or a group).

    ``clock`` orders the host's own changes; ``position`` is the key's ring position,
    computed once by the host. A claim made by a handoff names the pid it replaces
    (``moved_from``) and the old host's handoff id (``handoff``); ``ancestors`` are the
    pids the name moved through before that (the latest first, a few at most), so a node
    that missed a move in between still knows them superseded. ``lineage`` and ``base``
    (version 4): the name's line of checkpoints and the one it was restored from (see
    ``Lineage``); None for a name that has none (a ``register_name``, a group).
    ``ancestor_handoffs`` (version 6): beside each of ``ancestors``, the id of the handoff
    that moved that pid on (0: not known, or it did not move: a copy this one displaced),
    so that two lines that left one pid by two handoffs can be told apart wherever they
    meet (see the tracker core's resolution).
    """

    kind: int
    key: Any
    pid: Pid
    clock: int
    position: int
    spec: Spec | None = None
    moved_from: Pid | None = None
    handoff: int = 0
    ancestors: tuple[Pid, ...] = ()
    lineage: Lineage | None = None
    base: Lineage | None = None
    ancestor_handoffs: tuple[int, ...] = ()


class Removal(msgspec.Struct, array_like=True, gc=False, frozen=True):
    """A host withdraws a claim; ``successor`` names the pid a handoff moved it to."""

    kind: int
    key: Any
    pid: Pid
    clock: int
    successor: Pid | None = None


class RegistryHello(_Msg, tag=28):
    """Sent to every node that comes up: my role, and whether I am draining.

    ``wants_digest``: the receiver just came up in the sender's view (the sender dropped
    its claims while it was down, or never had them): answer with your digest. A
    receiver that had not itself seen the sender come up (a one-sided failure verdict:
    one of them was paused) asks back, so the first exchange after any verdict is
    symmetric, whichever side thinks it is new.
    """

    role: str
    leaving: bool
    wants_digest: bool = False


class Delta(_Msg, tag=29):
    """The sender's own new claims and removals, in the order it made them."""

    claims: list[Claim]
    removals: list[Removal]


class Digest(_Msg, tag=30):
    """A digest of the sender's own claims: one hash per bucket of positions."""

    buckets: list[int]


class SyncRequest(_Msg, tag=31):
    """Send me your claims in these buckets (their digests differ from my replica)."""

    buckets: list[int]


class SyncReply(_Msg, tag=32):
    """All the sender's claims in ``buckets``: they replace the receiver's replica there."""

    buckets: list[int]
    claims: list[Claim]


class HandoffRequest(_Msg, tag=33):
    """Old host -> new owner: start ``name`` here (with ``state`` if ``has_state``)."""

    hid: int
    name: Any
    spec: Spec
    old_pid: Pid
    has_state: bool
    state: Any
    ancestors: tuple[Pid, ...] = ()  # old_pid's own ancestors (see Claim)
    checkpoint: CheckpointHandover | None = None  # (version 4) where its checkpoints stand
    ancestor_handoffs: tuple[int, ...] = ()  # (version 6) beside ``ancestors`` (see Claim)


class HandoffAccepted(_Msg, tag=34):
    hid: int
    new_pid: Pid


class HandoffRefused(_Msg, tag=35):
    hid: int
    reason: str


class Forwarded(_Msg, tag=36):
    """A message that reached a handed-off pid, forwarded to its successor in order.

    ``kind`` is the mailbox kind (info, cast, call); for calls ``ref`` is the old
    host's call tag, which the reply must carry back to it.
    """

    to: Pid
    kind: int
    payload: Any
    ref: int


class FlushMarker(_Msg, tag=37):
    """Sender -> old host: every message I sent along the old route precedes this."""

    hid: int


class Flushed(_Msg, tag=38):
    """Old host -> new owner: everything ``node`` sent along the old route is forwarded."""

    hid: int
    node: str


class RouteClosed(_Msg, tag=58):
    """Sender -> new owner (version 7): ``old_host``, whose pid handoff ``hid`` moved, is
    down in my view, and I have no link to it and nothing queued for it: nothing I sent
    along the old route can still reach the new copy, so do not wait for my marker (7)."""

    hid: int
    old_host: str


class FlushAsk(_Msg, tag=57):
    """New owner -> a sender its gate holds again (9L): once you have seen my claim of
    ``name`` (moved from ``old_pid`` by handoff ``hid``), send your ``FlushMarker(hid)`` to
    ``old_pid``'s node again (the one you sent may have been lost with a link)."""

    hid: int
    old_pid: Pid
    name: Any


class ConflictState(_Msg, tag=39):
    """After a netsplit: the losing copy's state for the surviving copy's resolve_conflict.

    ``ref`` (when not 0): the receiver answers ``ConflictStateTaken(ref)`` once the state
    is in the winner's mailbox (or passed on to its successor's node), and takes a
    repeated ``ref`` from the same node once only.
    """

    name: Any
    winner: Pid
    has_state: bool
    state: Any
    ref: int = 0
    holders: list[Holder] = []  # (version 4) the nodes holding the loser's checkpoints


class ConflictStateTaken(_Msg, tag=45):
    """The answer to ``ConflictState(ref)``: the state reached the winner. Until it comes,
    the losing copy stays frozen; without it, the loser resumes and the conflict is
    settled again later (a state lost with a link would lose what the loser had
    acknowledged).

    ``winner_gone``: the state did not reach the winner, which is gone (it exited, or its
    node restarted): the loser resumes and the conflict is settled again from the claims.
    An older node ignores the field and retires its loser, as it always did."""

    ref: int
    winner_gone: bool = False


class RegistryLeaving(_Msg, tag=40):
    """The sender is draining: leave it out of placement; it hands its names off."""


class HandoffCommit(_Msg, tag=41):
    """Old host -> new owner: the old mailbox is forwarded; claim the name now."""

    hid: int


class HandoffCancel(_Msg, tag=42):
    """Old host -> new owner: the handoff is abandoned; stop the process you started."""

    hid: int


class HandoffCancelled(_Msg, tag=44):
    """New owner -> old host, the answer to ``HandoffCancel``: whether the move happened.

    ``committed``: the new owner had claimed the name already (it saw the old host fail
    and kept the process it was handed), as ``new_pid``; the old host must then commit
    too (forward, retire, stop its copy) instead of resuming it.
    """

    hid: int
    committed: bool
    new_pid: Pid | None = None


class DropNotice(_Msg, tag=43):
    """(Version 2) Receiver -> sender: I could not decode a message you sent and dropped
    it. ``tag`` is the dropped message's tag (``Send``, ``Cast``, ``Forwarded``...), ``to``
    its addressee, ``type_name`` the user type I do not know (or None), ``detail`` why.

    A call is answered by ``CallReply(status=REPLY_UNDECODABLE)`` instead.
    """

    tag: int
    to: Pid | None
    type_name: str | None
    detail: str


# --- the registry server: registration requests and their replies (version 3) ----------


class RegisterRequest(_Msg, tag=46):
    """Caller -> the name's owner: start ``name`` from ``spec`` there and claim it.

    Answered by ``RegistryReply(ref)``. ``ref`` is the caller node's tag for the request,
    from the same counter as its calls' (a ``CallReply(ref)`` can answer it too: the
    receiver could not decode it). ``name`` and the spec's arguments are prepared by
    ``_codec.to_wire``, as payloads are.
    """

    ref: int
    name: Any
    spec: Spec
    # (version 4) a restart asked of the owner: the checkpoints of the claim that ended,
    # which the owner restores before it starts the process (None: a fresh start)
    lineage: Lineage | None = None
    base: Lineage | None = None


class RegisterNameRequest(_Msg, tag=47):
    """Caller -> ``pid``'s host: register the running process ``pid`` as ``name``."""

    ref: int
    name: Any
    pid: Pid


class UnregisterRequest(_Msg, tag=48):
    """Caller -> ``pid``'s host: remove its claim of ``name`` by ``pid`` (the host follows
    ``pid`` to its successor if it was handed off)."""

    ref: int
    name: Any
    pid: Pid


class GroupJoinRequest(_Msg, tag=49):
    """Caller -> ``pid``'s host: add ``pid`` to ``group``."""

    ref: int
    group: Any
    pid: Pid


class GroupLeaveRequest(_Msg, tag=50):
    """Caller -> ``pid``'s host: take ``pid`` out of ``group``."""

    ref: int
    group: Any
    pid: Pid


#: A request to a registry server: the receiver answers each with ``RegistryReply(ref)``.
RegistryRequest = RegisterRequest | RegisterNameRequest | UnregisterRequest | GroupJoinRequest | GroupLeaveRequest

REGISTRY_OK = 0  # done: ``pid`` is the process registered or joined, or the one whose claim was removed
REGISTRY_EXISTS = 1  # the name is registered already, to ``pid`` (register, register_name)
REGISTRY_ERROR = 2  # refused: ``error`` names the exception (``FactoryError``...), ``detail`` is its text


class RegistryReply(_Msg, tag=51):
    """A registry server's answer to the request ``ref``: ``status`` is ``REGISTRY_*`` (an
    int, not an enum, so that a status appended later still decodes on an older node).

    ``pid`` is None when an unregister or a leave found no claim to remove.
    """

    ref: int
    status: int
    pid: Pid | None = None
    error: str = ""
    detail: str = ""


# --- checkpoints (version 4) ---------------------------------------------------------------
#
# docs/internals.md, "Checkpoints". ``name`` is prepared by ``_codec.to_wire``; ``state`` is
# the user's state already encoded (a standby never decodes it).


class Lineage(msgspec.Struct, array_like=True, gc=False, frozen=True, order=True):
    """A line of checkpoints of one name: begun by the process ``origin``; ordered by
    ``epoch``, then ``origin``. A restart elsewhere begins one with a higher epoch; a
    handoff (``Resume``) continues it."""

    epoch: int
    origin: Pid


class Checkpoint(msgspec.Struct, array_like=True, gc=False, frozen=True):
    """One checkpoint of ``name``: seq ``seq`` of ``lineage`` (which began from ``base``),
    written by the process ``writer``; ``spec`` says how to start the name again."""

    name: Any
    lineage: Lineage
    base: Lineage | None
    seq: int
    writer: Pid
    state: bytes
    spec: Spec | None = None


class Holder(msgspec.Struct, array_like=True, gc=False, frozen=True):
    """``node`` may hold a record of ``lineage`` up to ``seq``: to be dropped later."""

    node: str
    lineage: Lineage
    seq: int


class CheckpointHandover(msgspec.Struct, array_like=True, gc=False, frozen=True):
    """Where a name's checkpoints stand, for its new host (in a handoff) or the winner of a
    conflict: the lineage and seq to continue, the nodes that may hold its records, and
    the last checkpoint's state (for a process that answered ``Restart()``)."""

    lineage: Lineage
    base: Lineage | None
    seq: int
    holders: list[Holder]
    state: bytes | None = None


class CheckpointPut(_Msg, tag=52):
    """Host -> standby: keep ``checkpoint``; answered by ``CheckpointAck``."""

    checkpoint: Checkpoint


class CheckpointAck(_Msg, tag=53):
    """Standby -> host. ``ok``: it holds ``lineage`` at ``seq`` (or later: ``seq`` is what
    it holds). Not ``ok``: it holds the newer lineage ``held``, last written by
    ``writer``, and refused the put. ``dropped``: the answer to a ``CheckpointDrop`` (of
    ``lineage`` up to ``seq``). ``incarnation``: the standby's, so that an answer of an
    incarnation that died never counts for the next one."""

    name: Any
    lineage: Lineage
    seq: int
    ok: bool = True
    held: Lineage | None = None
    writer: Pid | None = None
    dropped: bool = False
    incarnation: int = 0


class CheckpointDrop(_Msg, tag=54):
    """Host -> standby: delete your record of ``name`` if it is of ``lineage`` at a seq of
    at most ``upto``; answered by ``CheckpointAck(dropped=True)``."""

    name: Any
    lineage: Lineage
    upto: int


class CheckpointFetch(_Msg, tag=55):
    """A node restarting names -> every server node up: what do you hold of ``names``?"""

    ref: int
    names: list[Any]


class CheckpointHave(_Msg, tag=56):
    """The answer to ``CheckpointFetch(ref)``: every record held for those names, and the
    server nodes the sender sees up (``peers``: the restore asks those it does not know)."""

    ref: int
    checkpoints: list[Checkpoint]
    peers: list[str] = []


#: The checkpoint messages (version 4).
CheckpointMessage = CheckpointPut | CheckpointAck | CheckpointDrop | CheckpointFetch | CheckpointHave


PeerMessage = (
    Send
    | Cast
    | CallRequest
    | CallReply
    | MonitorRequest
    | DemonitorRequest
    | DownNotice
    | Tick
    | Ping
    | Ack
    | PingReq
    | MemberSync
    | RegistryHello
    | Delta
    | Digest
    | SyncRequest
    | SyncReply
    | HandoffRequest
    | HandoffAccepted
    | HandoffRefused
    | Forwarded
    | FlushMarker
    | Flushed
    | ConflictState
    | RegistryLeaving
    | HandoffCommit
    | HandoffCancel
    | DropNotice
    | HandoffCancelled
    | ConflictStateTaken
    | RegisterRequest
    | RegisterNameRequest
    | UnregisterRequest
    | GroupJoinRequest
    | GroupLeaveRequest
    | RegistryReply
    | CheckpointPut
    | CheckpointAck
    | CheckpointDrop
    | CheckpointFetch
    | CheckpointHave
    | FlushAsk
    | RouteClosed
)
batch_decoder = msgspec.msgpack.Decoder(list[PeerMessage], ext_hook=ext_hook)
single_decoder = msgspec.msgpack.Decoder(PeerMessage, ext_hook=ext_hook)
raw_batch_decoder = msgspec.msgpack.Decoder(list[msgspec.Raw])
#: Decodes one message's envelope without rebuilding any extension value: the user
#: payload keeps them as ``msgspec.msgpack.Ext``. For a message ``single_decoder`` refused.
envelope_decoder = msgspec.msgpack.Decoder(PeerMessage)


class Undecoded:
    """Not a wire message: what the transport hands on in place of a message whose
    envelope decoded but whose user payload did not (a type this node does not know).

    ``message`` is the envelope, its payload holding raw ``msgspec.msgpack.Ext`` values
    (never handed to user code); ``type_name`` and ``detail`` say what failed.
    """

    __slots__ = ("detail", "message", "type_name")

    def __init__(self, message: Any, type_name: str | None, detail: str) -> None:
        self.message = message
        self.type_name = type_name
        self.detail = detail

    def __repr__(self) -> str:
        return f"Undecoded({type(self.message).__name__}, {self.detail!r})"
