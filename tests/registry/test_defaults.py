"""Defaults people expect (issue 10): a name registered through a factory is restarted
after a crash unless the user asks for "temporary", as an OTP supervisor's child."""

from __future__ import annotations

import inspect
from functools import partial

import distable
from distable import Node
from distable.testing import eventually

from . import apps
from .conftest import Cluster
from .test_restarts import crash, replaced


async def test_a_factory_registered_name_is_restarted_after_a_crash_by_default(
    cluster: Cluster, three: list[Node]
) -> None:
    a = three[0]
    for name, register in [("by-default", a.register), ("by-default-wor", a.whereis_or_register)]:
        pid = await register(name, apps.Counter, key=name, start=5)
        await crash(a, name)
        await eventually(partial(replaced, cluster, name, pid), message=cluster.describe)
        new = a.whereis(name)
        assert new is not None
        assert await a.call(name, "get") == (5, new.node)  # restarted, with the factory's arguments
    for function in (distable.register, distable.whereis_or_register, Node.register, Node.whereis_or_register):
        assert inspect.signature(function).parameters["restart"].default == "transient"
