"""Run every benchmark script, collect their figures as JSON lines, print a table.

    python3 tasks.py bench [--quick] [--repeats N] [--out FILE] [--markdown FILE]
                           [--pyperf-dir DIR] [--pyperf-args='...'] [script.py ...]
    .venv/bin/python bench/run_all.py [same options]

Each script runs in its own OS process (one after the other, never at the same time:
the machine has few cores). The micro-benchmarks (``PYPERF``: runtime.py, transport.py)
are pyperf scripts: each writes a pyperf JSON file (kept in ``--pyperf-dir``, for
``python -m pyperf compare_to``), which is read back into figures once it has run
(``_perf.figures``), while pyperf's own report goes to stderr; the other scripts print
their figures themselves. Figures go to stdout as JSON lines, as each script ends (or
as it prints them); the table at the end puts each figure beside its target and beside
the bare-bones limit measured in the same run (the ``bare_`` figure of the same name).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
#: Run first, in this order; then every other bench script (not ``_private.py``), by name.
FIRST = ("runtime.py", "transport.py")
#: The scripts run by pyperf (``_perf.PerfRunner``): they write a pyperf JSON file.
PYPERF = ("runtime.py", "transport.py")


def scripts() -> list[str]:
    others = sorted(p.name for p in HERE.glob("*.py") if not p.name.startswith("_") and p.name != "run_all.py")
    return [s for s in FIRST if s in others] + [s for s in others if s not in FIRST]


#: name -> (target, "min" | "max"): the foundation's targets (docs/performance.md).
TARGETS: dict[str, tuple[float, str]] = {
    "local_send": (1_000_000, "min"),
    "local_call": (200_000, "min"),
    "remote_send": (500_000, "min"),
    "remote_call": (15_000, "min"),
    "remote_call_64": (100_000, "min"),
    "idle_process_bytes": (2048, "max"),
    "idle_process_bytes_traced": (2048, "max"),
}
# bench/registry.py, at each worker count it runs (the targets; join and kill only at 10k and 50k)
for _n in ("2k", "10k", "50k", "100k"):
    TARGETS.update(
        {
            f"registry_register_one_{_n}": (10_000, "min"),
            f"registry_register_32_{_n}": (50_000, "min"),
            f"registry_whereis_node_{_n}": (0.3, "max"),
            f"registry_whereis_module_{_n}": (0.3, "max"),
            f"registry_call_name_{_n}": (15_000, "min"),
            f"registry_call_name_64_{_n}": (100_000, "min"),
            f"registry_memory_per_worker_{_n}": (4096, "max"),
        }
    )
TARGETS.update(
    {
        "registry_join_10k": (1.0, "max"),
        "registry_kill_10k": (1.5, "max"),
        "registry_join_50k": (5.0, "max"),
        "registry_kill_50k": (5.0, "max"),
    }
)


def run_pyperf(script: str, extra: list[str], folder: Path) -> list[dict[str, Any]]:
    """Run one pyperf script into ``folder/<script>.json`` (its report on stderr); echo and return its figures."""
    from _perf import figures  # imported here: the CLI reads TARGETS without bench/ on sys.path

    out = folder / (Path(script).stem + ".json")
    cmd = [sys.executable, str(HERE / script), "--quiet", "-o", str(out), *extra]
    print(f"# {' '.join(cmd)}", file=sys.stderr, flush=True)
    started = time.monotonic()
    code = subprocess.run(cmd, stdout=sys.stderr.fileno()).returncode
    print(f"# {script}: exit {code} after {time.monotonic() - started:.1f} s", file=sys.stderr, flush=True)
    if code:
        raise SystemExit(f"{script} failed with exit code {code}")
    found = figures(out)
    for figure in found:
        print(json.dumps(figure), flush=True)
        figure["config"]["script"] = script
    return found


def run_script(script: str, extra: list[str]) -> list[dict[str, Any]]:
    """Run one script; echo its figures as they come; return them."""
    cmd = [sys.executable, str(HERE / script), *extra]
    print(f"# {' '.join(cmd)}", file=sys.stderr, flush=True)
    started = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    figures = []
    for line in proc.stdout:
        line = line.strip()
        if not line:
            continue
        print(line, flush=True)
        figure = json.loads(line)
        figure["config"]["script"] = script
        figures.append(figure)
    code = proc.wait()
    print(f"# {script}: exit {code} after {time.monotonic() - started:.1f} s", file=sys.stderr, flush=True)
    if code:
        raise SystemExit(f"{script} failed with exit code {code}")
    return figures


def fmt(value: float) -> str:
    if value >= 1000:
        return f"{value:,.0f}"
    return f"{value:,.1f}"


def machine() -> dict[str, Any]:
    """What the figures were measured on (read-only look-ups: /proc, versions, git HEAD)."""
    model = "?"
    try:
        with open("/proc/cpuinfo") as f:
            model = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), "?")
    except OSError:
        pass
    try:
        loop = f"uvloop {importlib.metadata.version('uvloop')}"  # distable.run uses it when installed
    except importlib.metadata.PackageNotFoundError:
        loop = "asyncio (no uvloop)"
    import msgspec

    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=HERE)
    return {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "nproc": os.cpu_count(),
        "cpu": model,
        "python": sys.version.split()[0],
        "loop": loop,
        "msgspec": msgspec.__version__,
        "git": head.stdout.strip() or "?",
        "loadavg": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }


def cpu_text(figure: dict[str, Any], bare: dict[str, Any] | None) -> str:
    """CPU µs per operation of each OS process ("self", or "a"/"b" for two nodes), bare in brackets."""
    cpu = figure["config"].get("cpu_us_per_op")
    if not cpu:
        return ""
    bare_cpu = bare["config"].get("cpu_us_per_op", {}) if bare else {}
    parts = []
    for key, value in sorted(cpu.items()):
        label = "" if key == "self" else f"{key} "
        extra = f" ({bare_cpu[key]:.2f})" if key in bare_cpu else ""
        parts.append(f"{label}{value:.2f}{extra}")
    return ", ".join(parts)


def table(figures: list[dict[str, Any]], markdown: bool = False) -> str:
    by_name = {f["name"]: f for f in figures}
    rows = [("figure", "value", "unit", "target", "bare-bones", "x limit", "CPU µs/op (bare)")]
    for f in figures:
        name = f["name"]
        if name.startswith("bare_"):
            continue
        value = f["value"]
        target = ""
        if name in TARGETS:
            goal, kind = TARGETS[name]
            met = value >= goal if kind == "min" else value <= goal
            target = f"{'>=' if kind == 'min' else '<='} {fmt(goal)} {'ok' if met else 'MISSED'}"
        bare = by_name.get("bare_" + name)
        bare_text = fmt(bare["value"]) if bare else ""
        # how many times worse than the limit: slower rate, or longer time
        ratio = f"{value / bare['value'] if f['unit'] == 'us' else bare['value'] / value:.2f}" if bare and value else ""
        rows.append((name, fmt(value), f["unit"], target, bare_text, ratio, cpu_text(f, bare)))
    if markdown:
        out = ["| " + " | ".join(rows[0]) + " |", "|---|--:|---|---|--:|--:|---|"]
        out += ["| " + " | ".join(row) + " |" for row in rows[1:]]
        return "\n".join(out)
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for i, row in enumerate(rows):
        lines.append(
            "  ".join(
                cell.rjust(w) if j in (1, 4, 5) else cell.ljust(w)
                for j, (cell, w) in enumerate(zip(row, widths, strict=True))
            )
        )
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--quick", action="store_true", help="a quick run: pyperf's --fast, smaller workloads for the other scripts"
    )
    parser.add_argument(
        "--repeats", type=int, help="runs per figure: pyperf's --processes, or each other script's --repeats"
    )
    parser.add_argument("--out", type=Path, help="also write the JSON lines to this file")
    parser.add_argument("--markdown", type=Path, help="also write the machine and the table as Markdown here")
    parser.add_argument(
        "--pyperf-dir", type=Path, help="keep the pyperf scripts' JSON files here (runtime.json...; default: not kept)"
    )
    parser.add_argument(
        "--pyperf-args",
        default="",
        help="more options for the pyperf scripts, after an '=': --pyperf-args='--rigorous --only remote_call'",
    )
    parser.add_argument("scripts", nargs="*", help="bench scripts to run (default: all of bench/*.py)")
    args = parser.parse_args()
    chosen = args.scripts or scripts()
    extra = ["--quick"] if args.quick else []
    perf_extra = ["--fast"] if args.quick else []
    if args.repeats:
        extra += ["--repeats", str(args.repeats)]
        # pyperf's --fast would override --processes: keep its fewer values only
        perf_extra = ["--processes", str(args.repeats), *(["--values", "2"] if args.quick else [])]
    perf_extra += shlex.split(args.pyperf_args)
    folder = args.pyperf_dir
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
        there = [folder / (Path(s).stem + ".json") for s in chosen if s in PYPERF]
        if any(path.exists() for path in there):
            raise SystemExit(f"--pyperf-dir {folder}: {', '.join(str(p) for p in there if p.exists())} exists already")
    before = machine()
    figures = []
    with tempfile.TemporaryDirectory(prefix="distable-bench-") as tmp:
        for script in chosen:
            if script in PYPERF:
                figures += run_pyperf(script, perf_extra, folder or Path(tmp))
            else:
                figures += run_script(script, extra)
    info = {**before, "loadavg": f"{before['loadavg']} (start), {machine()['loadavg']} (end)"}
    if args.out:
        args.out.write_text("".join(json.dumps(f) + "\n" for f in figures))
    if args.markdown:
        command = " ".join([".venv/bin/python bench/run_all.py", *sys.argv[1:]])
        head = "\n".join(f"- {k}: {v}" for k, v in info.items())
        args.markdown.write_text(f"`{command}`\n\n{head}\n\n{table(figures, markdown=True)}\n")
    print("\n" + "  ".join(f"{k}: {v}" for k, v in info.items()), file=sys.stderr)
    print(table(figures), file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
