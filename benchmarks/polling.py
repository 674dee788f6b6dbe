"""Measurement 5: waiting for many jobs under the account's request budget, three sides in one run.

Sides: ours with the ``adaptive`` poll policy (*ours, adaptive*), ours with the ``fixed`` policy,
today's behaviour (*ours, fixed*), and Segmind's official client (``submit_async(...).wait()`` at
its default 1 s interval, one thread per job). Each side runs in its own process
(:mod:`benchmarks.poll_worker`) against a fresh emulator process of its own
(:mod:`benchmarks.emulator_proc`) with the same settings: job durations drawn from a lognormal
whose median is 169 s and whose log has standard deviation 0.3 (the same seed, so the n-th job of
each side has the same duration), and an account limit of 50 API calls a minute, every call
counted (submits, status polls, result reads).

Time runs ``scale`` (k) times faster than real time: durations and intervals are divided by k, the
emulator's rate window too (60 s / k, same limit: the same bursts in the same proportions), and our
connection's ``max_requests_per_minute`` is multiplied by k (its limiter spaces calls evenly, so
that is the same schedule k times faster). Every time reported is multiplied back by k: the tables
are in real (unscaled) seconds and minutes.

Scenarios:

1. *Steady*: a pool keeps 50 jobs in flight, each finished job replaced by a new submit at once;
   ours at a budget of 50 calls a minute (the account's limit as the ceiling). Measured over a
   window after a warm-up of about one mean job duration.
2. *Batch*: 20, 100 and 400 jobs submitted at once before the waits start (with the emulator's
   limit off, then on with an empty window); ours at the default budget, 40 a minute. The *floor*
   is the lag an oracle would get that makes one status call and one result call per job at the
   moment it completes, served one at a time at the budget's rate.
3. *Two processes*: two of ours (adaptive), 25 jobs in flight each, each with its own budget of
   50 a minute, against one emulator (one account) that allows 50 a minute.

*Lag* is the time from a job's completion in the emulator to its event in the waiting process
(a trigger's event; for the SDK, ``.wait()`` returning), both on the machine's monotonic clock.
"""

from __future__ import annotations

import asyncio
import bisect
import importlib.util
import json
import math
import os
import subprocess
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from benchmarks.emulator_proc import EmulatorProcess
from benchmarks.poll_worker import CONN_ID, MODEL
from benchmarks.stats import percentile

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

API_KEY = "bench-poll-key-0123456789"
REPO = Path(__file__).resolve().parent.parent
#: The sides, in table order: (name in results, worker side, our poll policy).
SIDES = (("adaptive", "ours", "adaptive"), ("fixed", "ours", "fixed"), ("sdk", "sdk", None))
SIDE_LABELS = {
    "adaptive": "ours adaptive (new)",
    "fixed": "ours fixed (today)",
    "sdk": "SDK `submit_async().wait()`, 1 s polls",
}
#: The API calls the account limit counts.
API_KINDS = frozenset({"submit", "status", "result", "upload"})
LAG_PLOT = "polling-lag.png"
TWO_PLOT = "polling-two-processes.png"
STEADY_PLOT = "polling-steady-requests.png"


