"""The registry server's requests on the wire: typed messages between nodes of protocol
version 3, and lists in a call to the registry server to and from a node that agreed on
version 1 or 2, with the same outcomes and the same errors both ways."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from distable import AlreadyRegistered, FactoryError, Node, Pid, ProcessExited
from distable.registry import REGISTRY_SERVER_ID
from distable.registry._service import _as_list, _reply_as_list, _reply_from_list, _request_from_list
from distable.testing import eventually
from distable.wire._messages import (
    REGISTRY_ERROR,
    REGISTRY_EXISTS,
    REGISTRY_OK,
    CallRequest,
    GroupJoinRequest,
    GroupLeaveRequest,
    Lineage,
    RegisterNameRequest,
    RegisterRequest,
    RegistryReply,
    RegistryRequest,
    Spec,
    UnregisterRequest,
)

from . import apps
from .conftest import Cluster, first_owned

TYPED = (RegisterRequest, RegisterNameRequest, UnregisterRequest, GroupJoinRequest, GroupLeaveRequest, RegistryReply)


def record(node: Node) -> list[Any]:
    """Every message ``node`` receives from now on, in order (the transport's dispatch, spied on)."""
    seen: list[Any] = []
    dispatch = node.transport.dispatch

    def spy(sender: str, messages: list[Any]) -> None:
        seen.extend(messages)
        dispatch(sender, messages)

    node.transport.dispatch = spy
    return seen


@pytest.mark.parametrize("version", [3, 2])
async def test_every_request_has_the_same_outcome_typed_and_as_a_list_for_an_older_peer(
    cluster: Cluster, three: list[Node], monkeypatch: pytest.MonkeyPatch, version: int
) -> None:
    a, b, _ = three
    # a speaks to every peer as to one that agreed on ``version``; b serves both forms.
    monkeypatch.setattr(a.transport, "peer_version", lambda node: version)
    received = record(b)
    name = first_owned(b.name, a.placement().nodes, f"v{version}")

    # All three reach the owner before a knows the name: the owner answers the later two
    # "exists", which register raises and whereis_or_register takes.
    pid, taken, same = await asyncio.gather(
        a.register(name, apps.Counter, key=name),
        a.register(name, apps.Counter, key=name),
        a.whereis_or_register(name, apps.Counter, key=name),
        return_exceptions=True,
    )
    assert isinstance(pid, Pid), pid
    assert pid.node == b.name
    assert isinstance(taken, AlreadyRegistered), taken
    assert taken.pid == pid
    assert same == pid
    assert a.whereis(name) == pid  # the Delta came before the reply
    await eventually(lambda: all(n.whereis(name) == pid for n in three))
    with pytest.raises(FactoryError, match="NoSuchFactory"):
        await a.register(f"{name}-bad", "tests.registry.apps:NoSuchFactory")

    on_b = await b.spawn(apps.Counter)
    await a.register_name(f"{name}-by-hand", on_b)
    await a.register_name(f"{name}-by-hand", on_b)  # the same pid again: fine
    with pytest.raises(AlreadyRegistered):
        await a.register_name(f"{name}-by-hand", pid)
    dead = await b.spawn(apps.Counter)
    await b.stop_process(dead)
    with pytest.raises(ProcessExited) as exited:
        await a.register_name(f"{name}-dead", dead)
    assert exited.value.reason == "noproc"

    await a.join("group", on_b)
    with pytest.raises(ProcessExited):
        await a.join("group", dead)
    await eventually(lambda: a.members("group") == [on_b])
    await a.leave("group", on_b)
    await a.leave("group", on_b)  # not a member any more: nothing happens
    await eventually(lambda: a.members("group") == [])

    await a.unregister(name)
    await eventually(lambda: all(n.whereis(name) is None for n in three))
    assert await a.call(pid, "incr") == 1  # unregistered, still running

    typed = [m for m in received if isinstance(m, TYPED)]
    as_lists = [m for m in received if isinstance(m, CallRequest) and m.to.id == REGISTRY_SERVER_ID]
    if version == 3:
        assert {type(m) for m in typed} == set(TYPED) - {RegistryReply}
        assert as_lists == []
    else:
        assert typed == []
        assert {m.payload[0] for m in as_lists} == {"register", "register_name", "join", "leave", "unregister"}


async def test_a_request_as_a_list_that_is_no_request_gets_an_error(cluster: Cluster, three: list[Node]) -> None:
    a, b, _ = three
    server = Pid(b.name, b.incarnation, REGISTRY_SERVER_ID)
    for message in (["register", "name"], ["join", "group", "not a pid"], "register", ["unknown", 1, 2]):
        reply = await a.call(server, message)
        assert reply[:2] == ["error", "FactoryError"], reply
        assert "unknown registry request" in reply[2]
    # The node's own processes may call its server too.
    assert (await b.call(server, ["leave", "group", server]))[0] == "ok"


PID = Pid("b@127.0.0.1:4370", 17, 5)
REQUESTS: list[RegistryRequest] = [
    RegisterRequest(0, ("worker", 1), Spec("pkg.mod:Worker", [1, (2, 3)], {"key": "k"}, "transient", 2.5)),
    RegisterNameRequest(0, "by-hand", PID),
    UnregisterRequest(0, "gone", PID),
    GroupJoinRequest(0, ("group", 1), PID),
    GroupLeaveRequest(0, "group", PID),
]


@pytest.mark.parametrize("request_", REQUESTS, ids=lambda r: type(r).__name__)
def test_the_list_form_of_a_request_reads_back_as_the_same_request(request_: Any) -> None:
    assert _request_from_list(_as_list(request_)) == request_


@pytest.mark.parametrize("request_", REQUESTS, ids=lambda r: type(r).__name__)
@pytest.mark.parametrize(
    "reply",
    [
        RegistryReply(0, REGISTRY_OK, PID),
        RegistryReply(0, REGISTRY_OK, None),
        RegistryReply(0, REGISTRY_EXISTS, PID),
        RegistryReply(0, REGISTRY_ERROR, None, "ProcessExited", "noproc"),
        RegistryReply(0, REGISTRY_ERROR, None, "FactoryError", "cannot import"),
    ],
    ids=["ok", "ok-nothing", "exists", "noproc", "factory-error"],
)
def test_the_list_form_of_a_reply_reads_back_with_the_same_meaning(request_: Any, reply: RegistryReply) -> None:
    again = _reply_from_list(_reply_as_list(reply, request_), request_)
    if isinstance(request_, GroupJoinRequest) and reply.status == REGISTRY_OK:
        assert again == RegistryReply(0, REGISTRY_OK)  # a join's list reply names no pid
    else:
        assert again == reply


def test_a_list_reply_that_is_none_reads_as_an_error() -> None:
    for reply in (None, ["ok"], ["exists", "not a pid"], ["error", 1, "x"], "ok"):
        read = _reply_from_list(reply, REQUESTS[0])
        assert (read.status, read.error) == (REGISTRY_ERROR, "FactoryError")
        assert "unexpected registry reply" in read.detail


async def test_a_request_to_a_node_whose_link_is_down_waits_for_it_and_keeps_its_lineage(
    cluster: Cluster, three: list[Node]
) -> None:
    """The list form (for peers of versions 1 and 2) has no lineage: sent while no link was up
    (no version agreed yet), a restart with checkpoints started fresh on its owner, beside the
    checkpoints it held (the checkpointed campaign, seed 864894953). It waits for the link."""
    a, b, _ = three
    received = record(b)
    name = first_owned(b.name, a.placement().nodes, "relinked")
    line = Lineage(1, Pid(a.name, 1, 99))
    a.transport.disconnect(b.name)
    assert a.transport.peer_version(b.name) == 0
    spec = Spec("tests.registry.apps:Counter", [], {}, "transient", 5.0)
    reply = await a.registry._request(b.name, RegisterRequest(0, name, spec, line, None), 5.0)
    assert reply.status == REGISTRY_OK, reply
    sent = [m for m in received if isinstance(m, RegisterRequest) and m.name == name]
    assert [m.lineage for m in sent] == [line]
    assert not [m for m in received if isinstance(m, CallRequest) and m.to.id == REGISTRY_SERVER_ID]
