"""Processes and factories the registry tests register (by reference: "tests.registry.apps:...").

Every node of a test runs in this one OS process, so the module-level books below
(``INITS``, ``ATTEMPTS``) see what every node did; the ``books`` fixture clears them
before each test. ``tests/cluster/test_checkpoint_procs.py`` also registers ``Counter`` in
child node processes, so this module imports nothing from the test suite.
"""

from __future__ import annotations

import asyncio
from collections import Counter as Tally
from typing import Any

from distable import (
    NOREPLY,
    Caller,
    DistableError,
    Ignore,
    NameNotFound,
    Pid,
    Process,
    Restart,
    Resume,
    call,
    current_node,
    register,
    whereis,
)

#: key -> how many times a process for that key ran ``init`` (on any node).
INITS: Tally[Any] = Tally()
#: key -> event-loop times at which ``Flaky.init`` was attempted.
ATTEMPTS: dict[Any, list[float]] = {}
#: keys whose ``Flaky.init`` must fail.
FAILING: set[Any] = set()


def reset_books() -> None:
    INITS.clear()
    ATTEMPTS.clear()
    FAILING.clear()


class Counter(Process):
    """A counter that records, in order, every message it handles.

    ``mode`` is what ``begin_handoff`` answers: "resume" (Resume(count)), "restart" or
    "ignore"; "resume+checkpoint" resumes too, and ``end_handoff`` then checkpoints the
    state it got; "resume+crash" resumes, and ``end_handoff`` stops it abnormally.
    ``handled`` is this incarnation's own log: it is not carried by a handoff,
    so on a handed-in process it shows what ran first.

    Calls: "incr" -> new count; "get" -> (count, node name); "handled" -> the log;
    "conflicts" -> the states ``resolve_conflict`` received; "crash" -> raises;
    ("stop", reason) -> stops with that reason after replying; ("checkpoint", wait) ->
    checkpoints the count (awaited if ``wait``), answers it; ("checkpoint_bad", kind) ->
    checkpoints an unencodable value ("unencodable"), ``size`` bytes ("bytes", size) or the
    count ("count"), and answers the error's type name ("ok" if none); ("burst", n) -> n
    increments, each checkpointed write-behind, in one handler; answers the count;
    ("checkpoint_within", seconds) -> checkpoints the count with that timeout, answers
    "ok" or the error's type name.
    Casts: ("add", n) adds n. Infos are logged only.
    """

    async def init(self, key: Any = None, start: int = 0, mode: str = "resume") -> None:
        self.key = key
        self.count = start
        self.mode = mode
        self.handled: list[Any] = []
        self.conflicts: list[Any] = []
        INITS[key] += 1

    async def handle_call(self, message: Any, caller: Caller) -> Any:
        self.handled.append(("call", message))
        match message:
            case "incr":
                self.count += 1
                return self.count
            case "get":
                return (self.count, self.pid.node)
            case "handled":
                return list(self.handled)
            case "conflicts":
                return list(self.conflicts)
            case "crash":
                raise RuntimeError(f"{self.key!r} was asked to crash")
            case ("stop", reason):
                self.stop(reason)
                return "stopping"
            case ("checkpoint", bool(wait)):
                if wait:
                    await self.checkpoint(self.count)
                else:
                    self.checkpoint(self.count, wait=False)
                return self.count
            case ("checkpoint_within", float(seconds)):
                try:
                    await self.checkpoint(self.count, timeout=seconds)
                except DistableError as exc:
                    return type(exc).__name__
                return "ok"
            case ("burst", int(n)):
                for _ in range(n):
                    self.count += 1
                    self.checkpoint(self.count, wait=False)
                return self.count
            case ("checkpoint_bad", kind):
                value: Any = self.count
                if isinstance(kind, tuple | list):
                    value = b"x" * kind[1]
                elif kind == "unencodable":
                    value = object()
                try:
                    await self.checkpoint(value)
                except DistableError as exc:
                    return type(exc).__name__
                return "ok"
        raise ValueError(f"unexpected call {message!r}")

    async def handle_cast(self, message: Any) -> None:
        self.handled.append(("cast", message))
        match message:
            case ("add", int(n)):
                self.count += n

    async def handle_info(self, message: Any) -> None:
        self.handled.append(("info", message))

    async def begin_handoff(self) -> Restart | Resume | Ignore:
        if self.mode == "ignore":
            return Ignore()
        if self.mode == "restart":
            return Restart()
        return Resume(self.count)

    async def end_handoff(self, state: Any) -> None:
        self.handled.append(("end_handoff", state))
        self.count = state
        if self.mode == "resume+checkpoint":
            await self.checkpoint(state)
        elif self.mode == "resume+crash":
            self.stop("crashed on arrival")  # before its claim: the gate holds everything else

    async def resolve_conflict(self, state: Any) -> None:
        self.handled.append(("resolve_conflict", state))
        self.conflicts.append(state)


