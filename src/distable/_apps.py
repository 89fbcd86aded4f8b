"""Loading a user's application into a node: ``--app module[:function]``.

Shared by the ``distable node`` command and the child node processes of
``distable.testing`` (``NodeProcess(app=...)``), so both read an app reference the same
way, in two steps:

* ``load_app`` imports the module, before the node joins the cluster: importing defines
  what other nodes may send this one (``register_type`` types, factories, ``Process``
  classes), so it must be done before any process can be handed here. For
  ``"pkg.module:function"`` it also finds the function (a typo fails here, at once).
  Importing must not need a running node: start things in the function.
* ``start_app`` then calls ``function(node)``, once the node has joined and caught up,
  and awaits the result if it is awaitable (an ``async def``), so the app can start its
  processes (a supervisor, a few registered names) with the node current.

A failure is reported as ``AppError``, whose message is one line naming the reference and
the exception (``cannot import app module 'myapp': ModuleNotFoundError: No module named
'myapp'``): the command line shows it as is.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._errors import AlreadyRegistered


class AppError(Exception):
    """An app reference that could not be imported, found or started; one-line message."""


@dataclass(frozen=True, slots=True)
class App:
    """An imported app: its reference and, for ``module:function``, the function."""

    ref: str
    function: Callable[..., Any] | None


def one_line(exc: BaseException) -> str:
    """``"TypeName: message"`` of an exception, on one line."""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def import_ref(ref: str) -> Any:
    """Import ``"package.module:attribute"`` (``attribute`` may be dotted) and return it.

    The one lookup of a reference: app functions here, and registry factories
    (``registry.import_factory`` caches it and reports failures as ``FactoryError``).

    Raises:
        ImportError: the module cannot be imported.
        AttributeError: the module has no such attribute, or ``ref`` names none.
    """
    module, _, attr = ref.partition(":")
    obj: Any = importlib.import_module(module)
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


def load_app(ref: str) -> App:
    """Import the app ``ref``'s module and, for ``module:function``, find the function.

    Raises:
        AppError: the module failed to import (the user's exception is its cause), or
            has no such function, or it is not callable.
    """
    module, _, function = check_ref(ref).partition(":")
    try:
        importlib.import_module(module)
    except Exception as exc:
        hint = ""
        if isinstance(exc, ModuleNotFoundError) and exc.name == module.split(".")[0]:
            hint = f" (looked in --app-dir and the module path: {_path_hint()})"
        raise AppError(f"cannot import app module {module!r}: {one_line(exc)}{hint}") from exc
    if not function:
        return App(ref, None)
    try:
        target = import_ref(ref)
    except AttributeError as exc:
        raise AppError(f"app module {module!r} has no {function!r}") from exc
    if not callable(target):
        raise AppError(f"app {ref!r} is not callable")
    return App(ref, target)


def main_module_name() -> str | None:
    """The name other nodes import the running script (``__main__``) by, or None.

    ``python -m pkg.app``: ``pkg.app``. ``python path/app.py``: ``app``, if that name finds
    the same file on the module path (as multiprocessing's spawn does); other nodes then
    need ``app.py`` on their path (``distable node --app app --app-dir DIR``), and the
    script's own start-up must sit under ``if __name__ == "__main__":``. Either way this
    process then maps that name to the running ``__main__`` module, so that resolving a
    reference here finds the very objects the script defined instead of a second copy.
    None: the script cannot be imported by name (``my-app.py``, a name another module
    takes, an interactive session).
    """
    main = sys.modules.get("__main__")
    if main is None:
        return None
    spec = getattr(main, "__spec__", None)
    name: str | None = None
    if spec is not None and spec.name and spec.name != "__main__":
        name = spec.name
    else:
        path = getattr(main, "__file__", None)
        if not path:
            return None
        stem = Path(path).stem
        if not stem.isidentifier():
            return None  # importlib would take "my-app", an import statement and --app do not
        if sys.modules.get(stem) is main:
            return stem  # mapped by an earlier call
        try:
            found = importlib.util.find_spec(stem)
        except (ImportError, ValueError):
            return None
        if found is None or found.origin is None or Path(found.origin).resolve() != Path(path).resolve():
            return None
        name = stem
    loaded = sys.modules.setdefault(name, main)
    return name if loaded is main else None


def _path_hint() -> str:
    folders = [p for p in sys.path[:3] if p and Path(p).is_dir()]
    return ", ".join(folders) + (", ..." if len(sys.path) > 3 else "")


async def run_app(node: Any, app: App) -> None:
    """Call ``app``'s function with ``node`` (and await it); nothing for a bare module.

    Runs on the node's event loop with the node current (inside ``async with node``);
    the function may await anything (register names, start a supervisor), and the node
    is reported up only once it returns.

    Raises:
        AppError: the function raised.
    """
    if app.function is None:
        return
    try:
        started = app.function(node)
        if inspect.isawaitable(started):
            await started
    except Exception as exc:
        hint = ""
        if isinstance(exc, AlreadyRegistered):
            # The usual cause: the same app on every node, each registering the same names.
            hint = (
                " (every node runs its --app functions: to start a name once from all of them,"
                " use whereis_or_register, which returns the pid that holds it)"
            )
        raise AppError(f"app {app.ref!r} failed: {one_line(exc)}{hint}") from exc


async def start_app(node: Any, ref: str) -> None:
    """``load_app(ref)`` then ``run_app``: for a node that has already joined.

    Raises:
        AppError: as ``load_app`` and ``run_app``.
    """
    await run_app(node, load_app(ref))
