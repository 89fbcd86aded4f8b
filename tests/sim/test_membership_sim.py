"""Many membership cores in one simulated cluster, under Hypothesis-generated fault schedules.

Every run is deterministic: Hypothesis is derandomized, each example's ``seed`` drives
every random choice of the simulator and of the schedule, and every assertion message
names it. Hypothesis prints the falsifying example; to replay it, call the test's
``.hypothesis.inner_test(seed=..., n=..., ...)`` with those arguments.

The cores run with the LAN preset (1 s protocol period, suspicion 4 x log10(n) s, at
least 4 s here), heartbeats every second, and one-way latencies up to 0.2 s.
"""

from __future__ import annotations

import random
from collections import defaultdict

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from distable.membership import MembershipConfig, NodeDown, NodeUp
from distable.testing import Observed, SimClock, SimCluster

CONFIG = MembershipConfig.lan()
HEARTBEAT = 1.0
START_WINDOW = 5.0
#: After the last node starts, one heartbeat that reaches anyone links it and its first
#: sync tells it everyone: a few heartbeat intervals are plenty even at 50 % loss.
JOIN_BOUND = 5 * HEARTBEAT
#: How long a settled view must then stay without any event (30 protocol periods).
STABLE_FOR = 30.0


def settings_for(examples: int) -> settings:
    return settings(
        max_examples=examples,
        derandomize=True,
        deadline=None,
        database=None,
        print_blob=True,
        suppress_health_check=[HealthCheck.too_slow],
    )


seeds = st.integers(min_value=0, max_value=2**32 - 1)
losses = st.sampled_from([0.0, 0.1, 0.3, 0.5])
max_latencies = st.sampled_from([0.002, 0.05, 0.2])


def sizes(lo: int, hi: int) -> st.SearchStrategy[int]:
    """Cluster sizes spread evenly over [lo, hi] (``integers`` would favour the smallest)."""
    return st.sampled_from(range(lo, hi + 1))


def names(n: int) -> list[str]:
    return [f"n{i:02d}@10.0.0.{i}:4370" for i in range(n)]


def started(seed: int, n: int, loss: float, max_latency: float) -> tuple[SimCluster, random.Random, dict[str, float]]:
    """A cluster of ``n`` nodes started at random moments within START_WINDOW, the plan's rng, the start times."""
    cluster = SimCluster(seed, config=CONFIG, loss=loss, latency=(0.0005, max_latency), heartbeat=HEARTBEAT)
    plan = random.Random(f"plan {seed}")
    starts = {name: plan.uniform(0.0, START_WINDOW) for name in names(n)}
    for name, at in starts.items():
        cluster.start(name, at=at)
    return cluster, plan, starts


def converge(cluster: SimCluster, within: float, what: str) -> float:
    """Run until the view is complete and settled everywhere (no suspicion pending); return when."""
    assert cluster.run_until_true(cluster.settled, within), (
        f"seed {cluster.seed}: {what}: no full view within {within} s: "
        + "; ".join(
            f"{n} sees {len(cluster.view(n))}" for n in cluster.live() if len(cluster.view(n)) != len(cluster.nodes) - 1
        )
    )
    return cluster.now


def stays_quiet(cluster: SimCluster, duration: float) -> None:
    """No membership event at all for ``duration``: in particular no NodeDown for a live node."""
    mark = len(cluster.log)
    cluster.run_for(duration)
    assert cluster.log[mark:] == [], f"seed {cluster.seed}: events after convergence: {cluster.log[mark:]}"
    assert cluster.converged(), f"seed {cluster.seed}: the view fell apart"


def history(cluster: SimCluster, since: float = 0.0) -> dict[tuple[str, str], list[NodeUp | NodeDown]]:
    """(observer, node) -> what that observer (any incarnation) reported about that node since ``since``."""
    seen: dict[tuple[str, str], list[NodeUp | NodeDown]] = defaultdict(list)
    for o in cluster.log:
        if o.at >= since:
            seen[o.observer, o.event.node].append(o.event)
    return seen


