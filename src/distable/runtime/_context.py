"""The current node's runtime and the current process: the context variables that hold them.

A leaf module: it imports nothing from distable at run time (the names under
``TYPE_CHECKING`` are for annotations only), so that every layer can read which node is
current, ``_log.py`` included, without importing the runtime or making a cycle (as trio
keeps its run context in ``_run_context.py``).

Who sets what:
    * ``CURRENT_RUNTIME``: ``async with Node(...)`` for its block, ``running_on`` for a
      ``with`` block (a factory runs with its node current), every task the node spawns
      (its context is a copy of ``context_with``'s), and a process's drain task.
    * ``CURRENT_PROCESS``: a process's drain task, for the time it runs that process.

Hot paths (``distable.send``, ``call``, ``whereis``, a call's caller) read the variables
with ``CURRENT_RUNTIME.get()`` directly, one call fewer than ``current_runtime()``.
"""

from __future__ import annotations

from contextvars import Context, ContextVar, Token, copy_context
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from ._process import Process
    from ._runtime import Runtime

CURRENT_RUNTIME: Final[ContextVar[Runtime | None]] = ContextVar("distable_current_runtime", default=None)
CURRENT_PROCESS: Final[ContextVar[Process | None]] = ContextVar("distable_current_process", default=None)


def current_runtime() -> Runtime:
    """The runtime of the current node (set by ``async with Node(...)`` and in processes).

    Raises:
        RuntimeError: there is no current node.
    """
    rt = CURRENT_RUNTIME.get()
    if rt is None:
        raise RuntimeError("no current distable node: use 'async with Node(...)' first")
    return rt


def current_process() -> Process | None:
    """The process whose handler is running now, or None outside processes."""
    return CURRENT_PROCESS.get()


class running_on:
    """``with running_on(runtime):`` makes ``runtime``'s node the current one for the block,
    then restores the one before. Enter and exit in the same context (the same task)."""

    __slots__ = ("_runtime", "_token")

    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime
        self._token: Token[Runtime | None] | None = None

    def __enter__(self) -> Runtime:
        self._token = CURRENT_RUNTIME.set(self._runtime)
        return self._runtime

    def __exit__(self, *exc: object) -> None:
        if self._token is not None:
            CURRENT_RUNTIME.reset(self._token)
            self._token = None


def context_with(runtime: Runtime) -> Context:
    """A copy of the current context in which ``runtime``'s node is the current one."""
    context = copy_context()
    context.run(CURRENT_RUNTIME.set, runtime)
    return context
