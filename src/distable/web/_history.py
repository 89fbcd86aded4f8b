"""The dashboard's charts over time: a bounded history of the cluster, one sample a second.

The web server's sampler task (``WebServer._sample``) asks every node for its statistics
once per ``SAMPLE_INTERVAL`` (``cluster_snapshot``, the same ``statistics_of`` round the
page's table makes) and hands the snapshot to ``History.record``. The history keeps the
last ``HISTORY_SIZE`` samples (10 minutes at 1 s): a page opened after a join or a kill
still shows its shape, then appends what is new (``GET /api/history?since=``).

Every series is a ring buffer (``deque(maxlen=size)``) aligned with the one of the sample
times: each ``record`` appends one value to every series (``None`` for a node absent or
not answering, which the charts draw as a gap), so memory is bounded by ``size`` times
the series kept. Per-node series exist for at most ``max_nodes`` nodes at once (the
cluster-wide series count every node); a node's series are dropped once none of its
values is left in the window.

Counters become rates per second from one sample to the next of the same node
incarnation (a restarted node starts its counters anew: its first sample has no rate).
A cluster-wide rate is the sum of the nodes' rates (``None`` when no node has one).

Single owner: the server's event loop; nothing here awaits.
"""

from __future__ import annotations

import bisect
import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ._cluster import BadRequest

#: Seconds between two samples.
SAMPLE_INTERVAL = 1.0
#: Samples kept: 10 minutes at one a second.
HISTORY_SIZE = 600
#: Nodes with series of their own at most (a chart with more lines is unreadable anyway).
MAX_CHART_NODES = 64

#: The cluster-wide series, in the order ``/api/history`` lists them.
CLUSTER_SERIES = ("nodes", "unreachable", "names", "processes", "handoffs", "restarts", "calls")
#: The series of each node: names it hosts, live processes, last event loop lag (s), and
#: handoffs completed, processes restarted and calls made per second.
NODE_SERIES = ("names", "processes", "loop_lag", "handoffs", "restarts", "calls")
#: Counters turned into rates: series name -> how to read it from a ``node_row``.
_COUNTERS: dict[str, Callable[[dict[str, Any]], int]] = {
    "handoffs": lambda row: row["handoffs"]["completed"],
    "restarts": lambda row: row["restarts"],
    "calls": lambda row: row["calls"],
}


@dataclass(slots=True)
class _Tracked:
    """One node's series."""

    series: dict[str, deque[float | None]]
    last_seen: int = 0  # the sample number of its last answer


@dataclass(frozen=True, slots=True)
class _Counters:
    """A node's counters at its last answer (for the next rate)."""

    incarnation: int
    time: float
    values: dict[str, int]


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


