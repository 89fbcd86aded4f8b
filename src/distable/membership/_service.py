"""The asyncio shell around ``MembershipCore``: timers, the transport, discovery tasks.

Runs on the node's event loop. One ``Timer`` is re-armed to the core's next deadline
after every input, in the style of aioquic's protocol shell.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Coroutine
from typing import Any

from .._log import RateLimitedLog
from .._timer import Timer
from ..transport import Transport
from ._config import MembershipConfig
from ._core import MembershipCore, MembershipStatistics
from ._events import NodeDown, NodeUp
from ._strategies import Strategy

log = logging.getLogger("distable.membership")


class MembershipService:
    """Owns the membership core of one node. Every method runs on the event loop."""

    def __init__(
        self,
        *,
        name: str,
        incarnation: int,
        cookie: bytes,
        loop: asyncio.AbstractEventLoop,
        transport: Transport,
        config: MembershipConfig,
        strategies: list[Strategy],
        publish: Callable[[NodeUp | NodeDown], None],
        spawn: Callable[[Coroutine[Any, Any, Any]], Any],
        allow: tuple[str, ...] = (),
        deny: tuple[str, ...] = (),
        rng: random.Random | None = None,
    ) -> None:
        self.name = name
        self.incarnation = incarnation
        self.cookie = cookie
        self.loop = loop
        self.transport = transport
        self.strategies = strategies
        self._publish = publish
        self._spawn = spawn
        self.core = MembershipCore(
            name, incarnation, config, rng or random.Random(), loop.time(), allow=allow, deny=deny
        )
        self._timer = Timer(loop, self._on_timer)
        self._ratelog = RateLimitedLog(log, f"{name}: ", interval=30.0)
        self._stopped = False
        self._urgent = False
        self.foreign_packets = 0  # gossip packets of other clusters heard (``foreign``)

    # --- DiscoveryContext -------------------------------------------------------------

    def discovered(self, name: str, incarnation: int = 0, urgent: bool = False) -> None:
        self._urgent = urgent
        self.core.discovered(name, self.loop.time(), incarnation)
        self._apply()
        self._urgent = False

    def refutation(self) -> int:
        return self.core.refutation

    def is_up(self, name: str) -> bool:
        m = self.core.member(name)
        return m is not None and m.announced

    def foreign(self) -> None:
        self.foreign_packets += 1

    # --- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        for strategy in self.strategies:
            self._spawn(self._run_strategy(strategy))
        self._apply()

    async def _run_strategy(self, strategy: Strategy) -> None:
        try:
            await strategy.run(self)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("%s: discovery strategy %r stopped with an error", self.name, strategy)

    def leave(self) -> None:
        """Announce a graceful leave to every linked member, then stop taking part."""
        self.core.leave(self.loop.time())
        self._apply()
        self.stop()

    def stop(self) -> None:
        self._stopped = True
        self._timer.cancel()

    # --- inputs ------------------------------------------------------------------------------

    def on_message(self, sender: str, msg: Any) -> None:
        self.core.receive(sender, msg, self.loop.time())
        self._apply()

    def link_up(self, name: str, incarnation: int) -> None:
        client = self.transport.role_of(name) == "client"
        if not self.core.allowed(name) and name != self.name:
            # Hung up on below; said here (every 30 s per peer at most), or the peer only
            # sees its links drop as they come up, and this node says "disconnect requested".
            self._ratelog.warning(
                ("denied", name),
                "dropping the link from %s: its name is not allowed here (deny %s, allow %s)",
                name,
                list(self.core.deny),
                list(self.core.allow),
            )
        self.core.link_up(name, incarnation, self.loop.time(), client)
        self._apply()

    def link_down(self, name: str) -> None:
        """The link to ``name`` dropped, or a dial to it failed (the transport's ``on_down``)."""
        now = self.loop.time()
        core = self.core
        core.link_down(name, now)
        if self.transport.dial_refused(name) and core.dial_refused(name, now):
            log.info("%s: %s is gone: its link dropped and its address refuses connections", self.name, name)
        self._apply()

    def _on_timer(self) -> None:
        self.core.handle_timer(self.loop.time())
        self._apply()

    # --- outputs --------------------------------------------------------------------------

    def _apply(self) -> None:
        out = self.core.take()
        transport = self.transport
        for name in out.connect:
            try:
                transport.connect(name, urgent=self._urgent)
            except ValueError as exc:  # a malformed name in a heartbeat or rumor must not break membership
                self._ratelog.warning("bad name", "cannot dial discovered node %r: %s", name, exc)
        for name, msg in out.send:
            try:
                transport.post(name, msg)
            except Exception as exc:  # an unreachable name must not break membership
                log.debug("%s: cannot send %s to %s: %s", self.name, type(msg).__name__, name, exc)
        for name in out.disconnect:
            transport.disconnect(name)
        for event in out.events:
            # A tool's visit (distable status...) is no membership news: not at INFO.
            log.log(logging.DEBUG if event.client else logging.INFO, "%s: %s", self.name, event)
            self._publish(event)
        if not self._stopped:
            self._timer.arm(self.core.next_deadline())

    # --- queries ------------------------------------------------------------------------------

    def nodes(self) -> list[str]:
        return self.core.up_members()

    def statistics(self) -> MembershipStatistics:
        return self.core.statistics()
