"""``python -m distable.cli``: the ``distable`` command."""

from . import main

main()
