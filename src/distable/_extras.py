"""The optional dependencies (pip extras) and the one check that names what to install.

``pip install distable`` brings what a node needs: msgspec, xxhash and click (the
``distable`` command, so ``distable node`` runs a node and ``distable status`` asks a
cluster). Everything else is an extra, imported only by the feature that uses it::

    require("web", "the dashboard")    # before importing aiohttp

raises ``MissingExtra`` ("the dashboard needs aiohttp: pip install 'distable[web]'")
when a package of the extra is missing. pyproject.toml declares the same extras.
"""

from __future__ import annotations

import importlib

from ._errors import MissingExtra

#: Each extra's packages: their names on the package index, and the module each provides.
EXTRAS: dict[str, dict[str, str]] = {
    "web": {"aiohttp": "aiohttp", "prometheus_client": "prometheus_client"},  # the dashboard, /metrics
    "cli": {"rich": "rich"},  # the live views: the demo's, `distable status` tables
    "dns": {"dnspython": "dns"},  # DNSPoll discovery
    "crypto": {"cryptography": "cryptography"},  # Gossip(encrypt=True)
    "fast": {"uvloop": "uvloop"},  # a faster event loop, used when installed
    "redis": {"redis": "redis"},  # RedisStore, the durable store
}


def missing(extra: str) -> tuple[str, ...]:
    """The packages of ``extra`` that cannot be imported (not installed)."""
    absent = []
    for package, module in EXTRAS[extra].items():
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise  # installed, but one of its own dependencies is missing: say so as it is
            absent.append(package)
    return tuple(absent)


def installed(extra: str) -> bool:
    """Whether every package of ``extra`` can be imported."""
    return not missing(extra)


def require(extra: str, feature: str) -> None:
    """Import the packages of ``extra``, or say which extra to install.

    Raises:
        MissingExtra: a package of ``extra`` is not installed; the message names the
            feature, the packages and the ``pip install`` line.
    """
    absent = missing(extra)
    if absent:
        raise MissingExtra(feature, extra, absent)
