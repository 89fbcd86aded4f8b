"""The public surface is deliberate: everything in __all__ exists, nothing else leaks."""

from __future__ import annotations

import distable


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