class Receiver(Process):
    """Records, per sender, the sequence numbers cast to it, in arrival order.

    The record is its handoff state, so it survives every move. Casts are
    ``(sender_id, seq)``; calls: "record" -> {sender_id: [seq, ...]}, "handled_first"
    -> the first entry this incarnation handled, ("incr", sender, seq) records like a
    cast and answers the number of entries for that sender.
    """

    async def init(self, key: Any = None) -> None:
        self.key = key
        self.record: dict[str, list[int]] = {}
        self.first: Any = None
        INITS[key] += 1

    def _note(self, what: Any) -> None:
        if self.first is None:
            self.first = what

    async def handle_cast(self, message: Any) -> None:
        sender, seq = message
        self._note("cast")
        self.record.setdefault(sender, []).append(seq)

    async def handle_call(self, message: Any, caller: Caller) -> Any:
        match message:
            case "record":
                return self.record
            case "handled_first":
                return self.first
            case ("incr", str(sender), int(seq)):
                self._note("call")
                entries = self.record.setdefault(sender, [])
                entries.append(seq)
                return len(entries)
        raise ValueError(f"unexpected call {message!r}")

    async def begin_handoff(self) -> Resume:
        return Resume(self.record)

    async def end_handoff(self, state: Any) -> None:
        self._note("end_handoff")
        self.record = {sender: list(seqs) for sender, seqs in state.items()}


class Sender(Process):
    """Casts ``(sender_id, seq)`` by name to every one of ``names``, one round per tick.

    Each send resolves the name again (``node.cast(name, ...)``, as users do). Per name,
    ``seq`` counts only the casts that went out, so a receiver's record must be exactly
    ``0..sent-1``; a name that was not found is counted in ``misses`` and retried next
    round. Rounds stop on the cast "stop" or after ``max_rounds``: the loop is bounded.

    Calls: "sent" -> {name: count}; "misses" -> [(round, name)]; "rounds" -> rounds done.
    """

    async def init(self, sender_id: str, names: list[Any], interval: float, max_rounds: int) -> None:
        self.sender_id = sender_id
        self.names = list(names)
        self.interval = interval
        self.max_rounds = max_rounds
        self.sent: dict[Any, int] = dict.fromkeys(self.names, 0)
        self.misses: list[tuple[int, Any]] = []
        self.rounds = 0
        self.running = False

    async def handle_cast(self, message: Any) -> None:
        if message == "go" and not self.running:
            self.running = True
            self.send_after(0, "round")
        elif message == "stop":
            self.running = False

    async def handle_info(self, message: Any) -> None:
        if message != "round" or not self.running:
            return
        node = self.node
        for name in self.names:
            seq = self.sent[name]
            try:
                node.cast(name, (self.sender_id, seq))
            except NameNotFound:
                self.misses.append((self.rounds, name))
                continue
            self.sent[name] = seq + 1
        self.rounds += 1
        if self.rounds >= self.max_rounds:
            self.running = False
        else:
            self.send_after(self.interval, "round")

    async def handle_call(self, message: Any, caller: Caller) -> Any:
        match message:
            case "sent":
                return dict(self.sent)
            case "misses":
                return list(self.misses)
            case "rounds":
                return self.rounds
            case "running":
                return self.running
        raise ValueError(f"unexpected call {message!r}")


