"""``GossipCodec``: sealing and opening gossip packets, with explicit wall-clock times.

Every test passes ``wall_now`` itself (time starts at 1_000_000.0), and nonces come
from a fixed-seed ``random.Random``, so each run is the same.
"""

from __future__ import annotations

import hashlib
import hmac
import random
import struct

import msgspec
import pytest

from distable.membership import GossipCodec, Heartbeat, PacketRejected
from distable.membership._packet import HEADER_SIZE, MAC_SIZE, MAX_PACKET
from distable.transport import derive_key

COOKIE = b"unit-gossip-cookie"
OTHER_COOKIE = b"another-clusters-cookie"
NOW = 1_000_000.0
BEAT = Heartbeat("a@127.0.0.1:4370", 1_700_000_000_000_000, 3)

_nonces = random.Random(20240611)


def nonce() -> bytes:
    return _nonces.randbytes(16)


def rejected(codec: GossipCodec, packet: bytes, wall_now: float = NOW) -> str:
    """The ``kind`` of the ``PacketRejected`` that opening ``packet`` raises."""
    with pytest.raises(PacketRejected) as info:
        codec.open(packet, wall_now)
    return info.value.kind


def flip(packet: bytes, index: int) -> bytes:
    """``packet`` with one bit of the byte at ``index`` inverted."""
    data = bytearray(packet)
    data[index] ^= 0x01
    return bytes(data)


# --- round trips --------------------------------------------------------------------------


def test_plaintext_packet_round_trips() -> None:
    sender, receiver = GossipCodec(COOKIE), GossipCodec(COOKIE)
    packet = sender.seal(BEAT, NOW, nonce())

    assert receiver.open(packet, NOW) == BEAT
    assert BEAT.name.encode() in packet  # plaintext: authenticated, not hidden


def test_encrypted_packet_round_trips_and_hides_the_payload() -> None:
    sender, receiver = GossipCodec(COOKIE, encrypt=True), GossipCodec(COOKIE, encrypt=True)
    packet = sender.seal(BEAT, NOW, nonce())

    assert receiver.open(packet, NOW) == BEAT
    assert BEAT.name.encode() not in packet


def test_encrypted_packet_with_a_flipped_ciphertext_byte_is_forged() -> None:
    codec = GossipCodec(COOKIE, encrypt=True)
    packet = codec.seal(BEAT, NOW, nonce())

    assert rejected(GossipCodec(COOKIE, encrypt=True), flip(packet, HEADER_SIZE + 2)) == "forged"
    assert rejected(GossipCodec(COOKIE, encrypt=True), flip(packet, len(packet) - 1)) == "forged"


def test_encrypted_packet_to_a_plaintext_codec_is_rejected() -> None:
    packet = GossipCodec(COOKIE, encrypt=True).seal(BEAT, NOW, nonce())

    assert rejected(GossipCodec(COOKIE), packet) == "forged"


def test_plaintext_packet_to_an_encrypting_codec_is_rejected() -> None:
    packet = GossipCodec(COOKIE).seal(BEAT, NOW, nonce())

    assert rejected(GossipCodec(COOKIE, encrypt=True), packet) == "forged"


# --- authentication -----------------------------------------------------------------------


def test_a_flipped_mac_or_payload_byte_is_forged() -> None:
    packet = GossipCodec(COOKIE).seal(BEAT, NOW, nonce())

    assert rejected(GossipCodec(COOKIE), flip(packet, len(packet) - 1)) == "forged"  # the MAC
    assert rejected(GossipCodec(COOKIE), flip(packet, HEADER_SIZE + 1)) == "forged"  # the payload
    assert rejected(GossipCodec(COOKIE), flip(packet, 15)) == "forged"  # the timestamp


def test_a_forged_packet_does_not_burn_its_nonce() -> None:
    """Only authenticated packets enter the replay cache: a forgery cannot pre-empt a real packet."""
    codec = GossipCodec(COOKIE)
    shared = nonce()
    real = GossipCodec(COOKIE).seal(BEAT, NOW, shared)

    assert rejected(codec, flip(real, len(real) - 1)) == "forged"
    assert codec.open(real, NOW) == BEAT


def test_malformed_packets_are_rejected_before_authentication() -> None:
    codec = GossipCodec(COOKIE)
    packet = codec.seal(BEAT, NOW, nonce())

    assert rejected(codec, b"") == "malformed"
    assert rejected(codec, packet[:HEADER_SIZE]) == "malformed"  # a header and nothing else
    assert rejected(codec, packet[: HEADER_SIZE + MAC_SIZE]) == "malformed"  # truncated
    assert rejected(codec, b"XXXX" + packet[4:]) == "malformed"  # magic
    assert rejected(codec, packet[:4] + b"\x02" + packet[5:]) == "malformed"  # version
    assert rejected(codec, random.Random(7).randbytes(200)) == "malformed"  # garbage


def test_an_authenticated_payload_that_is_not_a_heartbeat_is_malformed() -> None:
    """A cluster member with a different (buggy) encoder cannot crash the decoder."""
    header = struct.pack(">4sBB8sQ16s", b"DSG1", 1, 0, GossipCodec(COOKIE).hint, int(NOW * 1000), nonce())
    body = header + b"\x93\xa1a\xa1b\xa1c"  # msgpack ["a", "b", "c"]: wrong field types
    packet = body + hmac.new(derive_key(COOKIE, b"gossip-mac"), body, hashlib.sha256).digest()

    assert rejected(GossipCodec(COOKIE), packet) == "malformed"


