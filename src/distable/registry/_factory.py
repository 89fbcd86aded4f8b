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
import importlib
import importlib.util
import inspect
import sys
from pathlib import Path
from typing import Any

from .._errors import FactoryError, InvalidFactoryReturn
from ..runtime import Process, Runtime
from ..runtime._process import _current_runtime
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
        # Defined in the script being run: other nodes import that script by its file's
        # name (as multiprocessing's spawn does), if that name finds the same file.
        script = _main_module_name()
        if script is not None:
            return f"{script}:{qualname}"
    if not module or not qualname or "<" in qualname or module == "__main__":
        raise TypeError(
            f"factory {factory!r} must be importable by other nodes: a top-level function or "
            "Process class in an importable module (not __main__, a lambda or a closure), "
            "or a 'package.module:attribute' string"
        )
    ref = f"{module}:{qualname}"
    try:
        found = resolve(ref)
    except FactoryError:
        found = None
    if found is not factory:
        raise TypeError(f"factory {factory!r} is not reachable as {ref!r}")
    return ref


def _main_module_name() -> str | None:
    """The importable name of the script running as ``__main__``, or None."""
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    if not path:
        return None
    name = Path(path).stem
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    if spec is None or spec.origin is None or Path(spec.origin).resolve() != Path(path).resolve():
        return None
    return name


def resolve(ref: str) -> Any:
    """Import the object a factory reference names (cached).

    Raises:
        FactoryError: the module or attribute cannot be imported on this node.
    """
    found = _cache.get(ref)
    if found is not None:
        return found
    module, _, attr = ref.partition(":")
    try:
        obj: Any = importlib.import_module(module)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except Exception as exc:
        raise FactoryError(f"cannot import factory {ref!r}: {type(exc).__name__}: {exc}") from exc
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
    factory = resolve(ref)
    token = _current_runtime.set(runtime)
    try:
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
    finally:
        _current_runtime.reset(token)
    if not isinstance(result, Pid):
        raise InvalidFactoryReturn(f"factory {ref!r} returned {result!r}, not a pid")
    if result.node != node:
        raise InvalidFactoryReturn(f"factory {ref!r} returned {result!r}, a pid on another node than {node}")
    return result
