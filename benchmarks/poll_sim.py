"""What-if runs of the poll scheduler on virtual time: the real ``PollScheduler`` and ``RequestBudget``, no HTTP.

``python -m benchmarks.poll_sim`` runs, in well under a second each, the steady pool and the batches of
measurement 5 (the same durations: lognormal, median 169 s, sigma 0.3; the same budgets) against a fake API
that answers at once, and prints calls per job and lag for both policies. It follows ``make bench``'s
figures within a few percent (no network, no CPU contention), so a change to the scheduler's constants
can be tried here first. ``--schedules`` prints the other half of the analysis in ``benchmarks/README.md``:
for a single job on those durations, the status polls a schedule spends against the p99 lag it gets,
over a grid of first-look odds, completion odds and longest gaps, with no queueing at all.

Not a measurement: nothing here is in the README's tables.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import logging
import math
import random
import statistics
from typing import Any

from airflow_provider_aleph.budget import RequestBudget
from airflow_provider_aleph.polling import PollJob, PollScheduler
from airflow_provider_aleph.protocol import RequestState
from airflow_provider_aleph.states import SegmindStatus
from benchmarks.stats import percentile
from tests.support.virtual_time import VirtualTimeLoop, run_virtual

MEDIAN, SIGMA = 169.0, 0.3
MODEL = "runway-gen4-aleph"


def simulate(
    mode: str, policy: str, jobs: int, rate: float, horizon: float = 1500.0, warmup: float = 180.0, seed: int = 1
) -> dict[str, Any]:
    """One run: ``steady`` keeps ``jobs`` in flight until ``horizon``; ``batch`` waits for ``jobs`` submitted at once.

    :param mode: ``steady`` or ``batch``.
    :param policy: ``adaptive`` or ``fixed``.
    :param jobs: jobs in flight (steady) or in the batch.
    :param rate: the connection's budget, calls a minute.
    :param horizon: steady: seconds of submits.
    :param warmup: steady: seconds left out of the figures.
    :param seed: of the durations.
    """
    loop = VirtualTimeLoop()
    budget = RequestBudget(rate, clock=loop.time, adaptive=policy == "adaptive")
    scheduler = PollScheduler(budget, policy, clock=loop.time, wall=loop.wall)
    durations = random.Random(seed)
    lags: list[tuple[float, float]] = []  # (when seen, lag)
    calls = {"submit": 0, "status": 0, "result": 0}
    free_submits = mode == "batch"  # a batch is submitted before the clock starts

    async def one(index: int) -> None:
        if not free_submits:
            await budget.acquire()
        calls["submit"] += 1
        start, duration = loop.time(), MEDIAN * math.exp(SIGMA * durations.gauss(0.0, 1.0))
        job: PollJob = scheduler.register(
            f"r{index}", model=MODEL, poll_interval=10.0, expected_duration=MEDIAN, submitted_at=loop.wall()
        )
        while True:
            await scheduler.turn(job)
            calls["status"] += 1
            if loop.time() - start < duration:
                scheduler.seen(job, RequestState(job.request_id, SegmindStatus.PROCESSING, "PROCESSING"))
                continue
            await budget.acquire()
            calls["result"] += 1
            metrics = {"inference_time": duration}
            scheduler.seen(job, RequestState(job.request_id, SegmindStatus.COMPLETED, "COMPLETED", metrics=metrics))
            lags.append((loop.time(), loop.time() - start - duration))
            scheduler.forget(job)
            return

    async def main() -> None:
        counter = iter(range(10**9))
        if mode == "steady":

            async def keep_one_in_flight() -> None:
                while loop.time() < horizon:
                    await one(next(counter))

            await asyncio.gather(*(keep_one_in_flight() for _ in range(jobs)))
        else:
            await asyncio.gather(*(one(next(counter)) for _ in range(jobs)))
        await scheduler.close()

    run_virtual(main(), loop)
    seen = [lag for when, lag in lags if mode == "batch" or warmup <= when <= horizon]
    result = {
        "calls_per_job": sum(calls.values()) / len(lags),
        "lag_p50": percentile(sorted(seen), 50),
        "lag_p99": percentile(sorted(seen), 99),
    }
    if mode == "steady":
        result["jobs_per_minute"] = len(seen) / ((horizon - warmup) / 60)
    return result


def schedules() -> list[tuple[float, float, float, float, float, float]]:
    """For one job alone: (first-look odds, completion odds, longest gap, polls, p50 lag, p99 lag) of each schedule."""
    normal = statistics.NormalDist(math.log(MEDIAN), SIGMA)
    draws = sorted(math.exp(value) for value in normal.samples(20000, seed=1))
    rows = []
    for first in (0.01, 0.05, 0.1, 0.2, 0.25, 0.3, 0.4):
        for odds in (0.2, 0.3, 0.4, 0.5, 0.6, 0.7):
            for longest in (30.0, 45.0, 60.0, 90.0):
                looks = [math.exp(normal.inv_cdf(first))]
                while looks[-1] < draws[-1]:
                    last = looks[-1]
                    survive = 1.0 - normal.cdf(math.log(last))
                    target = math.exp(normal.inv_cdf(min(1.0 - 1e-12, 1.0 - (1.0 - odds) * survive)))
                    looks.append(last + min(max(target - last, 10.0), longest))
                polls, lag = [], []
                for duration in draws:
                    index = bisect.bisect_left(looks, duration)
                    polls.append(index + 1)
                    lag.append(looks[index] - duration)
                lag.sort()
                rows.append((first, odds, longest, statistics.fmean(polls), percentile(lag, 50), percentile(lag, 99)))
    return rows


def main(argv: list[str] | None = None) -> int:
    """Print the what-if runs (or the schedule grid)."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.poll_sim", description=__doc__.splitlines()[0])
    parser.add_argument("--schedules", action="store_true", help="the single-job grid: polls against p99 lag")
    args = parser.parse_args(argv)
    logging.disable(logging.WARNING)  # the budget's 429 lines: there are none here, but be quiet
    if args.schedules:
        print("The schedules no other beats on both (fewer polls and lower p99), fewest polls first:")
        print("first-look odds | completion odds | longest gap s | status polls a job | lag p50 s | lag p99 s")
        best_p99 = math.inf
        for row in sorted(schedules(), key=lambda r: (r[3], r[5])):
            if row[5] < best_p99:
                best_p99 = row[5]
                print(" | ".join(f"{value:g}" if i < 3 else f"{value:.2f}" for i, value in enumerate(row)))
        return 0
    for policy in ("adaptive", "fixed"):
        steady = simulate("steady", policy, jobs=50, rate=50)
        print(
            f"{policy:8} steady, 50 in flight at 50/min: {steady['jobs_per_minute']:.1f} jobs/min, "
            f"{steady['calls_per_job']:.2f} calls/job, lag p50 {steady['lag_p50']:.0f} s, p99 {steady['lag_p99']:.0f} s"
        )
        for size in (20, 100, 400):
            batch = simulate("batch", policy, jobs=size, rate=40)
            print(
                f"{policy:8} batch of {size} at 40/min: {batch['calls_per_job']:.2f} calls/job, "
                f"lag p50 {batch['lag_p50']:.0f} s, p99 {batch['lag_p99']:.0f} s"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
