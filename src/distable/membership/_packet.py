"""Gossip packets on UDP: sealing, authenticating and replay protection. Sans-I/O.

Rules:
    * Nothing in a packet is deserialized before it authenticates: the header is parsed
      with ``struct`` (fixed size), the MAC (or AEAD tag) is checked, and only then is
      the payload decoded, by a strictly typed decoder with no extension hook.
    * Keys are derived from the cluster cookie (``derive_key``), one per purpose.
    * A packet older or newer than ``window`` seconds (wall clock) is stale; a nonce
      seen within the window is a replay. Both are dropped.
    * Clusters sharing one multicast group tell their packets apart by an 8-byte
      cluster hint (a MAC of a constant under the cluster key), so a foreign cluster's
      packet is recognized as foreign, not reported as a forgery.

Layout (big-endian)::

    0   4  magic b"DSG1"
    4   1  version (1)
    5   1  flags (bit 0: payload encrypted with ChaCha20-Poly1305)
    6   8  cluster hint
    14  8  timestamp, ms since the Unix epoch
    22 16  nonce
    38  …  payload (msgpack ``Heartbeat``), or ciphertext + 16-byte tag when encrypted
    …  32  HMAC-SHA256 of everything before it (only when not encrypted)
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from collections import OrderedDict
from typing import Any

import msgspec

from .._extras import require
from ..transport._handshake import derive_key

MAGIC = b"DSG1"
VERSION = 1
FLAG_ENCRYPTED = 1
_HEADER = struct.Struct(">4sBB8sQ16s")
HEADER_SIZE = _HEADER.size  # 38
MAC_SIZE = 32
MAX_PACKET = 1400  # fits one Ethernet frame with IP and UDP headers


class Heartbeat(msgspec.Struct, array_like=True, frozen=True):
    """A node announcing itself: its name (which holds its TCP address) and incarnation."""

    name: str
    incarnation: int
    refutation: int


_heartbeat_decoder = msgspec.msgpack.Decoder(Heartbeat)
_encoder = msgspec.msgpack.Encoder()


class PacketRejected(Exception):
    """Why a packet was dropped: ``kind`` is one of malformed, foreign, forged, stale, replay."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind


class GossipCodec:
    """Seals and opens gossip packets for one cluster cookie."""

    def __init__(self, cookie: bytes, *, encrypt: bool = False, window: float = 30.0, replay_cache: int = 8192) -> None:
        self._mac_key = derive_key(cookie, b"gossip-mac")
        self.hint = derive_key(cookie, b"gossip-cluster-hint")[:8]
        self.encrypt = encrypt
        self._aead: Any = None
        if encrypt:
            require("crypto", "gossip encryption")
            from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

            self._aead = ChaCha20Poly1305(derive_key(cookie, b"gossip-aead"))
        self.window = window
        self._seen: OrderedDict[bytes, float] = OrderedDict()
        self._replay_cache = replay_cache

    def seal(self, heartbeat: Heartbeat, wall_now: float, nonce: bytes) -> bytes:
        """Make the packet for ``heartbeat``; ``nonce`` is 16 fresh random bytes."""
        flags = FLAG_ENCRYPTED if self.encrypt else 0
        header = _HEADER.pack(MAGIC, VERSION, flags, self.hint, int(wall_now * 1000), nonce)
        payload = _encoder.encode(heartbeat)
        if self.encrypt:
            sealed: bytes = self._aead.encrypt(nonce[:12], payload, header)
            packet = header + sealed
        else:
            body = header + payload
            packet = body + hmac.new(self._mac_key, body, hashlib.sha256).digest()
        if len(packet) > MAX_PACKET:
            raise ValueError(f"gossip packet of {len(packet)} bytes exceeds {MAX_PACKET}")
        return packet

    def open(self, packet: bytes, wall_now: float) -> Heartbeat:
        """Authenticate and decode a packet.

        Raises:
            PacketRejected: with ``kind`` saying why the packet must be dropped.
        """
        if len(packet) < HEADER_SIZE + 1 or len(packet) > MAX_PACKET:
            raise PacketRejected("malformed", f"{len(packet)} bytes")
        magic, version, flags, hint, stamp, nonce = _HEADER.unpack_from(packet)
        if magic != MAGIC or version != VERSION:
            raise PacketRejected("malformed", "not a distable gossip packet")
        if not hmac.compare_digest(hint, self.hint):
            raise PacketRejected("foreign", "another cluster's packet")
        header = packet[:HEADER_SIZE]
        if flags & FLAG_ENCRYPTED:
            if self._aead is None:
                raise PacketRejected("forged", "encrypted packet, but this node does not decrypt gossip")
            try:
                payload = self._aead.decrypt(nonce[:12], packet[HEADER_SIZE:], header)
            except Exception:
                raise PacketRejected("forged", "authentication tag does not verify") from None
        else:
            if self.encrypt:
                raise PacketRejected("forged", "plaintext packet, but this cluster encrypts gossip")
            if len(packet) < HEADER_SIZE + MAC_SIZE + 1:
                raise PacketRejected("malformed", "truncated")
            body, mac = packet[:-MAC_SIZE], packet[-MAC_SIZE:]
            if not hmac.compare_digest(mac, hmac.new(self._mac_key, body, hashlib.sha256).digest()):
                raise PacketRejected("forged", "MAC does not verify")
            payload = body[HEADER_SIZE:]
        if abs(wall_now - stamp / 1000) > self.window:
            raise PacketRejected("stale", f"timestamp {stamp / 1000 - wall_now:+.1f} s from now")
        self._expire(wall_now)
        if nonce in self._seen:
            raise PacketRejected("replay", "nonce seen before")
        self._seen[nonce] = wall_now + self.window
        if len(self._seen) > self._replay_cache:
            self._seen.popitem(last=False)
        try:
            return _heartbeat_decoder.decode(payload)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise PacketRejected("malformed", f"authenticated payload does not decode: {exc}") from None

    def _expire(self, wall_now: float) -> None:
        seen = self._seen
        while seen:
            nonce, expiry = next(iter(seen.items()))
            if expiry > wall_now:
                break
            del seen[nonce]