@dataclass(frozen=True)
class PollingCase:
    """The sizes of the polling measurement. Times are real (unscaled) seconds; ``scale`` divides them.

    :param scale: how many times faster than real time the runs go (k).
    :param median: median job duration.
    :param sigma: standard deviation of the log of job durations.
    :param account_rpm: API calls the emulator allows per key and minute.
    :param default_budget: our connection's default ``max_requests_per_minute``.
    :param poll_interval: our triggers' ``poll_interval`` (the operator's default).
    :param max_poll_interval: our triggers' ``max_poll_interval``.
    :param sdk_interval: the SDK's default poll interval.
    :param sdk_timeout: the SDK's default ``wait()`` timeout.
    :param retry_pause: how long a pool slot waits before replacing a task that failed.
    :param steady_in_flight: jobs the steady pool keeps in flight.
    :param steady_warmup: seconds from the start that the steady figures leave out.
    :param steady_measure: seconds of the steady window, after the warm-up.
    :param batch_sizes: the batches, each run for every side.
    :param two_in_flight: jobs each of the two processes keeps in flight.
    :param two_run: seconds the two processes keep submitting.
    :param two_skip: seconds at the start left out of the two-process share of 429s.
    :param drain: seconds a pool waits after its last submit for the jobs finished before it.
    """

    scale: float
    median: float = 169.0
    sigma: float = 0.3
    account_rpm: int = 50
    default_budget: float = 40.0
    poll_interval: float = 10.0
    max_poll_interval: float = 60.0
    sdk_interval: float = 1.0
    sdk_timeout: float = 600.0
    retry_pause: float = 1.0
    steady_in_flight: int = 50
    steady_warmup: float = 180.0
    steady_measure: float = 540.0
    batch_sizes: tuple[int, ...] = (20, 100, 400)
    two_in_flight: int = 25
    two_run: float = 600.0
    two_skip: float = 60.0
    drain: float = 600.0

    def scaled(self, seconds: float) -> float:
        """Real seconds as seconds of the scaled run.

        :param seconds: real (unscaled) seconds.
        """
        return seconds / self.scale


FULL_CASE = PollingCase(scale=20.0)
SMOKE_CASE = PollingCase(
    scale=100.0,
    steady_in_flight=6,
    steady_measure=300.0,
    batch_sizes=(5, 10),
    two_in_flight=3,
    two_run=300.0,
    drain=300.0,
)


def policy_available() -> bool:
    """Whether this checkout has the poll policies (``airflow_provider_aleph.polling``)."""
    return importlib.util.find_spec("airflow_provider_aleph.polling") is not None


# -- processes --------------------------------------------------------------------------------


def worker_env(base_url: str, home: Path, budget: float, policy: str | None, with_policy: bool) -> dict[str, str]:
    """Environment of a worker: its own Airflow home, our connection, and the SDK's key.

    :param base_url: the emulator's base URL.
    :param home: an empty folder for ``AIRFLOW_HOME``.
    :param budget: the connection's ``max_requests_per_minute`` (already scaled).
    :param policy: the connection's ``poll_policy``.
    :param with_policy: whether the installed provider knows ``poll_policy`` (else it is left out).
    """
    extra: dict[str, Any] = {"max_requests_per_minute": budget}
    if with_policy and policy is not None:
        extra["poll_policy"] = policy
    segmind = {"conn_type": "segmind", "host": base_url, "password": API_KEY, "extra": extra}
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        f"AIRFLOW_CONN_{CONN_ID.upper()}": json.dumps(segmind),
        "SEGMIND_API_KEY": API_KEY,
    }
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return env


