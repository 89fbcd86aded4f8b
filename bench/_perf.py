"""The pyperf harness of the micro-benchmarks (``runtime.py``, ``transport.py``).

A script builds one ``PerfRunner`` and declares one pyperf benchmark per figure with
``bench()``. pyperf then does the rest (https://pyperf.readthedocs.io): it runs each
benchmark in worker processes of its own (``--processes``, ``--fast``, ``--rigorous``),
calibrates the number of loops so that each value lasts at least ``--min-time``, skips
warm-up values, and writes every value to ``-o FILE``; ``python -m pyperf compare_to
old.json new.json`` compares two such files (two trees, two machines).

A loop is one operation per sender or caller (``per_loop`` of them), so a value is the
wall time of one operation (a message, a call) in seconds; a figure's rate is
1 / the median of the values (``figures()``).

Beside the wall clock, each worker takes the CPU time (user + system, from /proc) every OS
process of the workload spent per operation in the values pyperf keeps (not in warm-ups
nor in the calibration runs), and writes their median to a side file; once every worker
has run, the manager stores them in the metadata of each worker's run
(``cpu_us_per_op_self``, or ``_a`` and ``_b`` for two nodes) in the ``-o`` (or
``--append``) file, and ``figures()`` reports the median over the runs. A busy machine
distorts them far less than the wall clock.

Each worker runs one benchmark: ``setup`` (on its first value) starts what the workloads
need on one event loop (uvloop when installed, as ``distable.run``), kept for every value
of that worker; ``finish()`` stops it.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import json
import os
import secrets
import statistics
import subprocess
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Generic, TypeVar

import pyperf  # type: ignore[import-untyped]
from _common import Timer, note

C = TypeVar("C")

#: Metadata keys this harness adds to a benchmark (pyperf keeps any key it does not know).
UNIT = "figure_unit"  # the figure's unit: "msg/s", "calls/s" (a rate of operations), or "bytes"
LATENCY = "figure_latency"  # also report the mean time of one operation as this figure, in µs
CPU = "cpu_us_per_op_"  # + the process's label: CPU µs per operation (a run's: the median of its values)
TOKEN = "cpu_token"  # names a worker's run until the manager gives it its CPU times
CONFIG = "config_"  # + a workload parameter (senders, callers, payload...)

Workload = Callable[[C, int], Awaitable[Timer]]

#: Worker processes per benchmark (pyperf's default is 20, for benchmarks of a few µs per
#: value; ours run ~0.1 s of messages per value and start a node per worker):
#: ``--fast`` halves it, ``--rigorous`` doubles it, ``--processes N`` sets it.
PROCESSES = 10


def new_loop() -> asyncio.AbstractEventLoop:
    """A new event loop of the kind ``distable.run`` uses: uvloop when installed."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def measured_tree() -> dict[str, str]:
    """Which distable was measured (metadata of every benchmark): the package's folder, and
    the git commit of the tree holding it (``+`` when that tree has changes)."""
    import distable

    src = Path(distable.__file__).resolve().parent
    tree = {"distable_path": str(src)}
    git = ["git", "-C", str(src)]
    head = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    if head.returncode == 0:
        dirty = subprocess.run([*git, "status", "--porcelain", "--", "."], capture_output=True, text=True)
        tree["distable_git"] = head.stdout.strip() + ("+" if dirty.stdout.strip() else "")
    return tree


