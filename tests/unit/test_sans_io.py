"""docs/design.md's sans-I/O rule, enforced: a core imports no I/O, no clock and no randomness.

A core gets ``now`` and an injected ``random.Random`` from its shell instead. The check
reads each core module's source (nothing is imported), and follows its imports of other
distable modules, so a core cannot reach ``asyncio`` through a helper either.

Add each new sans-I/O core (membership, tracker, ring, ...) to ``CORE_MODULES``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"
PACKAGE = SRC / "distable"

#: Source files of the sans-I/O cores, relative to src/distable. A directory means
#: every module in it.
CORE_MODULES: tuple[str, ...] = (
    "_backoff.py",
    "wire",
    "transport/_handshake.py",
    "membership/_packet.py",
    "membership/_core.py",
    "membership/_config.py",
    "membership/_events.py",
    "ring",
    "registry/_core.py",
    "registry/_events.py",
    "registry/_standby.py",
    "registry/_conflicts.py",
    "store/_api.py",
    "store/_records.py",
    "store/_queue.py",
)

#: Top-level modules a core must not import, directly or through distable modules.
FORBIDDEN: frozenset[str] = frozenset({"asyncio", "socket", "time", "random", "selectors", "ssl", "threading"})


def core_files() -> list[Path]:
    files: list[Path] = []
    for entry in CORE_MODULES:
        path = PACKAGE / entry
        assert path.exists(), f"CORE_MODULES lists {entry}, which does not exist"
        files += sorted(path.glob("*.py")) if path.is_dir() else [path]
    return files


def module_name(path: Path, src: Path = SRC) -> str:
    parts = path.relative_to(src).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def module_file(name: str, src: Path = SRC) -> Path | None:
    """The source file of a distable module or package, or None if there is none."""
    base = src.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _called_name(func: ast.expr) -> str:
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.attr
    return ""


def _is_type_checking(node: ast.AST) -> bool:
    test = node.test if isinstance(node, ast.If) else None
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _runtime_nodes(tree: ast.AST) -> list[ast.AST]:
    """Every node of ``tree`` except the bodies of ``if TYPE_CHECKING:`` (imports for annotations only)."""
    nodes: list[ast.AST] = []
    stack = [tree]
    while stack:
        node = stack.pop()
        nodes.append(node)
        if isinstance(node, ast.If) and _is_type_checking(node):
            stack += node.orelse
        else:
            stack += ast.iter_child_nodes(node)
    return nodes


def imports_of(path: Path, src: Path = SRC, *, annotations: bool = False) -> list[tuple[str, int]]:
    """Absolute names of every module ``path`` imports at run time (anywhere in its code), with line numbers;
    with ``annotations``, those it imports under ``if TYPE_CHECKING:`` too."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    name = module_name(path, src)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: list[tuple[str, int]] = []
    for node in ast.walk(tree) if annotations else _runtime_nodes(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = parts[: len(parts) - (node.level - 1)]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            found.append((target, node.lineno))
            for alias in node.names:  # ``from pkg import sub`` may name a submodule
                sub = f"{target}.{alias.name}"
                if module_file(sub, src) is not None:
                    found.append((sub, node.lineno))
        elif (
            isinstance(node, ast.Call)
            and _called_name(node.func) in ("__import__", "import_module")
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            found.append((node.args[0].value, node.lineno))
    return found


def violations(path: Path, src: Path = SRC) -> list[str]:
    """Forbidden imports reachable from ``path`` through distable modules, as readable chains."""
    problems: list[str] = []
    seen: set[Path] = set()
    stack: list[tuple[Path, list[str]]] = [(path, [module_name(path, src)])]
    while stack:
        current, chain = stack.pop()
        if current in seen:
            continue
        seen.add(current)
        for target, line in imports_of(current, src):
            top = target.partition(".")[0]
            where = f"{current.relative_to(src)}:{line}"
            if top in FORBIDDEN:
                problems.append(f"{' -> '.join(chain)} imports {target} ({where})")
            elif top == "distable":
                dep = module_file(target, src)
                # Package __init__ files re-export the public API and are not part of a
                # core; a core names the module it uses (``..wire._messages``).
                if dep is not None and dep.name != "__init__.py":
                    stack.append((dep, [*chain, target]))
    return problems


@pytest.mark.parametrize("path", core_files(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_core_module_imports_no_io_clock_or_randomness(path: Path) -> None:
    problems = violations(path)
    assert not problems, "sans-I/O core imports forbidden modules:\n  " + "\n  ".join(problems)


FORBIDDEN_SPELLINGS = {
    "import asyncio": "asyncio",
    "import os, time": "time",
    "import asyncio.events": "asyncio.events",
    "from random import Random": "random",
    "from socket import socket as s": "socket",
    "def f():\n    import ssl": "ssl",
    "import importlib\nimportlib.import_module('threading')": "threading",
    "__import__('selectors')": "selectors",
}


@pytest.mark.parametrize(("source", "forbidden"), FORBIDDEN_SPELLINGS.items(), ids=list(FORBIDDEN_SPELLINGS.values()))
def test_the_check_catches_every_spelling_of_an_import(tmp_path: Path, source: str, forbidden: str) -> None:
    core = tmp_path / "distable" / "core.py"
    core.parent.mkdir()
    core.write_text(source)
    (problem,) = violations(core, src=tmp_path)
    assert f"imports {forbidden} " in problem


def test_the_check_follows_imports_through_distable_modules(tmp_path: Path) -> None:
    pkg = tmp_path / "distable"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("import asyncio  # the package API: not part of any core\n")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "core.py").write_text("from .. import helper\nfrom ..clean import x\n")
    (pkg / "clean.py").write_text("import hashlib\nx = 1\n")
    (pkg / "helper.py").write_text("import os\nimport time\n")
    problems = violations(pkg / "sub" / "core.py", src=tmp_path)
    assert problems == ["distable.sub.core -> distable.helper imports time (distable/helper.py:2)"]


def test_imports_for_annotations_only_are_allowed(tmp_path: Path) -> None:
    # ``rng: random.Random`` needs the name for the type checker, not at run time.
    core = tmp_path / "distable" / "core.py"
    core.parent.mkdir()
    core.write_text(
        "import typing\nfrom typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    import random\nelse:\n    import socket\n"
        "if typing.TYPE_CHECKING:\n    import asyncio\n"
    )
    assert violations(core, src=tmp_path) == ["distable.core imports socket (distable/core.py:6)"]


def test_relative_imports_resolve_to_distable_modules() -> None:
    targets = {name for name, _ in imports_of(PACKAGE / "transport" / "_handshake.py")}
    assert {"distable._errors", "distable.wire._messages"} <= targets
    assert all(module_file(t) is not None for t in targets if t.startswith("distable"))
