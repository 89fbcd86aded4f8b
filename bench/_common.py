"""Shared helpers of the benchmark scripts: one JSON object per figure, medians of repeats.

Every script in bench/ but the pyperf ones (``_perf.py``) prints one JSON line per figure::

    {"name": "local_send", "value": 1234567.0, "unit": "msg/s", "config": {...}}

and nothing else on stdout (progress goes to stderr). ``run_all.py`` collects them, and
makes the same lines from the pyperf scripts' JSON files.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


def emit(name: str, value: float, unit: str, **config: Any) -> None:
    """Print one figure as a JSON line on stdout."""
    print(json.dumps({"name": name, "value": value, "unit": unit, "config": config}), flush=True)


def note(text: str) -> None:
    """Progress for humans, on stderr (stdout carries only figures)."""
    print(text, file=sys.stderr, flush=True)


def median(values: list[float]) -> float:
    return float(statistics.median(values))


def median_of(repeats: int, measure: Callable[[], float]) -> tuple[float, list[float]]:
    """Run ``measure`` ``repeats`` times; return the median and every sample."""
    samples = [measure() for _ in range(repeats)]
    return median(samples), samples


@dataclass(frozen=True, slots=True)
class Sample:
    """One run's figure, and the CPU time each OS process spent per operation (µs)."""

    value: float
    cpu_us: dict[str, float] = field(default_factory=dict)


def cpu_seconds(pid: int | None = None) -> float:
    """CPU time (user + system) of this process, or of another one by pid (Linux /proc)."""
    if pid is None:
        return time.process_time()
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Timer:
    """``with Timer(other_pids) as t: ...``: wall time and CPU time of this and other processes.

    ``t.elapsed`` is seconds of wall time (perf_counter); ``t.cpu`` the CPU seconds of each
    process, keyed "self" and by the labels given with the pids; ``t.sample(n)`` the rate
    and the CPU µs per operation for ``n`` operations.
    """

    __slots__ = ("_cpu", "_cpu_start", "_others", "_start", "elapsed")

    def __init__(self, others: dict[str, int] | None = None) -> None:
        self._others = others or {}
        self.elapsed = 0.0

    def _sample(self) -> dict[str, float]:
        cpu = {"self": cpu_seconds()}
        for label, pid in self._others.items():
            cpu[label] = cpu_seconds(pid)
        return cpu

    def __enter__(self) -> Timer:
        self._cpu_start = self._sample()
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.elapsed = time.perf_counter() - self._start
        end = self._sample()
        self._cpu = {k: end[k] - self._cpu_start[k] for k in end}

    @property
    def cpu(self) -> dict[str, float]:
        """CPU seconds (user + system) each process spent in the block."""
        return dict(self._cpu)

    def sample(self, operations: int, label: str = "self") -> Sample:
        """Operations per second, with CPU µs per operation of each process."""
        cpu = {("self" if k == "self" else k): v * 1e6 / operations for k, v in self._cpu.items()}
        if label != "self":
            cpu[label] = cpu.pop("self")
        return Sample(operations / self.elapsed, cpu)


def parse_args(doc: str | None, repeats: int) -> argparse.Namespace:
    """The options every bench script takes: ``--repeats`` and ``--quick`` (smaller N)."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=repeats, help="runs per figure; the median is reported")
    parser.add_argument("--quick", action="store_true", help="smaller workloads (a smoke run)")
    parser.add_argument("--only", default="", help="comma-separated figure names to run (default: all)")
    return parser.parse_args()


def wanted(args: argparse.Namespace, name: str) -> bool:
    return not args.only or name in args.only.split(",")