class PerfRunner(Generic[C]):
    """One ``pyperf.Runner`` and the state of this process's workloads.

    ``setup()`` makes the context every workload gets (a node...), ``teardown(context)``
    stops it. A workload is ``async (context, loops) -> Timer``: ``loops`` operations per
    sender or caller, timed (and their CPU time taken) by a ``_common.Timer`` whose other
    processes are labelled (``{"b": pid}``); ``me`` labels this process.
    """

    def __init__(
        self,
        doc: str | None,
        setup: Callable[[], Awaitable[C]],
        teardown: Callable[[C], Awaitable[None]],
        *,
        me: str = "self",
        processes: int = PROCESSES,
        flags: dict[str, str] | None = None,
    ) -> None:
        """``flags``: the script's own on/off options (``--name``: help), passed on to the
        workers and recorded in the metadata when on (``flag_<name>``)."""
        self._flags = dict(flags or {})
        self.runner = pyperf.Runner(processes=processes, add_cmdline_args=self._worker_args)
        parser: argparse.ArgumentParser = self.runner.argparser
        parser.description = doc
        parser.formatter_class = argparse.RawDescriptionHelpFormatter
        parser.add_argument("--only", default="", help="comma-separated figure names to run (default: all)")
        parser.add_argument("--cpu-samples", help=argparse.SUPPRESS)  # the side file (the manager makes one)
        for flag, text in self._flags.items():
            parser.add_argument(flag, action="store_true", help=text)
        self.args: Any = self.runner.parse_args()
        self.runner.metadata.update(measured_tree())
        for flag in self._flags:
            if self.flag(flag):
                self.runner.metadata["flag_" + flag.removeprefix("--").replace("-", "_")] = "on"
        self._setup = setup
        self._teardown = teardown
        self._me = me
        self._loop: asyncio.AbstractEventLoop | None = None
        self._context: C | None = None
        self._kept: list[dict[str, float]] = []
        self._calls = 0
        self._benches: list[Any] = []
        if not self.worker and not self.args.cpu_samples:
            fd, path = tempfile.mkstemp(prefix="distable-bench-cpu-", suffix=".jsonl")
            os.close(fd)
            self.args.cpu_samples = path
            atexit.register(Path(path).unlink, missing_ok=True)  # also when a worker failed

    @property
    def worker(self) -> bool:
        """Whether this process is one of pyperf's workers (else the manager, which spawns them)."""
        return bool(self.args.worker)

    @property
    def manager(self) -> bool:
        """The process the user started: the one that spawns workers (not pyperf's ``--compare-to`` mode)."""
        return not self.worker and not self.args.compare_to

    @property
    def fast(self) -> bool:
        """``--fast`` (or ``--debug-single-value``): rough answers quickly, smaller one-off workloads too."""
        return bool(self.args.fast or self.args.debug_single_value)

    def wanted(self, name: str) -> bool:
        return not self.args.only or name in self.args.only.split(",")

    def flag(self, flag: str) -> bool:
        """Whether the script's option ``flag`` (``--name``, see ``flags``) was given."""
        return bool(getattr(self.args, flag.removeprefix("--").replace("-", "_")))

    def _worker_args(self, cmd: list[str], args: Any) -> None:
        if args.only:
            cmd += ["--only", args.only]
        cmd += [flag for flag in self._flags if self.flag(flag)]
        cmd += ["--cpu-samples", args.cpu_samples]

    def bench(
        self,
        name: str,
        unit: str,
        workload: Workload[C],
        *,
        per_loop: int = 1,
        latency: str | None = None,
        **config: str | int,
    ) -> None:
        """One figure: ``workload`` as a pyperf benchmark called ``name``; a rate in ``unit``."""
        if not self.wanted(name):
            return
        metadata: dict[str, Any] = {UNIT: unit, **{CONFIG + k: v for k, v in config.items()}}
        if latency is not None:
            metadata[LATENCY] = latency
        self._kept = []
        self._calls = 0
        token = secrets.token_hex(8)
        if self.worker:  # names this worker's run, so the manager can give it its CPU times
            self.runner.metadata[TOKEN] = token
        bench = self.runner.bench_time_func(
            name, self._time, workload, per_loop, inner_loops=per_loop, metadata=metadata
        )
        if self.worker:
            if self._kept and self.args.cpu_samples:  # it ran this benchmark: hand its CPU times over
                cpu = {k: statistics.median(v[k] for v in self._kept) for k in self._kept[0]}
                with open(self.args.cpu_samples, "a") as f:
                    f.write(json.dumps({"name": name, "token": token, "cpu_us_per_op": cpu}) + "\n")
        elif bench is not None:
            self._benches.append(bench)

    def _time(self, loops: int, workload: Workload[C], per_loop: int) -> float:
        if self._loop is None:
            self._loop = new_loop()
            asyncio.set_event_loop(self._loop)
            self._context = self._loop.run_until_complete(self._setup())
        timer = self._loop.run_until_complete(workload(self._context, loops))  # type: ignore[arg-type]
        self._calls += 1
        args = self.args
        # pyperf's worker computes its warm-ups first, then its values; calibration runs keep none
        calibrating = (
            args.calibrate_loops or args.recalibrate_loops or args.calibrate_warmups or args.recalibrate_warmups
        )
        if not calibrating and self._calls > (args.warmups or 0):
            ops = loops * per_loop
            self._kept.append({self._me if k == "self" else k: v * 1e6 / ops for k, v in timer.cpu.items()})
        return timer.elapsed

    def finish(self, *extra: Any) -> None:
        """Stop the workloads' context (a worker), or (the manager) give each worker's run its
        CPU times and add the ``extra`` benchmarks (``measured()`` by the manager itself) to
        the ``-o`` or ``--append`` file."""
        if self._loop is not None:
            if self._context is not None:
                self._loop.run_until_complete(self._teardown(self._context))
            self._loop.close()
            asyncio.set_event_loop(None)
        if self.worker:
            return
        side = Path(self.args.cpu_samples)
        records = [json.loads(line) for line in side.read_text().splitlines()] if side.exists() else []
        side.unlink(missing_ok=True)
        cpu = {r["token"]: r["cpu_us_per_op"] for r in records}
        for name in dict.fromkeys(r["name"] for r in records):
            runs = [r["cpu_us_per_op"] for r in records if r["name"] == name]
            medians = {k: statistics.median(run[k] for run in runs) for k in runs[0]}
            note(f"{name}: CPU µs/op " + ", ".join(f"{k} {v:.3f}" for k, v in medians.items()))
        for bench in extra:
            bench.update_metadata(dict(self.runner.metadata))  # which tree, as the workers' benchmarks say
        path = self.args.output or self.args.append
        if not path or not (self._benches or extra):
            return
        target = Path(path)
        benches = list(extra)
        if target.exists():  # pyperf wrote it (and --append's earlier runs): read it back
            suite = pyperf.BenchmarkSuite.load(str(target))
            for bench in extra:
                suite.add_runs(bench)
            first = {bench.get_name() for bench in extra}  # measured first: listed first
            benches = sorted(suite.get_benchmarks(), key=lambda bench: bench.get_name() not in first)
        pyperf.BenchmarkSuite([with_cpu(bench, cpu) for bench in benches]).dump(str(target), replace=True)