def check_alternation(cluster: SimCluster) -> None:
    """Per observer incarnation: NodeUp and NodeDown alternate, starting with NodeUp, and incarnations never go back."""
    per_observer: dict[tuple[str, int, str], list[Observed]] = defaultdict(list)
    for o in cluster.log:
        per_observer[o.observer, o.incarnation, o.event.node].append(o)
    for (observer, _, node), seen in per_observer.items():
        kinds = [type(o.event) for o in seen]
        assert kinds == [NodeUp, NodeDown] * (len(kinds) // 2) + [NodeUp] * (len(kinds) % 2), (
            f"seed {cluster.seed}: {observer} reported {node} as {[o.event for o in seen]}"
        )
        ups = [o.event.incarnation for o in seen if isinstance(o.event, NodeUp)]
        assert ups == sorted(ups), f"seed {cluster.seed}: {observer} saw {node}'s incarnations go back: {ups}"


def check_run(cluster: SimCluster) -> None:
    """The invariants every run must end with."""
    cluster.check_invariants()
    check_alternation(cluster)


# --- the simulator itself ---------------------------------------------------------------------


def test_the_clock_jumps_to_each_deadline_in_order() -> None:
    clock = SimClock()
    seen: list[tuple[float, str]] = []
    clock.call_at(2.5, lambda: seen.append((clock.now, "b")))
    clock.call_at(1.0, lambda: seen.append((clock.now, "a")))
    clock.call_at(2.5, lambda: seen.append((clock.now, "c")))  # same time: in the order scheduled
    assert clock.next_time() == 1.0
    clock.run_until(2.0)
    assert (seen, clock.now) == ([(1.0, "a")], 2.0)
    clock.run_until(10.0)
    assert (seen, clock.now) == ([(1.0, "a"), (2.5, "b"), (2.5, "c")], 10.0)


def run_with_faults(seed: int) -> SimCluster:
    cluster, _, _ = started(seed, 12, 0.3, 0.1)
    cluster.crash(names(12)[3], at=8.0)
    cluster.restart(names(12)[5], at=9.0)
    cluster.partition(names(12)[:4], at=12.0)
    cluster.heal(at=30.0)
    cluster.leave(names(12)[9], at=35.0)
    cluster.run_until(60.0)
    return cluster


@pytest.mark.parametrize("seed", [1, 2])
def test_the_same_seed_replays_the_same_run(seed: int) -> None:
    first, second = run_with_faults(seed), run_with_faults(seed)
    assert first.log == second.log, f"seed {seed}"
    assert first.clock.seq == second.clock.seq
    assert run_with_faults(seed + 100).log != first.log


# --- scenarios ------------------------------------------------------------------------------


@settings_for(15)
@given(seed=seeds, loss=losses, max_latency=max_latencies)
def test_fifty_nodes_started_at_random_moments_on_a_lossy_network_converge(
    seed: int, loss: float, max_latency: float
) -> None:
    cluster, _, _ = started(seed, 50, loss, max_latency)
    cluster.run_until(START_WINDOW)
    converge(cluster, JOIN_BOUND, f"50 nodes, loss {loss}")
    assert all(cluster.view(n) == sorted(set(cluster.live()) - {n}) for n in cluster.live())
    # Reliable links and answered probes: nobody was ever reported down.
    downs = [o for o in cluster.log if isinstance(o.event, NodeDown)]
    assert downs == [], f"seed {seed}: {downs}"
    stays_quiet(cluster, STABLE_FOR)
    check_run(cluster)


