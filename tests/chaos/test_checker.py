"""The checker on hand-made fault timelines. With checkpoints (``Run.lost_at``), a lost
acknowledged op is pinned to where it went missing and allowed only when failures
overlapped there; without (``Run.check_states``), a drain that timed out excuses what was
acknowledged before it on the names it kept. No node process runs: a ``Run`` is built and
never started."""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.chaos.harness import Ack, Config, Failure, Run, summary, table

T0 = 1_000_000.0


@pytest.fixture
def chaos(tmp_path: Path) -> Iterator[Run]:
    run = Run(Config(seed=1, run_dir=tmp_path, checkpoints=True))
    run.t0 = T0
    yield run
    run.log_file.close()
    run.acks_file.close()


def _failure(node: str, kind: str, start: float, end: float) -> Failure:
    return Failure(f"{node}@127.0.0.1:1", kind, T0 + start, T0 + end)


def _ack(called: float) -> Ack:
    return Ack("w0-1", "L", "s0@127.0.0.1:1", T0 + called, T0 + called + 0.01)


HOSTED_ON_S0 = [(T0 + 1.0, "s0@127.0.0.1:1")]


def test_a_lineage_lost_with_its_lone_host_is_a_violation_even_if_failures_overlap_later(chaos: Run) -> None:
    # s0 (the host) killed alone at 10-13; s1 killed at 14 while s2 was paused: that later
    # overlap is no excuse for what the lone kill lost.
    chaos.failures = [
        _failure("s0", "kill", 10.0, 13.0),
        _failure("s2", "pause", 13.5, 18.0),
        _failure("s1", "kill", 14.0, 16.0),
    ]
    why = chaos.lost_at(_ack(5.0), False, HOSTED_ON_S0, [])
    assert not why.startswith("allowed"), why


@pytest.mark.parametrize(
    ("other", "start", "end"),
    [
        ("pause", 8.0, 12.0),  # under way when the host was killed
        ("kill", 6.0, 9.0),  # ended 1 s before: re-replication may still run
        ("kill", 11.0, 12.0),  # begun while the host was down (its restore may need it)
    ],
)
def test_a_lineage_lost_with_its_host_while_another_node_failed_is_allowed(
    chaos: Run, other: str, start: float, end: float
) -> None:
    chaos.failures = [_failure("s0", "kill", 10.0, 13.0), _failure("s1", other, start, end)]
    why = chaos.lost_at(_ack(5.0), False, HOSTED_ON_S0, [])
    assert why.startswith("allowed: "), why


def test_a_lost_lineage_is_judged_at_the_host_failure_after_its_last_acknowledgement(chaos: Run) -> None:
    # s0 cut off at 10-13 and its copy went on (an op acknowledged at 20); s0 killed at 25
    # while s1 (a standby, say) was paused: the kill lost the lineage, with a failure beside it.
    chaos.failures = [
        _failure("s0", "partition", 10.0, 13.0),
        _failure("s1", "pause", 24.0, 30.0),
        _failure("s0", "kill", 25.0, 28.0),
    ]
    why = chaos.lost_at(_ack(5.0), False, HOSTED_ON_S0, [], alive_until=T0 + 20.0)
    assert why.startswith("allowed: kill of s0"), why
    alone = chaos.lost_at(_ack(5.0), False, HOSTED_ON_S0, [])
    assert alone.startswith("lost with partition of s0"), alone  # without the later ack: the cut
    # No ack after the cut, but the name started afresh only at 29: the copy lived until then.
    later = chaos.lost_at(_ack(5.0), False, HOSTED_ON_S0, [], replaced_at=T0 + 29.0)
    assert later.startswith("allowed: kill of s0"), later
    # Started afresh during the cut: the cut ended it, alone.
    during = chaos.lost_at(_ack(5.0), False, HOSTED_ON_S0, [], replaced_at=T0 + 11.0)
    assert during.startswith("lost with partition of s0"), during


