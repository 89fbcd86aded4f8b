"""``distable bench``: run the repository's ``bench/run_all.py`` and show its figures.

The benchmarks are not part of the installed package: they live in the source tree,
next to ``src/``. The command finds ``bench/run_all.py`` by walking up from the
``distable`` package (an editable install), then from the current directory, unless
``--bench-dir`` names the folder. ``run_all.py`` prints one JSON object per figure on
stdout (``{"name", "value", "unit", "config"}``) and its progress on stderr; its
``TARGETS`` table (``name -> (goal, "min" | "max")``) gives each figure's target.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

import click

import distable

from ._options import CliError
from ._query import Cell, print_json, print_table

RUN_ALL = Path("bench") / "run_all.py"


def find_run_all(bench_dir: str | None) -> Path:
    """The path of ``run_all.py``.

    Raises:
        CliError: not found.
    """
    if bench_dir is not None:
        script = Path(bench_dir) / "run_all.py"
        if not script.is_file():
            raise CliError(f"no run_all.py in --bench-dir {bench_dir}")
        return script
    starts = [Path(distable.__file__).resolve().parent, Path.cwd().resolve()]
    for start in starts:
        for folder in (start, *start.parents):
            if (folder / RUN_ALL).is_file():
                return folder / RUN_ALL
    raise CliError(
        "cannot find bench/run_all.py above the distable package or the current directory "
        "(the benchmarks ship with the source tree): give --bench-dir"
    )


def targets(script: Path) -> dict[str, tuple[float, str]]:
    """``run_all.TARGETS`` (read by importing the script, which runs nothing outside its
    main guard), or nothing if it cannot be read."""
    spec = importlib.util.spec_from_file_location("_distable_bench_run_all", script)
    if spec is None or spec.loader is None:
        return {}
    module = importlib.util.module_from_spec(spec)
    try:
        # It is a script with a main guard; whatever it prints when imported is not ours.
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            spec.loader.exec_module(module)
    except Exception:
        return {}
    found = getattr(module, "TARGETS", {})
    return dict(found) if isinstance(found, dict) else {}


def run(script: Path, args: Sequence[str], verbose: bool) -> list[dict[str, Any]]:
    """Run ``run_all.py`` and return its figures.

    Its stderr is forwarded: all of it with ``verbose``, else only its own progress lines
    (``# ...``: each script's command and exit).

    Raises:
        CliError: it cannot start, prints something other than JSON figures, or fails.
    """
    cmd = [sys.executable, str(script), *args]
    try:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    except OSError as exc:
        raise CliError(f"cannot run {script}: {exc.strerror or exc}") from None
    figures: list[dict[str, Any]] = []
    bad: str | None = None
    last_error: list[str] = []
    with proc:
        assert proc.stdout is not None
        assert proc.stderr is not None
        forward = threading.Thread(target=_forward, args=(proc.stderr, verbose, last_error), daemon=True)
        forward.start()
        try:
            for line in proc.stdout:
                text = line.strip()
                if not text:
                    continue
                try:
                    figure = json.loads(text)
                except json.JSONDecodeError:
                    bad = bad or text
                    continue
                if isinstance(figure, dict) and "name" in figure and "value" in figure:
                    figures.append(figure)
                    click.echo(f"  {figure['name']}: {figure['value']:g} {figure.get('unit', '')}", err=True)
        finally:
            code = proc.wait()
            forward.join()
    if code:
        detail = f": {last_error[0]}" if last_error else ""
        raise CliError(f"the benchmarks failed (exit code {code}){detail}")
    if bad is not None:
        raise CliError(f"{script} printed a line that is not a JSON figure: {bad[:80]!r}")
    return figures


def _forward(stream: IO[str], verbose: bool, last_error: list[str]) -> None:
    for line in stream:
        text = line.rstrip("\n")
        if text.strip():
            last_error[:] = [text.strip()]
        if verbose or text.startswith("#"):
            click.echo(text, err=True)


def fmt(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:,.1f}" if abs(value) >= 1 else f"{value:.3g}"


def rows(figures: Sequence[dict[str, Any]], goals: dict[str, tuple[float, str]]) -> list[dict[str, Any]]:
    """Each figure with its ``target`` (``">= 15,000"``) and ``met`` (None without a target)."""
    out = []
    for f in figures:
        goal = goals.get(f["name"])
        target, met = "", None
        if goal is not None:
            value, kind = goal
            met = f["value"] >= value if kind == "min" else f["value"] <= value
            target = f"{'>=' if kind == 'min' else '<='} {fmt(value)}"
        out.append({**f, "target": target, "met": met})
    return out


def show(table_rows: Sequence[dict[str, Any]], as_json: bool) -> None:
    if as_json:
        print_json(list(table_rows))
        return
    rows: list[list[Cell]] = []
    for r in table_rows:
        met: Cell = "" if r["met"] is None else ("yes", "green") if r["met"] else ("NO", "bold red")
        rows.append([r["name"], fmt(float(r["value"])), str(r.get("unit", "")), r["target"], met])
    print_table(("name", "value", "unit", "target", "met"), rows, right=("value",))
