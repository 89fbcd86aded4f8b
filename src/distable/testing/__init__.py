"""Public test helpers: polling with a deadline, nodes in separate OS processes.

(The simulated clock and network arrive with the membership layer.)
"""

from ._cluster import NodeProcess
from ._eventually import eventually

__all__ = ["NodeProcess", "eventually"]