# --- cluster hint -------------------------------------------------------------------------


def test_another_clusters_packet_is_foreign_not_forged() -> None:
    ours, theirs = GossipCodec(COOKIE), GossipCodec(OTHER_COOKIE)

    assert ours.hint != theirs.hint
    assert rejected(ours, theirs.seal(BEAT, NOW, nonce())) == "foreign"
    assert rejected(ours, GossipCodec(OTHER_COOKIE, encrypt=True).seal(BEAT, NOW, nonce())) == "foreign"


def test_the_hint_depends_only_on_the_cookie_and_reveals_no_key() -> None:
    hint = GossipCodec(COOKIE).hint

    assert len(hint) == 8
    assert GossipCodec(COOKIE, encrypt=True).hint == hint
    assert hint not in derive_key(COOKIE, b"gossip-mac")
    assert hint not in derive_key(COOKIE, b"gossip-aead")


# --- time window and replays --------------------------------------------------------------


def test_a_packet_inside_the_window_is_accepted_at_either_edge() -> None:
    sender = GossipCodec(COOKIE)

    assert GossipCodec(COOKIE, window=30.0).open(sender.seal(BEAT, NOW, nonce()), NOW + 30.0) == BEAT
    assert GossipCodec(COOKIE, window=30.0).open(sender.seal(BEAT, NOW + 30.0, nonce()), NOW) == BEAT


def test_a_packet_outside_the_window_is_stale_in_the_past_or_future() -> None:
    sender, receiver = GossipCodec(COOKIE), GossipCodec(COOKIE, window=30.0)

    assert rejected(receiver, sender.seal(BEAT, NOW - 30.5, nonce())) == "stale"
    assert rejected(receiver, sender.seal(BEAT, NOW + 30.5, nonce())) == "stale"
    assert rejected(receiver, sender.seal(BEAT, 0.0, nonce())) == "stale"


def test_the_same_packet_twice_is_a_replay() -> None:
    packet = GossipCodec(COOKIE).seal(BEAT, NOW, nonce())
    receiver = GossipCodec(COOKIE)

    assert receiver.open(packet, NOW) == BEAT
    assert rejected(receiver, packet, NOW + 1.0) == "replay"
    assert rejected(receiver, packet, NOW + 29.0) == "replay"


def test_a_resealed_packet_with_a_seen_nonce_is_a_replay_until_the_window_passes() -> None:
    sender, receiver = GossipCodec(COOKIE), GossipCodec(COOKIE, window=30.0)
    shared = nonce()

    assert receiver.open(sender.seal(BEAT, NOW, shared), NOW) == BEAT
    assert rejected(receiver, sender.seal(BEAT, NOW + 10.0, shared), NOW + 10.0) == "replay"
    # Past the window the first packet would be stale anyway, so its nonce is forgotten.
    assert receiver.open(sender.seal(BEAT, NOW + 31.0, shared), NOW + 31.0) == BEAT


def test_the_replay_cache_is_bounded_and_forgets_the_oldest_nonce_first() -> None:
    sender, receiver = GossipCodec(COOKIE), GossipCodec(COOKIE, replay_cache=4)
    packets = [sender.seal(BEAT, NOW, nonce()) for _ in range(6)]
    for packet in packets:
        receiver.open(packet, NOW)

    assert rejected(receiver, packets[-1]) == "replay"
    assert rejected(receiver, packets[2]) == "replay"
    # Memory stays bounded under a flood of valid packets: the two oldest were dropped.
    assert receiver.open(packets[0], NOW) == BEAT


# --- size ---------------------------------------------------------------------------------


def heartbeat_of_packet_size(size: int, trailer: int) -> Heartbeat:
    """A heartbeat whose packet is exactly ``size`` bytes with a ``trailer``-byte MAC or tag."""
    payload = size - HEADER_SIZE - trailer
    for length in range(payload, 0, -1):
        beat = Heartbeat("n" * length, BEAT.incarnation, BEAT.refutation)
        if len(msgspec.msgpack.encode(beat)) == payload:
            return beat
    raise AssertionError(f"no heartbeat makes a packet of {size} bytes")


@pytest.mark.parametrize(("encrypt", "trailer"), [(False, MAC_SIZE), (True, 16)], ids=["plaintext", "encrypted"])
def test_a_packet_of_max_size_round_trips_and_one_byte_more_cannot_be_sealed(encrypt: bool, trailer: int) -> None:
    codec = GossipCodec(COOKIE, encrypt=encrypt)
    largest = heartbeat_of_packet_size(MAX_PACKET, trailer)
    packet = codec.seal(largest, NOW, nonce())

    assert len(packet) == MAX_PACKET
    assert GossipCodec(COOKIE, encrypt=encrypt).open(packet, NOW) == largest
    too_big = Heartbeat(largest.name + "n", largest.incarnation, largest.refutation)
    with pytest.raises(ValueError, match="exceeds"):
        codec.seal(too_big, NOW, nonce())


def test_a_received_packet_over_max_size_is_malformed() -> None:
    packet = GossipCodec(COOKIE).seal(BEAT, NOW, nonce())

    assert rejected(GossipCodec(COOKIE), packet + b"\x00" * (MAX_PACKET + 1 - len(packet))) == "malformed"
