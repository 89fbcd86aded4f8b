"""Factories: importable references that start a registered process on its owner.

A factory is shipped between nodes as a reference ``"package.module:attribute"`` plus
its arguments (Erlang's module/function/args), never as code. It may be:

    * a ``Process`` subclass: the owner runs ``await Cls.start(*args, **kwargs)``;
    * a callable returning a ``Pid`` of a local process, or an awaitable of one (e.g. an
      ``async def`` that asks a ``Supervisor`` to start a child).

Anything else it returns is an ``InvalidFactoryReturn``; an import failure or an
exception it raises is a ``FactoryError``. Either way nothing is registered.
"""

from __future__ import annotations

import fnmatch
import inspect
from typing import Any

from .._apps import import_ref, main_module_name
from .._errors import FactoryError, InvalidFactoryReturn
from ..runtime import Process, Runtime
from ..runtime._context import running_on
from ..wire import Pid

_cache: dict[str, Any] = {}


def factory_ref(factory: Any) -> str:
    """The importable reference of ``factory`` (a string passes through, checked for form).

    Raises:
        TypeError: ``factory`` is not importable by reference (a lambda, a closure, a
            bound method...), so no other node could start it.
    """
    if isinstance(factory, str):
        head, sep, attr = factory.partition(":")
        if not sep or not head or not attr:
            raise TypeError(f"factory reference {factory!r} is not of the form 'package.module:attribute'")
        return factory
    module = getattr(factory, "__module__", None)
    qualname = getattr(factory, "__qualname__", None)
    if module == "__main__" and qualname and "<" not in qualname:
        # Defined in the script being run: other nodes import that script by its module
        # name (as multiprocessing's spawn does), if it has one.
        script = main_module_name()
        if script is None:
            raise TypeError(
                f"factory {qualname!r} is defined in the script being run (__main__), which other nodes "
                "cannot import by name: move it into a module (e.g. myapp.py beside the script, "
                "imported with 'from myapp import ...') that every node has, or name the script so "
                "that it is importable (my_app.py, not my-app.py) and run it as 'python -m my_app'"
            )
        module = script
    if not module or not qualname or "<" in qualname:
        raise TypeError(
            f"factory {factory!r} must be importable by other nodes: a top-level function or "
            "Process class of a module every node has (not a lambda, a closure or a method), "
            "or a 'package.module:attribute' string"
        )
    ref = f"{module}:{qualname}"
    try:
        found = import_factory(ref)
    except FactoryError:
        found = None
    if found is not factory:
        raise TypeError(f"factory {factory!r} is not reachable as {ref!r}")
    return ref


def import_factory(ref: str) -> Any:
    """Import the object a factory reference names (cached).

    Raises:
        FactoryError: the module or attribute cannot be imported on this node.
    """
    found = _cache.get(ref)
    if found is not None:
        return found
    try:
        obj = import_ref(ref)
    except Exception as exc:
        hint = ""
        if isinstance(exc, ImportError):
            hint = " (every node needs the factory's module: deploy the same code everywhere, e.g. --app MODULE)"
        elif isinstance(exc, RuntimeError) and "running event loop" in str(exc):
            # A script's factory travels under the script's name: importing it on a node
            # runs its top level, and there its asyncio.run()/distable.run().
            hint = (
                " (importing the module on this node ran its start-up: put a script's "
                'start-up under `if __name__ == "__main__":`)'
            )
        raise FactoryError(f"cannot import factory {ref!r}: {type(exc).__name__}: {exc}{hint}") from exc
    _cache[ref] = obj
    return obj


async def run_factory(
    ref: str,
    args: list[Any],
    kwargs: dict[str, Any],
    runtime: Runtime,
    allowed: tuple[str, ...] | None = None,
) -> Pid:
    """Start a process from a factory reference on ``runtime``'s node and return its pid.

    The factory runs with that node current, whichever task awaits this. ``allowed``:
    glob patterns (``fnmatch``, case-sensitive) over ``"module:attribute"``; a reference
    that matches none is refused before anything is imported. None allows any.

    Raises:
        FactoryError: the factory is not allowed here, cannot be imported, or raised.
        InvalidFactoryReturn: it returned something other than the pid of a local process.
    """
    node = runtime.node_name
    if allowed is not None and not any(fnmatch.fnmatchcase(ref, pattern) for pattern in allowed):
        raise FactoryError(f"factory {ref!r} is not allowed on {node} (RegistryConfig.factories: {list(allowed)})")
    factory = import_factory(ref)
    try:
        with running_on(runtime):
            if isinstance(factory, type) and issubclass(factory, Process):
                result: Any = await factory.start(*args, **kwargs)
            else:
                result = factory(*args, **kwargs)
                if inspect.isawaitable(result):
                    result = await result
    except FactoryError:
        raise
    except Exception as exc:
        raise FactoryError(f"factory {ref!r} raised {type(exc).__name__}: {exc}") from exc
    if not isinstance(result, Pid):
        raise InvalidFactoryReturn(f"factory {ref!r} returned {result!r}, not a pid")
    if result.node != node:
        raise InvalidFactoryReturn(f"factory {ref!r} returned {result!r}, a pid on another node than {node}")
    return result
