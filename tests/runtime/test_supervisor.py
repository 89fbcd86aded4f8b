"""The dynamic Supervisor on a single node: restart policies, child management, restart intensity."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import pytest

from distable import Node, Pid, Process, ProcessExited, Supervisor
from distable.testing import eventually

from ._support import COOKIE, NODE_NAME, records, watch


@dataclass
class Book:
    """What a child's incarnations did, shared by every restart of that child."""

    inits: list[tuple[Pid, tuple[Any, ...]]] = field(default_factory=list)
    terminated: list[tuple[Pid, Any]] = field(default_factory=list)
    fail_init_after: int | None = None  # init raises once this many inits succeeded


class Child(Process):
    """Crashes on the info message "crash"; records its inits (with args) and exits in a Book."""

    async def init(self, book: Book, *args: Any) -> None:
        if book.fail_init_after is not None and len(book.inits) >= book.fail_init_after:
            book.inits.append((self.pid, ("failed", *args)))
            raise OSError("cannot start again")
        book.inits.append((self.pid, args))
        self.book = book

    async def handle_info(self, message: Any) -> None:
        if message == "crash":
            raise RuntimeError("child crashed")

    async def terminate(self, reason: Any) -> None:
        self.book.terminated.append((self.pid, reason))


class BadInit(Process):
    error = PermissionError("no way")

    async def init(self) -> None:
        raise BadInit.error


async def _children(sup: Pid) -> list[tuple[Pid, str, str]]:
    return await Supervisor.which_children(sup)


async def _child_pids(sup: Pid) -> list[Pid]:
    return [pid for pid, _, _ in await _children(sup)]


async def test_temporary_child_is_not_restarted_after_a_crash() -> None:
    async with Node(NODE_NAME, cookie=COOKIE) as node:
        sup = await Supervisor.start()
        book = Book()
        child = await Supervisor.start_child(sup, Child, book, restart="temporary")
        child_watcher, _ = await watch(child)
        node.send(child, "crash")
        await eventually(lambda: child_watcher.downs(), message="the child did not crash")
        # The supervisor's Down was queued with the watcher's, so it is handled before this later
        # call, and a restart would show here.
        assert await _child_pids(sup) == []
        assert len(book.inits) == 1


async def test_transient_child_is_restarted_after_a_crash_with_a_new_pid_and_the_same_args() -> None:
    async with Node(NODE_NAME, cookie=COOKIE) as node:
        sup = await Supervisor.start()
        book = Book()
        child = await Supervisor.start_child(sup, Child, book, "extra", restart="transient")
        node.send(child, "crash")

        async def restarted() -> list[Pid]:
            pids = await _child_pids(sup)
            return pids if pids and pids != [child] else []

        [new_child] = await eventually(restarted, message="the child was not restarted")
        assert new_child != child
        assert node.runtime.local(new_child) is not None
        assert book.inits == [(child, ("extra",)), (new_child, ("extra",))]
        assert await _children(sup) == [(new_child, "Child", "transient")]


async def test_transient_child_is_not_restarted_after_a_normal_stop() -> None:
    async with Node(NODE_NAME, cookie=COOKIE) as node:
        sup = await Supervisor.start()
        book = Book()
        child = await Supervisor.start_child(sup, Child, book, restart="transient")
        assert await node.stop_process(child, "normal") == "normal"
        # The supervisor handles the child's Down before this later call.
        assert await _child_pids(sup) == []
        assert len(book.inits) == 1


async def test_permanent_child_is_restarted_after_a_normal_stop() -> None:
    async with Node(NODE_NAME, cookie=COOKIE) as node:
        sup = await Supervisor.start()
        book = Book()
        child = await Supervisor.start_child(sup, Child, book, 1, 2, restart="permanent")
        assert await node.stop_process(child, "normal") == "normal"
        [new_child] = await _child_pids(sup)
        assert new_child != child
        assert book.inits == [(child, (1, 2)), (new_child, (1, 2))]
        assert await _children(sup) == [(new_child, "Child", "permanent")]


async def test_which_children_lists_pid_class_and_policy() -> None:
    async with Node(NODE_NAME, cookie=COOKIE):
        sup = await Supervisor.start()
        assert await _children(sup) == []
        book = Book()
        a = await Supervisor.start_child(sup, Child, book, restart="temporary")
        b = await Supervisor.start_child(sup, Child, book, restart="transient")
        c = await Supervisor.start_child(sup, Child, book, restart="permanent")
        assert sorted(await _children(sup)) == sorted(
            [(a, "Child", "temporary"), (b, "Child", "transient"), (c, "Child", "permanent")]
        )


