"""Loading a user's application into a running node: ``--app module[:function]``.

Shared by the ``distable node`` command and the child node processes of
``distable.testing`` (``NodeProcess(app=...)``), so both read an app reference the same
way:

* ``"pkg.module"`` imports the module (importing it may start or register processes, or
  merely define the factories other nodes ship here);
* ``"pkg.module:function"`` imports it, then calls ``function(node)`` and awaits the
  result if it is awaitable (an ``async def``), so the app can start its processes (a
  supervisor, a few registered names) with the node current.

A failure is reported as ``AppError``, whose message is one line naming the reference and
the exception (``cannot import app module 'myapp': ModuleNotFoundError: No module named
'myapp'``): the command line shows it as is.
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any


class AppError(Exception):
    """An app reference that could not be imported, found or started; one-line message."""


def one_line(exc: BaseException) -> str:
    """``"TypeName: message"`` of an exception, on one line."""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def resolve(ref: str) -> Any:
    """Import ``"package.module:attribute"`` (``attribute`` may be dotted) and return it.

    Raises:
        ImportError: the module cannot be imported.
        AttributeError: the module has no such attribute.
    """
    module, _, attr = ref.partition(":")
    obj: Any = importlib.import_module(module)
    if attr:
        for part in attr.split("."):
            obj = getattr(obj, part)
    return obj


def check_ref(ref: str) -> str:
    """``ref`` if it reads ``module`` or ``module:function``.

    Raises:
        AppError: it does not (empty, or an empty part around the colon).
    """
    module, colon, function = ref.partition(":")
    parts = module.split(".") + (function.split(".") if colon else [])
    if not all(part.isidentifier() for part in parts):
        raise AppError(f"app {ref!r} is not of the form 'package.module' or 'package.module:function'")
    return ref


async def start_app(node: Any, ref: str) -> None:
    """Import the app ``ref`` and, for ``module:function``, run ``function(node)``.

    Runs on the node's event loop with the node current (inside ``async with node``);
    the function may await anything (register names, start a supervisor), and the node
    is reported up only once it returns.

    Raises:
        AppError: the module failed to import (the user's exception is its cause), has
            no such function, or the function raised.
    """
    module, _, function = check_ref(ref).partition(":")
    try:
        importlib.import_module(module)
    except Exception as exc:
        raise AppError(f"cannot import app module {module!r}: {one_line(exc)}") from exc
    if not function:
        return
    try:
        target = resolve(ref)
    except AttributeError as exc:
        raise AppError(f"app module {module!r} has no {function!r}: {one_line(exc)}") from exc
    if not callable(target):
        raise AppError(f"app {ref!r} is not callable")
    try:
        started = target(node)
        if inspect.isawaitable(started):
            await started
    except Exception as exc:
        raise AppError(f"app {ref!r} failed: {one_line(exc)}") from exc