class PollWorker:
    """A :mod:`benchmarks.poll_worker` process, started and ready (imports done) before the clock starts.

    :param spec: the worker's spec (side, mode, sizes, scaled intervals).
    :param env: its environment (see :func:`worker_env`).
    :param workdir: where its spec, go file, log and report go.
    :param stem: a name for its files.
    :param python: the interpreter.
    """

    def __init__(self, spec: dict[str, Any], env: dict[str, str], workdir: Path, stem: str, python: str) -> None:
        self.stem = stem
        spec_file, self.go_file = workdir / f"{stem}-spec.json", workdir / f"{stem}-go.json"
        self.out, ready = workdir / f"{stem}-report.json", workdir / f"{stem}.ready"
        for stale in (self.go_file, self.out, ready):
            stale.unlink(missing_ok=True)
        spec_file.write_text(json.dumps(spec))
        command = [python, "-m", "benchmarks.poll_worker", "--spec", str(spec_file), "--ready", str(ready)]
        command += ["--go", str(self.go_file), "--out", str(self.out), "--log", str(workdir / f"{stem}.log")]
        self.stdout_path = workdir / f"{stem}.stdout"
        with self.stdout_path.open("wb") as stdout:
            self.process = subprocess.Popen(command, env=env, cwd=REPO, stdout=stdout, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 180
        while not ready.exists():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.process.kill()
                raise RuntimeError(f"the {stem} worker did not start; see {self.stdout_path}")
            time.sleep(0.05)

    def go(self, start: float, jobs: list[dict[str, str]] | None = None) -> None:
        """Tell it when to start (monotonic clock) and, for a batch, which jobs to wait for.

        :param start: the start time.
        :param jobs: a batch's submitted jobs.
        """
        partial = self.go_file.with_name(self.go_file.name + ".partial")
        partial.write_text(json.dumps({"start": start, "jobs": jobs or []}))
        os.replace(partial, self.go_file)

    def wait(self, timeout: float) -> dict[str, Any]:
        """Wait for the process to end; its report.

        :param timeout: seconds allowed.
        """
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise RuntimeError(f"the {self.stem} worker did not finish; see {self.stdout_path}") from None
        if code != 0:
            raise RuntimeError(f"the {self.stem} worker failed with exit code {code}; see {self.stdout_path}")
        report: dict[str, Any] = json.loads(self.out.read_text())
        return report

    def kill(self) -> None:
        """Stop the process if it still runs."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(15)


def spec_for(
    case: PollingCase, side: str, policy: str | None, mode: str, base_url: str, **sizes: Any
) -> dict[str, Any]:
    """A worker's spec: the case's intervals scaled, the side and mode, and the sizes given.

    :param case: the sizes and the scale.
    :param side: ``ours`` or ``sdk``.
    :param policy: our poll policy (None for the SDK).
    :param mode: ``pool`` or ``batch``.
    :param base_url: the emulator's base URL.
    :param sizes: ``in_flight``, ``batch_size``, ``run_seconds`` and ``drain_cap`` (scaled seconds), as
        the mode needs.
    """
    return {
        "side": side,
        "policy": policy,
        "mode": mode,
        "base_url": base_url,
        "new_arguments": policy_available(),
        "poll_interval": case.scaled(case.poll_interval if side == "ours" else case.sdk_interval),
        "expected_duration": case.scaled(case.median),
        "max_poll_interval": case.scaled(case.max_poll_interval),
        "sdk_timeout": case.scaled(case.sdk_timeout),
        "retry_pause": case.scaled(case.retry_pause),
        # Far beyond any run: a trigger that times out here shows a run that could not keep up.
        "deadline": case.scaled(4 * 3600),
        "in_flight": 0,
        "batch_size": 0,
        "run_seconds": 0.0,
        **sizes,
    }


def new_emulator(case: PollingCase, workdir: Path, stem: str, limited: bool = True) -> EmulatorProcess:
    """A fresh emulator process with the case's durations and, when ``limited``, the account limit.

    :param case: the sizes and the scale.
    :param workdir: where its log goes.
    :param stem: a name for its log.
    :param limited: start with the account limit on (else it is switched on later).
    """
    options: dict[str, Any] = {"fetch_inputs": False, "latency_sigma": case.sigma}
    if limited:
        options.update(rpm_limit=case.account_rpm, rate_window=case.scaled(60.0))
    return EmulatorProcess(
        latency=case.scaled(case.median),
        api_key=API_KEY,
        options=options,
        log_path=workdir / f"{stem}-emulator.log",
        time_scale=case.scale,
    )


async def _submit_all(base_url: str, count: int) -> list[dict[str, str]]:
    headers = {"x-api-key": API_KEY}
    video = f"{base_url}/samples/sample.mp4"
    async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=120) as client:
        gate = asyncio.Semaphore(16)

        async def one(index: int) -> dict[str, str]:
            async with gate:
                response = await client.post(
                    f"/v2/{MODEL}", json={"prompt": f"make it winter #{index}", "video": video}
                )
                response.raise_for_status()
                body = response.json()
                job = {key: body[key] for key in ("request_id", "status_url", "response_url")}
                return {**job, "submitted_at": datetime.now(UTC).isoformat()}

        return await asyncio.gather(*(one(index) for index in range(count)))


# -- figures ----------------------------------------------------------------------------------


def floor_lags(completions: Sequence[float], interval: float) -> list[float]:
    """Lags of an oracle that reads each job once (a status call, then a result call) as it completes.

    The calls are served one at a time, at most one every ``interval`` seconds, in order of the
    jobs' completions (a single-server queue); a job's lag runs from its completion to the grant
    of its result call.

    :param completions: when each job completed.
    :param interval: seconds between two calls at the budget's rate (``60 / budget``).
    """
    free = -math.inf
    lags = []
    for done in sorted(completions):
        status_at = max(done, free)
        result_at = status_at + interval
        free = result_at + interval
        lags.append(result_at - done)
    return lags


def _unscaled(values: Sequence[float], scale: float) -> list[float]:
    return [round(value * scale, 3) for value in values]


def _in(value: float | None, low: float, high: float) -> bool:
    return value is not None and low <= value < high


def _task_summary(tasks: list[dict[str, Any]]) -> dict[str, Any]:
    statuses = Counter(task["status"] for task in tasks)
    by_429 = sum(1 for task in tasks if task["status"] == "error" and task["code"] == 429)
    return {
        "tasks": len(tasks),
        "statuses": dict(statuses),
        "failed": sum(count for status, count in statuses.items() if status not in ("success", "not finished")),
        "failed_by_429": by_429,
        "failed_at_submit": sum(1 for task in tasks if task["phase"] == "submit"),
    }


def pool_figures(
    case: PollingCase,
    tasks: list[dict[str, Any]],
    finished: dict[str, float],
    timeline: dict[str, list[Any]],
    start: float,
    window: tuple[float, float],
) -> dict[str, Any]:
    """What a pool run shows over ``window`` (real seconds from ``start``): throughput, calls, lag.

    Completed jobs are those whose event came within the window; calls are the API calls the
    emulator received within it (429 answers included); lags are those of the jobs that completed
    within it. Failures and 429 answers count over the whole run.

    :param case: the scale.
    :param tasks: the worker's task records.
    :param finished: the emulator's ``{request_id: completion time}``.
    :param timeline: the emulator's request timeline.
    :param start: when the pool started (monotonic clock).
    :param window: the measured window, in real seconds from the start.
    """
    low, high = start + case.scaled(window[0]), start + case.scaled(window[1])
    done = [task for task in tasks if task["status"] == "success"]
    completed = sum(1 for task in done if _in(task["ended"], low, high))
    calls = sum(
        1
        for when, kind in zip(timeline["t"], timeline["kind"], strict=True)
        if kind in API_KINDS and low <= when < high
    )
    lags, missing = [], 0
    for task in tasks:
        completion = finished.get(task["id"]) if task["id"] else None
        if not _in(completion, low, high) or completion is None:
            continue
        if task["status"] == "success":
            lags.append(task["ended"] - completion)
        elif task["status"] == "not finished":
            missing += 1
    minutes = (window[1] - window[0]) / 60
    return {
        **_task_summary(tasks),
        "window_seconds": list(window),
        "completed": completed,
        "jobs_per_minute": completed / minutes,
        "calls": calls,
        "calls_per_job": calls / completed if completed else None,
        "answers_429": sum(1 for code in timeline["code"] if code == 429),
        "calls_total": sum(1 for kind in timeline["kind"] if kind in API_KINDS),
        "lags": _unscaled(sorted(lags), case.scale),
        "lag_p50": _times(percentile(lags, 50), case.scale),
        "lag_p99": _times(percentile(lags, 99), case.scale),
        "lag_max": _times(max(lags, default=None), case.scale),
        "lag_missing": missing,
    }


def _times(value: float | None, scale: float) -> float | None:
    return None if value is None else value * scale


def rate_series(
    case: PollingCase, timeline: dict[str, list[Any]], start: float, bucket: float = 10.0
) -> dict[str, Any]:
    """API calls per real minute from ``start``, in buckets of ``bucket`` real seconds (answered, and
    answered 429), and the calls within the sliding minute before each half bucket (what the account's
    limiter counts, refused calls included).

    :param case: the scale.
    :param timeline: the emulator's request timeline.
    :param start: the run's start (monotonic clock).
    :param bucket: the bucket length, in real seconds.
    """
    answered: Counter[int] = Counter()
    refused: Counter[int] = Counter()
    times = []
    for when, kind, code in zip(timeline["t"], timeline["kind"], timeline["code"], strict=True):
        real = (when - start) * case.scale
        if kind not in API_KINDS or real < 0:
            continue
        times.append(real)
        (refused if code == 429 else answered)[math.floor(real / bucket)] += 1
    times.sort()
    buckets = range(max([*answered, *refused], default=-1) + 1)
    per_minute = 60 / bucket
    grid = [step * bucket / 2 for step in range(math.ceil(2 * max(times, default=0.0) / bucket) + 2)]
    return {
        "bucket_seconds": bucket,
        "starts": [index * bucket for index in buckets],
        "answered_per_minute": [answered[index] * per_minute for index in buckets],
        "refused_per_minute": [refused[index] * per_minute for index in buckets],
        "window_at": grid,
        "calls_in_last_minute": [
            bisect.bisect_right(times, moment) - bisect.bisect_right(times, moment - 60.0) for moment in grid
        ],
    }


# -- scenarios --------------------------------------------------------------------------------


def steady(case: PollingCase, name: str, side: str, policy: str | None, workdir: Path, python: str) -> dict[str, Any]:
    """Scenario 1 for one side: a pool of ``steady_in_flight`` jobs on a fresh emulator.

    :param case: the sizes and the scale.
    :param name: the side's name in the results.
    :param side: ``ours`` or ``sdk``.
    :param policy: our poll policy.
    :param workdir: where the files go.
    :param python: the interpreter of the worker.
    """
    stem = f"steady-{name}"
    run = case.steady_warmup + case.steady_measure
    with new_emulator(case, workdir, stem) as emulator:
        spec = spec_for(
            case,
            side,
            policy,
            "pool",
            emulator.base_url,
            in_flight=case.steady_in_flight,
            run_seconds=case.scaled(run),
            drain_cap=case.scaled(case.drain),
        )
        env = worker_env(emulator.base_url, _home(workdir), case.scale * case.account_rpm, policy, policy_available())
        worker = PollWorker(spec, env, workdir, stem, python)
        try:
            start = time.monotonic() + 0.2
            worker.go(start)
            report = worker.wait(case.scaled(run + case.drain) + 120)
        finally:
            worker.kill()
        timeline, finished = emulator.timeline(), emulator.finished_times()
    figures = pool_figures(case, report["tasks"], finished, timeline, start, (case.steady_warmup, run))
    rates = rate_series(case, timeline, start)
    return {"side": name, "budget": case.account_rpm, "cpu_seconds": report["cpu_seconds"], **figures, "rates": rates}


def batch(
    case: PollingCase, size: int, name: str, side: str, policy: str | None, workdir: Path, python: str
) -> dict[str, Any]:
    """Scenario 2 for one side and size: ``size`` jobs submitted at once, then waited for.

    The jobs are submitted with the emulator's limit off, then the limit is switched on (its window
    empty) and the worker starts waiting for all of them at once.

    :param case: the sizes and the scale.
    :param size: jobs in the batch.
    :param name: the side's name in the results.
    :param side: ``ours`` or ``sdk``.
    :param policy: our poll policy.
    :param workdir: where the files go.
    :param python: the interpreter of the worker.
    """
    stem = f"batch-{size}-{name}"
    budget = case.default_budget
    # Generous: the longest jobs take about 2.5 medians; reading each job twice at the budget's rate
    # takes 2 * size * 60 / budget.
    cap = case.drain + 4 * case.median + 4 * size * 60 / budget
    with new_emulator(case, workdir, stem, limited=False) as emulator:
        spec = spec_for(case, side, policy, "batch", emulator.base_url, batch_size=size, drain_cap=case.scaled(cap))
        env = worker_env(emulator.base_url, _home(workdir), case.scale * budget, policy, policy_available())
        worker = PollWorker(spec, env, workdir, stem, python)
        try:
            jobs = asyncio.run(_submit_all(emulator.base_url, size))
            emulator.configure(rpm_limit=case.account_rpm, rate_window=case.scaled(60.0))
            start = time.monotonic()
            worker.go(start, jobs)
            report = worker.wait(case.scaled(cap) + 120)
        finally:
            worker.kill()
        counts, finished, timeline = emulator.counts()["by_request"], emulator.finished_times(), emulator.timeline()
    ids = [job["request_id"] for job in jobs]
    # One submit each (the emulator counts submits by kind only: their path names no request id).
    calls = size + sum(counts.get(rid, {}).get("status", 0) + counts.get(rid, {}).get("result", 0) for rid in ids)
    lags = []
    for task in report["tasks"]:
        if task["status"] == "success":
            lags.append(task["ended"] - finished[task["id"]])
    floor = floor_lags([finished[rid] for rid in ids], 60 / (case.scale * budget))
    return {
        "side": name,
        "jobs": size,
        "budget": budget,
        **_task_summary(report["tasks"]),
        "completed": len(lags),
        "calls": calls,
        "calls_per_job": calls / size,
        "answers_429": sum(1 for code in timeline["code"] if code == 429),
        "lags": _unscaled(sorted(lags), case.scale),
        "lag_p50": _times(percentile(lags, 50), case.scale),
        "lag_p99": _times(percentile(lags, 99), case.scale),
        "floor_lags": _unscaled(sorted(floor), case.scale),
        "floor_p50": _times(percentile(floor, 50), case.scale),
        "floor_p99": _times(percentile(floor, 99), case.scale),
        "wall_seconds": report["end"] - start,
        "cpu_seconds": report["cpu_seconds"],
    }


def two_processes(case: PollingCase, workdir: Path, python: str) -> dict[str, Any]:
    """Scenario 3: two of ours (adaptive), each its own budget at the account's limit, one account.

    :param case: the sizes and the scale.
    :param workdir: where the files go.
    :param python: the interpreter of the workers.
    """
    with new_emulator(case, workdir, "two") as emulator:
        workers = []
        try:
            for index in (1, 2):
                spec = spec_for(
                    case,
                    "ours",
                    "adaptive",
                    "pool",
                    emulator.base_url,
                    in_flight=case.two_in_flight,
                    run_seconds=case.scaled(case.two_run),
                    drain_cap=case.scaled(case.drain),
                )
                home = _home(workdir, f"airflow-home-{index}")
                env = worker_env(emulator.base_url, home, case.scale * case.account_rpm, "adaptive", policy_available())
                workers.append(PollWorker(spec, env, workdir, f"two-{index}", python))
            start = time.monotonic() + 0.2
            for worker in workers:
                worker.go(start)
            reports = [worker.wait(case.scaled(case.two_run + case.drain) + 120) for worker in workers]
        finally:
            for worker in workers:
                worker.kill()
        timeline, finished = emulator.timeline(), emulator.finished_times()
    skip = start + case.scaled(case.two_skip)
    after = [
        code
        for when, kind, code in zip(timeline["t"], timeline["kind"], timeline["code"], strict=True)
        if kind in API_KINDS and when >= skip
    ]
    refused = sum(1 for code in after if code == 429)
    processes = [
        {
            **pool_figures(case, report["tasks"], finished, timeline, start, (case.two_skip, case.two_run)),
            "cpu_seconds": report["cpu_seconds"],
        }
        for report in reports
    ]
    lags = [lag for process in processes for lag in process["lags"]]
    return {
        "in_flight_each": case.two_in_flight,
        "budget_each": case.account_rpm,
        "run_seconds": case.two_run,
        "skip_seconds": case.two_skip,
        "calls_after_skip": len(after),
        "answers_429_after_skip": refused,
        "share_429_after_skip": refused / len(after) if after else None,
        "failed": sum(process["failed"] for process in processes),
        "failed_by_429": sum(process["failed_by_429"] for process in processes),
        "completed": sum(process["completed"] for process in processes),
        "lag_max": max(lags, default=None),
        "lag_p99": percentile(lags, 99),
        "processes": processes,
        "rates": rate_series(case, timeline, start),
    }


def _home(workdir: Path, name: str = "airflow-home") -> Path:
    home = workdir / name
    home.mkdir(exist_ok=True)
    return home


# -- plots ------------------------------------------------------------------------------------


def plot_all(results: dict[str, Any], folder: Path) -> dict[str, str]:
    """Draw the figures next to the README; their file names.

    :param results: what :func:`run_all` measured.
    :param folder: where the PNG files go.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    case = results["case"]
    scale, limit = case["scale"], case["account_rpm"]
    faster = f"run {scale:g}\N{MULTIPLICATION SIGN} faster, shown in real seconds"
    written = {}

    # Lag CDFs: the steady run, then each batch size.
    panels: list[tuple[str, list[dict[str, Any]], bool]] = [
        (f"Steady pool, {case['steady_in_flight']} jobs in flight", results["steady"], False)
    ]
    for size in sorted({row["jobs"] for row in results["batch"]}):
        rows = [row for row in results["batch"] if row["jobs"] == size]
        panels.append((f"Batch of {size} jobs submitted at once", rows, True))
    columns = 2
    lines = math.ceil(len(panels) / columns)
    figure, axes = plt.subplots(lines, columns, figsize=(12, 5.4 * lines), squeeze=False, layout="constrained")
    for axis, (title, rows, with_floor) in zip(axes.flat, panels, strict=False):
        for row in rows:
            _cdf(axis, row["lags"], _legend(row), COLORS[row["side"]], "-")
        if with_floor:
            adaptive = next((row for row in rows if row["side"] == "adaptive"), rows[0])
            floor = f"floor: one read per job at completion, p99 {adaptive['floor_p99']:,.0f} s"
            _cdf(axis, adaptive["floor_lags"], floor, "black", "--")
        _log_seconds(axis)
        axis.set_title(title)
        axis.set_xlabel("lag from completion to event, s (real time, log scale)")
        axis.set_ylabel("share of the completed jobs")
        axis.set_ylim(0, 1.02)
        # Below the axes: inside, it would hide some curve in one panel or another.
        axis.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2)
    for axis in list(axes.flat)[len(panels) :]:
        axis.set_visible(False)
    figure.suptitle(f"Completion-to-event lag, cumulative ({faster})")
    figure.savefig(folder / LAG_PLOT, dpi=100)
    plt.close(figure)
    written["lag"] = LAG_PLOT

    # API calls per minute of the steady run, one panel per side (the SDK's calls are another scale).
    steady_rows = results["steady"]
    figure, axes = plt.subplots(1, len(steady_rows), figsize=(5.2 * len(steady_rows), 4.6), squeeze=False)
    for axis, row in zip(axes[0], steady_rows, strict=True):
        _rates(axis, row["rates"], limit, COLORS[row["side"]])
        axis.axvline(case["steady_warmup"], color="dimgrey", linestyle=":", linewidth=1.5, label="end of the warm-up")
        axis.set_title(SIDE_LABELS[row["side"]].replace("`", ""), fontsize=10)
        axis.legend(fontsize=7, loc="lower center", framealpha=0.9)
    figure.suptitle(f"Steady pool: API calls per minute, 10 s buckets ({faster}); account limit {limit} calls a minute")
    figure.tight_layout()
    figure.savefig(folder / STEADY_PLOT, dpi=100)
    plt.close(figure)
    written["steady"] = STEADY_PLOT

    two = results["two"]
    figure, axis = plt.subplots(figsize=(10, 5))
    axis.axvspan(0, two["skip_seconds"], color="grey", alpha=0.15, label="first minute, left out of the 429 share")
    _rates(axis, two["rates"], limit, COLORS["adaptive"])
    axis.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=3)
    axis.set_title(
        f"Two processes of ours (adaptive), {two['in_flight_each']} jobs in flight and a budget of "
        f"{two['budget_each']}/min each, one account\nAPI calls per minute, both processes, "
        f"10 s buckets ({faster})",
        fontsize=10,
    )
    figure.tight_layout()
    figure.savefig(folder / TWO_PLOT, dpi=100)
    plt.close(figure)
    written["two"] = TWO_PLOT
    return written