async def test_terminate_child_stops_it_without_restart() -> None:
    async with Node(NODE_NAME, cookie=COOKIE) as node:
        sup = await Supervisor.start()
        book = Book()
        child = await Supervisor.start_child(sup, Child, book, restart="permanent")
        assert await Supervisor.terminate_child(sup, child) is True
        assert node.runtime.local(child) is None
        assert book.terminated == [(child, "shutdown")]
        assert await _child_pids(sup) == []
        assert len(book.inits) == 1
        assert await Supervisor.terminate_child(sup, child) is False


async def test_child_crashing_on_every_message_exhausts_restart_intensity(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    max_restarts = 3
    async with Node(NODE_NAME, cookie=COOKIE) as node:
        sup = await Supervisor.start(max_restarts=max_restarts, max_seconds=60.0)
        sup_watcher, sup_ref = await watch(sup)
        sibling_book, crasher_book = Book(), Book()
        sibling = await Supervisor.start_child(sup, Child, sibling_book, restart="permanent")
        crasher = await Supervisor.start_child(sup, Child, crasher_book, restart="permanent")
        for _ in range(10 * max_restarts):  # bounded: the supervisor must give up long before
            if node.runtime.local(sup) is None:
                break
            node.send(crasher, "crash")

            async def replaced(old: Pid = crasher) -> Pid | str:
                try:
                    pids = await _child_pids(sup)
                except ProcessExited:
                    return "supervisor exited"
                fresh = [p for p in pids if p not in (sibling, old)]
                return fresh[0] if fresh else ""

            result = await eventually(replaced, message="the crashing child was neither restarted nor given up")
            if isinstance(result, Pid):
                crasher = result
        await eventually(lambda: sup_watcher.downs(), message="the supervisor did not exit")
        assert [d.reason for d in sup_watcher.downs()] == ["shutdown"]
        assert sup_watcher.downs()[0].ref == sup_ref
        assert len(crasher_book.inits) == 1 + max_restarts
        assert sibling_book.terminated == [(sibling, "shutdown")]
        assert len(sibling_book.inits) == 1
        assert [p.pid for p in node.runtime.processes()] == [sup_watcher.pid]
        assert len(records(caplog, logging.ERROR, "restart intensity")) == 1


async def test_child_crashing_in_init_on_restart_exhausts_restart_intensity(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    max_restarts = 4
    async with Node(NODE_NAME, cookie=COOKIE) as node:
        sup = await Supervisor.start(max_restarts=max_restarts, max_seconds=60.0)
        sup_watcher, _ = await watch(sup)
        sibling_book, crasher_book = Book(), Book(fail_init_after=1)
        sibling = await Supervisor.start_child(sup, Child, sibling_book, restart="transient")
        crasher = await Supervisor.start_child(sup, Child, crasher_book, restart="transient")
        node.send(crasher, "crash")
        await eventually(lambda: sup_watcher.downs(), message="the supervisor did not exit")
        assert [d.reason for d in sup_watcher.downs()] == ["shutdown"]
        assert len(crasher_book.inits) == 1 + max_restarts  # the first start and every failed restart
        assert all(args[0] == "failed" for _, args in crasher_book.inits[1:])
        assert sibling_book.terminated == [(sibling, "shutdown")]
        assert [p.pid for p in node.runtime.processes()] == [sup_watcher.pid]
        assert len(records(caplog, logging.ERROR, "restart intensity")) == 1


async def test_invalid_restart_policy_raises_value_error() -> None:
    async with Node(NODE_NAME, cookie=COOKIE):
        sup = await Supervisor.start()
        with pytest.raises(ValueError, match="restart must be one of"):
            await Supervisor.start_child(sup, Child, Book(), restart="sometimes")  # type: ignore[arg-type]
        assert await _children(sup) == []


async def test_start_child_reraises_the_exception_its_init_raised() -> None:
    async with Node(NODE_NAME, cookie=COOKIE) as node:
        sup = await Supervisor.start()
        with pytest.raises(PermissionError) as excinfo:
            await Supervisor.start_child(sup, BadInit, restart="permanent")
        assert excinfo.value is BadInit.error
        assert await _children(sup) == []
        assert node.runtime.local(sup) is not None