@settings_for(70)
@given(
    seed=seeds,
    n=sizes(4, 30),
    crashes=st.integers(min_value=1, max_value=8),
    loss=losses,
    max_latency=max_latencies,
)
def test_survivors_of_random_crashes_converge_and_each_crash_is_one_node_down(
    seed: int, n: int, crashes: int, loss: float, max_latency: float
) -> None:
    cluster, plan, starts = started(seed, n, loss, max_latency)
    victims = plan.sample(names(n), min(crashes, n - 2))
    last = 0.0
    for victim in victims:  # some crash while the cluster still forms, some after
        last = max(last, at := plan.uniform(starts[victim], 3 * START_WINDOW))
        cluster.crash(victim, at=at)
    cluster.run_until(max(START_WINDOW, last))
    survivors = set(names(n)) - set(victims)
    assert set(cluster.live()) == survivors
    bound = CONFIG.suspicion_timeout(n) + 3 * CONFIG.protocol_period + JOIN_BOUND
    converge(cluster, bound, f"{len(victims)} crashes among {n}")
    stays_quiet(cluster, STABLE_FOR)
    seen = history(cluster)
    for observer in survivors:
        for victim in victims:
            events = seen[observer, victim]
            # One NodeDown for one NodeUp (none if the observer never saw it up), and it failed.
            assert events in ([], [NodeUp(victim, 1), NodeDown(victim, "failed")]), (
                f"seed {seed}: {observer} reported crashed {victim} as {events}"
            )
        for other in survivors - {observer}:
            assert seen[observer, other] == [NodeUp(other, 1)], (
                f"seed {seed}: {observer} reported live {other} as {seen[observer, other]}"
            )
    check_run(cluster)


#: A killed node's address refuses at once: its survivors' redials (two, a latency each)
#: and the verdict they send (one more) take a few latencies, far below any suspicion.
KILL_BOUND = 1.0


@settings_for(60)
@given(
    seed=seeds,
    n=sizes(3, 20),
    kills=st.integers(min_value=1, max_value=4),
    loss=losses,
    max_latency=max_latencies,
    back_after=st.one_of(st.none(), st.floats(min_value=0.0, max_value=3.0)),
)
def test_a_killed_node_is_down_everywhere_at_once_without_suspicion_and_may_come_back(
    seed: int, n: int, kills: int, loss: float, max_latency: float, back_after: float | None
) -> None:
    cluster, plan, _ = started(seed, n, loss, max_latency)
    cluster.run_until(START_WINDOW)
    converge(cluster, JOIN_BOUND, "before the kills")
    victims = plan.sample(names(n), min(kills, n - 2))
    killed_at = cluster.now
    for victim in victims:
        cluster.kill(victim)
    survivors = set(names(n)) - set(victims)
    assert CONFIG.suspicion_timeout(n) / 2 > KILL_BOUND
    cluster.run_for(KILL_BOUND)
    seen = history(cluster, since=killed_at)
    for observer in survivors:
        for victim in victims:
            assert seen[observer, victim] == [NodeDown(victim, "failed")], (
                f"seed {seed}: {observer} reported killed {victim} as {seen[observer, victim]} within {KILL_BOUND} s"
            )
    assert sum(cluster.nodes[s].core.statistics().refused for s in survivors) >= len(victims)
    if back_after is not None:  # restarted on the same address: a new incarnation
        cluster.run_for(back_after)
        for victim in victims:
            cluster.start(victim)
    converge(cluster, CONFIG.suspicion_timeout(n) + 3 * CONFIG.protocol_period + JOIN_BOUND, "after the kills")
    stays_quiet(cluster, STABLE_FOR)
    check_run(cluster)


@settings_for(80)
@given(
    seed=seeds,
    n=sizes(2, 20),
    loss=losses,
    max_latency=max_latencies,
    hold=st.floats(min_value=12.0, max_value=40.0),
)
def test_a_partition_downs_the_other_side_and_healing_brings_everyone_back(
    seed: int, n: int, loss: float, max_latency: float, hold: float
) -> None:
    cluster, plan, _ = started(seed, n, loss, max_latency)
    cluster.run_until(START_WINDOW)
    converge(cluster, JOIN_BOUND, "before the partition")
    everyone = names(n)
    left = set(plan.sample(everyone, plan.randint(1, n - 1)))
    right = set(everyone) - left
    cut = cluster.now
    cluster.partition(left, right)
    # Each side loses the other within the suspicion timeout (it must be over before healing).
    assert hold > CONFIG.suspicion_timeout(n) + 2 * CONFIG.protocol_period + 1.0
    cluster.run_for(hold)
    for side in (left, right):
        for observer in side:
            assert set(cluster.view(observer)) == side - {observer}, f"seed {seed}: {observer} during the partition"
    seen = history(cluster, since=cut)
    for side, other in ((left, right), (right, left)):
        for observer in side:
            for node in other:
                assert NodeDown(node, "failed") in seen[observer, node], (
                    f"seed {seed}: {observer} never reported {node} down: {seen[observer, node]}"
                )
    healed = cluster.now
    cluster.heal()
    # A heartbeat of the very incarnation a node holds as failed makes it dial that node,
    # which learns the verdict and refutes it: healing does not wait for tombstones to go.
    converge(cluster, 2 * JOIN_BOUND, "after healing")
    stays_quiet(cluster, STABLE_FOR)
    seen = history(cluster, since=healed)
    for side, other in ((left, right), (right, left)):
        for observer in side:
            for node in other:
                assert NodeUp(node, 1) in seen[observer, node], f"seed {seed}: {observer} never saw {node} again"
    # One incarnation each: every NodeUp ever reported carries it (no restart, nothing mixed).
    assert {o.event.incarnation for o in cluster.log if isinstance(o.event, NodeUp)} == {1}
    check_run(cluster)


