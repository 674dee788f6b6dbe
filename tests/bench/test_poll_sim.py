"""The what-if replay of the polling scenarios (``python -m benchmarks.poll_sim``) still runs the real
scheduler end to end, run as a user runs it. Nothing here looks at the numbers' size, only their shape."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
NUMBER = r"\d+(?:\.\d+)?"


def run(*args: str) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.poll_sim", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def test_the_replay_prints_each_scenario_for_both_policies() -> None:
    lines = run()
    for policy in ("adaptive", "fixed"):
        steady = [line for line in lines if line.startswith(policy) and "steady" in line]
        assert len(steady) == 1, lines
        assert re.search(rf"{NUMBER} jobs/min, {NUMBER} calls/job, lag p50 {NUMBER} s, p99 {NUMBER} s", steady[0])
        for size in (20, 100, 400):
            batch = [line for line in lines if line.startswith(policy) and f"batch of {size} " in line]
            assert len(batch) == 1, lines
            calls = float(re.search(rf"({NUMBER}) calls/job", batch[0]).group(1))  # type: ignore[union-attr]
            assert calls >= 3.0, "a submit, at least one status poll and a result per job"


def test_the_schedule_frontier_buys_lower_lag_with_more_polls() -> None:
    rows = [line.split(" | ") for line in run("--schedules") if re.match(rf"^{NUMBER} \| ", line)]
    assert len(rows) >= 2
    polls = [float(row[3]) for row in rows]
    p99 = [float(row[5]) for row in rows]
    assert polls == sorted(polls)
    assert p99 == sorted(p99, reverse=True)
    assert len(set(p99)) == len(p99), "each row of the frontier beats the one before"
