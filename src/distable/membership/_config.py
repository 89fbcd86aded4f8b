"""Membership tunables, with a preset for one machine and one for a LAN."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class MembershipConfig:
    """How fast failures are detected and how eagerly news spreads.

    Attributes:
        protocol_period: one direct probe of one member per period (SWIM).
        probe_timeout: how long the direct probe may take before indirect probes go out.
        indirect_probes: how many other members are asked to probe a silent member.
        suspicion_mult: a suspect is declared failed after
            ``suspicion_mult * max(1, log10(n)) * protocol_period`` without a refutation.
        suspicion_min: lower bound of that timeout, in seconds.
        retransmit_mult: a rumor is piggybacked ``retransmit_mult * ceil(log10(n + 1))`` times.
        max_piggyback: at most this many rumors ride on one probe message.
        push_pull_interval: a full-state exchange with one random member this often.
        reclaim_after: forget a failed (dead) member this long after it was declared dead.
            Until then it is redialed, so a healed partition reconnects by itself.
        forget_left_after: forget a member that left gracefully this long after hearing
            of it. Until then its tombstone is gossiped (piggybacked ``retransmits(n)``
            times and carried by every push-pull), so every member hears of the
            departure before anyone forgets it; keep it at least ``push_pull_interval``
            and well above ``retransmits(n) * protocol_period``.
        refusals_to_fail: a member whose link dropped is failed at once, without
            suspicion, when this many redials in a row are refused (ECONNREFUSED: its
            host answered, nothing listens at its address, so its process is gone). A
            silent host (partition, pause: timeouts, no refusal) still goes through
            suspicion. 0 turns this off.
    """

    protocol_period: float = 1.0
    probe_timeout: float = 0.5
    indirect_probes: int = 3
    suspicion_mult: float = 4.0
    suspicion_min: float = 2.0
    retransmit_mult: int = 4
    max_piggyback: int = 16
    push_pull_interval: float = 30.0
    reclaim_after: float = 60.0
    # One push-pull round (30 s), well past piggybacked dissemination (4 s with up to 9
    # members, 8 s up to 99, 12 s up to 999), so a node that missed the rumor still gets
    # it in a full table before anyone forgets the member.
    forget_left_after: float = 30.0
    # Two in a row: one refusal may be a race with a listener being set up or torn down;
    # two, a backoff apart (0.05-0.15 s), mean nothing listens. A paused (SIGSTOP) process's
    # listening socket still completes TCP connections (the kernel's backlog), so it is
    # never refused.
    refusals_to_fail: int = 2

    @classmethod
    def lan(cls) -> MembershipConfig:
        """Defaults for hosts on one LAN: detection in about 3-6 s, light traffic."""
        return cls()

    @classmethod
    def local(cls) -> MembershipConfig:
        """For nodes on one machine (tests, the demo): detection in well under 1.5 s."""
        return cls(
            protocol_period=0.2,
            probe_timeout=0.1,
            suspicion_mult=3.0,
            suspicion_min=0.5,
            push_pull_interval=5.0,
            reclaim_after=10.0,
            # One push-pull round (5 s) here too: rumors are spread within 0.8-2.4 s.
            forget_left_after=5.0,
        )

    def suspicion_timeout(self, members: int) -> float:
        scale = max(1.0, math.log10(max(members, 1)))
        return max(self.suspicion_min, self.suspicion_mult * scale * self.protocol_period)

    def retransmits(self, members: int) -> int:
        return self.retransmit_mult * max(1, math.ceil(math.log10(members + 1)))
