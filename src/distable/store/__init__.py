"""The durable store (issue 12, item 4): names, their factory specs and their last
checkpoints written through to a database, so that a cluster started from nothing
restores every remembered name with its last state ("remember entities").

* ``Store``: the engine interface; ``RedisStore`` (Redis, ``distable[redis]``) and
  ``MemoryStore`` (this process's memory; tests) implement it, checked by the same
  contract tests.
* ``DurableStore``: what the registry talks to: timeouts and ``StoreUnavailable``, the
  write-behind queue, retries, statistics.
* ``open_store``: an engine from a URL (``redis://127.0.0.1:6379/0``) or a ``Store``.

A node holds one with ``Node(store=...)`` or ``distable node --store URL``; where the
registry calls it: docs/internals.md, "Durable store", "Wiring".
"""

from ._api import Outcome, Remembered, Store, StoreStatistics
from ._durable import DurableStore
from ._memory import MemoryStore
from ._queue import WriteQueue
from ._redis import RedisStore
from ._url import open_store, parse_store_url

__all__ = [
    "DurableStore",
    "MemoryStore",
    "Outcome",
    "RedisStore",
    "Remembered",
    "Store",
    "StoreStatistics",
    "WriteQueue",
    "open_store",
    "parse_store_url",
]
