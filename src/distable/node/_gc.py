"""The process's cyclic garbage collector while nodes run in it: the long-lived heap is
kept out of the collector's full passes.

A node at 50,000 names holds hundreds of thousands of container objects that live as
long as their processes and claims (a process, its task, mailbox and dicts), and the
collector's full passes walked all of them each time the heap had grown by a quarter, or
as much had been promoted and died since (a join or a node's death moves or restarts
thousands of processes at once): 0.3 to 0.9 s of stall per pass on a busy node, a fifth
of the CPU of a join. They find almost nothing: a process, a claim or a handoff that ends
normally is freed by its reference count.

The policy (one per process, installed while at least one node is bound, see ``acquire``):

* after every full pass (generation 2, run when CPython's own thresholds say so), what
  survived it is frozen (``gc.freeze``): later passes walk only what was made since;
* frozen objects that become cyclic garbage are not collected while frozen, so the frozen
  set is thawed (``gc.unfreeze``: the next full pass walks, and collects, everything)
  once what was frozen since the last such pass is as large as what that pass left, at
  most once per ``THAW_INTERVAL`` seconds, and always once it is ``THAW_ALWAYS`` times
  as large: the frozen set never holds more than ``THAW_ALWAYS`` times the heap the last
  walk left (about once that, a minute after it), garbage included, and the whole-heap
  walks are one per doubling of the heap or of its turnover instead of one per quarter;
* the young generation's threshold is raised tenfold (``YOUNG_THRESHOLD`` container
  objects between young passes instead of CPython's 700): a handoff's records, futures
  and messages live for a round trip, thousands of allocations, and were walked by two
  young passes and promoted before they died; a full pass is considered after as many
  young passes as before, so ten times as much allocation apart (a join at 50,000 names
  saw none on the joiner, and a node's death cost its survivors a third less CPU);
* when the last node of the process stops, the frozen set is thawed and the thresholds
  are put back.

It changes when the collector looks, never what it frees; an application that freezes
its own heap (a pre-fork server) leaves ``Node(gc_freeze=)`` off (the default for now).
"""

from __future__ import annotations

import gc
import threading
import time
from typing import Any

#: At most one thaw per this many seconds (the full pass that follows one walks the
#: whole heap: a stall of up to a second at 100,000 names), unless ``THAW_ALWAYS``.
THAW_INTERVAL = 60.0
#: Thaw regardless of ``THAW_INTERVAL`` once this many times the heap of the last full
#: walk has been frozen since.
THAW_ALWAYS = 8
#: The young generation's threshold while a node runs (unless it was higher already).
YOUNG_THRESHOLD = 7000


class HeapFreezer:
    """The policy; one per process (``_FREEZER``), driven by ``gc.callbacks``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()  # acquire/release may come from several threads' loops
        self._users = 0
        self.base = 0  # objects the last full walk left (0: none yet)
        self.frozen = 0  # objects frozen since that walk (an overcount: some died since)
        self.walked_at = 0.0  # time.monotonic() of that walk
        self.thawed = True  # nothing is frozen: the next full pass walks everything
        self.freezes = 0
        self.thaws = 0
        self._thresholds: tuple[int, int, int] | None = None  # (saved, set) while raised
        self._raised: tuple[int, int, int] | None = None

    def acquire(self) -> None:
        with self._lock:
            self._users += 1
            if self._users == 1:
                gc.callbacks.append(self._on_gc)
                young, middle, old = gc.get_threshold()
                if 0 < young < YOUNG_THRESHOLD:
                    self._thresholds = (young, middle, old)
                    self._raised = (YOUNG_THRESHOLD, middle, old)
                    gc.set_threshold(*self._raised)

    def release(self) -> None:
        with self._lock:
            if self._users == 0:
                return
            self._users -= 1
            if self._users == 0:
                gc.callbacks.remove(self._on_gc)
                if not self.thawed:
                    self._thaw()
                if self._thresholds is not None and gc.get_threshold() == self._raised:
                    gc.set_threshold(*self._thresholds)  # unless the program set its own since
                self._thresholds = self._raised = None

    def _thaw(self) -> None:
        gc.unfreeze()
        self.thawed = True
        self.frozen = 0
        self.thaws += 1

    def _on_gc(self, phase: str, info: dict[str, Any]) -> None:
        """A ``gc.callbacks`` entry: after a full pass, freeze its survivors, or thaw."""
        if phase != "stop" or info.get("generation") != 2:
            return
        survivors = len(gc.get_objects(2))
        now = time.monotonic()
        if self.thawed:  # this pass walked the whole heap
            self.thawed = False
            self.base, self.walked_at = survivors, now
        self.frozen += survivors
        grown = self.frozen - self.base
        if grown >= THAW_ALWAYS * self.base or (grown >= self.base and now - self.walked_at >= THAW_INTERVAL):
            self._thaw()
        else:
            gc.freeze()
            self.freezes += 1


_FREEZER = HeapFreezer()


def acquire() -> None:
    """A node of this process is bound: keep the policy on (``release`` when it stops)."""
    _FREEZER.acquire()


def release() -> None:
    """A node that ``acquire``\\ d stopped: the last one turns the policy off and thaws."""
    _FREEZER.release()
