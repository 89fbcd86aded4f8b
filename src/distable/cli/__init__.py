"""The ``distable`` command (click): run a node, query a cluster, run the demo and benchmarks."""

from __future__ import annotations


def main() -> None:
    raise SystemExit("distable: the command line is not built yet")