def with_cpu(bench: Any, cpu: dict[str, dict[str, float]]) -> Any:
    """``bench`` with the CPU µs per operation of each process in the metadata of each run
    that a worker measured (``cpu``: by the token the worker gave its run)."""
    runs = []
    for run in bench.get_runs():
        metadata = run.get_metadata()
        token = metadata.pop(TOKEN, None)
        if token is None:
            runs.append(run)
            continue
        metadata.update({CPU + k: round(v, 3) for k, v in cpu.get(token, {}).items()})
        runs.append(pyperf.Run(run.values, warmups=run.warmups, metadata=metadata, collect_metadata=False))
    return pyperf.Benchmark(runs)


def measured(
    name: str, values: list[float], unit: str, figure_unit: str, loops: int = 1, **config: str | int | float
) -> Any:
    """A benchmark the manager measured itself (memory per idle process...), a run per value
    (one per OS process): ``unit`` is pyperf's ("byte" or "second"), ``figure_unit`` the
    figure's; a time is the mean of ``loops`` operations."""
    metadata = {"name": name, "unit": unit, "loops": loops, UNIT: figure_unit}
    metadata.update({CONFIG + k: v for k, v in config.items()})
    return pyperf.Benchmark([pyperf.Run([value], metadata=metadata) for value in values])


def figures(path: str | Path) -> list[dict[str, Any]]:
    """The figures of a pyperf file written by a ``PerfRunner`` script, as ``_common.emit``
    prints them (``name``, ``value``, ``unit``, ``config``): a rate is 1 / the median value,
    bytes are the median value; ``config`` holds the workload's parameters, the CPU µs per
    operation of each process, and pyperf's runs, values and spread."""
    out: list[dict[str, Any]] = []
    for bench in pyperf.BenchmarkSuite.load(str(path)).get_benchmarks():
        md = bench.get_metadata()
        unit = md.get(UNIT, md.get("unit", "second"))
        median = bench.median()
        values = bench.get_values()
        config: dict[str, Any] = {k.removeprefix(CONFIG): v for k, v in md.items() if k.startswith(CONFIG)}
        config.update(runs=bench.get_nrun(), values=len(values))
        if len(values) > 1:
            config["stdev_pct"] = round(100 * bench.stdev() / bench.mean(), 1)
        per_run = [run.get_metadata() for run in bench.get_runs()]
        labels = sorted({k for run in per_run for k in run if k.startswith(CPU)})
        if labels:  # the median over the runs (each a worker's median)
            cpu = {k: statistics.median(run[k] for run in per_run if k in run) for k in labels}
            config["cpu_us_per_op"] = {k.removeprefix(CPU): round(v, 3) for k, v in cpu.items()}
        value = median if md.get("unit") == "byte" else 1 / median
        out.append({"name": bench.get_name(), "value": value, "unit": unit, "config": config})
        if LATENCY in md:
            latency = {k: v for k, v in config.items() if k != "cpu_us_per_op"}
            out.append({"name": md[LATENCY], "value": median * 1e6, "unit": "us", "config": latency})
    return out


def main() -> None:
    """``python bench/_perf.py OLD.json NEW.json ...``: each figure of each file side by side,
    with its CPU µs per operation (what ``pyperf compare_to`` does not compare)."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("files", nargs="+", help="pyperf files written by runtime.py or transport.py")
    files = parser.parse_args().files
    by_file = [{f["name"]: f for f in figures(path)} for path in files]
    names = list(dict.fromkeys(name for found in by_file for name in found))
    rows = [["figure", *(f"{Path(p).name} ({n})" for n, p in enumerate(files, 1)), "CPU µs/op"]]
    for name in names:
        cells, cpus = [], []
        for found in by_file:
            f = found.get(name)
            cells.append(f"{f['value']:,.1f} {f['unit']}" if f else "")
            cpu = f["config"].get("cpu_us_per_op", {}) if f else {}
            cpus.append(" ".join(f"{k} {v:.2f}" for k, v in cpu.items()) or "-")
        rows.append([name, *cells, " | ".join(cpus)])
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


if __name__ == "__main__":
    main()