COLORS = {"adaptive": "tab:blue", "fixed": "tab:orange", "sdk": "tab:green"}


def _legend(row: dict[str, Any]) -> str:
    label = SIDE_LABELS[row["side"]].replace("`", "")
    if not row["lags"]:
        return f"{label}: no job completed"
    return f"{label}: p99 {row['lag_p99']:,.0f} s"


def _log_seconds(axis: Any) -> None:
    """A log-scale x axis of seconds, labelled 1, 2, 5, 10, 20, 50, ... rather than powers of ten."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    axis.set_xscale("log")
    axis.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    axis.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:,.10g}"))
    axis.xaxis.set_minor_formatter(NullFormatter())
    axis.grid(True, which="major", alpha=0.35)


def _cdf(axis: Any, values: list[float], label: str, color: str, style: str) -> None:
    if not values:
        axis.plot([], [], color=color, linestyle=style, label=label)
        return
    ordered = sorted(max(value, 1e-3) for value in values)
    shares = [(index + 1) / len(ordered) for index in range(len(ordered))]
    axis.step(ordered, shares, where="post", color=color, linestyle=style, label=label)


def _rates(axis: Any, rates: dict[str, Any], limit: float, color: str) -> None:
    starts, width = rates["starts"], rates["bucket_seconds"]
    answered, refused = rates["answered_per_minute"], rates["refused_per_minute"]
    axis.bar(starts, answered, width=width, align="edge", color=color, alpha=0.75, label="calls answered")
    axis.bar(starts, refused, width=width, align="edge", bottom=answered, color="tab:red", label="calls answered 429")
    # What the account's limiter sees: the calls in the sliding minute before each moment.
    axis.plot(
        rates["window_at"], rates["calls_in_last_minute"], color="black", linewidth=1, label="calls in the last 60 s"
    )
    axis.axhline(limit, color="tab:red", linestyle="--", linewidth=1.2, label=f"account limit, {limit:g} a minute")
    axis.set_xlabel("time since the start, s (real time)")
    axis.set_ylabel("API calls per minute")
    axis.set_xlim(left=0)
    axis.grid(True, alpha=0.3)


# -- the whole measurement --------------------------------------------------------------------


def run_all(
    case: PollingCase,
    workdir: Path,
    plots: Path,
    log: Callable[[str], None] = print,
    python: str = sys.executable,
) -> dict[str, Any]:
    """Every scenario for every side, then the figures; the results.

    :param case: the sizes and the scale.
    :param workdir: where the runs' files go.
    :param plots: the folder the PNG files are written to (the README's).
    :param log: prints progress.
    :param python: the interpreter of the workers.
    """
    available = policy_available()
    if not available:
        log("  polling: airflow_provider_aleph.polling is not here: both of our sides run today's code")
    results: dict[str, Any] = {"case": asdict(case), "policy_available": available, "steady": [], "batch": []}
    for name, side, policy in SIDES:
        started = time.monotonic()
        row = steady(case, name, side, policy, workdir, python)
        results["steady"].append(row)
        log(
            f"  polling steady {name}: {row['completed']} completed in the window, {row['tasks']} tasks, "
            f"{row['answers_429']} 429s, {time.monotonic() - started:.0f}s"
        )
    for size in case.batch_sizes:
        for name, side, policy in SIDES:
            started = time.monotonic()
            row = batch(case, size, name, side, policy, workdir, python)
            results["batch"].append(row)
            log(
                f"  polling batch {size} {name}: {row['completed']} of {size} completed, "
                f"{row['calls_per_job']:.1f} calls/job, {time.monotonic() - started:.0f}s"
            )
    started = time.monotonic()
    results["two"] = two_processes(case, workdir, python)
    log(f"  polling two processes: {results['two']['completed']} completed, {time.monotonic() - started:.0f}s")
    results["plots"] = plot_all(results, plots)
    return results
