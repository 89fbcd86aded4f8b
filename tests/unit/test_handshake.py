"""The handshake core, driven without I/O: two cores joined by an in-memory link.

Every message crosses the link in its wire form (framed, encoded with
``handshake_encoder``, decoded with the strict ``handshake_decoder``), so the structs'
encoding is exercised along with the state machine. Nonces are fixed bytes; Hypothesis
runs derandomized, so every run is the same.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from distable._errors import HandshakeError
from distable.transport import HandshakeCore, derive_key
from distable.transport._handshake import (
    DUPLICATE,
    NONCE_SIZE,
    NOT_AUTHORIZED,
    VERSION,
    WRONG_NODE,
    HandshakeRefused,
)
from distable.wire import FrameDecoder, encode_frame
from distable.wire._messages import (
    HANDSHAKE_MAX_FRAME,
    REJECT_DUPLICATE,
    REJECT_NOT_AUTHORIZED,
    REJECT_VERSION,
    REJECT_WRONG_NODE,
    Challenge,
    Hello,
    Proof,
    Reject,
    Welcome,
    handshake_decoder,
    handshake_encoder,
)

SETTINGS = settings(derandomize=True, deadline=None, database=None, print_blob=True, max_examples=100)

COOKIE = b"the cluster cookie"
OTHER_COOKIE = b"another cluster's cookie"
DIALER = "d@127.0.0.1:4001"
ACCEPTOR = "a@127.0.0.1:4002"
DIALER_INC = 1111
ACCEPTOR_INC = 2222
NONCE_D = bytes([0xD1]) * NONCE_SIZE
NONCE_A = bytes([0xA1]) * NONCE_SIZE
NONCE_A2 = bytes([0xA2]) * NONCE_SIZE
NONCE_X = bytes([0x77]) * NONCE_SIZE


def make_dialer(
    *,
    cookie: bytes = COOKIE,
    nonce: bytes = NONCE_D,
    name: str = DIALER,
    expected: str | None = ACCEPTOR,
    version: int = 1,
    min_version: int = 1,
) -> HandshakeCore:
    return HandshakeCore(
        dialer=True,
        name=name,
        incarnation=DIALER_INC,
        cookie=cookie,
        nonce=nonce,
        expected_peer=expected,
        version=version,
        min_version=min_version,
    )


def make_acceptor(
    *,
    cookie: bytes = COOKIE,
    nonce: bytes = NONCE_A,
    name: str = ACCEPTOR,
    version: int = 1,
    min_version: int = 1,
) -> HandshakeCore:
    return HandshakeCore(
        dialer=False,
        name=name,
        incarnation=ACCEPTOR_INC,
        cookie=cookie,
        nonce=nonce,
        version=version,
        min_version=min_version,
    )


def over_wire(messages: list[Any]) -> list[Any]:
    """What the peer decodes from ``messages``: framed, encoded and strictly decoded."""
    stream = b"".join(encode_frame(handshake_encoder.encode(m)) for m in messages)
    frames = FrameDecoder(HANDSHAKE_MAX_FRAME).feed(stream)
    assert len(frames) == len(messages)
    decoded = [handshake_decoder.decode(f) for f in frames]
    assert decoded == messages
    return decoded


class Link:
    """A dialer and an acceptor joined in memory, with a log of what each side sent."""

    def __init__(self, dialer: HandshakeCore, acceptor: HandshakeCore) -> None:
        self.dialer = dialer
        self.acceptor = acceptor
        self.sent_by_dialer: list[Any] = []
        self.sent_by_acceptor: list[Any] = []

    def start(self) -> list[Any]:
        out = self.dialer.start()
        self.sent_by_dialer += out
        return out

    def to_acceptor(self, messages: list[Any]) -> list[Any]:
        """Deliver ``messages`` to the acceptor; return (and log) its replies."""
        replies: list[Any] = []
        for m in over_wire(messages):
            replies += self.acceptor.receive(m)
        self.sent_by_acceptor += replies
        return replies

    def to_dialer(self, messages: list[Any]) -> list[Any]:
        replies: list[Any] = []
        for m in over_wire(messages):
            replies += self.dialer.receive(m)
        self.sent_by_dialer += replies
        return replies

    def accept(self) -> list[Any]:
        out = self.acceptor.accept()
        self.sent_by_acceptor += out
        return out

    def reject(self, reason: str) -> list[Any]:
        out = self.acceptor.reject(reason)
        self.sent_by_acceptor += out
        return out

    def run_to_verified(self) -> None:
        challenge = self.to_acceptor(self.start())
        proof = self.to_dialer(challenge)
        assert self.to_acceptor(proof) == []
        assert self.acceptor.state == "VERIFIED"

    def run(self) -> None:
        self.run_to_verified()
        assert self.to_dialer(self.accept()) == []


def assert_no_mac_sent(messages: list[Any]) -> None:
    assert all(isinstance(m, Challenge | Reject) for m in messages), messages
    assert "mac" not in Challenge.__struct_fields__


# --- success -----------------------------------------------------------------------------


def test_success_path_establishes_both_sides_and_learns_the_peer() -> None:
    link = Link(make_dialer(), make_acceptor())
    link.run()
    d, a = link.dialer, link.acceptor
    assert d.state == a.state == "ESTABLISHED"
    assert (d.peer_name, d.peer_incarnation) == (ACCEPTOR, ACCEPTOR_INC)
    assert (a.peer_name, a.peer_incarnation) == (DIALER, DIALER_INC)
    assert d.version == a.version == 1
    assert [type(m) for m in link.sent_by_dialer] == [Hello, Proof]
    assert [type(m) for m in link.sent_by_acceptor] == [Challenge, Welcome]


def test_hello_carries_the_dialers_identity_and_expectation() -> None:
    (hello,) = make_dialer(version=3, min_version=2).start()
    assert hello == Hello(3, 2, DIALER, DIALER_INC, NONCE_D, ACCEPTOR)


def test_dialer_without_an_expected_name_reaches_any_node() -> None:
    link = Link(make_dialer(expected=None), make_acceptor())
    link.run()
    assert link.dialer.peer_name == ACCEPTOR
    assert link.sent_by_dialer[0].expected == ""


def test_handshake_messages_fit_the_handshake_frame_limit() -> None:
    link = Link(make_dialer(name="d" * 1000 + "@127.0.0.1:1"), make_acceptor())
    link.run()
    for m in link.sent_by_dialer + link.sent_by_acceptor:
        assert len(handshake_encoder.encode(m)) <= HANDSHAKE_MAX_FRAME


@SETTINGS
@given(
    st.integers(1, 6).flatmap(lambda lo: st.tuples(st.just(lo), st.integers(lo, 6))),
    st.integers(1, 6).flatmap(lambda lo: st.tuples(st.just(lo), st.integers(lo, 6))),
)
def test_version_is_the_highest_both_speak_or_the_link_is_refused(
    dialer_range: tuple[int, int], acceptor_range: tuple[int, int]
) -> None:
    (d_min, d_max), (a_min, a_max) = dialer_range, acceptor_range
    link = Link(
        make_dialer(version=d_max, min_version=d_min),
        make_acceptor(version=a_max, min_version=a_min),
    )
    if max(d_min, a_min) <= min(d_max, a_max):
        link.run()
        assert link.dialer.version == link.acceptor.version == min(d_max, a_max)
    else:
        replies = link.to_acceptor(link.start())
        assert replies == [Reject(f"incompatible protocol version: this node speaks {a_min}-{a_max}", REJECT_VERSION)]
        assert link.acceptor.state == "FAILED"
        with pytest.raises(HandshakeError, match="incompatible protocol version"):
            link.to_dialer(replies)
        assert link.dialer.state == "FAILED"


# --- the cookie ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("dialer_cookie", "acceptor_cookie"),
    [(OTHER_COOKIE, COOKIE), (COOKIE, OTHER_COOKIE)],
    ids=["dialer has the wrong cookie", "acceptor has the wrong cookie"],
)
def test_wrong_cookie_fails_at_the_acceptor_before_it_proves_anything(
    dialer_cookie: bytes, acceptor_cookie: bytes
) -> None:
    link = Link(make_dialer(cookie=dialer_cookie), make_acceptor(cookie=acceptor_cookie))
    proof = link.to_dialer(link.to_acceptor(link.start()))
    with pytest.raises(HandshakeError, match="cookie"):
        link.to_acceptor(proof)
    assert link.acceptor.state == "FAILED"
    assert_no_mac_sent(link.sent_by_acceptor)
    # The acceptor says "not authorized" (and nothing more) before it hangs up, and the
    # dialer knows at once that its cookie was refused, not that the node is unreachable.
    refusal = link.acceptor.refusal
    assert refusal == Reject("not authorized", REJECT_NOT_AUTHORIZED)
    assert_no_mac_sent([refusal])
    with pytest.raises(HandshakeRefused, match="not authorized") as refused:
        link.to_dialer([refusal])
    assert refused.value.kind == NOT_AUTHORIZED
    assert link.dialer.state == "FAILED"


def test_acceptor_sends_no_mac_before_the_dialer_proves_itself() -> None:
    # A peer without the cookie sends a Hello and a guessed proof: all it gets is a Challenge.
    acceptor = make_acceptor()
    sent = acceptor.receive(Hello(1, 1, "m@127.0.0.1:9", 1, NONCE_X, ACCEPTOR))
    assert_no_mac_sent(sent)
    with pytest.raises(HandshakeError):
        acceptor.receive(Proof(b"\x00" * 32))
    assert acceptor.state == "FAILED"


def test_dialer_refuses_a_welcome_made_without_the_cookie() -> None:
    # A hostile acceptor with another cookie completes the handshake with a twin of the
    # dialer that shares its nonce and identity (but has the hostile cookie), so its
    # Welcome covers exactly the right inputs, only under the wrong key.
    dialer = make_dialer()
    hostile = make_acceptor(cookie=OTHER_COOKIE)
    twin = make_dialer(cookie=OTHER_COOKIE)
    challenge = hostile.receive(over_wire(dialer.start())[0])
    twin.start()
    dialer.receive(over_wire(challenge)[0])
    assert hostile.receive(over_wire(twin.receive(challenge[0]))[0]) == []
    welcome = hostile.accept()
    with pytest.raises(HandshakeError, match="cookie"):
        dialer.receive(over_wire(welcome)[0])
    assert dialer.state == "FAILED"


def test_dialer_refuses_a_forged_welcome() -> None:
    link = Link(make_dialer(), make_acceptor())
    link.to_dialer(link.to_acceptor(link.start()))
    with pytest.raises(HandshakeError, match="cookie"):
        link.to_dialer([Welcome(b"\x00" * 32)])
    assert link.dialer.state == "FAILED"


def test_dialers_proof_is_not_a_valid_welcome() -> None:
    # The role is part of the MAC: echoing the dialer's own proof back does not work.
    link = Link(make_dialer(), make_acceptor())
    (proof,) = link.to_dialer(link.to_acceptor(link.start()))
    with pytest.raises(HandshakeError):
        link.to_dialer([Welcome(proof.mac)])


# --- node names --------------------------------------------------------------------------


def test_dialer_expecting_another_node_is_refused_by_the_acceptor() -> None:
    link = Link(make_dialer(expected="b@127.0.0.1:4002"), make_acceptor())
    replies = link.to_acceptor(link.start())
    assert replies == [Reject(f"wrong node: this is {ACCEPTOR}", REJECT_WRONG_NODE)]
    assert link.acceptor.state == "FAILED"
    with pytest.raises(HandshakeRefused, match="wrong node") as refused:
        link.to_dialer(replies)
    assert refused.value.kind == WRONG_NODE
    assert link.dialer.state == "FAILED"


@pytest.mark.parametrize(
    ("reason", "kind"),
    [("wrong node", WRONG_NODE), ("incompatible protocol version", VERSION), ("simultaneous dial", DUPLICATE)],
)
def test_a_reject_without_a_code_from_an_older_node_is_read_from_its_reason(reason: str, kind: str) -> None:
    link = Link(make_dialer(), make_acceptor())
    link.start()
    with pytest.raises(HandshakeRefused) as refused:
        link.dialer.receive(over_wire([Reject(reason)])[0])
    assert refused.value.kind == kind


def test_dialer_refuses_a_challenge_from_another_node() -> None:
    # An acceptor that ignores the Hello's expectation (older or hostile) still fails.
    dialer = make_dialer(expected="b@127.0.0.1:4002")
    dialer.start()
    with pytest.raises(HandshakeError, match=re.escape("expected 'b@127.0.0.1:4002'")):
        dialer.receive(over_wire([Challenge(1, ACCEPTOR, ACCEPTOR_INC, NONCE_A)])[0])
    assert dialer.state == "FAILED"


def test_acceptor_told_another_name_rejects_with_wrong_node() -> None:
    acceptor = make_acceptor()
    replies = acceptor.receive(Hello(1, 1, DIALER, DIALER_INC, NONCE_D, "z@127.0.0.1:4002"))
    assert replies == [Reject(f"wrong node: this is {ACCEPTOR}", REJECT_WRONG_NODE)]
    assert acceptor.state == "FAILED"


def test_dialer_refuses_a_challenge_with_a_version_outside_its_range() -> None:
    dialer = make_dialer(version=3, min_version=2)
    dialer.start()
    with pytest.raises(HandshakeError, match="version"):
        dialer.receive(Challenge(4, ACCEPTOR, ACCEPTOR_INC, NONCE_A))
    dialer = make_dialer(version=3, min_version=2)
    dialer.start()
    with pytest.raises(HandshakeError, match="version"):
        dialer.receive(Challenge(1, ACCEPTOR, ACCEPTOR_INC, NONCE_A))


# --- replay, reflection, tampering ---------------------------------------------------------


def test_dialer_refuses_its_own_nonce_echoed_back() -> None:
    link = Link(make_dialer(), make_acceptor())
    link.start()
    with pytest.raises(HandshakeError, match="reflection"):
        link.to_dialer([Challenge(1, ACCEPTOR, ACCEPTOR_INC, NONCE_D)])
    assert link.dialer.state == "FAILED"


def test_acceptor_refuses_its_own_nonce_in_a_hello() -> None:
    acceptor = make_acceptor()
    with pytest.raises(HandshakeError, match="reflection"):
        acceptor.receive(Hello(1, 1, DIALER, DIALER_INC, NONCE_A, ACCEPTOR))
    assert acceptor.state == "FAILED"


def test_proof_reflected_across_two_connections_is_refused() -> None:
    # An attacker makes node A dial it, then dials A claiming to be A, and tries to make
    # A's own dialer compute the proof the attacker needs on the second connection.
    # The core refuses both halves itself: an acceptor never answers a Hello that claims
    # its own name, and a dialer never accepts a Challenge that claims the dialer's name.
    a_dialer = make_dialer(name=ACCEPTOR, expected="m@127.0.0.1:9")
    a_acceptor = make_acceptor(nonce=NONCE_A2)
    (hello,) = a_dialer.start()
    (reply,) = a_acceptor.receive(Hello(1, 1, ACCEPTOR, DIALER_INC, hello.nonce, ACCEPTOR))
    assert isinstance(reply, Reject)
    assert a_acceptor.state == "FAILED"
    with pytest.raises(HandshakeError, match="own name"):
        a_dialer.receive(Challenge(1, ACCEPTOR, DIALER_INC, NONCE_A2))


def test_proof_replayed_into_a_fresh_acceptor_is_refused() -> None:
    first = Link(make_dialer(), make_acceptor())
    first.run()
    hello, proof = first.sent_by_dialer
    fresh = Link(make_dialer(), make_acceptor(nonce=NONCE_A2))
    (challenge,) = fresh.to_acceptor([hello])
    assert challenge.nonce != NONCE_A
    with pytest.raises(HandshakeError, match="cookie"):
        fresh.to_acceptor([proof])
    assert fresh.acceptor.state == "FAILED"
    assert_no_mac_sent(fresh.sent_by_acceptor)


def test_welcome_replayed_into_a_fresh_dialer_is_refused() -> None:
    first = Link(make_dialer(), make_acceptor())
    first.run()
    (_, welcome) = first.sent_by_acceptor
    fresh = Link(make_dialer(nonce=NONCE_X), make_acceptor(nonce=NONCE_A2))
    fresh.to_dialer(fresh.to_acceptor(fresh.start()))
    with pytest.raises(HandshakeError, match="cookie"):
        fresh.to_dialer([welcome])


@pytest.mark.parametrize(
    "tamper",
    [
        lambda c: Challenge(c.version, c.name, c.incarnation + 1, c.nonce),
        lambda c: Challenge(c.version, c.name, c.incarnation, NONCE_X),
    ],
    ids=["incarnation", "nonce"],
)
def test_challenge_altered_in_transit_fails_the_proof(tamper: Callable[[Challenge], Challenge]) -> None:
    link = Link(make_dialer(), make_acceptor())
    (challenge,) = link.to_acceptor(link.start())
    proof = link.to_dialer([tamper(challenge)])
    with pytest.raises(HandshakeError, match="cookie"):
        link.to_acceptor(proof)


def test_hello_altered_in_transit_fails_the_proof() -> None:
    link = Link(make_dialer(), make_acceptor())
    (hello,) = link.start()
    altered = Hello(hello.version, hello.min_version, "evil@127.0.0.1:1", 9, hello.nonce, hello.expected)
    proof = link.to_dialer(link.to_acceptor([altered]))
    with pytest.raises(HandshakeError, match="cookie"):
        link.to_acceptor(proof)


# --- order and state -------------------------------------------------------------------------

HELLO = Hello(1, 1, DIALER, DIALER_INC, NONCE_X, ACCEPTOR)
CHALLENGE = Challenge(1, ACCEPTOR, ACCEPTOR_INC, NONCE_X)
PROOF = Proof(b"\x00" * 32)
WELCOME = Welcome(b"\x00" * 32)


def link_in(stage: str) -> Link:
    """A fresh link driven to ``stage``."""
    link = Link(make_dialer(), make_acceptor())
    if stage == "start":
        return link
    challenge = link.to_acceptor(link.start())
    if stage == "challenged":
        return link
    proof = link.to_dialer(challenge)
    if stage == "proved":
        return link
    link.to_acceptor(proof)
    if stage == "verified":
        return link
    link.to_dialer(link.accept())
    assert stage == "established"
    return link


# (side, stage, message): each message is out of order for that side in that stage.
OUT_OF_ORDER = [
    ("acceptor", "start", PROOF),
    ("acceptor", "start", WELCOME),
    ("acceptor", "start", CHALLENGE),
    ("acceptor", "challenged", HELLO),
    ("acceptor", "challenged", WELCOME),
    ("acceptor", "challenged", CHALLENGE),
    ("acceptor", "verified", PROOF),
    ("acceptor", "established", HELLO),
    ("dialer", "start", CHALLENGE),
    ("dialer", "challenged", WELCOME),
    ("dialer", "challenged", PROOF),
    ("dialer", "challenged", HELLO),
    ("dialer", "proved", CHALLENGE),
    ("dialer", "proved", HELLO),
    ("dialer", "established", WELCOME),
]


@pytest.mark.parametrize(
    ("side", "stage", "message"), OUT_OF_ORDER, ids=[f"{s}-{st}-{type(m).__name__}" for s, st, m in OUT_OF_ORDER]
)
def test_out_of_order_message_is_a_handshake_error(side: str, stage: str, message: Any) -> None:
    link = link_in(stage)
    core = link.acceptor if side == "acceptor" else link.dialer
    with pytest.raises(HandshakeError, match="unexpected"):
        core.receive(over_wire([message])[0])
    assert core.state == "FAILED"


@pytest.mark.parametrize("message", [HELLO, CHALLENGE, PROOF, WELCOME, Reject("x")], ids=lambda m: type(m).__name__)
def test_a_failed_core_refuses_everything_after(message: Any) -> None:
    link = link_in("challenged")
    with pytest.raises(HandshakeError):
        link.acceptor.receive(PROOF)
    with pytest.raises(HandshakeError):
        link.acceptor.receive(message)
    assert link.acceptor.state == "FAILED"


@pytest.mark.parametrize("stage", ["start", "challenged", "proved"])
def test_reject_from_the_peer_fails_the_dialer_with_its_reason(stage: str) -> None:
    link = link_in(stage)
    if stage == "start":
        link.start()
    with pytest.raises(HandshakeError, match="going away"):
        link.to_dialer([Reject("going away")])
    assert link.dialer.state == "FAILED"


def test_acceptor_reject_after_verified_fails_the_dialer_with_the_reason() -> None:
    link = link_in("verified")
    replies = link.reject("simultaneous dial")
    assert replies == [Reject("simultaneous dial", REJECT_DUPLICATE)]
    assert link.acceptor.state == "FAILED"
    with pytest.raises(HandshakeError, match="simultaneous dial"):
        link.to_dialer(replies)
    assert link.dialer.state == "FAILED"
    assert not any(isinstance(m, Welcome) for m in link.sent_by_acceptor)


# --- nonces and keys -----------------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 16, NONCE_SIZE - 1, NONCE_SIZE + 1])
def test_own_nonce_of_the_wrong_size_is_refused(size: int) -> None:
    with pytest.raises(ValueError, match="nonce"):
        make_dialer(nonce=b"\x01" * size)
    with pytest.raises(ValueError, match="nonce"):
        make_acceptor(nonce=b"\x01" * size)


@pytest.mark.parametrize("size", [0, 16, NONCE_SIZE - 1, NONCE_SIZE + 1, 1000])
def test_peer_nonce_of_the_wrong_size_is_refused(size: int) -> None:
    acceptor = make_acceptor()
    with pytest.raises(HandshakeError, match="nonce"):
        acceptor.receive(over_wire([Hello(1, 1, DIALER, DIALER_INC, b"\x05" * size, ACCEPTOR)])[0])
    assert acceptor.state == "FAILED"
    dialer = make_dialer()
    dialer.start()
    with pytest.raises(HandshakeError, match="nonce"):
        dialer.receive(over_wire([Challenge(1, ACCEPTOR, ACCEPTOR_INC, b"\x05" * size)])[0])
    assert dialer.state == "FAILED"


def test_derive_key_differs_by_purpose_and_cookie_and_is_stable() -> None:
    handshake = derive_key(COOKIE, b"handshake")
    gossip = derive_key(COOKIE, b"gossip")
    assert handshake != gossip
    assert handshake == derive_key(COOKIE, b"handshake")
    assert handshake != derive_key(OTHER_COOKIE, b"handshake")
    assert len(handshake) == len(gossip) == 32
    assert COOKIE not in handshake


# --- a peer without the cookie -----------------------------------------------------------------

nonces = st.sampled_from([NONCE_D, NONCE_A, NONCE_X, b"", b"\x01" * 16])
names = st.sampled_from([DIALER, ACCEPTOR, "m@127.0.0.1:9", ""])
versions = st.integers(0, 3)
hostile_messages = st.one_of(
    st.builds(Hello, versions, versions, names, st.integers(0, 3), nonces, names),
    st.builds(Challenge, versions, names, st.integers(0, 3), nonces),
    st.builds(Proof, st.binary(min_size=32, max_size=32) | st.binary(max_size=40)),
    st.builds(Welcome, st.binary(min_size=32, max_size=32) | st.binary(max_size=40)),
    st.builds(Reject, st.text(max_size=10)),
)


@SETTINGS
@given(st.lists(hostile_messages, min_size=1, max_size=6))
def test_acceptor_never_verifies_a_peer_without_the_cookie(messages: list[Any]) -> None:
    acceptor = make_acceptor()
    sent: list[Any] = []
    for m in over_wire(messages):
        try:
            sent += acceptor.receive(m)
        except HandshakeError:
            assert acceptor.state == "FAILED"
            break
        assert acceptor.state in ("START", "SENT_CHALLENGE", "FAILED")
    assert acceptor.state != "VERIFIED"
    assert_no_mac_sent(sent)


@SETTINGS
@given(st.lists(hostile_messages, min_size=1, max_size=6))
def test_dialer_never_establishes_with_a_peer_without_the_cookie(messages: list[Any]) -> None:
    dialer = make_dialer(expected=None)
    dialer.start()
    for m in over_wire(messages):
        try:
            dialer.receive(m)
        except HandshakeError:
            assert dialer.state == "FAILED"
            break
    assert dialer.state != "ESTABLISHED"