@pytest.mark.parametrize(
    ("acked", "restarted", "allowed"),
    [
        ([5.0, 20.0], 24.5, True),  # acknowledged after the cut: not the cut, the kill ended it
        ([5.0], 29.0, True),  # started afresh only after the kill: the copy lived until then
        ([5.0], 11.0, False),  # started afresh during the cut: the cut ended it, alone
    ],
)
def test_the_states_check_judges_a_lost_lineage_by_its_last_ack_and_its_replacement(
    chaos: Run, acked: list[float], restarted: float, allowed: bool
) -> None:
    # As above, through check_states: the last acknowledgement and the name's next start
    # come from the acks and the ledger.
    chaos.failures = [
        _failure("s0", "partition", 10.0, 13.0),
        _failure("s1", "pause", 24.0, 30.0),
        _failure("s0", "kill", 25.0, 28.0),
    ]
    chaos.names = ["c0000"]
    chaos.acks["c0000"] = [Ack(f"w0-{i}", "L", S0, T0 + t - 0.01, T0 + t) for i, t in enumerate(acked, 1)]
    ledger = [
        {"t": T0 + 1.0, "node": S0, "name": "c0000", "lineage": "L", "event": "fresh"},
        {"t": T0 + restarted, "node": S1, "name": "c0000", "lineage": "M", "event": "fresh"},
    ]
    chaos.check_states({"c0000": {"ops": [], "lineage": "M", "absorbed": []}}, ledger)
    lost = [v for v in chaos.result.violations if v.kind == "lost-ack"]
    assert (lost == []) == allowed, lost


def test_a_restart_first_called_long_after_it_started_is_judged_at_its_start(chaos: Run) -> None:
    # s0 (L's host) killed at 10-13 while s1 was paused (allowed); its restart M started at
    # 13 but wrote its line only at its first call, 30, after a lone pause of s0 at 24-27:
    # the loss is the kill's (seed 6600000005 blamed the pause, by the line's time).
    chaos.failures = [
        _failure("s0", "kill", 10.0, 13.0),
        _failure("s1", "pause", 11.0, 14.0),
        _failure("s0", "pause", 24.0, 27.0),
    ]
    chaos.names = ["c0000"]
    chaos.acks["c0000"] = [Ack("w0-1", "L", S0, T0 + 4.99, T0 + 5.0)]
    ledger = [
        {"t": T0 + 1.0, "node": S0, "name": "c0000", "lineage": "L", "event": "fresh"},
        {"t": T0 + 30.0, "started": T0 + 13.0, "node": S0, "name": "c0000", "lineage": "M", "event": "fresh"},
    ]
    chaos.check_states({"c0000": {"ops": [], "lineage": "M", "absorbed": []}}, ledger)
    assert [v for v in chaos.result.violations if v.kind == "lost-ack"] == []


def test_another_failure_that_ended_long_before_excuses_nothing(chaos: Run) -> None:
    chaos.failures = [_failure("s1", "kill", 2.0, 5.0), _failure("s0", "kill", 10.0, 13.0)]
    assert not chaos.lost_at(_ack(1.0), False, HOSTED_ON_S0, []).startswith("allowed")


def test_a_kept_lineage_that_went_backwards_is_judged_at_the_restore_that_lacks_the_op(chaos: Run) -> None:
    def restore(at: float, ops: list[str]) -> dict[str, Any]:
        return {"t": T0 + at, "event": "restore", "node": "s1@127.0.0.1:1", "lineage": "L", "ops": ops}

    got = [restore(4.0, []), restore(11.0, ["w0-1"]), restore(21.0, [])]
    chaos.failures = [_failure("s0", "kill", 10.0, 13.0), _failure("s1", "kill", 20.5, 23.0)]
    why = chaos.lost_at(_ack(5.0), True, HOSTED_ON_S0, got)
    assert "at 21.000 s" in why, why
    assert not why.startswith("allowed"), why  # one failure under way then
    chaos.failures.append(_failure("s2", "pause", 19.0, 24.0))
    assert chaos.lost_at(_ack(5.0), True, HOSTED_ON_S0, got).startswith("allowed: ")
    # missing from the final state, but no restore lacks it: nothing excuses it
    assert not chaos.lost_at(_ack(5.0), True, HOSTED_ON_S0, got[:2]).startswith("allowed")


