"""The distable demo: a local cluster of real node processes, changed three times, checked.

    python -m distable.demo [--workers N] [--plain] [--keep-running] [--seed S]

(``python3 tasks.py demo`` and ``distable demo`` run the same.) See ``_driver`` for what
it does, ``_app`` for the code every node runs, and ``_view`` for what it shows. It needs
the ``cli`` extra (rich, for its live view): ``pip install 'distable[cli]'``.
"""

from __future__ import annotations

import sys

from .._errors import MissingExtra
from .._extras import require


def main(argv: list[str] | None = None, prog: str = "python -m distable.demo") -> int:
    """Run the demo (``_main.main``); without the ``cli`` extra, say so and return 1."""
    try:
        require("cli", "the demo")
    except MissingExtra as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 1
    from ._main import main as run_demo

    return run_demo(argv, prog)


__all__ = ["main"]