@settings_for(80)
@given(
    seed=seeds,
    n=sizes(2, 20),
    restarts=st.integers(min_value=1, max_value=4),
    loss=losses,
    max_latency=max_latencies,
)
def test_a_restarted_node_is_seen_as_its_new_incarnation_by_everyone(
    seed: int, n: int, restarts: int, loss: float, max_latency: float
) -> None:
    cluster, plan, _ = started(seed, n, loss, max_latency)
    cluster.run_until(START_WINDOW)
    converge(cluster, JOIN_BOUND, "before the restarts")
    everyone = names(n)
    for _ in range(restarts):  # one node may restart several times
        cluster.restart(plan.choice(everyone), at=cluster.now + plan.uniform(0.0, 10.0))
    cluster.run_for(10.0)
    converge(cluster, CONFIG.suspicion_timeout(n) + 3 * CONFIG.protocol_period + JOIN_BOUND, "after the restarts")
    stays_quiet(cluster, STABLE_FOR)
    for observer in everyone:
        for node in set(everyone) - {observer}:
            incarnation = cluster.nodes[node].incarnation
            m = cluster.nodes[observer].core.member(node)
            assert m is not None
            assert m.incarnation == incarnation, f"seed {seed}: {observer} holds {node} at incarnation {m.incarnation}"
            events = cluster.events_about(observer, node)
            assert events[-1].event == NodeUp(node, incarnation), f"seed {seed}: {observer} last saw {events[-1]}"
            reasons = {o.event.reason for o in events if isinstance(o.event, NodeDown)}
            assert reasons <= {"restarted", "failed"}, f"seed {seed}: {observer} about {node}: {reasons}"
    check_run(cluster)


@settings_for(40)
@given(
    seed=seeds,
    n=sizes(3, 20),
    leavers=st.integers(min_value=1, max_value=3),
    max_latency=max_latencies,
)
def test_a_graceful_leave_is_one_node_down_left_everywhere(seed: int, n: int, leavers: int, max_latency: float) -> None:
    cluster, plan, _ = started(seed, n, 0.1, max_latency)
    cluster.run_until(START_WINDOW)
    converge(cluster, JOIN_BOUND, "before leaving")
    gone = plan.sample(names(n), min(leavers, n - 1))
    mark = cluster.now
    for name in gone:
        cluster.leave(name, at=mark + plan.uniform(0.0, 2.0))
    cluster.run_until(mark + 2.0)
    # Every remaining node hears the goodbye over its link: no failure detection involved.
    converge(cluster, 1.0, "after the leaves")
    stays_quiet(cluster, STABLE_FOR)
    seen = history(cluster, since=mark)
    for observer in set(names(n)) - set(gone):
        for name in gone:
            assert seen[observer, name] == [NodeDown(name, "left")], f"seed {seed}: {observer}: {seen[observer, name]}"
    check_run(cluster)