class History:
    """The last ``size`` samples of the cluster, as aligned series (see the module doc)."""

    def __init__(self, size: int = HISTORY_SIZE, max_nodes: int = MAX_CHART_NODES) -> None:
        if size < 1 or max_nodes < 0:
            raise ValueError(f"size must be >= 1 and max_nodes >= 0, not {size}, {max_nodes}")
        self.size = size
        self.max_nodes = max_nodes
        self.samples = 0  # recorded since the start
        self.times: deque[float] = deque(maxlen=size)
        self.cluster: dict[str, deque[float | None]] = {key: deque(maxlen=size) for key in CLUSTER_SERIES}
        self.nodes: dict[str, _Tracked] = {}
        # Every node of the last sample (tracked or not: all count in the cluster's rates).
        self._counters: dict[str, _Counters] = {}

    def _new_series(self) -> dict[str, deque[float | None]]:
        gap = [None] * len(self.times)
        return {key: deque(gap, maxlen=self.size) for key in NODE_SERIES}

    def record(self, snapshot: dict[str, Any]) -> None:
        """Append one sample: ``cluster_snapshot``'s answer (its ``time``, ``counts`` and
        ``nodes`` rows; a row with an ``error`` counts as a node that did not answer)."""
        now = round(float(snapshot["time"]), 3)
        if self.times and now <= self.times[-1]:
            now = round(self.times[-1] + 1e-3, 3)  # the wall clock stepped back: keep the axis increasing
        rows = {row["name"]: row for row in snapshot["nodes"] if row.get("error") is None}
        for name in rows:
            if name not in self.nodes and len(self.nodes) < self.max_nodes:
                self.nodes[name] = _Tracked(self._new_series())
        rates = {name: self._rates(self._counters.get(name), row, now) for name, row in rows.items()}
        counters: dict[str, _Counters] = {}
        for row in snapshot["nodes"]:
            name = row["name"]
            if name in rows:
                counters[name] = _Counters(row["incarnation"], now, {key: read(row) for key, read in _COUNTERS.items()})
            elif name in self._counters:  # did not answer this time: keep its last counters
                counters[name] = self._counters[name]
        self._counters = counters
        totals: dict[str, float | None] = dict.fromkeys(_COUNTERS)
        for node_rates in rates.values():
            for key, rate in node_rates.items():
                if rate is not None:
                    totals[key] = (totals[key] or 0.0) + rate
        self.samples += 1
        self.times.append(now)
        counts = snapshot["counts"]
        for key, series in self.cluster.items():
            series.append(totals[key] if key in totals else counts.get(key))
        for name, tracked in self.nodes.items():
            values: dict[str, float | None] = dict.fromkeys(NODE_SERIES)
            row = rows.get(name)
            if row is not None:
                values.update(names=row["local_names"], processes=row["processes"], loop_lag=row["loop_lag"])
                values.update(rates[name])
                tracked.last_seen = self.samples
            for key, value in values.items():
                tracked.series[key].append(value)
        # Forget the nodes with nothing left in the window (frees their place for others).
        for name in [n for n, t in self.nodes.items() if self.samples - t.last_seen >= self.size]:
            del self.nodes[name]

    @staticmethod
    def _rates(last: _Counters | None, row: dict[str, Any], now: float) -> dict[str, float | None]:
        """Per-second rates since the node's previous answer (None without one)."""
        if last is None or last.incarnation != row["incarnation"] or now <= last.time:
            return dict.fromkeys(_COUNTERS)
        rates: dict[str, float | None] = {}
        for key, read in _COUNTERS.items():
            delta = read(row) - last.values[key]
            rates[key] = delta / (now - last.time) if delta >= 0 else None
        return rates

    def as_json(self, since: float | None = None) -> dict[str, Any]:
        """The samples after ``since`` (a sample time; all of them when None).

        Returns ``{"interval", "size", "time": [t...], "cluster": {series: [v...]},
        "nodes": {node: {series: [v...]}}}``: times in seconds since the epoch, every
        list as long as ``time``, ``null`` where a node did not answer. Only nodes with a
        value in that stretch are listed. Rates are per second; ``loop_lag`` in seconds.
        """
        times = list(self.times)
        start = 0 if since is None else bisect.bisect_right(times, since)

        def tail(series: deque[float | None], digits: int) -> list[float | None]:
            return [_round(v, digits) for v in list(series)[start:]]

        nodes: dict[str, dict[str, list[float | None]]] = {}
        for name, tracked in self.nodes.items():
            if self.samples - tracked.last_seen >= len(times) - start:
                continue  # no value in this stretch
            nodes[name] = {key: tail(series, 6 if key == "loop_lag" else 3) for key, series in tracked.series.items()}
        return {
            "interval": SAMPLE_INTERVAL,
            "size": self.size,
            "time": times[start:],
            "cluster": {key: tail(series, 3) for key, series in self.cluster.items()},
            "nodes": nodes,
        }


def parse_since(text: str | None) -> float | None:
    """``?since=`` of ``/api/history``: a sample time (seconds since the epoch) or None.

    Raises:
        BadRequest: not a finite number.
    """
    if text is None or text.strip() == "":
        return None
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise BadRequest(f"since must be a sample time in seconds since the epoch, e.g. 1700000000.5, not {text!r}")
    return value
