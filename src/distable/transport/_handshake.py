"""The node-to-node handshake, as a sans-I/O core.

Rules:
    * Both sides prove they hold the cluster cookie without sending it: each sends an
      HMAC-SHA256, keyed by a key derived from the cookie, over both fresh nonces and
      both identities. A captured proof is useless on another connection (new nonces).
    * The acceptor proves nothing before the dialer has proved itself, so a peer
      without the cookie learns no MAC it could chose the input of.
    * The dialer names the node it means to reach; an acceptor with another name is
      refused (a port reused by a different node is not that node).
    * The agreed protocol version is the lower of both sides' versions; a peer whose
      range does not overlap ours is refused.
    * Every refusal is said: the acceptor answers a wrong node name, a version out of
      range and a wrong proof of the cookie with a ``Reject`` whose ``code`` says which
      (for the cookie only "not authorized": nothing about the expected proof), so the
      dialer reports the cause at once instead of seeing a bare hang-up.

Theory of operation (D = dialer, A = acceptor)::

    D -> A  Hello(version, min_version, name, incarnation, nonce_d, expected, role)
    A -> D  Challenge(version, name, incarnation, nonce_a, role)    | Reject(reason, code)
    D -> A  Proof(mac("dialer", ...))                               | (close)
    A -> D  (wrong proof) Reject("not authorized", REJECT_NOT_AUTHORIZED), close
            A verifies; the shell decides whether to keep this link
            (``accept``) or not (``reject``, e.g. a simultaneous dial)
    A -> D  Welcome(mac("acceptor", ...))                           | Reject(reason)
            D verifies; both sides are ESTABLISHED

States: dialer START -> SENT_HELLO -> SENT_PROOF -> ESTABLISHED;
acceptor START -> SENT_CHALLENGE -> VERIFIED -> ESTABLISHED. Any error -> FAILED.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from .._errors import HandshakeError
from ..wire._messages import (
    MIN_PROTOCOL_VERSION,
    PROTOCOL_VERSION,
    REJECT_DUPLICATE,
    REJECT_NOT_AUTHORIZED,
    REJECT_OTHER,
    REJECT_VERSION,
    REJECT_WRONG_NODE,
    Challenge,
    Hello,
    Proof,
    Reject,
    Welcome,
)

NONCE_SIZE = 32

#: The reasons nodes sent before ``Reject.code`` existed, and their codes.
_LEGACY_CODES = {
    "wrong node": REJECT_WRONG_NODE,
    "incompatible protocol version": REJECT_VERSION,
    "simultaneous dial": REJECT_DUPLICATE,
    "duplicate link": REJECT_DUPLICATE,
}


#: Why a dial failed, as the transport reports it (``PeerStatistics.error_kind``).
NOT_AUTHORIZED = "not_authorized"  # the peer refused this node's cookie
WRONG_NODE = "wrong_node"  # another node answers at that address
VERSION = "version"  # no protocol version in common
DUPLICATE = "duplicate"  # the peer's own link won (benign)
REFUSED = "refused"  # ECONNREFUSED: the host answered, nothing listens at that port
UNREACHABLE = "unreachable"  # no answer (timeout) or another network error
HANDSHAKE = "handshake"  # the handshake failed otherwise (timed out, broken peer)
_KIND_OF_CODE = {
    REJECT_NOT_AUTHORIZED: NOT_AUTHORIZED,
    REJECT_WRONG_NODE: WRONG_NODE,
    REJECT_VERSION: VERSION,
    REJECT_DUPLICATE: DUPLICATE,
}


def _code_of(reason: str) -> int:
    return _LEGACY_CODES.get(reason.partition(":")[0], REJECT_OTHER)


class HandshakeRefused(HandshakeError):
    """The peer refused the handshake with a ``Reject``: ``code`` (``REJECT_*``) says why,
    ``kind`` the same as a transport error kind."""

    def __init__(self, reason: str, code: int, text: str | None = None) -> None:
        super().__init__(text or f"peer refused the handshake: {reason}")
        self.reason = reason
        self.code = code or _code_of(reason)
        self.kind = _KIND_OF_CODE.get(self.code, HANDSHAKE)


def derive_key(cookie: bytes, purpose: bytes) -> bytes:
    """A key for one purpose (b"handshake", b"gossip", ...) derived from the cookie."""
    return hmac.new(cookie, b"distable/" + purpose, hashlib.sha256).digest()


class HandshakeCore:
    """One side of one handshake. Feed it decoded handshake messages; send what it returns."""

    def __init__(
        self,
        *,
        dialer: bool,
        name: str,
        incarnation: int,
        cookie: bytes,
        nonce: bytes,
        expected_peer: str | None = None,
        version: int = PROTOCOL_VERSION,
        min_version: int = MIN_PROTOCOL_VERSION,
        role: str = "server",
    ) -> None:
        if len(nonce) != NONCE_SIZE:
            raise ValueError(f"nonce must be {NONCE_SIZE} bytes")
        self.dialer = dialer
        self.name = name
        self.incarnation = incarnation
        self._key = derive_key(cookie, b"handshake")
        self._nonce = nonce
        self.expected_peer = expected_peer
        self._version = version
        self._min_version = min_version
        self.state = "START"
        self.role = role
        self.peer_role = "server"  # what the peer said it is ("client": a tool, not a member)
        self.peer_name: str | None = None
        self.peer_incarnation = 0
        self.version = 0
        self._peer_nonce = b""
        #: Acceptor: the ``Reject`` to send before closing, once ``receive`` raised.
        self.refusal: Reject | None = None

    # --- dialer ------------------------------------------------------------------

    def start(self) -> list[Any]:
        """Dialer: the opening message."""
        assert self.dialer
        assert self.state == "START"
        self.state = "SENT_HELLO"
        return [
            Hello(
                self._version,
                self._min_version,
                self.name,
                self.incarnation,
                self._nonce,
                self.expected_peer or "",
                self.role,
            )
        ]

    # --- both ----------------------------------------------------------------------

    def receive(self, msg: Any) -> list[Any]:
        """Process one message from the peer; return the messages to send.

        Raises:
            HandshakeError: the peer failed to authenticate or broke the protocol; the
                shell logs it and closes the connection.
        """
        try:
            return self._receive(msg)
        except HandshakeError:
            self.state = "FAILED"
            raise

    def _receive(self, msg: Any) -> list[Any]:
        if isinstance(msg, Reject):
            raise HandshakeRefused(msg.reason, msg.code)
        state = self.state
        if self.dialer:
            if state == "SENT_HELLO" and isinstance(msg, Challenge):
                if msg.name == self.name:
                    raise HandshakeError("the acceptor claims this node's own name (reflection?)")
                if self.expected_peer and msg.name != self.expected_peer:
                    raise HandshakeRefused(
                        "wrong node", REJECT_WRONG_NODE, f"reached node {msg.name!r}, expected {self.expected_peer!r}"
                    )
                if not (self._min_version <= msg.version <= self._version):
                    raise HandshakeError(f"peer chose protocol version {msg.version}, outside our range")
                self._check_nonce(msg.nonce)
                self.peer_name, self.peer_incarnation, self.version = msg.name, msg.incarnation, msg.version
                self.peer_role = msg.role
                self._peer_nonce = msg.nonce
                self.state = "SENT_PROOF"
                return [Proof(self._mac(b"dialer"))]
            if state == "SENT_PROOF" and isinstance(msg, Welcome):
                if not hmac.compare_digest(msg.mac, self._mac(b"acceptor")):
                    raise HandshakeError("peer's proof of the cookie is wrong (different cookie?)")
                self.state = "ESTABLISHED"
                return []
        else:
            if state == "START" and isinstance(msg, Hello):
                if msg.name == self.name:
                    self.state = "FAILED"
                    return [Reject("the dialer claims this node's own name")]
                if msg.expected and msg.expected != self.name:
                    self.state = "FAILED"
                    # The Challenge would tell anyone this name: saying it costs nothing.
                    return [Reject(f"wrong node: this is {self.name}", REJECT_WRONG_NODE)]
                version = min(self._version, msg.version)
                if version < max(self._min_version, msg.min_version):
                    self.state = "FAILED"
                    ours = f"{self._min_version}-{self._version}"
                    return [Reject(f"incompatible protocol version: this node speaks {ours}", REJECT_VERSION)]
                self._check_nonce(msg.nonce)
                self.peer_name, self.peer_incarnation, self.version = msg.name, msg.incarnation, version
                self.peer_role = msg.role
                self._peer_nonce = msg.nonce
                self.state = "SENT_CHALLENGE"
                return [Challenge(version, self.name, self.incarnation, self._nonce, self.role)]
            if state == "SENT_CHALLENGE" and isinstance(msg, Proof):
                if not hmac.compare_digest(msg.mac, self._mac(b"dialer")):
                    self.refusal = Reject("not authorized", REJECT_NOT_AUTHORIZED)
                    raise HandshakeError("peer's proof of the cookie is wrong (different cookie?)")
                self.state = "VERIFIED"
                return []
        raise HandshakeError(f"unexpected {type(msg).__name__} in handshake state {state}")

    # --- acceptor decision ------------------------------------------------------------

    def accept(self) -> list[Any]:
        """Acceptor, once VERIFIED: keep this link; prove ourselves to the dialer."""
        assert not self.dialer
        assert self.state == "VERIFIED"
        self.state = "ESTABLISHED"
        return [Welcome(self._mac(b"acceptor"))]

    def reject(self, reason: str) -> list[Any]:
        """Acceptor, once VERIFIED: refuse this link (duplicate, stale incarnation...)."""
        self.state = "FAILED"
        return [Reject(reason, _code_of(reason))]

    # --- helpers ---------------------------------------------------------------------

    def _check_nonce(self, nonce: bytes) -> None:
        if len(nonce) != NONCE_SIZE:
            raise HandshakeError("peer's nonce has the wrong size")
        if hmac.compare_digest(nonce, self._nonce):
            raise HandshakeError("peer echoed our nonce (reflection attempt)")

    def _mac(self, role: bytes) -> bytes:
        if self.dialer:
            d_name, d_inc, d_nonce = self.name, self.incarnation, self._nonce
            a_name, a_inc, a_nonce = self.peer_name or "", self.peer_incarnation, self._peer_nonce
        else:
            d_name, d_inc, d_nonce = self.peer_name or "", self.peer_incarnation, self._peer_nonce
            a_name, a_inc, a_nonce = self.name, self.incarnation, self._nonce
        parts = [
            role,
            d_nonce,
            a_nonce,
            d_name.encode(),
            str(d_inc).encode(),
            a_name.encode(),
            str(a_inc).encode(),
            str(self.version).encode(),
        ]
        data = b"".join(len(p).to_bytes(4, "big") + p for p in parts)
        return hmac.new(self._key, data, hashlib.sha256).digest()