@settings_for(60)
@given(
    seed=seeds,
    n=sizes(3, 16),
    pauses=st.lists(
        st.tuples(st.floats(min_value=0.0, max_value=20.0), st.sampled_from([1.0, 3.0, 6.0, 10.0, 30.0])),
        min_size=1,
        max_size=4,
    ),
    loss=losses,
    max_latency=max_latencies,
)
def test_a_node_paused_past_failure_detection_wakes_up_and_everyone_settles_on_its_incarnation(
    seed: int, n: int, pauses: list[tuple[float, float]], loss: float, max_latency: float
) -> None:
    """A SIGSTOP (a GC or VM stall): its peers declare it failed, it wakes with its stale
    view and late timer, refutes the verdict with the same incarnation, and all settle."""
    cluster, plan, _ = started(seed, n, loss, max_latency)
    cluster.run_until(START_WINDOW)
    converge(cluster, JOIN_BOUND, "before the pauses")
    everyone = names(n)
    victims = plan.sample(everyone, min(len(pauses), n - 2)) if n > 2 else []
    start = cluster.now
    # Someone probes it within a protocol period, the suspicion spreads and times out:
    # probing every member in turn, then the suspicion, is a generous bound.
    long_enough = n * CONFIG.protocol_period + CONFIG.suspicion_timeout(n) + 2.0
    declared: list[str] = []
    last = start
    for victim, (delay, duration) in zip(victims, pauses, strict=False):
        cluster.pause(victim, at=start + delay)
        cluster.resume(victim, at=start + delay + duration)
        last = max(last, start + delay + duration)
        if duration > long_enough:
            declared.append(victim)
    cluster.run_until(last)
    converge(cluster, CONFIG.suspicion_timeout(n) + 3 * CONFIG.protocol_period + 2 * JOIN_BOUND, f"after {pauses}")
    stays_quiet(cluster, STABLE_FOR)
    seen = history(cluster, since=start)
    for victim in declared:
        for observer in set(everyone) - set(victims):
            assert NodeDown(victim, "failed") in seen[observer, victim], (
                f"seed {seed}: {observer} never declared paused {victim} failed: {seen[observer, victim]}"
            )
    # A pause is not a restart: every node is still at its first incarnation, everywhere.
    for observer in everyone:
        for node in set(everyone) - {observer}:
            m = cluster.nodes[observer].core.member(node)
            assert m is not None, f"seed {seed}: {observer} forgot {node}"
            assert m.incarnation == 1, f"seed {seed}: {observer} holds {node} at incarnation {m.incarnation}"
    check_run(cluster)


@settings_for(50)
@given(
    seed=seeds,
    n=sizes(3, 16),
    faults=st.lists(
        st.tuples(
            st.floats(min_value=0.0, max_value=35.0),
            st.sampled_from(["crash", "kill", "restart", "leave", "cut", "heal", "pause"]),
        ),
        min_size=1,
        max_size=8,
    ),
    loss=losses,
    max_latency=max_latencies,
)
def test_after_any_mix_of_faults_the_live_nodes_settle_on_their_current_incarnations(
    seed: int, n: int, faults: list[tuple[float, str]], loss: float, max_latency: float
) -> None:
    cluster, plan, _ = started(seed, n, loss, max_latency)
    cluster.run_until(START_WINDOW)
    everyone = names(n)
    for delay, fault in sorted(faults):
        cluster.run_until(START_WINDOW + delay)
        live = cluster.live()
        if fault in ("crash", "kill", "leave") and len(live) > 2:
            {"crash": cluster.crash, "kill": cluster.kill, "leave": cluster.leave}[fault](plan.choice(live))
        elif fault == "restart":
            name = plan.choice(everyone)
            (cluster.restart if name in cluster.nodes else cluster.start)(name)
        elif fault == "cut":
            cluster.partition(plan.sample(everyone, plan.randint(1, n - 1)))
        elif fault == "heal":
            cluster.heal()
        elif fault == "pause" and len(live) > 2:
            victim = plan.choice(live)
            cluster.pause(victim)
            cluster.resume(victim, at=cluster.now + plan.choice([1.0, 6.0, 12.0]))
    cluster.run_until(START_WINDOW + 35.0 + 12.0)  # every pause is over
    cluster.heal()
    converge(cluster, CONFIG.suspicion_timeout(n) + 3 * CONFIG.protocol_period + 2 * JOIN_BOUND, f"after {faults}")
    stays_quiet(cluster, STABLE_FOR)
    check_run(cluster)
