"""A user's script whose start-up is not under ``if __name__ == "__main__":``: a node that
imports it for one of its factories runs ``asyncio.run`` inside its own event loop
(tests/registry/test_api.py). Imported outside a running loop, it runs an empty coroutine.
"""

from __future__ import annotations

import asyncio

from distable import Process


class Counter(Process):
    count = 0


async def main() -> None:
    pass


_start = main()
try:
    asyncio.run(_start)  # the mistake: the script's start-up, run by every import
finally:
    _start.close()  # (a script would leave it unawaited: a warning this test suite refuses)
