"""The public surface is deliberate: everything in __all__ exists, nothing else leaks."""

from __future__ import annotations

import distable
import distable.testing


def test_all_names_exist() -> None:
    for name in distable.__all__:
        assert hasattr(distable, name), name


def test_no_private_or_unlisted_public_names() -> None:
    public = {n for n in vars(distable) if not n.startswith("_")}
    subpackages = {
        "wire",
        "runtime",
        "transport",
        "membership",
        "ring",
        "registry",
        "node",
        "testing",
        "cli",
        "demo",
        "web",
        "store",
    }
    assert public - subpackages - set(distable.__all__) == set()


def test_design_contract_names_present() -> None:
    # Names docs/design.md lists for the foundation; the registry adds its own.
    contract = {
        "Node",
        "Process",
        "Pid",
        "send",
        "call",
        "cast",
        "monitor",
        "demonitor",
        "nodes",
        "events",
        "CallTimeout",
        "ProcessExited",
        "NameNotFound",
        "AlreadyRegistered",
        "NoNodeAvailable",
        "InvalidFactoryReturn",
        "Restart",
        "Resume",
        "Ignore",
        "Down",
    }
    assert contract <= set(distable.__all__)


def test_testing_helpers_exist_and_say_what_they_do() -> None:
    # Tests read a node's insides through these probes (docs/internals.md, "Layers" names them).
    assert {"handoffs_in_flight", "restarts_due", "replica_digest", "gate_of", "crash"} <= set(distable.testing.__all__)
    for name in distable.testing.__all__:
        assert getattr(distable.testing, name).__doc__, name
