"""The node's garbage-collector policy (``distable.node._gc.HeapFreezer``): after a full
pass its survivors are frozen, the frozen set is thawed once it has grown enough, and the
last node's release thaws it.

Each test drives its own ``HeapFreezer`` with ``gc.collect()`` (a full pass); a node left
running by another test may hold the process's own freezer meanwhile, which freezes and
thaws the same way, so the assertions are about this one's counters and about what a
thaw lets the collector find.
"""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from distable.node import _gc
from distable.node._gc import HeapFreezer


@pytest.fixture(autouse=True)
def only_this_freezer() -> Iterator[None]:
    """Keep the process's own freezer out while a test drives its own: a node of another
    test still bound in this process (the suite also runs with ``DISTABLE_GC_FREEZE=1``)
    holds it, and its thaw (``gc.unfreeze`` is the whole process's) would let the
    collector at what this test's freezer froze."""
    saved = gc.callbacks[:]
    gc.callbacks[:] = [cb for cb in saved if getattr(cb, "__self__", None) is not _gc._FREEZER]
    try:
        yield
    finally:
        gc.callbacks[:] = saved


class _Cyclic:
    def __init__(self) -> None:
        self.me = self


def test_a_full_pass_freezes_its_survivors_and_the_last_release_thaws() -> None:
    freezer = HeapFreezer()
    freezer.acquire()
    freezer.acquire()  # two nodes
    try:
        kept = [[i] for i in range(1000)]
        gc.collect()
        assert freezer.freezes >= 1
        assert not freezer.thawed
        assert gc.get_freeze_count() >= len(kept)
        freezer.release()  # one node stops: still on
        assert not freezer.thawed
    finally:
        freezer.release()
    assert freezer.thawed
    assert freezer.thaws == 1
    assert gc.get_freeze_count() == 0
    freezer.release()  # more releases than nodes: nothing
    assert freezer.thaws == 1


def test_the_young_threshold_is_raised_while_held_and_put_back() -> None:
    saved = gc.get_threshold()
    gc.set_threshold(700, saved[1], saved[2])
    try:
        freezer = HeapFreezer()
        freezer.acquire()
        assert gc.get_threshold() == (_gc.YOUNG_THRESHOLD, saved[1], saved[2])
        freezer.release()
        assert gc.get_threshold() == (700, saved[1], saved[2])
        gc.set_threshold(_gc.YOUNG_THRESHOLD * 2, saved[1], saved[2])  # higher already: left alone
        freezer.acquire()
        assert gc.get_threshold()[0] == _gc.YOUNG_THRESHOLD * 2
        freezer.release()
        assert gc.get_threshold()[0] == _gc.YOUNG_THRESHOLD * 2
    finally:
        gc.set_threshold(*saved)


def test_frozen_cyclic_garbage_is_collected_once_the_frozen_heap_grew(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_gc, "THAW_ALWAYS", 1)  # thaw as soon as as much was frozen as the walk left
    freezer = HeapFreezer()
    freezer.acquire()
    try:
        cycle = _Cyclic()
        ref = weakref.ref(cycle)
        gc.collect()  # the first pass walks everything; its survivors, the cycle among them, freeze
        del cycle
        gc.collect()
        assert ref() is not None  # garbage, but frozen: not walked
        grown = [[i] for i in range(2 * freezer.base)]
        gc.collect()  # as much frozen since as the walk left: thawed
        assert freezer.thaws == 1
        assert freezer.thawed
        gc.collect()  # walks everything again
        assert ref() is None
        assert freezer.base >= len(grown)
    finally:
        freezer.release()
