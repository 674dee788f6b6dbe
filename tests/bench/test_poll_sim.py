"""The what-if replay of the polling scenarios (``benchmarks/poll_sim.py``) still runs the real scheduler end to end."""

from __future__ import annotations

from benchmarks.poll_sim import schedules, simulate


def test_a_batch_replay_sees_every_job_with_a_submit_a_status_and_a_result_each() -> None:
    for policy in ("adaptive", "fixed"):
        result = simulate("batch", policy, jobs=5, rate=40)
        assert result["calls_per_job"] >= 3.0, result
        assert result["lag_p99"] is not None
        assert result["lag_p99"] >= result["lag_p50"] >= 0.0


def test_a_steady_replay_counts_throughput_after_the_warm_up() -> None:
    result = simulate("steady", "adaptive", jobs=5, rate=50, horizon=900.0)
    assert result["jobs_per_minute"] > 0
    assert result["calls_per_job"] >= 3.0


def test_the_schedule_grid_trades_polls_for_lag() -> None:
    rows = schedules()
    fewest = min(rows, key=lambda row: row[3])
    most = max(rows, key=lambda row: row[3])
    assert fewest[3] < most[3]
    assert fewest[5] > most[5], "more polls a job buy a lower p99"
