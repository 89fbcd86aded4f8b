"""Import direction, read from the sources (nothing is imported), with test_sans_io's reader.

* A leaf module (``runtime/_context.py``, the current node and process) imports nothing
  from distable at run time, so that every layer, ``_log.py`` included, can import it.
* No distable module imports itself back at run time, through any chain. Package
  ``__init__`` files, which only re-export, are left out, as in the sans-I/O check.
* The modules of the packages in ``ACYCLIC_IN_ANNOTATIONS`` form no cycle even counting
  the imports made for annotations only (``if TYPE_CHECKING:``): in the node package the
  node (``_node``) uses its events (``_events``: bus and journal) and its info server
  (``_info``), and neither of those knows the node. In the registry package the service
  (``_service``) uses the handoff coordinator (``_handoff``), which is handed what it
  needs of the service and does not know it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from .test_sans_io import PACKAGE, SRC, imports_of, module_file, module_name

#: Modules that import nothing from distable at run time, relative to src/distable.
LEAVES: tuple[str, ...] = ("runtime/_context.py", "_backoff.py", "_timer.py")

#: Packages whose modules form no import cycle, annotation-only imports included.
ACYCLIC_IN_ANNOTATIONS: tuple[str, ...] = ("node", "registry")


def source_files(root: Path = PACKAGE) -> list[Path]:
    """The modules under ``root``, package ``__init__`` files left out."""
    return sorted(path for path in root.rglob("*.py") if path.name != "__init__.py")


def import_graph(files: list[Path], src: Path = SRC, *, annotations: bool = False) -> dict[str, set[str]]:
    """Each of ``files``' modules -> the distable modules (not package ``__init__`` files) it imports."""
    graph: dict[str, set[str]] = {}
    for path in files:
        deps: set[str] = set()
        for target, _ in imports_of(path, src, annotations=annotations):
            dep = module_file(target, src)
            if target.partition(".")[0] == "distable" and dep is not None and dep.name != "__init__.py":
                deps.add(module_name(dep, src))
        graph[module_name(path, src)] = deps
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Import cycles among ``graph``'s own modules, each a chain that ends where it starts
    (at least one per tangle: empty if and only if there is none)."""
    found: list[list[str]] = []
    on_path: set[str] = set()
    done: set[str] = set()

    def visit(module: str, path: list[str]) -> None:
        on_path.add(module)
        for dep in sorted(graph[module]):
            if dep in on_path:
                found.append([*path[path.index(dep) :], dep])
            elif dep not in done and dep in graph:
                visit(dep, [*path, dep])
        on_path.discard(module)
        done.add(module)

    for module in sorted(graph):
        if module not in done:
            visit(module, [module])
    return found


@pytest.mark.parametrize("leaf", LEAVES)
def test_a_leaf_module_imports_nothing_from_distable(leaf: str) -> None:
    imported = [
        f"{target} (line {line})" for target, line in imports_of(PACKAGE / leaf) if target.startswith("distable")
    ]
    assert imported == [], f"{leaf} must import nothing from distable at run time"


def test_no_module_imports_itself_back_at_run_time() -> None:
    assert cycles(import_graph(source_files())) == []


@pytest.mark.parametrize("package", ACYCLIC_IN_ANNOTATIONS)
def test_a_package_s_modules_form_no_cycle_even_in_annotations(package: str) -> None:
    assert cycles(import_graph(source_files(PACKAGE / package), annotations=True)) == []


def test_the_check_finds_a_cycle_closed_by_an_annotation_import(tmp_path: Path) -> None:
    pkg = tmp_path / "distable"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("from .a import x  # re-exports: not part of the graph\n")
    (pkg / "a.py").write_text("from typing import TYPE_CHECKING\n\nx = 1\nif TYPE_CHECKING:\n    from .b import y\n")
    (pkg / "b.py").write_text("def f():\n    from . import c\n")
    (pkg / "c.py").write_text("from .a import x\n")
    files = source_files(pkg)
    assert cycles(import_graph(files, tmp_path)) == []
    chain = ["distable.a", "distable.b", "distable.c", "distable.a"]
    assert cycles(import_graph(files, tmp_path, annotations=True)) == [chain]
