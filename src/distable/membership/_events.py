"""Membership events: past-tense, frozen, published through ``events()``."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class NodeUp:
    """``node`` joined this node's view: it is alive and linked.

    ``incarnation`` is the node's restart stamp: a node restarted under the same name
    comes back with a larger one (after a ``NodeDown`` for the old one).
    """

    node: str
    incarnation: int
    #: A ``role="client"`` node (a tool such as ``distable status``): linked with, not a
    #: member. The registry hears of it; the node's event stream and log do not.
    client: bool = False


@dataclass(frozen=True, slots=True)
class NodeDown:
    """``node`` left this node's view.

    ``reason``: ``"left"`` (graceful leave), ``"failed"`` (the failure detector
    confirmed it: no answer to probes, direct or indirect, for the suspicion timeout),
    or ``"restarted"`` (a newer incarnation of the same name appeared).
    """

    node: str
    reason: str
    client: bool = False  # see NodeUp.client
