"""Measurement 2: many triggers on one event loop, ours against the HTTP provider's ``HttpEventTrigger``.

For each size N, a fresh emulator process (latency L) gets N jobs; then one trigger process
(:mod:`benchmarks.trigger_worker`) runs N triggers on one event loop until each has fired. The same
is done with the anchor, against the same status URLs, in the same run. A third process holds N
idle tasks the same way (the *floor*): what the runner alone costs in memory.

Measured: CPU seconds of the trigger process per 1,000 polls (a poll is one GET the triggers made,
counted by the emulator), its RSS growth per trigger (peak minus the RSS before the first trigger),
and the lag from each job's completion in the emulator to its event in the trigger process (both
on the machine's monotonic clock). The emulator's own CPU is read from ``/proc`` to show it was not
the bottleneck. A short side measurement gives the CPU per GET of the HTTP clients underneath.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from benchmarks.emulator_proc import EmulatorProcess
from benchmarks.procstat import cpu_seconds
from benchmarks.stats import percentile

API_KEY = "bench-scale-key-0123456789"
ALEPH = "runway-gen4-aleph"
#: Requests per minute allowed by our connection's budget: high, so the budget never throttles here.
UNTHROTTLED_RPM = 10**7
REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class ScaleCase:
    """One size of the triggerer benchmark.

    :param triggers: how many triggers run on the one event loop.
    :param poll: seconds between polls of each trigger.
    :param latency: seconds from submit to completion of each job (several polls' worth).
    """

    triggers: int
    poll: float
    latency: float


#: Poll intervals keep each process at about 500 polls a second at most, so that the machine
#: (2 cores: trigger process + emulator) is not what is measured; each trigger polls about 6 times.
FULL_CASES = (ScaleCase(100, 1.0, 6.0), ScaleCase(1000, 2.0, 12.0), ScaleCase(5000, 10.0, 60.0))
SMOKE_CASES = (ScaleCase(20, 0.5, 2.0),)


async def _submit_all(base_url: str, count: int, video: str) -> list[dict[str, str]]:
    headers = {"x-api-key": API_KEY}
    async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=120) as client:
        gate = asyncio.Semaphore(16)

        async def one(index: int) -> dict[str, str]:
            async with gate:
                payload = {"prompt": f"make it winter #{index}", "video": video}
                # The operator records the submit time and hands it to its trigger.
                submitted_at = datetime.now(UTC).isoformat()
                response = await client.post(f"/v2/{ALEPH}", json=payload)
                response.raise_for_status()
                body = response.json()
                job = {key: body[key] for key in ("request_id", "status_url", "response_url")}
                return {**job, "submitted_at": submitted_at}

        return await asyncio.gather(*(one(index) for index in range(count)))


def submit_jobs(emulator: EmulatorProcess, count: int) -> list[dict[str, str]]:
    """Submit ``count`` Aleph jobs to the emulator; return their ids and URLs.

    :param emulator: the running emulator.
    :param count: how many jobs.
    """
    return asyncio.run(_submit_all(emulator.base_url, count, f"{emulator.base_url}/samples/sample.mp4"))


def worker_env(base_url: str, home: Path) -> dict[str, str]:
    """Environment of a trigger process: its own Airflow home and both connections.

    :param base_url: the emulator's base URL.
    :param home: an empty folder for ``AIRFLOW_HOME``.
    """
    segmind = {
        "conn_type": "segmind",
        "host": base_url,
        "password": API_KEY,
        "extra": {"max_requests_per_minute": UNTHROTTLED_RPM},
    }
    # The anchor sends the key as a header taken from its connection's extra, as a user would set it.
    http = {"conn_type": "http", "host": base_url, "extra": {"x-api-key": API_KEY}}
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW_CONN_SEGMIND_BENCH": json.dumps(segmind),
        "AIRFLOW_CONN_HTTP_BENCH": json.dumps(http),
    }
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    # The anchor re-imports its response check on every poll: let it use cached bytecode, as a
    # deployment does (``make`` exports PYTHONDONTWRITEBYTECODE, which would make it compile each time).
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


class WorkerProcess:
    """A trigger process (:mod:`benchmarks.trigger_worker`) started ahead of the jobs it waits for.

    :param kind: ``ours``, ``anchor`` or ``floor``.
    :param case: the size, poll interval and latency.
    :param base_url: the emulator's base URL.
    :param workdir: where the job list, logs and report go.
    :param python: the interpreter.
    """

    def __init__(
        self, kind: str, case: ScaleCase, base_url: str, workdir: Path, python: str, profile: Path | None = None
    ) -> None:
        stem = f"{kind}-{case.triggers}" + ("-profiled" if profile else "")
        self.jobs_file, self.out = workdir / f"{stem}-jobs.json", workdir / f"{stem}-report.json"
        ready = workdir / f"{stem}.ready"
        for stale in (self.jobs_file, self.out, ready):
            stale.unlink(missing_ok=True)
        # Every trigger gives up past this: a run that cannot keep up still ends, with timeouts counted.
        self.timeout = case.latency + 4 * case.poll + 30
        command = [python, "-m", "benchmarks.trigger_worker", "--kind", kind, "--jobs", str(self.jobs_file)]
        command += ["--ready", str(ready), "--poll", str(case.poll), "--timeout", str(self.timeout)]
        # Ours is built as the Aleph operator builds it, its duration hint the emulated jobs' latency (as
        # 169 s is Aleph's): the anchor polls at its interval whatever it knows.
        command += ["--expected", str(case.latency)]
        command += ["--hold", str(case.poll + 1), "--out", str(self.out), "--log", str(workdir / f"{stem}.log")]
        if profile is not None:
            command += ["--profile", str(profile)]
        home = workdir / "airflow-home"
        home.mkdir(exist_ok=True)
        self.stdout_path = workdir / f"{stem}.stdout"
        with self.stdout_path.open("wb") as stdout:
            self.process = subprocess.Popen(
                command, env=worker_env(base_url, home), cwd=REPO, stdout=stdout, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + 180
        while not ready.exists():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.process.kill()
                raise RuntimeError(f"the {kind} trigger process did not start; see {self.stdout_path}")
            time.sleep(0.05)

    def run(self, jobs: list[dict[str, str]]) -> dict[str, Any]:
        """Hand over the jobs, wait for the process to finish, return its report.

        :param jobs: the submitted jobs.
        """
        partial = self.jobs_file.with_name(self.jobs_file.name + ".partial")
        partial.write_text(json.dumps(jobs))
        os.replace(partial, self.jobs_file)
        try:
            code = self.process.wait(self.timeout + 300)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise RuntimeError(f"the trigger process did not finish; see {self.stdout_path}") from None
        if code != 0:
            raise RuntimeError(f"the trigger process failed with exit code {code}; see {self.stdout_path}")
        report: dict[str, Any] = json.loads(self.out.read_text())
        return report


def measure(case: ScaleCase, kind: str, workdir: Path, python: str = sys.executable) -> dict[str, Any]:
    """One kind at one size, against a fresh emulator process; the row of the results table.

    :param case: the size, poll interval and latency.
    :param kind: ``ours`` or ``anchor``.
    :param workdir: where files of the run go.
    :param python: the interpreter of the trigger process.
    """
    with EmulatorProcess(
        latency=case.latency, api_key=API_KEY, options={"fetch_inputs": False}, python=python
    ) as emulator:
        worker = WorkerProcess(kind, case, emulator.base_url, workdir, python)
        jobs = submit_jobs(emulator, case.triggers)
        emulator_cpu_before = emulator.cpu_seconds()
        report = worker.run(jobs)
        emulator_cpu = emulator.cpu_seconds() - emulator_cpu_before
        counts = emulator.counts()["by_request"]
        finished = emulator.finished_times()
    ids = [job["request_id"] for job in jobs]
    polls = sum(counts.get(rid, {}).get("status", 0) + counts.get(rid, {}).get("result", 0) for rid in ids)
    succeeded = report["statuses"].get("success", 0)
    lags = sorted(report["events"][rid] - finished[rid] for rid in ids if rid in report["events"])
    wall = report["wall_seconds"]
    return {
        **asdict(case),
        "kind": kind,
        "succeeded": succeeded,
        "statuses": report["statuses"],
        "polls": polls,
        "polls_per_trigger": polls / case.triggers,
        "cpu_seconds": report["cpu_seconds"],
        "cpu_per_1000_polls": 1000 * report["cpu_seconds"] / polls if polls else None,
        "rss_per_trigger_kib": (report["peak_rss"] - report["baseline_rss"]) / case.triggers / 1024,
        "lag_p50": percentile(lags, 50),
        "lag_p99": percentile(lags, 99),
        "wall_seconds": wall,
        "emulator_cpu_seconds": emulator_cpu,
        "emulator_core_share": emulator_cpu / wall if wall else None,
        "greenback": report["greenback"],
    }


#: Where a file's functions count in the profile of a poll, by the first matching part of its path.
PROFILE_AREAS = (
    ("our package (airflow_provider_aleph)", ("airflow_provider_aleph",)),
    ("HTTP client (httpx, httpcore, h11, anyio)", ("httpx", "httpcore", "/h11/", "anyio", "sniffio")),
    ("event loop and sockets (asyncio, selectors, ssl, socket)", ("asyncio", "selectors", "socket", "ssl")),
    ("the triggerer's wrapping (greenback, greenlet)", ("greenback", "greenlet")),
    ("logging", ("logging", "structlog")),
)


def area_of(filename: str) -> str:
    """The area of :data:`PROFILE_AREAS` a profiled function's file belongs to ("other" when none)."""
    for area, parts in PROFILE_AREAS:
        if any(part in filename for part in parts):
            return area
    if filename == "~":
        return "built-ins called from elsewhere"
    return "other"


def profile_polls(case: ScaleCase, workdir: Path, python: str = sys.executable) -> dict[str, Any]:
    """Where a poll's CPU time goes: ours at ``case`` under cProfile (a run of its own, slower than unprofiled).

    :param case: the size.
    :param workdir: where files of the run go.
    :param python: the interpreter.
    """
    import pstats

    stats_path = workdir / f"ours-{case.triggers}.pstats"
    with EmulatorProcess(
        latency=case.latency, api_key=API_KEY, options={"fetch_inputs": False}, python=python
    ) as emulator:
        worker = WorkerProcess("ours", case, emulator.base_url, workdir, python, profile=stats_path)
        jobs = submit_jobs(emulator, case.triggers)
        worker.run(jobs)
        counts = emulator.counts()["by_request"]
    polls = sum(sum(counts.get(job["request_id"], {}).get(k, 0) for k in ("status", "result")) for job in jobs)
    raw: dict[tuple[str, int, str], tuple[int, int, float, float, Any]] = pstats.Stats(str(stats_path)).stats  # type: ignore[attr-defined]
    total = sum(entry[2] for entry in raw.values()) or 1.0
    areas: dict[str, float] = {}
    for (filename, _, _), entry in raw.items():
        areas[area_of(filename)] = areas.get(area_of(filename), 0.0) + entry[2]
    top = sorted(raw.items(), key=lambda item: item[1][2], reverse=True)[:8]
    return {
        "triggers": case.triggers,
        "polls": polls,
        "profiled_ms_per_poll": 1000 * total / polls if polls else None,
        "areas": {area: seconds / total for area, seconds in sorted(areas.items(), key=lambda kv: -kv[1])},
        "top": [
            {"function": f"{Path(filename).name}:{line} {name}", "share": entry[2] / total}
            for (filename, line, name), entry in top
        ],
    }


def measure_floor(case: ScaleCase, workdir: Path, python: str = sys.executable) -> dict[str, Any]:
    """RSS per task of the runner alone: N tasks that only sleep, wrapped as the triggerer wraps them.

    :param case: the size.
    :param workdir: where files of the run go.
    :param python: the interpreter.
    """
    jobs = [{"request_id": f"floor-{index}", "status_url": "", "response_url": ""} for index in range(case.triggers)]
    report = WorkerProcess("floor", case, "http://127.0.0.1:9", workdir, python).run(jobs)
    return {
        "triggers": case.triggers,
        "rss_per_task_kib": (report["peak_rss"] - report["baseline_rss"]) / case.triggers / 1024,
        "greenback": report["greenback"],
    }


async def _client_floor(url: str, requests: int) -> dict[str, float]:
    import aiohttp

    headers = {"x-api-key": API_KEY}
    results: dict[str, float] = {}

    async def timed(name: str, one: Any) -> None:
        gate = asyncio.Semaphore(4)

        async def gated() -> None:
            async with gate:
                await one()

        before = cpu_seconds()
        await asyncio.gather(*(gated() for _ in range(requests)))
        results[name] = 1000 * (cpu_seconds() - before) / requests

    async with httpx.AsyncClient(headers=headers) as client:

        async def httpx_shared() -> None:
            (await client.get(url)).json()

        await timed("httpx_shared_client_ms", httpx_shared)
    async with aiohttp.ClientSession(headers=headers) as session:

        async def aiohttp_shared() -> None:
            async with session.get(url) as response:
                await response.json()

        await timed("aiohttp_shared_session_ms", aiohttp_shared)

    async def aiohttp_per_request() -> None:
        async with aiohttp.ClientSession(headers=headers) as fresh, fresh.get(url) as response:
            await response.json()

    await timed("aiohttp_session_per_request_ms", aiohttp_per_request)
    return results


def measure_client_floor(requests: int, python: str = sys.executable) -> dict[str, float]:
    """CPU milliseconds per status GET of the bare HTTP clients, 4 in flight, in this process.

    :param requests: GETs per client.
    :param python: the interpreter of the emulator process.
    """
    with EmulatorProcess(latency=3600, api_key=API_KEY, options={"fetch_inputs": False}, python=python) as emulator:
        job = submit_jobs(emulator, 1)[0]
        return asyncio.run(_client_floor(job["status_url"], requests))


def anchor_missing() -> str | None:
    """Why the anchor cannot run here (an HTTP provider without ``HttpEventTrigger``), or None."""
    try:
        from airflow.providers.http.triggers.http import HttpEventTrigger  # noqa: F401
    except ImportError as exc:
        return f"apache-airflow-providers-http has no HttpEventTrigger here ({exc})"
    return None


def run_all(cases: tuple[ScaleCase, ...], workdir: Path, log: Any = print) -> dict[str, Any]:
    """Every size, ours then the anchor, then the floor and the client side measurement.

    :param cases: the sizes to run.
    :param workdir: where files of the runs go.
    :param log: prints progress.
    """
    rows = []
    floors = []
    missing = anchor_missing()
    if missing:
        log(f"  triggers: anchor skipped: {missing}")
    kinds = ("ours",) if missing else ("ours", "anchor")
    for case in cases:
        for kind in kinds:
            started = time.monotonic()
            row = measure(case, kind, workdir)
            log(
                f"  triggers {kind} N={case.triggers}: {row['succeeded']} succeeded, "
                f"{row['polls']} polls, {time.monotonic() - started:.0f}s"
            )
            rows.append(row)
        floors.append(measure_floor(case, workdir))
    client_floor = measure_client_floor(300 if cases[-1].triggers < 100 else 3000)
    # The profile runs at the middle size: enough polls to be representative, short enough to add little.
    profiled = cases[len(cases) // 2]
    started = time.monotonic()
    profile = profile_polls(profiled, workdir)
    log(f"  triggers ours N={profiled.triggers} under cProfile: {time.monotonic() - started:.0f}s")
    return {
        "rows": rows,
        "floors": floors,
        "client_floor": client_floor,
        "anchor_missing": missing,
        "profile": profile,
    }
