"""The micro-benchmarks (bench/runtime.py and bench/transport.py, pyperf scripts) run end
to end through bench/run_all.py, in pyperf's one-value debug mode: each figure comes out
of the pyperf files with its unit, its CPU times and its bare-bones twin, and the files
are what ``python -m pyperf compare_to`` reads. A smoke run: nothing is asserted about
speed (the values of one message or call mean nothing)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

BENCH = Path(__file__).resolve().parents[2] / "bench"
ONLY = "local_send_64,bare_local_send_64,idle_process_bytes,remote_call,bare_remote_call"


def test_the_pyperf_scripts_report_every_figure(tmp_path: Path) -> None:
    out = tmp_path / "figures.jsonl"
    cmd = [sys.executable, str(BENCH / "run_all.py"), f"--pyperf-args=--debug-single-value --only {ONLY}"]
    cmd += ["--pyperf-dir", str(tmp_path), "--out", str(out), "runtime.py", "transport.py"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr

    printed = [json.loads(line) for line in done.stdout.splitlines()]
    written = [json.loads(line) for line in out.read_text().splitlines()]
    assert [f["name"] for f in written] == [f["name"] for f in printed]
    assert {f["config"]["script"] for f in written} == {"runtime.py", "transport.py"}
    figures = {f["name"]: f for f in printed}
    units = {name: f["unit"] for name, f in figures.items()}
    assert units == {
        "idle_process_bytes": "bytes",
        "idle_process_bytes_traced": "bytes",
        "spawn": "spawns/s",
        "local_send_64": "msg/s",
        "bare_local_send_64": "msg/s",
        "remote_call": "calls/s",
        "remote_call_latency": "us",
        "bare_remote_call": "calls/s",
        "bare_remote_call_latency": "us",
    }
    assert all(f["value"] > 0 for f in printed)
    assert figures["local_send_64"]["config"]["senders"] == 64
    assert set(figures["local_send_64"]["config"]["cpu_us_per_op"]) == {"self"}
    assert set(figures["remote_call"]["config"]["cpu_us_per_op"]) == {"a", "b"}
    assert set(figures["bare_remote_call"]["config"]["cpu_us_per_op"]) == {"a", "b"}
    assert figures["remote_call_latency"]["value"] == pytest.approx(1e6 / figures["remote_call"]["value"])
    assert figures["idle_process_bytes"]["config"]["method"] == "rss"

    # the table: each figure beside its target and its bare-bones twin measured in the same run
    rows = {line.split()[0]: line for line in done.stderr.splitlines() if line.strip()}
    assert ">= 1,000,000" not in rows["local_send_64"]  # no target of its own
    assert "<= 2,048" in rows["idle_process_bytes"]
    assert ">= 15,000" in rows["remote_call"]
    assert "a " in rows["remote_call"]  # CPU µs/op of both nodes
    assert "b " in rows["remote_call"]

    for script in ("runtime", "transport"):
        path = str(tmp_path / f"{script}.json")
        compared = subprocess.run(
            [sys.executable, "-m", "pyperf", "compare_to", path, path], capture_output=True, text=True, timeout=60
        )
        assert compared.returncode == 0, compared.stdout + compared.stderr
        shown = subprocess.run(
            [sys.executable, "-m", "pyperf", "show", "--metadata", path], capture_output=True, text=True, timeout=60
        )
        assert "distable_path" in shown.stdout
