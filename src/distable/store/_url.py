"""Naming a store: the ``--store URL`` a node will take, and ``Node(store=...)``.

``redis://[[user]:password@]host[:port][/db]``, ``rediss://`` (TLS) and
``unix://[[user]:password@]/path[?db=N]`` name a Redis database; a ``Store`` object is
used as it is.
"""

from __future__ import annotations

import urllib.parse

from ._api import Store

SCHEMES = ("redis", "rediss", "unix")


def parse_store_url(text: str) -> str:
    """``text`` checked as a store URL, returned as given.

    Raises:
        ValueError: not a URL of a known scheme, or one without a host (a path for
            ``unix``), or with a database that is not a number; the message is one line.
    """
    parts = urllib.parse.urlsplit(text)
    if parts.scheme not in SCHEMES:
        known = ", ".join(f"{s}://" for s in SCHEMES)
        raise ValueError(f"store {text!r}: unknown kind of store (known: {known})")
    try:
        parts.port  # noqa: B018  (raises on a port that is not a number)
    except ValueError:
        raise ValueError(f"store {text!r}: the port is not a number") from None
    if parts.scheme == "unix":
        if not parts.path:
            raise ValueError(f"store {text!r}: no socket path")
        db = urllib.parse.parse_qs(parts.query).get("db", ["0"])[0]
    else:
        if not parts.hostname:
            raise ValueError(f"store {text!r}: no host")
        db = parts.path.lstrip("/") or "0"
    if not db.isdigit():
        raise ValueError(f"store {text!r}: the database {db!r} is not a number")
    return text


def open_store(store: Store | str, *, namespace: str = "distable", timeout: float = 2.0) -> Store:
    """The engine ``store`` names: a ``Store`` as it is, a URL as a ``RedisStore``.

    Raises:
        ValueError: a URL ``parse_store_url`` refuses.
        MissingExtra: a Redis URL without the ``redis`` package installed.
    """
    if not isinstance(store, str):
        return store
    parse_store_url(store)
    from ._redis import RedisStore

    return RedisStore(store, namespace=namespace, timeout=timeout)
