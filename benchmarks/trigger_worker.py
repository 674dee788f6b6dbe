"""One triggerer-like process: N triggers as tasks on one asyncio event loop, measured from inside.

``python -m benchmarks.trigger_worker --kind ours --jobs jobs.json --poll 5 --out result.json``

Kinds: ``ours`` (:class:`~airflow_provider_aleph.triggers.segmind.SegmindRequestTrigger`),
``anchor`` (the HTTP provider's ``HttpEventTrigger`` polling the same status URLs with a response
check for COMPLETED) and ``floor`` (a task that only sleeps: what the runner itself costs). Each
trigger is built from plain keyword arguments and run as its own task, wrapped the way Airflow's
triggerer wraps it (a greenback portal where the installed Airflow uses one). Trigger starts are
spread evenly over one poll interval, as triggers reach a real triggerer over time.

The result file holds the process's CPU seconds and RSS (before the triggers, peak during them),
and when each trigger's event arrived on the machine's monotonic clock.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import importlib.util
import json
import logging
import sys
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from benchmarks.procstat import cpu_seconds, peak_rss_bytes, reset_peak_rss, rss_bytes

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine

    from airflow.triggers.base import BaseTrigger

KINDS = ("ours", "anchor", "floor")
SEGMIND_CONN_ID = "segmind_bench"
HTTP_CONN_ID = "http_bench"
_GREENBACK = importlib.util.find_spec("greenback") is not None
if _GREENBACK:
    import greenback


def trigger_factory(
    kind: str, poll: float, timeout: float, expected: float | None = None
) -> Callable[[dict[str, str]], BaseTrigger | None]:
    """A function that builds one trigger for a submitted job (None for the ``floor`` kind).

    :param kind: ``ours``, ``anchor`` or ``floor``.
    :param poll: the poll interval, in seconds.
    :param timeout: seconds from now until the trigger gives up.
    :param expected: ours: the model's typical job duration, as the operator hints it.
    """
    deadline = (datetime.now(UTC) + timedelta(seconds=timeout)).isoformat()
    if kind == "ours":
        from airflow_provider_aleph.triggers.segmind import SegmindRequestTrigger

        def ours(job: dict[str, str]) -> BaseTrigger:
            return SegmindRequestTrigger(
                request_id=job["request_id"],
                segmind_conn_id=SEGMIND_CONN_ID,
                deadline=deadline,
                poll_interval=poll,
                status_url=job["status_url"],
                response_url=job["response_url"],
                # As the Aleph operator builds it: the submit time, the model and its typical duration.
                submitted_at=job.get("submitted_at"),
                model="runway-gen4-aleph",
                expected_duration=expected,
            )

        return ours
    if kind == "anchor":
        from airflow.providers.http.triggers.http import HttpEventTrigger

        def anchor(job: dict[str, str]) -> BaseTrigger:
            return HttpEventTrigger(
                response_check_path="benchmarks.anchor_check.status_is_completed",
                http_conn_id=HTTP_CONN_ID,
                method="GET",
                endpoint=f"v2/requests/{job['request_id']}/status",
                poll_interval=poll,
            )

        return anchor
    return lambda job: None


async def run_one(trigger: BaseTrigger | None, hold: float) -> tuple[float, str]:
    """Run one trigger to its first event, as the triggerer does; return when and what it said.

    :param trigger: the trigger, or None to only hold a task for ``hold`` seconds (the floor).
    :param hold: seconds the floor's task sleeps.
    """
    if _GREENBACK:
        await greenback.ensure_portal()
    if trigger is None:
        await asyncio.sleep(hold)
        return time.monotonic(), "floor"
    async for event in trigger.run():
        status = event.payload.get("status", "?") if isinstance(event.payload, dict) else "?"
        return time.monotonic(), str(status)
    return time.monotonic(), "no event"


async def run_all(
    jobs: list[dict[str, str]],
    build: Callable[[dict[str, str]], BaseTrigger | None],
    poll: float,
    hold: float,
    limit: float,
) -> tuple[dict[str, tuple[float, str]], int]:
    """Start one task per job, spread over ``poll`` seconds; wait for all; sample RSS meanwhile.

    :param jobs: the submitted jobs.
    :param build: makes a trigger for a job.
    :param poll: the poll interval, over which the starts are spread.
    :param hold: seconds each floor task sleeps.
    :param limit: seconds after which the tasks still running are cancelled (``not finished``).
    """
    results: dict[str, tuple[float, str]] = {}
    peak = 0
    done = asyncio.Event()

    async def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, rss_bytes())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), 0.25)

    async def keep(job: dict[str, str], coro: Coroutine[Any, Any, tuple[float, str]]) -> None:
        try:
            results[job["request_id"]] = await coro
        except Exception as exc:
            results[job["request_id"]] = (time.monotonic(), f"raised {type(exc).__name__}")

    sampler = asyncio.create_task(sample())
    tasks = []
    start = time.monotonic()
    step = poll / max(len(jobs), 1)
    for index, job in enumerate(jobs):
        delay = start + index * step - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(keep(job, run_one(build(job), hold))))
    # A loop too busy to reach its own deadlines would run on: stop it at the limit, and say so.
    _, late = await asyncio.wait(tasks, timeout=max(0.0, start + limit - time.monotonic()))
    for task in late:
        task.cancel()
    await asyncio.gather(*late, return_exceptions=True)
    for job in jobs:
        results.setdefault(job["request_id"], (time.monotonic(), "not finished"))
    done.set()
    await sampler
    return results, peak


def main(argv: list[str] | None = None) -> int:
    """Run the triggers and write the measurements as JSON."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.trigger_worker")
    parser.add_argument("--kind", choices=KINDS, required=True)
    parser.add_argument("--jobs", type=Path, required=True, help="JSON list of submitted jobs; waited for")
    parser.add_argument("--ready", type=Path, required=True, help="written once imports are done")
    parser.add_argument("--poll", type=float, required=True)
    parser.add_argument("--timeout", type=float, required=True, help="each trigger's deadline, seconds from start")
    parser.add_argument("--hold", type=float, default=0.0, help="seconds each floor task sleeps")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--log", type=Path, required=True, help="where the triggers' log lines go")
    parser.add_argument("--profile", type=Path, help="run under cProfile and write its stats here")
    parser.add_argument("--expected", type=float, help="ours: the jobs' typical duration, as the operator hints it")
    args = parser.parse_args(argv)

    # What the triggers log goes to a file, as a triggerer keeps a log per trigger.
    logging.basicConfig(filename=args.log, level=logging.INFO, force=True)
    trigger_factory(args.kind, args.poll, args.timeout, args.expected)
    if args.kind == "anchor":
        importlib.import_module("benchmarks.anchor_check")
    # Imports are done: the jobs are submitted now, so their latency is not spent on our start-up.
    args.ready.write_text("ready")
    while not args.jobs.exists():
        time.sleep(0.02)
    jobs: list[dict[str, str]] = json.loads(args.jobs.read_text())
    build = trigger_factory(args.kind, args.poll, args.timeout, args.expected)
    gc.collect()
    baseline = rss_bytes()
    peak_reset = reset_peak_rss()
    cpu_before = cpu_seconds()
    wall_before = time.monotonic()
    limit = max(args.timeout, args.hold) + 2 * args.poll + 15
    if args.profile is None:
        results, sampled_peak = asyncio.run(run_all(jobs, build, args.poll, args.hold, limit))
    else:
        import cProfile

        # CPU time, not wall time: the loop's idle waits in epoll are not a poll's cost.
        profiler = cProfile.Profile(time.process_time)
        results, sampled_peak = profiler.runcall(asyncio.run, run_all(jobs, build, args.poll, args.hold, limit))
        profiler.dump_stats(args.profile)
    wall = time.monotonic() - wall_before
    cpu = cpu_seconds() - cpu_before
    peak = max(sampled_peak, peak_rss_bytes() if peak_reset else 0)
    report = {
        "kind": args.kind,
        "triggers": len(jobs),
        "cpu_seconds": cpu,
        "wall_seconds": wall,
        "baseline_rss": baseline,
        "peak_rss": peak,
        "statuses": dict(Counter(status for _, status in results.values())),
        "events": {rid: when for rid, (when, status) in results.items() if status != "not finished"},
        "greenback": _GREENBACK,
    }
    args.out.write_text(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
