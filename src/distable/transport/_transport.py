"""Authenticated links between nodes (TCP, or Unix domain sockets on one host): one per
pair, ordered, batched.

Rules:
    * One link per pair of nodes. When both dial at once, the link dialed by the node
      with the smaller name is kept: both sides apply the same rule, so they agree.
    * One dial at a time, and none while a link to the peer is up or being accepted: the
      acceptor takes a peer's new link in place of its old one (the peer saw it die) and
      closes the old one with what was sent on it unread.
    * Nothing a peer sends before it has authenticated is decoded beyond the handshake
      structs (``wire._messages``), and a handshake frame is at most 4 KiB.
    * A peer that breaks the protocol (oversized frame, garbage, bad handshake, silent
      past the handshake timeout) is logged by name and address and disconnected; an
      unknown message type is logged and dropped. The node keeps serving everyone else.
    * Messages to a peer are ordered: one ``BatchWriter`` per peer, one stream.
    * A peer on this host is dialed over its Unix domain socket first, if it has one
      (``_unix``; ``TransportConfig.unix_sockets``), and over TCP at once if that path is
      absent or refuses. Such a link is a link like any other: the same handshake (and
      TLS), framing, batching, backpressure and rules.
    * Small messages are coalesced: one frame and one ``write`` per peer per event-loop
      turn (or sooner when a batch passes ``flush_bytes``; what is posted to a peer while
      its data is dispatched, such as replies, when that dispatch ends).
    * Backpressure: when the socket's buffer is full (``pause_writing``) or a batch
      passes ``soft_limit``, ``post`` returns a future that senders wait on; past
      ``hard_limit`` the peer is disconnected as too slow (its monitors fire
      "noconnection"), so memory stays bounded.
    * Reconnection backs off exponentially with jitter, capped at ``backoff_max``;
      repeated failure lines are rate-limited.
    * A peer is kept while there is a reason to: a link, a dial, queued messages, or
      ``connect()`` (membership) wanting it. Once none is left, its entry (statistics,
      redial backoff) goes ``forget_peer_after`` seconds later, so the peers of a
      long-running node do not pile up as short-lived nodes come and go.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import random
import socket
import ssl
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, cast

import msgspec

from .._backoff import Backoff
from .._errors import DecodeError, FrameTooLarge, HandshakeError, ProtocolError
from .._log import RateLimitedLog
from ..wire import DEFAULT_MAX_FRAME_SIZE, BatchWriter, FrameDecoder, encode_frame
from ..wire._messages import (
    HANDSHAKE_MAX_FRAME,
    Tick,
    Undecoded,
    batch_decoder,
    envelope_decoder,
    handshake_decoder,
    handshake_encoder,
    raw_batch_decoder,
    single_decoder,
)
from . import _unix
from ._busypoll import busy_poll_for
from ._handshake import (
    HANDSHAKE,
    NONCE_SIZE,
    NOT_AUTHORIZED,
    REFUSED,
    UNREACHABLE,
    VERSION,
    WRONG_NODE,
    HandshakeCore,
    HandshakeRefused,
)

log = logging.getLogger("distable.transport")

#: Reject reasons that are part of normal operation, not failures.
_BENIGN_REJECTS = ("simultaneous dial", "duplicate link")
#: A link that goes down sooner than this after it came up does not reset the redial's
#: backoff: the peer may be dropping this node's links as they come up.
STABLE_LINK = 1.0
#: A server node's dials to a peer it has never linked with that are refused or unanswered
#: within this many seconds of its first dial are said at INFO, not WARNING: nodes started
#: together (a static cluster, a deployment) come up within seconds of each other, and
#: every one of them warned of the others not listening yet. Later, a wrong address or a
#: node that never started is a WARNING as before; a tool (a client node) says it at once.
STARTUP_GRACE = 5.0
#: Why an acceptor refuses an authenticated dialer whose name its ``admits`` rejects.
DENIED = "not admitted by its --allow/--deny lists"  # as the dialer reads it


def parse_node_name(name: str) -> tuple[str, str, int]:
    """Split ``"short@host:port"`` (``host`` may be ``[v6]``) into its parts.

    Raises:
        ValueError: the name is not of that form.
    """
    short, sep, address = name.partition("@")
    host, colon, port_text = address.rpartition(":")
    if not sep or not short or not colon or not host or not port_text.isdigit():
        raise ValueError(f"node name {name!r} is not of the form 'name@host:port'")
    port = int(port_text)
    if not 0 < port < 65536:
        raise ValueError(f"node name {name!r} has an invalid port")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return short, host, port


def is_refusal(exc: BaseException) -> bool:
    """Is ``exc`` a refused connection (the host answered with a reset: no listener)?"""
    return isinstance(exc, ConnectionRefusedError) or getattr(exc, "errno", None) == errno.ECONNREFUSED


def format_node_name(short: str, host: str, port: int) -> str:
    if ":" in host:
        host = f"[{host}]"
    return f"{short}@{host}:{port}"


@dataclass(frozen=True, slots=True)
class TransportConfig:
    """Tunables of the node-to-node links (defaults suit a LAN and loopback).

    ``forget_peer_after``: how long a peer's entry outlives the last reason to keep it (a
    link, a dial, a queued message, ``connect()``). Twice ``backoff_max``: a dead node
    that is still sent to keeps its entry, so its redials stay backed off; one nobody
    wants any more is gone soon after (membership gives up a node that left at once,
    one that failed when it forgets it).
    """

    max_frame_size: int = DEFAULT_MAX_FRAME_SIZE
    flush_bytes: int = 256 * 1024
    soft_limit: int = 4 * 1024 * 1024
    hard_limit: int = 64 * 1024 * 1024
    handshake_timeout: float = 5.0
    connect_timeout: float = 5.0
    tick_interval: float = 1.0
    tick_timeout: float = 10.0
    backoff_initial: float = 0.05
    backoff_max: float = 5.0
    max_pending_handshakes: int = 64
    forget_peer_after: float = 10.0
    #: Also listen on a Unix domain socket, and dial peers on this host over theirs.
    unix_sockets: bool = True
    #: Seconds the event loop keeps polling after a frame arrives before it may sleep in
    #: the kernel (0: sleep at once). A round trip then needs no wake-up of a sleeping CPU,
    #: which on a virtual machine costs more than the round trip; the price is up to this
    #: much CPU after each burst of traffic. See ``distable.transport._busypoll``.
    busy_poll: float = 0.0002

    def __post_init__(self) -> None:
        if not 0 <= self.busy_poll <= 0.1:  # also catches NaN
            raise ValueError(f"TransportConfig.busy_poll must be within 0 and 0.1 seconds, not {self.busy_poll!r}")


@dataclass(frozen=True, slots=True)
class PeerStatistics:
    name: str
    connected: bool
    incarnation: int
    bytes_in: int
    bytes_out: int
    messages_in: int
    messages_out: int
    frames_in: int
    frames_out: int
    connects: int
    #: Why the last dial failed, with no link since ("" otherwise): a line for people,
    #: and its kind (not_authorized, wrong_node, version, refused, unreachable, handshake).
    error: str = ""
    error_kind: str = ""
    #: What the link runs over: "unix" (a Unix domain socket), "tcp", or "" (no link).
    link: str = ""


@dataclass(frozen=True, slots=True)
class TransportStatistics:
    peers: tuple[PeerStatistics, ...]
    handshake_failures: int
    protocol_errors: int
    dropped_messages: int
    not_authorized: int = 0  # dials the peer refused for this node's cookie


class Peer:
    """What this node knows about one other node's link. Owned by the Transport.

    Everything here runs on the node's event loop and no writer awaits, so "owned by"
    means "written only from": the fields are grouped below by what writes them. A link
    coming up (``Transport._activate``) also resets the dial-failure fields, ``paused``
    and the last-traffic times, which a fresh link makes stale. Outside this module,
    ``distable.testing.crash`` writes ``wanted`` and cancels ``dial_handle`` of a node it
    stops dead.
    """

    __slots__ = (
        "_congestion",
        "accepting",
        "backoff",
        "bytes_in",
        "bytes_out",
        "conn",
        "connects",
        "created",
        "dial_handle",
        "dialing",
        "error",
        "error_kind",
        "flush_scheduled",
        "frames_in",
        "frames_out",
        "host",
        "idle_since",
        "incarnation",
        "last_recv",
        "last_sent",
        "linked_at",
        "messages_in",
        "messages_out",
        "name",
        "paused",
        "port",
        "refused",
        "retry_at",
        "role",
        "wanted",
        "writer",
    )

    def __init__(self, name: str, host: str, port: int, max_frame_size: int, backoff: Backoff) -> None:
        # Identity: set here, never changed.
        self.name = name
        self.host = host
        self.port = port

        # The link: written only by ``_activate`` (a handshake completed and the link was
        # kept) and ``_on_closed`` (it closed, whatever closed it).
        self.conn: PeerConnection | None = None
        self.incarnation = 0
        self.role = "server"  # what the peer said it is in the last handshake
        self.connects = 0
        self.created = 0.0  # when this node first wanted or used a link to it (loop time)

        # Dials: ``dialing`` is set by ``_dial`` and cleared by ``_activate`` and
        # ``_on_closed``; ``dial_handle`` (the pending redial) is written by the dial path
        # (``_dial_later``, the redial timer ``_dial_due``, ``connect``, ``disconnect``,
        # ``close``, and ``_activate``, which cancels it). ``accepting`` is set and reset
        # within one call of ``_decide``, the acceptor's handshake callback: an incoming
        # link accepted and not active yet; while it replaces the old link, the old one's
        # drop must not start a dial (see ``_dial_later``).
        self.dialing: PeerConnection | None = None
        self.dial_handle: asyncio.TimerHandle | None = None
        self.accepting: PeerConnection | None = None

        # Why dials fail, and the redial backoff: written when a dial or a link fails
        # (``refused`` by the dial task ``_open``; the rest from ``_on_closed`` and
        # ``_dial_failed``); all reset by ``_activate``.
        self.refused = False  # the last dial failed with ECONNREFUSED (no link since)
        self.error = self.error_kind = ""  # why the last dial failed (no link since), see _dial_failed
        self.backoff = backoff  # of its redials
        self.retry_at = 0.0

        # Wanted by membership or the node: written only by ``connect`` (True),
        # ``disconnect`` and ``close`` (False).
        self.wanted = False

        # The send path: ``post`` queues, ``_flush`` (a ``call_soon`` callback, or inline)
        # writes; ``paused`` follows the socket's ``pause_writing``/``resume_writing``
        # callbacks; ``_congestion`` is made by ``congestion`` (for ``post``) and resolved
        # by ``relieve``.
        self.writer = BatchWriter(max_frame_size)
        self.flush_scheduled = False
        self.linked_at = 0.0  # when the link last came up (loop time)
        self.paused = False
        self._congestion: asyncio.Future[None] | None = None
        self.last_sent = 0.0
        self.bytes_out = 0
        self.messages_out = 0
        self.frames_out = 0

        # The receive path: written only by ``data_received`` (``_receive_active``).
        self.last_recv = 0.0
        self.bytes_in = 0
        self.messages_in = 0
        self.frames_in = 0

        # When the last reason to keep this entry (link, dial, post) was seen: written by
        # ``post``, ``disconnect``, ``_on_closed`` and ``_dial_failed``; read by ``_tick``,
        # which forgets the entry ``forget_peer_after`` later.
        self.idle_since = 0.0

    def congestion(self, loop: asyncio.AbstractEventLoop) -> asyncio.Future[None]:
        """From ``post``; never awaits. The future senders wait on until ``relieve``."""
        fut = self._congestion
        if fut is None or fut.done():
            fut = self._congestion = loop.create_future()
        return fut

    def relieve(self) -> None:
        """From ``_flush``, ``resume_writing``, ``_drop_pending`` and ``_tick``; never awaits.
        Wakes the senders waiting on ``congestion``."""
        fut, self._congestion = self._congestion, None
        if fut is not None and not fut.done():
            fut.set_result(None)


class PeerConnection(asyncio.Protocol):
    """One connection (TCP, or a Unix domain socket): handshake first, then batches of messages.

    Callbacks run on the event loop and never block.
    """

    def __init__(self, owner: Transport, *, dialer: bool, expected: str | None = None) -> None:
        self.owner = owner
        self.dialer = dialer
        self.transport: asyncio.Transport | None = None
        self.address = "?"
        self.unix = False  # over a Unix domain socket (set by connection_made)
        self.core = HandshakeCore(
            dialer=dialer,
            name=owner.name,
            incarnation=owner.incarnation,
            cookie=owner.cookie,
            nonce=os.urandom(NONCE_SIZE),
            expected_peer=expected,
            role=owner.role,
        )
        self.peer: Peer | None = None
        self.active = False
        self.closed = False
        self.close_reason = ""
        self.fail_kind = ""  # a dial that failed: why, as a kind (NOT_AUTHORIZED...)
        self.fail_detail = ""  # and the peer's reason, when it refused
        self._hs_buf = bytearray()
        self._decoder = FrameDecoder(owner.config.max_frame_size)
        self._hs_timer: asyncio.TimerHandle | None = None
        self.established: asyncio.Future[bool] = owner.loop.create_future()

    @property
    def label(self) -> str:
        name = self.core.peer_name or self.core.expected_peer or "unauthenticated peer"
        return f"{name} ({self.address})"

    # --- asyncio callbacks -----------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses
        if self.closed:
            # Closed while its dial was in flight (a partition, a link replaced, a node
            # stopping): without this the socket stayed open until the peer's handshake
            # timeout, or was collected unclosed (a ResourceWarning).
            self.transport.abort()
            return
        sock = transport.get_extra_info("socket")
        self.unix = sock is not None and sock.family == socket.AF_UNIX
        peername = transport.get_extra_info("peername")
        if self.unix:
            self.address = "unix socket"
        elif peername:
            self.address = f"{peername[0]}:{peername[1]}"
        self._hs_timer = self.owner.loop.call_later(self.owner.config.handshake_timeout, self._handshake_timeout)
        if self.dialer:
            self._send_handshake(self.core.start())
        else:
            self.owner._pending_handshakes.add(self)
            if len(self.owner._pending_handshakes) > self.owner.config.max_pending_handshakes:
                self.close("too many unauthenticated connections at once", level=logging.WARNING)

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        if self.active:
            self._receive_active(data)
        else:
            self._receive_handshake(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed:
            self.closed = True
            partial = self._decoder.buffered if self.active else len(self._hs_buf)
            if partial:
                # The peer hung up inside a frame: a broken or hostile peer, worth a line.
                self.close_reason = f"connection closed in the middle of a frame ({partial} bytes of it received)"
                self.owner._ratelog.warning(
                    self._log_key("close", "partial frame"), "closing link to %s: %s", self.label, self.close_reason
                )
            else:
                self.close_reason = self.close_reason or (
                    f"connection lost: {exc}" if exc else "peer closed the connection"
                )
        self._finish()

    def pause_writing(self) -> None:
        if self.peer is not None and self.peer.conn is self:
            self.peer.paused = True

    def resume_writing(self) -> None:
        peer = self.peer
        if peer is not None and peer.conn is self:
            peer.paused = False
            self.owner._flush(peer)
            if not peer.paused:
                peer.relieve()

    # --- handshake phase ----------------------------------------------------------------

    def _receive_handshake(self, data: bytes) -> None:
        buf = self._hs_buf
        buf += data
        while len(buf) >= 4 and not self.active and not self.closed:
            length = int.from_bytes(buf[:4], "big")
            if length > HANDSHAKE_MAX_FRAME:
                self._protocol_error(f"handshake frame of {length} bytes (max {HANDSHAKE_MAX_FRAME})")
                return
            if len(buf) < 4 + length:
                return
            frame = bytes(buf[4 : 4 + length])
            del buf[: 4 + length]
            try:
                msg = handshake_decoder.decode(frame)
                replies = self.core.receive(msg)
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                self.owner._handshake_failures += 1
                self._protocol_error(f"malformed handshake message: {exc}")
                return
            except HandshakeError as exc:
                self.owner._handshake_failures += 1
                if self.core.refusal is not None:  # say why before hanging up (not authorized)
                    self._send_handshake([self.core.refusal])
                level = logging.WARNING
                if isinstance(exc, HandshakeRefused):
                    self.fail_kind, self.fail_detail = exc.kind, exc.reason
                    level = logging.DEBUG  # the dial's failure line says it (Transport._dial_failed)
                elif self.dialer:
                    self.fail_kind = HANDSHAKE
                if self._benign(exc):
                    level = logging.DEBUG
                self.close(f"handshake failed: {exc}", level=level)
                return
            if replies:
                self._send_handshake(replies)
            if self.core.state == "FAILED":  # we refused it (wrong node, bad version)
                self.owner._handshake_failures += 1
                self.close(f"handshake refused: {replies[0].reason}", level=logging.WARNING)
                return
            if self.core.state == "VERIFIED":
                reason = self.owner._decide(self)
                if reason is not None:
                    self._send_handshake(self.core.reject(reason))
                    if reason == DENIED:  # a peer this node's configuration names: said once in a while
                        self.owner._ratelog.warning(
                            ("denied", self.core.peer_name),
                            "refused the link from %s: this node's --allow/--deny lists do not admit it",
                            self.core.peer_name,
                        )
                    benign = reason in _BENIGN_REJECTS or reason == DENIED  # the others: misconfigured or hostile
                    self.close(f"refused link: {reason}", level=logging.DEBUG if benign else logging.WARNING)
                    return
                self._send_handshake(self.core.accept())
            if self.core.state == "ESTABLISHED":
                self._established()
        if self.active and buf:
            rest = bytes(buf)
            buf.clear()
            self._receive_active(rest)

    @staticmethod
    def _benign(exc: HandshakeError) -> bool:
        return any(r in str(exc) for r in _BENIGN_REJECTS)

    def _send_handshake(self, messages: list[Any]) -> None:
        assert self.transport is not None
        for m in messages:
            self.transport.write(encode_frame(handshake_encoder.encode(m)))

    def _handshake_timeout(self) -> None:
        if not self.active and not self.closed:
            self.owner._handshake_failures += 1
            self.fail_kind = HANDSHAKE
            self.close(f"handshake not completed within {self.owner.config.handshake_timeout} s", level=logging.WARNING)

    def _established(self) -> None:
        if self._hs_timer is not None:
            self._hs_timer.cancel()
        self.owner._pending_handshakes.discard(self)
        self.active = True
        if self.dialer and not self.owner._keep_dialed(self):
            self.active = False
            self.close("duplicate link (the peer's dial won)", level=logging.DEBUG)
            return
        self.owner._activate(self)

    # --- active phase -----------------------------------------------------------------

    def _receive_active(self, data: bytes) -> None:
        peer = self.peer
        assert peer is not None
        peer.bytes_in += len(data)
        try:
            frames = self._decoder.feed(data)
        except FrameTooLarge as exc:
            self._protocol_error(str(exc))
            return
        if not frames:
            return
        owner = self.owner
        peer.last_recv = owner.loop.time()
        if owner._busy_poll is not None:
            owner._busy_poll.touch(owner.config.busy_poll)
        dispatch = owner.dispatch
        # What is posted to this peer meanwhile (replies) is written once all is dispatched,
        # in this loop turn, rather than by the next turn's flush (see ``post``).
        outer, owner._receiving = owner._receiving, peer
        try:
            for frame in frames:
                peer.frames_in += 1
                messages: list[Any] | None
                try:
                    messages = batch_decoder.decode(frame)
                except (
                    msgspec.DecodeError,
                    msgspec.ValidationError,
                    ProtocolError,
                    ValueError,
                    TypeError,
                    RecursionError,
                ):
                    messages = self._decode_slowly(frame)
                    if messages is None:
                        return
                peer.messages_in += len(messages)
                try:
                    dispatch(peer.name, messages)
                except Exception:
                    log.exception("%s: error while handling messages from %s", owner.name, self.label)
                if self.closed:
                    return
        finally:
            owner._receiving = outer
            if peer.flush_scheduled:
                owner._flush(peer)

    def _decode_slowly(self, frame: memoryview | bytes) -> list[Any] | None:
        """A batch failed to decode: decode it message by message, or close on garbage.

        A message whose envelope is sound but whose user payload is not (a user type
        this node does not know) goes on as ``Undecoded``, so that the node can answer
        it (a call fails at once on its caller) and count it; a message that is not
        even a sound envelope (an unknown tag) is dropped with a log line.
        """
        try:
            raws = raw_batch_decoder.decode(frame)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            self._protocol_error(f"undecodable frame: {exc}")
            return None
        messages: list[Any] = []
        for raw in raws:
            try:
                messages.append(single_decoder.decode(raw))
                continue
            except DecodeError as exc:  # raised by the value codec: the envelope may be sound
                error: Exception = exc
                try:
                    messages.append(Undecoded(envelope_decoder.decode(raw), exc.type_name, str(exc)))
                    continue
                except Exception:
                    pass
            except Exception as exc:
                error = exc
            self.owner._protocol_errors += 1
            self.owner._ratelog.warning(
                ("bad message", self.label),
                "dropped a message from %s: %s",
                self.label,
                error,
            )
        return messages

    def _protocol_error(self, problem: str) -> None:
        self.owner._protocol_errors += 1
        self.close(f"protocol error: {problem}", level=logging.WARNING)

    # --- closing ----------------------------------------------------------------------

    def _log_key(self, *what: str) -> tuple[str, ...]:
        """The rate-limit key of a line about this link: the peer's node once authenticated,
        else its host without the port (every retry of a client with the wrong cookie comes
        from a new ephemeral port, and must still count as the same source)."""
        source = self.label if self.active else self.address.rpartition(":")[0]
        return (*what, source)

    def close(self, reason: str, level: int = logging.INFO) -> None:
        if self.closed:
            return
        self.closed = True
        self.close_reason = reason
        self.owner._ratelog.log(level, self._log_key("close", reason), "closing link to %s: %s", self.label, reason)
        if self.transport is not None:
            self.transport.abort()
        self._finish()

    def _finish(self) -> None:
        if self._hs_timer is not None:
            self._hs_timer.cancel()
            self._hs_timer = None
        self.owner._pending_handshakes.discard(self)
        if not self.established.done():
            self.established.set_result(False)
        self.owner._on_closed(self)


class Transport:
    """The mesh of links of one node.

    Owned by the node; every method runs on the event loop. ``dispatch(node, messages)``
    is called with each decoded batch; ``on_up(node, incarnation)`` and
    ``on_down(node, incarnation, reason)`` when a link comes up or goes down. All three
    are called from the link callbacks and must not block; ``on_down`` also runs inside
    the calls that may close a link (``post`` past ``hard_limit``, ``disconnect``,
    ``_tick``: see ``_on_closed``).

    Concurrency contract: only the node's lifecycle coroutines (``listen``, ``serve``,
    ``close``) and the dial task (``_open``, one per dial) await. Everything else is a
    plain call that never awaits: the API (``post``, ``connect``...), called by the
    runtime, membership, the registry and the node; the socket callbacks of
    ``PeerConnection`` (``connection_made``, ``data_received``, ``connection_lost``,
    ``pause_writing``, ``resume_writing``), which run the handshake and call
    ``_decide``, ``_keep_dialed``, ``_activate`` and ``_on_closed``; and the timers
    (``_tick``, ``_dial_due``, the ``call_soon`` of ``_flush``). Each method's docstring
    says which of these it is. The fields are grouped in ``__init__`` (and in ``Peer``)
    by what writes them.
    """

    def __init__(
        self,
        *,
        name: str,
        incarnation: int,
        cookie: bytes,
        loop: asyncio.AbstractEventLoop,
        spawn_task: Callable[[Coroutine[Any, Any, Any]], Any],
        dispatch: Callable[[str, list[Any]], None],
        on_up: Callable[[str, int], None],
        on_down: Callable[[str, int, str], None],
        config: TransportConfig | None = None,
        tls: ssl.SSLContext | tuple[ssl.SSLContext, ssl.SSLContext] | None = None,
        rng: random.Random | None = None,
        role: str = "server",
    ) -> None:
        # Set here and never changed, except by ``rename``: once, at bind, before any link
        # (``name`` and the two log prefixes).
        self.name = name
        self.role = role  # said in the handshake: a "client" (a tool) is linked with, not a member
        self.incarnation = incarnation
        self.cookie = cookie
        self.loop = loop
        self._spawn_task = spawn_task
        self.dispatch = dispatch
        self._on_up = on_up
        self._on_down = on_down
        self.config = config or TransportConfig()
        self._busy_poll = busy_poll_for(loop) if self.config.busy_poll > 0 else None
        self._server_tls: ssl.SSLContext | None
        self._client_tls: ssl.SSLContext | None
        if isinstance(tls, tuple):
            self._server_tls, self._client_tls = tls
        else:
            self._server_tls = self._client_tls = tls
        self._rng = rng or random.Random()
        self._ratelog = RateLimitedLog(log, f"{name}: ")
        self._alone_log = RateLimitedLog(log, f"{name}: ", interval=30.0)
        #: Whether a node may link with this one (the node sets membership's allow and deny
        #: lists here): an authenticated dialer it rejects is refused in the handshake
        #: (``DENIED``), so that the dialer says why and backs off, rather than seeing its
        #: link drop as it comes up.
        self.admits: Callable[[str], bool] | None = None

        # Lifecycle: written by the node's ``listen`` and ``close`` (``_tick_handle`` also
        # by ``_tick``, which re-arms itself; ``distable.testing.crash`` sets ``_closing``
        # and cancels the timer of a node it stops dead).
        self._server: asyncio.AbstractServer | None = None
        self._tick_handle: asyncio.TimerHandle | None = None
        self._closing = False
        # The Unix domain socket (``_listen_unix``, from ``listen``): its server, its file
        # and that file's identity; and where peers on this host have theirs (None: dial
        # over TCP only), this node's host and network namespace, which name them.
        self._unix_server: asyncio.AbstractServer | None = None
        self._unix_path = ""
        self._unix_ident = (0, 0, 0)
        self._unix_dir: str | None = None
        self._host = ""
        self._netns = ""

        # The peer table: entries are made by ``_peer`` (from ``post``, ``connect`` and
        # the acceptor's ``_decide``) and removed only by ``_tick``; each entry's fields
        # are written as ``Peer`` says.
        self.peers: dict[str, Peer] = {}

        # The peer whose link's data is being dispatched (``_receive_active``): what is
        # posted to it meanwhile is flushed when the dispatch ends, not in the next turn.
        self._receiving: Peer | None = None

        # Unauthenticated incoming links: added by ``connection_made``, removed when the
        # handshake completes (``_established``) or the link closes (``_finish``).
        self._pending_handshakes: set[PeerConnection] = set()

        # Counters, read only by ``statistics``: handshake and protocol failures are
        # counted by the link callbacks (and the handshake timer), refusals for this
        # node's cookie by ``_dial_failed``, dropped messages by ``_drop_pending``.
        self._not_authorized = 0
        self._handshake_failures = 0
        self._protocol_errors = 0
        self._dropped = 0

    # --- lifecycle ------------------------------------------------------------------

    async def listen(self, host: str, port: int, *, serve: bool = True) -> int:
        """Start accepting links; return the bound port (useful with port 0).

        ``serve=False`` reserves the port without accepting yet, until ``serve()``: a node
        binds its port before it joins. Its socket listens at once either way: the kernel
        gives a listening port to one socket only, while two sockets bound with
        ``SO_REUSEADDR`` and not listening yet may share it, and then both nodes would
        think they were up on it (uvloop's ``start_serving`` does not report the failed
        ``listen`` of the second). Dialers that come before ``serve()`` wait in the
        backlog, and their links are accepted when it is called.

        Node lifecycle (``Node.bind``); awaits the bind.

        Raises:
            OSError: the port cannot be bound, or another socket listens on it
                (``EADDRINUSE``).
        """
        self._server = await self.loop.create_server(
            lambda: PeerConnection(self, dialer=False),
            host,
            port,
            ssl=self._server_tls,
            # The TLS handshake comes before connection_made (and our own handshake timer):
            # bound it too, or a silent peer holds a socket for asyncio's default 60 s.
            ssl_handshake_timeout=self.config.handshake_timeout if self._server_tls is not None else None,
            reuse_address=True,
            backlog=1024,
            start_serving=serve,
        )
        if not serve:
            try:
                for bound in self._server.sockets:
                    _listen_now(bound.fileno(), 1024)
            except OSError:
                self._server.close()
                self._server = None
                raise
        port = int(self._server.sockets[0].getsockname()[1])
        if self.config.unix_sockets and _unix.AVAILABLE:
            await self._listen_unix(host, port, serve)
        self._schedule_tick()
        return port

    async def _listen_unix(self, host: str, port: int, serve: bool) -> None:
        """From ``listen``, once the TCP port is bound (so the name is this node's alone):
        listen on the Unix domain socket of the node's name too, and dial peers on this
        host over theirs. Any trouble is logged once and leaves the node on TCP alone."""
        name = format_node_name(self.name.partition("@")[0], host, port)  # before ``rename``
        directory = _unix.socket_dir()
        problem = _unix.prepare_dir(directory)
        if problem is not None:
            log.warning("%s: links to nodes on this host use TCP: %s", name, problem)
            return
        self._unix_dir, self._host, self._netns = directory, host, _unix.netns_id()
        path = _unix.socket_path(directory, name, self._netns)
        if path is None:
            log.warning("%s: no Unix domain socket: the path would be too long in %s", name, directory)
            return
        try:
            sock, ident = _unix.bind(path)
        except OSError as exc:
            log.warning("%s: no Unix domain socket at %s: %s", name, path, exc.strerror or exc)
            return
        try:
            self._unix_server = await self.loop.create_unix_server(
                lambda: PeerConnection(self, dialer=False),
                sock=sock,
                ssl=self._server_tls,
                ssl_handshake_timeout=self.config.handshake_timeout if self._server_tls is not None else None,
                backlog=1024,
                start_serving=serve,
            )
        except OSError as exc:
            sock.close()
            _unix.remove(path, ident)
            log.warning("%s: no Unix domain socket at %s: %s", name, path, exc.strerror or exc)
            return
        self._unix_path, self._unix_ident = path, ident
        log.debug("%s: listening on %s", name, path)

    def _servers(self) -> list[asyncio.AbstractServer]:
        """The servers of the listening sockets: TCP's, and the Unix domain socket's if any.

        Query (``serve``, ``close``, ``distable.testing``'s ``crash`` and ``close_listener``)."""
        return [server for server in (self._server, self._unix_server) if server is not None]

    async def serve(self) -> None:
        """Start accepting links on the port ``listen(serve=False)`` bound (no-op if already).

        Node lifecycle (``Node.start``); awaits."""
        for server in self._servers():
            if not server.is_serving():
                await server.start_serving()

    def rename(self, name: str) -> None:
        """Set the full node name once the port is known (before any link exists).

        Node lifecycle (``Node.bind``, after ``listen``); never awaits."""
        assert not self.peers
        self.name = name
        self._ratelog = RateLimitedLog(log, f"{name}: ")
        self._alone_log = RateLimitedLog(log, f"{name}: ", interval=30.0)

    async def close(self) -> None:
        """Close every link and stop listening; pending messages are dropped.

        Node lifecycle (``Node.stop``); awaits the listening socket's close."""
        self._closing = True
        if self._tick_handle is not None:
            self._tick_handle.cancel()
        servers = self._servers()
        for server in servers:
            server.close()
        if self._unix_path:  # from now on, dialers of this node's socket go to TCP at once
            _unix.remove(self._unix_path, self._unix_ident)
            self._unix_path = ""
        for peer in list(self.peers.values()):
            peer.wanted = False
            if peer.dial_handle is not None:
                peer.dial_handle.cancel()
            self._flush(peer)
            for conn in (peer.conn, peer.dialing):
                if conn is not None and conn.transport is not None:
                    conn.transport.close()  # close (not abort) lets the last batch go out
        for conn in list(self._pending_handshakes):
            conn.close("node shutting down")
        for server in servers:
            await server.wait_closed()

    # --- sending --------------------------------------------------------------------

    def post(self, node: str, message: Any) -> asyncio.Future[None] | None:
        """Queue ``message`` for ``node``; see ``RemoteRouter.post``.

        API (the runtime, membership, the registry, ``_tick``); never awaits: the sender
        awaits the future it may return."""
        peer = self.peers.get(node)
        if peer is None:
            peer = self._peer(node)
        size = peer.writer.add(message)
        peer.messages_out += 1
        peer.idle_since = self.loop.time()
        conn = peer.conn
        config = self.config
        if conn is None:
            if peer.dialing is None and peer.dial_handle is None:
                self._dial_later(peer, max(0.0, peer.retry_at - self.loop.time()))
        elif not peer.paused:
            if size >= config.flush_bytes:
                self._flush(peer)
                size = len(peer.writer)
            elif not peer.flush_scheduled:
                peer.flush_scheduled = True
                if peer is not self._receiving:  # else written at the end of its data_received
                    self.loop.call_soon(self._flush, peer)
        if size > config.soft_limit or peer.paused:
            if size > config.hard_limit:
                self._overflow(peer, size)
                return None
            return peer.congestion(self.loop)
        return None

    def flush_now(self, node: str) -> None:
        """Write what is queued for ``node`` now rather than at the end of the loop turn
        (frames to other peers queued earlier in the turn then go after it): for a reply
        someone waits on, when nothing else is likely to join its frame.

        API (the registry server's replies); never awaits. While ``node``'s own data is
        being dispatched, what is queued for it is written when that ends (``post``), still
        ahead of the turn's other frames and with the other replies to that data."""
        peer = self.peers.get(node)
        if peer is not None and peer.flush_scheduled and peer is not self._receiving:
            self._flush(peer)

    def _flush(self, peer: Peer) -> None:
        """Write ``peer``'s batch to its link, if it has one and it is not paused.

        ``call_soon`` callback (scheduled by ``post``), or inline from ``post``,
        ``flush_now``, ``resume_writing``, ``_activate`` and ``close``; never awaits."""
        peer.flush_scheduled = False
        conn = peer.conn
        if conn is None or peer.paused or conn.closed:
            return
        frame = peer.writer.take()
        if frame is None:
            return
        assert conn.transport is not None
        peer.frames_out += 1
        peer.bytes_out += len(frame)
        peer.last_sent = self.loop.time()
        conn.transport.write(frame)
        if not peer.paused:
            peer.relieve()

    def _overflow(self, peer: Peer, size: int) -> None:
        """From ``post``, past ``hard_limit``; never awaits. Disconnects ``peer``."""
        self._ratelog.warning(
            ("overflow", peer.name),
            "peer %s is not keeping up: %d bytes waiting exceed the hard limit %d; disconnecting",
            peer.name,
            size,
            self.config.hard_limit,
        )
        if peer.conn is not None:
            peer.conn.close("send buffer overflow", level=logging.DEBUG)
        else:
            self._drop_pending(peer, "send buffer overflow")

    # --- connecting ----------------------------------------------------------------------

    def _peer(self, node: str) -> Peer:
        """From ``post``, ``connect`` and ``_decide``; never awaits. A new entry for ``node``.

        Raises:
            ValueError: ``node`` is not of the form ``name@host:port``.
        """
        _, host, port = parse_node_name(node)
        cfg = self.config
        backoff = Backoff(cfg.backoff_initial, cfg.backoff_max, rng=self._rng)
        peer = self.peers[node] = Peer(node, host, port, cfg.max_frame_size, backoff)
        peer.idle_since = peer.created = self.loop.time()
        return peer

    def connect(self, node: str, urgent: bool = False) -> None:
        """Keep a link to ``node`` up: dial now and redial with backoff whenever it drops.

        API (membership's shell, ``Node.connect``, the node's seeds); never awaits.
        ``urgent`` (fresh evidence that the node is reachable, such as its heartbeat)
        skips a backoff delay that is pending.
        """
        if node == self.name:
            return
        peer = self.peers.get(node) or self._peer(node)
        peer.wanted = True
        if peer.conn is not None or peer.dialing is not None:
            return
        if peer.dial_handle is not None:
            if not urgent:
                return
            peer.dial_handle.cancel()
            peer.dial_handle = None
        self._dial_later(peer, 0.0)

    def disconnect(self, node: str) -> None:
        """Stop keeping a link to ``node`` and close it.

        API (membership's shell when it forgets a member, ``Node.disconnect``); never awaits."""
        peer = self.peers.get(node)
        if peer is None:
            return
        peer.wanted = False
        peer.idle_since = self.loop.time()
        if peer.dial_handle is not None:
            peer.dial_handle.cancel()
            peer.dial_handle = None
        # A tool's or client's link closing is routine (every CLI query makes one): DEBUG.
        level = logging.DEBUG if peer.role == "client" else logging.INFO
        for conn in (peer.conn, peer.dialing):
            if conn is not None:
                conn.close("disconnect requested", level=level)

    def peer_version(self, node: str) -> int:
        """The protocol version agreed with ``node``'s link, or 0 when no link is up.

        Query (the runtime); reads only."""
        peer = self.peers.get(node)
        conn = peer.conn if peer is not None else None
        return conn.core.version if conn is not None else 0

    def is_connected(self, node: str) -> bool:
        """Is a link to ``node`` up? Query; reads only."""
        peer = self.peers.get(node)
        return peer is not None and peer.conn is not None

    def queued(self, node: str) -> int:
        """How many messages wait to be written to ``node`` (no link yet, or not flushed).
        Query; reads only."""
        peer = self.peers.get(node)
        return peer.writer.count if peer is not None else 0

    def connected(self) -> list[str]:
        """The nodes a link is up with, sorted. Query; reads only."""
        return sorted(p.name for p in self.peers.values() if p.conn is not None)

    def _dial_later(self, peer: Peer, delay: float) -> None:
        """Dial ``peer`` after ``delay``, unless a link to it is up or on its way.

        One dial at a time, and none while a link is up or being accepted: a second dial
        would end in a second link, which the acceptor takes in place of the first (its
        rule for a peer that redialed because it saw the link die) and closes the first
        with what was sent on it unread, although neither side saw it die. Redials come
        from several places at once as a link drops (membership's ``connect`` from
        ``on_down``, the backoff redial, ``post``, a benign refusal): the first one wins,
        a dial already scheduled keeps its time (``connect(urgent=True)`` cancels it).

        From every dial request (``post``, ``connect``, ``_dial_due``, ``_on_closed``,
        ``_dial_failed``); never awaits."""
        if self._closing or peer.conn is not None or peer.dialing is not None or peer.accepting is not None:
            return
        if delay <= 0:
            if peer.dial_handle is not None:
                peer.dial_handle.cancel()
            peer.dial_handle = None
            self._dial(peer)
        elif peer.dial_handle is None:
            peer.dial_handle = self.loop.call_later(delay, self._dial_due, peer)

    def _dial_due(self, peer: Peer) -> None:
        """Redial timer callback (``call_later`` from ``_dial_later``); never awaits."""
        peer.dial_handle = None
        self._dial_later(peer, 0.0)  # unless a link came up (or is on its way) meanwhile

    def _dial(self, peer: Peer) -> None:
        """From ``_dial_later`` only; never awaits: it starts the dial task ``_open``."""
        conn = PeerConnection(self, dialer=True, expected=peer.name)
        conn.peer = peer
        peer.dialing = conn
        self._spawn_task(self._open(peer, conn))  # ends by itself: bounded by connect_timeout

    async def _open(self, peer: Peer, conn: PeerConnection) -> None:
        """Dial task, one per dial; awaits the connection (``_connect``: TCP, or the peer's
        Unix domain socket) and its TLS handshake, bounded by ``connect_timeout``. The
        handshake then runs in ``conn``'s callbacks; a failure to connect ends here,
        through ``conn._finish`` (so ``_on_closed``)."""
        try:
            await asyncio.wait_for(self._connect(peer, conn), self.config.connect_timeout)
        except (OSError, TimeoutError, ssl.SSLError) as exc:
            peer.refused = is_refusal(exc)
            conn.fail_kind = REFUSED if peer.refused else UNREACHABLE
            conn.closed = True
            conn.close_reason = f"cannot connect: {exc or type(exc).__name__}"
            conn._finish()

    async def _connect(self, peer: Peer, conn: PeerConnection) -> None:
        """From ``_open`` only: connect ``conn`` to ``peer``. A peer on this host is tried
        over its Unix domain socket first; if its path is absent or refuses, TCP at once
        (so a refusal is TCP's: the node is down, not merely without a socket)."""
        tls = self._client_tls
        hostname = peer.host if tls is not None else None
        if self._unix_dir is not None and _unix.same_host(peer.host, self._host):
            path = _unix.socket_path(self._unix_dir, peer.name, self._netns)
            if path is not None:
                try:
                    await self.loop.create_unix_connection(lambda: conn, path, ssl=tls, server_hostname=hostname)
                    return
                except ssl.SSLError:
                    raise  # TLS failed: it would over TCP too
                except OSError as exc:
                    log.debug("%s: %s has no Unix domain socket (%s): dialing TCP", self.name, peer.name, exc)
                if conn.closed:  # closed meanwhile (``disconnect``, the node stopping): dial no more
                    return
        await self.loop.create_connection(lambda: conn, peer.host, peer.port, ssl=tls, server_hostname=hostname)

    def role_of(self, node: str) -> str:
        """The role ``node`` gave in the handshake of its last link ("server" or "client").

        Query (membership's shell); reads only."""
        peer = self.peers.get(node)
        return peer.role if peer is not None else "server"

    def dial_refused(self, node: str) -> bool:
        """Was the last dial to ``node`` refused (ECONNREFUSED: its host answered, nothing
        listens there), with no link since? Membership fails such a node at once.

        Query (membership's shell, from ``on_down``); reads only."""
        peer = self.peers.get(node)
        return peer is not None and peer.refused and peer.conn is None

    def _decide(self, conn: PeerConnection) -> str | None:
        """Acceptor: should this authenticated incoming link be kept? None, or why not.

        Handshake callback (``data_received`` of the incoming link); never awaits."""
        name = conn.core.peer_name
        assert name is not None
        inc = conn.core.peer_incarnation
        if name == self.name:
            return "the peer claims this node's own name"
        if self.admits is not None and not self.admits(name):
            return DENIED
        try:
            peer = self.peers.get(name) or self._peer(name)
        except ValueError:
            return "the peer's node name is not of the form name@host:port"
        active = peer.conn
        if active is not None:
            if inc < peer.incarnation:
                return "stale incarnation"
            if inc == peer.incarnation and active.dialer and self.name < name:
                return "duplicate link"
            # It is about to be established (``accept`` then ``_established``, in this
            # call): the old link's drop must not start a dial meanwhile (``_dial_later``).
            peer.accepting = conn
            try:
                active.close("replaced by a new link from the same node", level=logging.DEBUG)
            finally:
                peer.accepting = None
        elif peer.dialing is not None and self.name < name:
            return "simultaneous dial"
        conn.peer = peer
        return None

    def _keep_dialed(self, conn: PeerConnection) -> bool:
        """Dialer, handshake done: keep it unless the peer's own dial won meanwhile.

        Handshake callback (``data_received`` of the dialed link); never awaits."""
        peer = conn.peer
        assert peer is not None
        active = peer.conn
        if active is None or active is conn:
            return True
        if conn.core.peer_incarnation > peer.incarnation or self.name < peer.name:
            active.close("replaced by a new link to the same node", level=logging.DEBUG)
            return True
        return False

    def _activate(self, conn: PeerConnection) -> None:
        """The link ``conn`` is up and kept: make it ``peer.conn`` and call ``on_up``.

        Handshake callback (``_established``, once per link); never awaits."""
        peer = conn.peer
        assert peer is not None
        if peer.dialing is conn:
            peer.dialing = None
        if peer.dial_handle is not None:
            peer.dial_handle.cancel()
            peer.dial_handle = None
        old_inc = peer.incarnation
        new_inc = conn.core.peer_incarnation
        peer.conn = conn
        peer.incarnation = new_inc
        peer.refused = False
        peer.error = peer.error_kind = ""
        peer.role = conn.core.peer_role
        peer.linked_at = self.loop.time()  # the backoff starts again once it has lasted (_on_closed)
        peer.retry_at = 0.0
        peer.paused = False
        peer.connects += 1
        peer.last_recv = peer.last_sent = self.loop.time()
        if not conn.established.done():
            conn.established.set_result(True)
        log.debug("%s: link up with %s (incarnation %d)", self.name, conn.label, new_inc)
        if old_inc and old_inc != new_inc:
            log.info("%s: %s restarted (incarnation %d -> %d)", self.name, peer.name, old_inc, new_inc)
        self._on_up(peer.name, new_inc)
        self._flush(peer)

    def _on_closed(self, conn: PeerConnection) -> None:
        """``conn`` closed: a dial that failed, or a link that went down (``on_down``).

        Called by ``PeerConnection._finish`` whatever closed the link: its socket callbacks
        (``connection_lost``, a handshake refused), the handshake timer, the dial task
        after a failed connect, or ``PeerConnection.close`` called from this class
        (``disconnect``, ``post`` past ``hard_limit``, ``_tick``, ``_decide``,
        ``_keep_dialed``). So ``on_down`` can run inside those calls. Never awaits."""
        peer = conn.peer
        if peer is None:
            return
        if peer.dialing is conn:
            peer.dialing = None
            if peer.conn is None:
                self._dial_failed(peer, conn)
            return
        if peer.conn is not conn:
            return
        peer.conn = None
        peer.paused = False
        now = peer.idle_since = self.loop.time()
        self._drop_pending(peer, conn.close_reason)
        if now - peer.linked_at < STABLE_LINK:
            # Gone as soon as it came up: the peer drops this node's links (its deny list
            # names this node, or it closes links at once). The redial backs off, and is
            # scheduled before on_down, so that membership's connect() finds it pending:
            # redialed at once, each time, two nodes linked and dropped thousands of times
            # a second (each completed handshake had reset the backoff).
            delay = peer.backoff.next_delay(now)
            peer.retry_at = now + delay
            if peer.wanted and not self._closing:
                self._dial_later(peer, delay)
            self._on_down(peer.name, peer.incarnation, conn.close_reason)
            return
        peer.backoff.reset()
        self._on_down(peer.name, peer.incarnation, conn.close_reason)
        if peer.wanted and not self._closing:
            self._dial_later(peer, peer.backoff.next_delay(now))

    def _dial_failed(self, peer: Peer, conn: PeerConnection) -> None:
        """A dial ended without a link: report it, back off, redial, call ``on_down``.

        From ``_on_closed`` only; never awaits."""
        reason = conn.close_reason
        benign = any(r in reason for r in _BENIGN_REJECTS)
        if benign:
            delay = self.config.backoff_initial  # the peer's own dial is on its way
        else:
            delay = peer.backoff.next_delay(self.loop.time())
            self._report_dial_failure(peer, conn.fail_kind or HANDSHAKE, conn.fail_detail or reason, delay)
            self._drop_pending(peer, reason)
        peer.retry_at = peer.idle_since = self.loop.time() + delay
        if (peer.wanted or peer.writer.count) and not self._closing:
            self._dial_later(peer, delay)
        if not benign:
            # After the redial is scheduled: membership's connect() from on_down then finds
            # it pending and leaves it be, rather than dialing again at once (a dial refused
            # at once would be redialed at once, forever, with no backoff).
            self._on_down(peer.name, peer.incarnation, reason)

    def _report_dial_failure(self, peer: Peer, kind: str, reason: str, delay: float) -> None:
        """Say why a dial failed, once per peer and cause (rate-limited): a wrong cookie, a
        wrong node name or a version at WARNING always; an address that refuses or does
        not answer at WARNING while the peer was never linked (a wrong address, a node not
        started), once ``STARTUP_GRACE`` has passed since this node first wanted it (a
        tool's at once), else at INFO (a peer starting with this one, or a known node that
        went away: membership reports that).

        From ``_dial_failed`` only; never awaits."""
        peer.error_kind = kind
        if kind == NOT_AUTHORIZED:
            self._not_authorized += 1
            text = f"{peer.name} refused this node: not authorized (its cookie differs from this node's?)"
        elif kind == WRONG_NODE:
            said = reason.removeprefix("wrong node").lstrip(": ")
            text = f"the node at {peer.host}:{peer.port} is not {peer.name}" + (f" ({said})" if said else "")
            text += ": wrong node name?"
        elif kind == REFUSED:
            text = f"cannot reach {peer.name}: connection refused at {peer.host}:{peer.port} (nothing listens there)"
        elif kind == UNREACHABLE:
            text = f"cannot reach {peer.name}: {reason} (no answer from {peer.host}:{peer.port})"
        else:
            text = f"cannot link with {peer.name}: {reason}"
        peer.error = text
        never = not peer.connects
        starting = (
            never
            and kind in (REFUSED, UNREACHABLE)
            and self.role != "client"
            and self.loop.time() - peer.created < STARTUP_GRACE
        )
        loud = kind in (NOT_AUTHORIZED, WRONG_NODE, VERSION) or (never and not starting)
        if starting:
            text += "; it may not be started yet"
        level = logging.WARNING if loud else logging.INFO
        # Keyed by level too: the first warning after the grace is not suppressed by the
        # INFO lines before it.
        self._ratelog.log(level, ("dial", peer.name, kind, loud), "%s; retrying in %.2f s", text, delay)
        if (
            kind == NOT_AUTHORIZED
            and self.role != "client"
            and not any(p.conn is not None for p in self.peers.values())
        ):
            self._alone_log.log(
                logging.ERROR,
                "alone",
                "every node this node reached refused its cookie (last: %s): this node is NOT part of their "
                "cluster and runs on its own; give every node the same cookie (--cookie-file, DISTABLE_COOKIE)",
                peer.name,
            )

    def _drop_pending(self, peer: Peer, reason: str) -> None:
        """From ``_on_closed``, ``_dial_failed`` and ``_overflow``; never awaits. Drops
        what is queued for ``peer`` and wakes its waiting senders."""
        dropped = peer.writer.clear()
        if dropped:
            self._dropped += dropped
            log.debug("%s: dropped %d messages for %s: %s", self.name, dropped, peer.name, reason)
        peer.relieve()

    # --- keep-alive ------------------------------------------------------------------------

    def _schedule_tick(self) -> None:
        """From ``listen`` and ``_tick``."""
        self._tick_handle = self.loop.call_later(self.config.tick_interval, self._tick)

    def _tick(self) -> None:
        """Keep-alive timer callback, every ``tick_interval``; never awaits. Sends ``Tick``
        on idle links, closes silent ones, forgets unneeded peers."""
        now = self.loop.time()
        cfg = self.config
        for peer in list(self.peers.values()):
            conn = peer.conn
            if conn is None:
                if self._unneeded(peer) and now >= peer.idle_since + cfg.forget_peer_after:
                    del self.peers[peer.name]
                    peer.relieve()
                continue
            if now - peer.last_recv > cfg.tick_timeout:
                conn.close(f"no traffic for {cfg.tick_timeout} s", level=logging.WARNING)
            elif now - peer.last_sent >= cfg.tick_interval and not peer.writer.count:
                self.post(peer.name, Tick())
        if not self._closing:
            self._schedule_tick()

    @staticmethod
    def _unneeded(peer: Peer) -> bool:
        """No link, no dial (under way or pending), nothing queued, and not wanted."""
        return (
            peer.conn is None
            and peer.dialing is None
            and peer.dial_handle is None
            and not peer.wanted
            and not peer.writer.count
        )

    def statistics(self) -> TransportStatistics:
        """A snapshot of every peer and counter. Query; reads only."""
        return TransportStatistics(
            peers=tuple(
                PeerStatistics(
                    name=p.name,
                    connected=p.conn is not None,
                    incarnation=p.incarnation,
                    bytes_in=p.bytes_in,
                    bytes_out=p.bytes_out,
                    messages_in=p.messages_in,
                    messages_out=p.messages_out,
                    frames_in=p.frames_in,
                    frames_out=p.frames_out,
                    connects=p.connects,
                    error=p.error,
                    error_kind=p.error_kind,
                    link="" if p.conn is None else "unix" if p.conn.unix else "tcp",
                )
                for p in sorted(self.peers.values(), key=lambda p: p.name)
            ),
            handshake_failures=self._handshake_failures,
            protocol_errors=self._protocol_errors,
            dropped_messages=self._dropped,
            not_authorized=self._not_authorized,
        )


def _listen_now(fd: int, backlog: int) -> None:
    """``listen`` on the socket ``fd`` now (asyncio's server listens only when it starts
    serving), through a duplicate of it: the socket object is the server's.

    Raises:
        OSError: another socket listens on its port (``EADDRINUSE``).
    """
    with socket.socket(fileno=os.dup(fd)) as sock:
        sock.listen(backlog)
