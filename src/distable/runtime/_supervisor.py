"""A dynamic supervisor: starts children on demand and restarts them by policy.

It is Erlang's ``simple_one_for_one`` / Elixir's ``DynamicSupervisor``: children are
added at run time with ``Supervisor.start_child``; each child has a restart policy:

    * ``"temporary"``: never restarted;
    * ``"transient"``: restarted only after an abnormal exit (a ``Crash``, or any
      reason other than "normal" and "shutdown");
    * ``"permanent"``: always restarted.

Restart intensity: more than ``max_restarts`` restarts within ``max_seconds`` means
something is badly wrong; the supervisor then stops every child and exits with
reason "shutdown" (so a crash loop cannot spin or flood the log). A restart whose
``init`` raises counts as one more restart.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass
from typing import Any, Literal

from ..wire import NORMAL, SHUTDOWN, Pid, Ref
from ._context import current_runtime
from ._process import Caller, Down, Process

log = logging.getLogger("distable.supervisor")

RestartPolicy = Literal["temporary", "transient", "permanent"]
_POLICIES = ("temporary", "transient", "permanent")


@dataclass(slots=True)
class _Child:
    cls: type[Process]
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    restart: RestartPolicy
    pid: Pid
    ref: Ref


class Supervisor(Process):
    """A dynamic supervisor process. Start it with ``await Supervisor.start(...)``."""

    async def init(self, max_restarts: int = 3, max_seconds: float = 5.0) -> None:
        """``max_restarts`` restarts are tolerated within any ``max_seconds`` window."""
        self.max_restarts = max_restarts
        self.max_seconds = max_seconds
        self._children: dict[Ref, _Child] = {}
        self._restart_times: deque[float] = deque()

    # --- client API -----------------------------------------------------------

    @staticmethod
    async def start_child(
        supervisor: Pid,
        child: type[Process],
        *args: Any,
        restart: RestartPolicy = "temporary",
        **kwargs: Any,
    ) -> Pid:
        """Start ``child(*args, **kwargs)`` under ``supervisor``; return its pid.

        Raises:
            ValueError: unknown restart policy.
            Exception: whatever the child's ``init`` raised.
        """
        if restart not in _POLICIES:
            raise ValueError(f"restart must be one of {_POLICIES}, not {restart!r}")
        rt = current_runtime()
        result = await rt.call(supervisor, ("start_child", child, args, kwargs, restart))
        if isinstance(result, BaseException):
            raise result
        assert isinstance(result, Pid)
        return result

    @staticmethod
    async def terminate_child(supervisor: Pid, pid: Pid) -> bool:
        """Stop a child (it is not restarted). Returns False if it was not a child."""
        return bool(await current_runtime().call(supervisor, ("terminate_child", pid)))

    @staticmethod
    async def which_children(supervisor: Pid) -> list[tuple[Pid, str, str]]:
        """``(pid, class name, restart policy)`` for every running child."""
        result: list[tuple[Pid, str, str]] = await current_runtime().call(supervisor, ("which_children",))
        return result

    # --- handlers -------------------------------------------------------------

    async def handle_call(self, message: Any, caller: Caller) -> Any:
        match message:
            case ("start_child", cls, args, kwargs, restart):
                try:
                    return await self._start(cls, args, kwargs, restart)
                except Exception as exc:  # the child's init failed: tell the caller
                    return exc
            case ("terminate_child", pid):
                for ref, child in list(self._children.items()):
                    if child.pid == pid:
                        del self._children[ref]
                        self._runtime.demonitor(ref)
                        await self._runtime.stop(pid, SHUTDOWN)
                        return True
                return False
            case ("which_children",):
                return [(c.pid, c.cls.__qualname__, c.restart) for c in self._children.values()]
        raise ValueError(f"supervisor got an unknown request {message!r}")

    async def handle_info(self, message: Any) -> None:
        if not isinstance(message, Down):
            return
        child = self._children.pop(message.ref, None)
        if child is None:
            return
        reason = message.reason
        abnormal = reason not in (NORMAL, SHUTDOWN)
        if child.restart == "temporary" or (child.restart == "transient" and not abnormal):
            return
        await self._restart(child, reason)

    async def terminate(self, reason: Any) -> None:
        # Stop children newest first, and do not restart them.
        children = list(self._children.items())
        self._children.clear()
        for ref, child in reversed(children):
            self._runtime.demonitor(ref)
            await self._runtime.stop(child.pid, SHUTDOWN)

    # --- internals --------------------------------------------------------------

    async def _start(
        self, cls: type[Process], args: tuple[Any, ...], kwargs: dict[str, Any], restart: RestartPolicy
    ) -> Pid:
        pid = await cls.start(*args, **kwargs)
        ref = self._runtime.monitor(pid)
        self._children[ref] = _Child(cls, args, kwargs, restart, pid, ref)
        return pid

    async def _restart(self, child: _Child, reason: Any) -> None:
        rt = self._runtime
        while not rt.closing:
            now = rt.loop.time()
            times = self._restart_times
            times.append(now)
            while times and now - times[0] > self.max_seconds:
                times.popleft()
            if len(times) > self.max_restarts:
                log.error(
                    "%s: supervisor %r reached its restart intensity (%d restarts in %.1f s); stopping all children",
                    rt.node_name,
                    self,
                    self.max_restarts,
                    self.max_seconds,
                )
                self.stop(SHUTDOWN)
                return
            log.info("%s: restarting %s child after exit %r", rt.node_name, child.cls.__qualname__, reason)
            try:
                await self._start(child.cls, child.args, child.kwargs, child.restart)
                return
            except Exception as exc:
                reason = exc
                log.error("%s: restart of %s failed", rt.node_name, child.cls.__qualname__, exc_info=exc)
