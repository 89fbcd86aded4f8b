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
nor in the calibration runs), and writes it to a side file; once every worker has run,
the manager stores the medians in the benchmark's metadata (``cpu_us_per_op_self``, or
``_a`` and ``_b`` for two nodes), in the ``-o`` file. A busy machine distorts them far
less than the wall clock.

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
CPU = "cpu_us_per_op_"  # + the process's label: CPU µs per operation (median over kept values)
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
    ) -> None:
        self.runner = pyperf.Runner(processes=processes, add_cmdline_args=self._worker_args)
        parser: argparse.ArgumentParser = self.runner.argparser
        parser.description = doc
        parser.formatter_class = argparse.RawDescriptionHelpFormatter
        parser.add_argument("--only", default="", help="comma-separated figure names to run (default: all)")
        parser.add_argument("--cpu-samples", help=argparse.SUPPRESS)  # the side file (the manager makes one)
        self.args: Any = self.runner.parse_args()
        self.runner.metadata.update(measured_tree())
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

    def _worker_args(self, cmd: list[str], args: Any) -> None:
        if args.only:
            cmd += ["--only", args.only]
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
        bench = self.runner.bench_time_func(
            name, self._time, workload, per_loop, inner_loops=per_loop, metadata=metadata
        )
        if self.worker:
            if self._kept and self.args.cpu_samples:  # it ran this benchmark: hand its CPU times over
                with open(self.args.cpu_samples, "a") as f:
                    f.write(json.dumps({"name": name, "cpu_us_per_op": self._kept}) + "\n")
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
        """Stop the workloads' context (a worker), or (the manager) add each benchmark's CPU
        medians and the ``extra`` benchmarks (``measured()`` by the manager itself)
        to the ``-o`` or ``--append`` file."""
        if self._loop is not None:
            if self._context is not None:
                self._loop.run_until_complete(self._teardown(self._context))
            self._loop.close()
            asyncio.set_event_loop(None)
        if self.worker:
            return
        cpu = self._cpu_medians()
        for name, medians in cpu.items():
            note(f"{name}: CPU µs/op " + ", ".join(f"{k} {v:.3f}" for k, v in medians.items()))
        for bench in extra:
            bench.update_metadata(dict(self.runner.metadata))  # which tree, as the workers' benchmarks say
        path = self.args.output or self.args.append
        if path and (self._benches or extra):
            target = Path(path)
            benches = [*extra, *self._benches]
            if target.exists():  # pyperf wrote it (or --append's earlier runs): read it back
                suite = pyperf.BenchmarkSuite.load(str(target))
                for bench in extra:
                    suite.add_runs(bench)
                first = {bench.get_name() for bench in extra}  # measured first: listed first
                benches = sorted(suite.get_benchmarks(), key=lambda bench: bench.get_name() not in first)
            for bench in benches:
                if bench.get_name() in cpu:
                    bench.update_metadata({CPU + k: v for k, v in cpu[bench.get_name()].items()})
            pyperf.BenchmarkSuite(benches).dump(str(target), replace=True)

    def _cpu_medians(self) -> dict[str, dict[str, float]]:
        """{benchmark: {label: median CPU µs per operation}} from the workers' side file (then removed)."""
        samples: dict[str, list[dict[str, float]]] = {}
        side = Path(self.args.cpu_samples)
        if side.exists():
            for line in side.read_text().splitlines():
                record = json.loads(line)
                samples.setdefault(record["name"], []).extend(record["cpu_us_per_op"])
            side.unlink()
        return {
            name: {k: round(statistics.median(v[k] for v in values), 3) for k in values[0]}
            for name, values in samples.items()
        }


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
        cpu = {k.removeprefix(CPU): v for k, v in sorted(md.items()) if k.startswith(CPU)}
        if cpu:
            config["cpu_us_per_op"] = cpu
        value = median if md.get("unit") == "byte" else 1 / median
        out.append({"name": bench.get_name(), "value": value, "unit": unit, "config": config})
        if LATENCY in md:
            latency = {k: v for k, v in config.items() if k != "cpu_us_per_op"}
            out.append({"name": md[LATENCY], "value": median * 1e6, "unit": "us", "config": latency})
    return out
