"""The distable demo: a local cluster of real node processes, changed three times, checked.

    python -m distable.demo [--workers N] [--plain] [--keep-running] [--seed S]

(``python3 tasks.py demo`` and ``distable demo`` run the same.) See ``_driver`` for what
it does, ``_app`` for the code every node runs, and ``_view`` for what it shows.
"""

from ._main import main

__all__ = ["main"]