class Agent(Process):
    """Runs the module-level API (register, whereis, call, Process.start(name=...)) from
    inside a process on its node, where that node is the current one."""

    async def handle_call(self, message: Any, caller: Caller) -> Any:
        match message:
            case ("whereis", name):
                return whereis(name)
            case ("register", name, key):
                return await register(name, Counter, key=key)
            case ("call", name, msg):
                return await call(name, msg)
            case ("start_named", name, key, start):
                try:
                    return await Counter.start(key, start, name=name)
                except DistableError as exc:
                    return ("error", type(exc).__name__)
            case ("current_node",):
                return current_node().name
        raise ValueError(f"unexpected call {message!r}")


class Member(Process):
    """A group member. ``mode`` says how it answers ("who",): "ok" (its tag), "raise"
    (its handler raises, so it crashes) or "hang" (never). Infos are logged."""

    async def init(self, tag: str, mode: str = "ok") -> None:
        self.tag = tag
        self.mode = mode
        self.infos: list[Any] = []
        self.hanging: list[Caller] = []

    async def handle_call(self, message: Any, caller: Caller) -> Any:
        match message:
            case ("who",) if self.mode == "raise":
                raise ValueError(f"{self.tag} refuses")
            case ("who",) if self.mode == "hang":
                self.hanging.append(caller)
                return NOREPLY
            case ("who",):
                return self.tag
            case ("infos",):
                return list(self.infos)
        raise ValueError(f"unexpected call {message!r}")

    async def handle_info(self, message: Any) -> None:
        self.infos.append(message)


class Flaky(Process):
    """Starts normally until its key is put in ``FAILING``; then every ``init`` raises.

    Every attempt is timed in ``ATTEMPTS[key]``. Calls: "crash" -> raises.
    """

    async def init(self, key: Any) -> None:
        self.key = key
        ATTEMPTS.setdefault(key, []).append(asyncio.get_running_loop().time())
        if key in FAILING:
            raise RuntimeError(f"{key!r} cannot start now")
        INITS[key] += 1

    async def handle_call(self, message: Any, caller: Caller) -> Any:
        if message == "crash":
            raise RuntimeError(f"{self.key!r} was asked to crash")
        raise ValueError(f"unexpected call {message!r}")


# --- plain factories -------------------------------------------------------------------


async def start_counter(key: Any = None, start: int = 0) -> Pid:
    """A function factory: starts a ``Counter`` on the current node."""
    return await Counter.start(key, start)


def raising_factory(key: Any = None) -> Pid:
    raise ValueError(f"factory for {key!r} refuses")


def not_a_pid(key: Any = None) -> Any:
    return ("not", "a", "pid")


async def remote_pid(key: Any = None) -> Pid:
    """Returns a pid that is not on the node the factory runs on."""
    return Pid("elsewhere@127.0.0.1:1", 1, 99)


class CrashingInit(Process):
    async def init(self, key: Any = None) -> None:
        raise RuntimeError("init refuses")


class Stubborn(Process):
    """A process whose handoff state cannot go: ``mode`` "unencodable" answers
    ``Resume`` with a value the codec refuses; "hang" never answers ``begin_handoff``.
    Calls: "where" -> (its key, its node's name, whether it was handed a state)."""

    async def init(self, key: Any = None, mode: str = "unencodable") -> None:
        self.key = key
        self.mode = mode
        self.resumed = False
        INITS[key] += 1

    async def handle_call(self, message: Any, caller: Caller) -> Any:
        return (self.key, self.pid.node, self.resumed)

    async def begin_handoff(self) -> Any:
        if self.mode == "hang":
            await asyncio.Event().wait()
        return Resume(object())

    async def end_handoff(self, state: Any) -> None:
        self.resumed = True
