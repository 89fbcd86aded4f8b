"""``python -m distable.demo``."""

from . import main

raise SystemExit(main())
