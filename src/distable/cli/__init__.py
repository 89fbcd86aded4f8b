"""The ``distable`` command (click): run a node, query or watch a cluster, run the demo and benchmarks.

    distable node --name a --host 10.0.0.5 --cookie-file cookie --static 10.0.0.6:4370 --app myapp:start
    distable status | whereis NAME | registered | top   (same --cookie-file and discovery options)
    distable demo [ARGS...] | bench [--quick] [SCRIPTS...]

``distable --help`` and ``distable COMMAND --help`` describe every option; each also reads
``DISTABLE_<OPTION>`` from the environment and the ``[node]`` table of ``--config FILE``.
"""

from __future__ import annotations

from ._main import cli, main

__all__ = ["cli", "main"]