def test_a_kept_lineage_whose_acknowledging_host_died_with_others_is_allowed_at_a_later_restore(chaos: Run) -> None:
    # Seed 2238437358: s3, paused and declared failed, kept a copy of the lineage running;
    # s0 acknowledged the op, then s0 and s6 were killed while s3 was still paused, and the
    # woken copy (which never had the op) was the one left. A later restore shows the loss
    # with one failure under way: the loss happened at the overlap, which allows it.
    def restore(at: float, ops: list[str]) -> dict[str, Any]:
        return {"t": T0 + at, "event": "restore", "node": "s0@127.0.0.1:1", "lineage": "L", "ops": ops}

    got = [restore(30.0, [])]
    chaos.failures = [
        _failure("s3", "pause", 4.0, 10.6),
        _failure("s0", "kill", 10.3, 13.0),
        _failure("s6", "kill", 10.4, 13.3),
        _failure("s3", "pause", 29.3, 34.7),
    ]
    why = chaos.lost_at(_ack(8.8), True, HOSTED_ON_S0, got)
    assert why.startswith("allowed: lost with kill of s0"), why  # s0 acknowledged it and hosted it
    # the acknowledging host killed alone: no excuse, and the restore's lone failure none either
    chaos.failures = [_failure("s0", "kill", 10.3, 13.0), _failure("s3", "pause", 29.3, 34.7)]
    assert not chaos.lost_at(_ack(8.8), True, HOSTED_ON_S0, got).startswith("allowed")


def test_a_conflict_winner_that_shares_the_losers_lineage_is_its_last_host(chaos: Run) -> None:
    # Seeds 1718318917, 3937798506: s0, paused, was declared failed; s2 restored the name from
    # s0's checkpoints (the same lineage L); woken, s0's copy won the conflict and merged
    # s2's. s0 holds L from then on, and what it acknowledged is lost with s0 (killed at 20
    # while s1 was cut off), not with s2, which never failed.
    def entry(at: float, node: str, event: str, **more: Any) -> dict[str, Any]:
        return {"t": T0 + at, "node": node, "name": "c0000", "lineage": "L", "event": event, **more}

    ledger = [
        entry(1.0, S0, "fresh"),
        entry(5.0, "s2@127.0.0.1:3", "restore"),
        entry(8.0, S0, "merge", loser="L"),
    ]
    hosted = Run.hosts(ledger)[("c0000", "L")]
    assert max(hosted) == (T0 + 8.0, S0)
    chaos.failures = [_failure("s0", "kill", 20.0, 23.0), _failure("s1", "partition", 18.0, 21.0)]
    ack = Ack("w0-1", "L", S0, T0 + 15.0, T0 + 15.01)
    assert chaos.lost_at(ack, False, hosted, []).startswith("allowed: kill of s0"), hosted
    chaos.failures = [_failure("s0", "kill", 20.0, 23.0)]  # alone: a violation
    assert not chaos.lost_at(ack, False, hosted, []).startswith("allowed")


# --- without checkpoints: a drain that timed out ------------------------------------------------

S0 = "s0@127.0.0.1:1"
S1 = "s1@127.0.0.1:2"


@pytest.fixture
def standard(tmp_path: Path) -> Iterator[Run]:
    run = Run(Config(seed=1, run_dir=tmp_path, names=1))  # one counter, c0000
    run.t0 = T0
    yield run
    run.log_file.close()
    run.acks_file.close()


def _drain_timed_out(run: Run, node: str, at: float, listed: list[str], count: int) -> None:
    """``node``'s log says (as ``RegistryService.drain`` does) that its drain timed out at
    ``at`` s with ``count`` names still there, of which it lists ``listed``."""
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(T0 + at))  # whole seconds: ",000"
    names = ", ".join(map(repr, listed)) + (", ..." if count > len(listed) else "")
    line = (
        f"{stamp},000 WARNING [{node}] distable.registry: drain timed out after 15.0 s with {count} name(s) "
        f"still here ({names}): they stop now, and their owners restart them fresh, without their state\n"
    )
    with (run.config.run_dir / f"{node[:2]}.1.log").open("a") as log:
        log.write(line)


def _lose(run: Run, host: str, acked: list[float]) -> None:
    """c0000's lineage L, started on ``host`` at 1 s, acknowledged ops at ``acked`` s (by
    ``host``); at the end the counter runs lineage M, started on s1 at 25 s, without them."""
    run.acks["c0000"] = [Ack(f"w0-{i}", "L", host, T0 + t - 0.01, T0 + t) for i, t in enumerate(acked, 1)]
    ledger = [
        {"t": T0 + 1.0, "node": host, "name": "c0000", "lineage": "L", "event": "fresh"},
        {"t": T0 + 25.0, "node": S1, "name": "c0000", "lineage": "M", "event": "fresh"},
    ]
    run.check_states({"c0000": {"ops": [], "lineage": "M", "absorbed": []}}, ledger)


def test_ops_acknowledged_before_their_hosts_drain_timed_out_are_lost_with_it_allowed(standard: Run) -> None:
    _drain_timed_out(standard, S0, 20.0, ["c0000"], 1)
    _lose(standard, S0, [5.0, 19.9])
    assert standard.result.violations == []  # neither lost-ack nor reset
    assert standard.result.lost_to_drain == 2
    assert "2 to drains that timed out" in summary(standard.result)
    assert "lost(drain)" in table([standard.result])


def test_an_op_acknowledged_after_the_drain_timed_out_is_still_a_lost_ack(standard: Run) -> None:
    # 3cbb543: a name still there when the drain times out stops at once, and its waiting
    # calls fail; an op acknowledged after that is a bug, not the drain's documented loss.
    _drain_timed_out(standard, S0, 20.0, ["c0000"], 1)
    _lose(standard, S0, [5.0, 20.5])
    assert [v.kind for v in standard.result.violations] == ["lost-ack"]
    detail = standard.result.violations[0].detail
    assert "acknowledged after the drain of s0@127.0.0.1:1 timed out at 20.000 s: ['w0-2']" in detail, detail
    assert standard.result.lost_to_drain == 1


def test_a_loss_on_a_node_whose_drain_did_not_time_out_is_still_a_lost_ack(standard: Run) -> None:
    _drain_timed_out(standard, S0, 20.0, ["c0000"], 1)  # s0's, but the lineage was on s1
    _lose(standard, S1, [5.0])
    assert sorted(v.kind for v in standard.result.violations) == ["lost-ack", "reset"]
    assert standard.result.lost_to_drain == 0


@pytest.mark.parametrize(
    ("listed", "count", "excused"),
    [
        (["c0001", "c0002"], 2, False),  # every name still there listed, not this one
        (["c0001", "c0002", "c0003", "c0004", "c0005"], 7, True),  # five of seven: it may be one
    ],
)
def test_a_drain_warning_that_lists_every_name_excuses_only_those(
    standard: Run, listed: list[str], count: int, excused: bool
) -> None:
    _drain_timed_out(standard, S0, 20.0, listed, count)
    _lose(standard, S0, [5.0])
    assert (standard.result.violations == []) is excused, standard.result.violations
    assert standard.result.lost_to_drain == int(excused)


def test_a_lineage_that_had_moved_on_before_the_drain_timed_out_is_not_excused_by_it(standard: Run) -> None:
    # L was handed from s0 to s1 at 10 s (its state went along); s0's drain timing out at
    # 20 s then explains nothing about L's loss.
    _drain_timed_out(standard, S0, 20.0, ["c0000"], 1)
    standard.acks["c0000"] = [Ack("w0-1", "L", S0, T0 + 4.99, T0 + 5.0)]
    ledger = [
        {"t": T0 + 1.0, "node": S0, "name": "c0000", "lineage": "L", "event": "fresh"},
        {"t": T0 + 10.0, "node": S1, "name": "c0000", "lineage": "L", "event": "resume"},
        {"t": T0 + 25.0, "node": S1, "name": "c0000", "lineage": "M", "event": "fresh"},
    ]
    standard.check_states({"c0000": {"ops": [], "lineage": "M", "absorbed": []}}, ledger)
    assert "lost-ack" in [v.kind for v in standard.result.violations]
    assert standard.result.lost_to_drain == 0


async def test_a_node_that_died_while_counted_up_is_reported_once_at_its_next_fault(chaos: Run) -> None:
    """A node killed by something else than the nemesis (the kernel's SIGHUP of a paused
    process whose process group became orphaned, before nodes had sessions of their own):
    its next fault is void, and the run says so instead of blaming that fault."""
    server = chaos.servers[0]
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", "import os, signal; os.kill(os.getpid(), 1)")
    await proc.wait()
    server.proc, server.state = proc, "up"
    chaos.signal(server, signal.SIGSTOP)
    chaos.signal(server, signal.SIGCONT)
    assert [(v.kind, v.detail) for v in chaos.result.violations] == [
        ("unexpected-exit", f"{server.name} exited (signal SIGHUP) while up, seen at its SIGSTOP")
    ]


async def test_a_node_that_drained_before_its_term_kill_s_sigkill_is_no_unexpected_exit(chaos: Run) -> None:
    server = chaos.servers[0]
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", "pass")
    await proc.wait()
    server.proc, server.state = proc, "up"
    chaos.signal(server, signal.SIGKILL, alive=False)
    assert chaos.result.violations == []
