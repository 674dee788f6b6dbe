"""One side of the polling benchmark, in a process of its own: jobs waited for under the account's budget.

``python -m benchmarks.poll_worker --spec spec.json --ready ready --go go.json --out report.json --log log``

Sides (``side`` in the spec):

- ``ours``: one asyncio event loop, as in Airflow's triggerer. Each job is waited for by a
  :class:`~airflow_provider_aleph.triggers.segmind.SegmindRequestTrigger` run as its own task,
  wrapped the way the triggerer wraps it (a greenback portal where the installed Airflow uses
  one), until its first event. The connection (``AIRFLOW_CONN_SEGMIND_POLL``, set by the caller)
  chooses the poll policy and the budget. The submits of the pool go through the same per-loop
  share of the connection as the triggers (:func:`~airflow_provider_aleph.shared.acquire_shared`,
  acquired once and released once), so they draw on the same budget.
- ``sdk``: Segmind's official client, one thread per job, ``submit_async(...)`` then ``.wait()``
  with its default poll interval divided by the time scale; the key comes from ``SEGMIND_API_KEY``.

Modes (``mode`` in the spec):

- ``pool``: ``in_flight`` slots, each submitting a job, waiting for it, and submitting the next as
  soon as it ends (after ``retry_pause`` seconds when it ended in failure, so a side whose every
  call is refused does not spin). Slots start submitting at the start time in the go file and stop
  ``run_seconds`` later. The process then drains: it waits until every job of its own that the
  emulator shows finished before the stop has had its event (read from ``/_bench/finished``), or
  ``drain_cap`` seconds, and cancels what still waits.
- ``batch``: the go file lists jobs submitted by the caller (``batch_size`` of them, for the SDK's
  threads made in advance); each is waited for from the start time, all at once, until every one
  has ended or ``drain_cap`` seconds have passed.

The report lists every task (one per submit attempt): when it was submitted and when it ended, on
the machine's monotonic clock, its request id (None when the submit failed), how it ended
(``success``, ``failed``, ``error``, ``timeout``, ``not finished``), the HTTP status behind an
error, and whether it failed at the submit or while waiting.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import logging
import os
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from benchmarks.procstat import cpu_seconds

if TYPE_CHECKING:
    from collections.abc import Callable

    from airflow.triggers.base import BaseTrigger

CONN_ID = "segmind_poll"
MODEL = "runway-gen4-aleph"
SIDES = ("ours", "sdk")
MODES = ("pool", "batch")
_GREENBACK = importlib.util.find_spec("greenback") is not None
if _GREENBACK:
    import greenback


def new_task(submitted: float) -> dict[str, Any]:
    """A task record, before its outcome is known.

    :param submitted: when its submit started (monotonic clock).
    """
    return {"id": None, "submitted": submitted, "ended": None, "status": "not finished", "code": None, "phase": None}


def payload(number: int, video: str) -> dict[str, Any]:
    """The model input of the ``number``-th job.

    :param number: the job's number in this process.
    :param video: the input video's URL.
    """
    return {"prompt": f"make it winter #{number}", "video": video}


class Drain:
    """Tells when the jobs that finished before the stop have all had their event.

    :param base_url: the emulator's base URL (its ``/_bench/finished`` route is read).
    :param stop: the clock reading from which no job is submitted.
    """

    def __init__(self, base_url: str, stop: float) -> None:
        self.url = f"{base_url}/_bench/finished"
        self.stop = stop

    def done(self, tasks: list[dict[str, Any]], finished: dict[str, float]) -> bool:
        """Whether every task whose job finished before the stop has ended.

        :param tasks: the process's task records.
        :param finished: the emulator's ``{request_id: terminal time}``.
        """
        for task in tasks:
            rid = task["id"]
            if task["ended"] is None and rid is not None and finished.get(rid, float("inf")) <= self.stop:
                return False
        return True


# -- ours -------------------------------------------------------------------------------------


def trigger_builder(spec: dict[str, Any]) -> Callable[[dict[str, str]], BaseTrigger]:
    """A function ``(job) -> SegmindRequestTrigger`` for the spec; ``job`` holds ``request_id``,
    ``status_url``, ``response_url`` and ``submitted_at`` (ISO-8601, when the submit was answered),
    which the operator passes too.

    :param spec: the run's spec (poll interval, the new policy arguments when ``new_arguments``).
    """
    from airflow_provider_aleph.triggers.segmind import SegmindRequestTrigger

    deadline = (datetime.now(UTC) + timedelta(seconds=spec["deadline"])).isoformat()
    extra: dict[str, Any] = {}
    if spec["new_arguments"]:
        extra = {
            "model": MODEL,
            "expected_duration": spec["expected_duration"],
            "max_poll_interval": spec["max_poll_interval"],
        }

    def build(job: dict[str, str]) -> BaseTrigger:
        return SegmindRequestTrigger(
            request_id=job["request_id"],
            segmind_conn_id=CONN_ID,
            deadline=deadline,
            poll_interval=spec["poll_interval"],
            status_url=job["status_url"],
            response_url=job["response_url"],
            submitted_at=job["submitted_at"],
            **extra,
        )

    return build


async def run_trigger(trigger: BaseTrigger) -> tuple[float, dict[str, Any]]:
    """Run one trigger to its first event, as the triggerer does; return when, and its payload.

    :param trigger: the trigger.
    """
    if _GREENBACK:
        await greenback.ensure_portal()
    async for event in trigger.run():
        body = event.payload if isinstance(event.payload, dict) else {"status": "?"}
        return time.monotonic(), body
    return time.monotonic(), {"status": "no event"}


async def wait_ours(task: dict[str, Any], trigger: BaseTrigger) -> None:
    """Wait for one job with its trigger and note how it ended in ``task``.

    :param task: the job's record, updated in place.
    :param trigger: the job's trigger.
    """
    task["phase"] = "wait"
    try:
        task["ended"], body = await run_trigger(trigger)
    except Exception as exc:
        task.update(ended=time.monotonic(), status=f"raised {type(exc).__name__}")
        return
    task["status"] = str(body.get("status", "?"))
    task["code"] = body.get("status_code")


async def ours_pool(spec: dict[str, Any], start: float, tasks: list[dict[str, Any]]) -> None:
    """Keep ``in_flight`` jobs waited for by triggers from ``start`` for ``run_seconds``, then drain.

    :param spec: the run's spec.
    :param start: when to start submitting (monotonic clock).
    :param tasks: where the task records go.
    """
    from airflow_provider_aleph.exceptions import SegmindError
    from airflow_provider_aleph.shared import acquire_shared

    build = trigger_builder(spec)
    stop = start + spec["run_seconds"]
    video = f"{spec['base_url']}/samples/sample.mp4"
    share = await acquire_shared(CONN_ID)
    try:
        hook = share.hook()
        numbers = iter(range(10**9))

        async def slot() -> None:
            while time.monotonic() < stop:
                task = new_task(time.monotonic())
                tasks.append(task)
                try:
                    submitted = await hook.asubmit(MODEL, payload(next(numbers), video))
                except SegmindError as err:
                    task.update(ended=time.monotonic(), status="error", code=err.status_code, phase="submit")
                    await asyncio.sleep(spec["retry_pause"])
                    continue
                task["id"] = submitted.request_id
                job = {
                    "request_id": submitted.request_id,
                    "status_url": submitted.status_url,
                    "response_url": submitted.response_url,
                    "submitted_at": datetime.now(UTC).isoformat(),
                }
                await wait_ours(task, build(job))
                if task["status"] != "success":
                    await asyncio.sleep(spec["retry_pause"])

        await asyncio.sleep(max(0.0, start - time.monotonic()))
        slots = []
        for _ in range(spec["in_flight"]):
            slots.append(asyncio.create_task(slot()))
            # Each start is its own task, as triggers reach a triggerer one by one.
            await asyncio.sleep(0)
        await asyncio.sleep(max(0.0, stop - time.monotonic()))
        await drain_async(slots, Drain(spec["base_url"], stop), tasks, stop + spec["drain_cap"])
    finally:
        await share.release()


async def ours_batch(
    spec: dict[str, Any], start: float, jobs: list[dict[str, str]], tasks: list[dict[str, Any]]
) -> None:
    """Wait for every job of the batch with its own trigger, all started at ``start``.

    :param spec: the run's spec.
    :param start: when to start (monotonic clock).
    :param jobs: the submitted jobs (``request_id``, ``status_url``, ``response_url``, ``submitted_at``).
    :param tasks: where the task records go.
    """
    build = trigger_builder(spec)
    await asyncio.sleep(max(0.0, start - time.monotonic()))
    waits = []
    for job in jobs:
        task = new_task(start)
        task["id"] = job["request_id"]
        tasks.append(task)
        waits.append(asyncio.create_task(wait_ours(task, build(job))))
        await asyncio.sleep(0)
    _, late = await asyncio.wait(waits, timeout=max(0.0, start + spec["drain_cap"] - time.monotonic()))
    await cancel(late)


async def drain_async(slots: list[asyncio.Task[None]], drain: Drain, tasks: list[dict[str, Any]], cap: float) -> None:
    """Wait until the slots end or every job finished before the stop has had its event; then cancel.

    :param slots: the pool's slot tasks.
    :param drain: tells when the jobs that matter have ended.
    :param tasks: the task records.
    :param cap: the clock reading at which to stop regardless.
    """
    async with httpx.AsyncClient(timeout=30) as client:
        while time.monotonic() < cap and not all(slot.done() for slot in slots):
            finished = (await client.get(drain.url)).json()
            if drain.done(tasks, finished):
                break
            await asyncio.sleep(0.1)
    await cancel({slot for slot in slots if not slot.done()})


async def cancel(pending: set[asyncio.Task[None]]) -> None:
    """Cancel ``pending`` tasks and wait until they are gone.

    :param pending: tasks still running.
    """
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)


# -- the SDK ----------------------------------------------------------------------------------


def sdk_client(spec: dict[str, Any]) -> Any:
    """A Segmind client for the emulator, as a user would make one (key from ``SEGMIND_API_KEY``).

    :param spec: the run's spec (``base_url``).
    """
    from segmind import SegmindClient

    return SegmindClient(base_url=f"{spec['base_url']}/v1")


def wait_sdk(task: dict[str, Any], job: Any, spec: dict[str, Any]) -> None:
    """``job.wait()`` at the SDK's default interval (scaled) and note how it ended in ``task``.

    :param task: the job's record, updated in place.
    :param job: the SDK's ``AsyncJob``.
    :param spec: the run's spec (``poll_interval``, ``sdk_timeout``).
    """
    from segmind.exceptions import SegmindError
    from segmind.v2 import InferenceFailed, InferenceTimeout

    task["phase"] = "wait"
    try:
        job.wait(timeout=spec["sdk_timeout"], interval=spec["poll_interval"])
    except InferenceFailed:
        task.update(ended=time.monotonic(), status="failed")
    except InferenceTimeout:
        task.update(ended=time.monotonic(), status="timeout")
    except SegmindError as err:
        task.update(ended=time.monotonic(), status="error", code=err.status)
    except httpx.HTTPError as err:
        task.update(ended=time.monotonic(), status=f"raised {type(err).__name__}")
    else:
        task.update(ended=time.monotonic(), status="success")


class SdkThreads:
    """One thread per job slot, each with its own client (as each Airflow task would have), made
    before the process reports ready: building hundreds of clients takes seconds, which must not
    delay the first polls. Each thread then waits for :meth:`go`.

    :param spec: the run's spec (``in_flight`` threads for a pool, ``batch_size`` for a batch).
    """

    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec
        self.count = spec["in_flight"] if spec["mode"] == "pool" else spec["batch_size"]
        self.started = threading.Event()
        self.start = 0.0
        self.jobs: list[dict[str, str]] = []
        self.tasks: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self.numbers = iter(range(10**9))
        built = threading.Barrier(self.count + 1)
        self.threads = [
            threading.Thread(target=self._run, args=(index, built), daemon=True) for index in range(self.count)
        ]
        for thread in self.threads:
            thread.start()
        built.wait()

    def _run(self, index: int, built: threading.Barrier) -> None:
        client = sdk_client(self.spec)
        built.wait()
        self.started.wait()
        time.sleep(max(0.0, self.start - time.monotonic()))
        if self.spec["mode"] == "pool":
            self._slot(client)
        else:
            self._one(client, self.tasks[index], self.jobs[index])

    def go(self, start: float, jobs: list[dict[str, str]]) -> None:
        """Start the threads: from ``start`` (monotonic clock), on ``jobs`` for a batch.

        :param start: when to start.
        :param jobs: a batch's jobs, one per thread.
        """
        self.start, self.jobs = start, jobs
        for job in jobs:
            task = new_task(start)
            task["id"] = job["request_id"]
            self.tasks.append(task)
        self.started.set()

    def _slot(self, client: Any) -> None:
        """Submit, wait, and submit again until the stop (a pool slot)."""
        from segmind.exceptions import SegmindError

        spec = self.spec
        stop = self.start + spec["run_seconds"]
        video = f"{spec['base_url']}/samples/sample.mp4"
        while time.monotonic() < stop:
            task = new_task(time.monotonic())
            with self.lock:
                self.tasks.append(task)
                number = next(self.numbers)
            try:
                job = client.submit_async(MODEL, **payload(number, video))
            except SegmindError as err:
                task.update(ended=time.monotonic(), status="error", code=err.status, phase="submit")
                time.sleep(spec["retry_pause"])
                continue
            except httpx.HTTPError as err:
                task.update(ended=time.monotonic(), status=f"raised {type(err).__name__}", phase="submit")
                time.sleep(spec["retry_pause"])
                continue
            task["id"] = job.request_id
            wait_sdk(task, job, spec)
            if task["status"] != "success":
                time.sleep(spec["retry_pause"])

    def _one(self, client: Any, task: dict[str, Any], job: dict[str, str]) -> None:
        """Wait for one job of a batch, submitted by the caller."""
        from segmind.v2 import AsyncJob

        handle = AsyncJob(
            request_id=job["request_id"],
            status_url=job["status_url"],
            response_url=job["response_url"],
            submit_response=dict(job),
            _client=client,
        )
        wait_sdk(task, handle, self.spec)

    def finish(self) -> None:
        """Wait for the threads: a pool until every job finished before its stop has ended (then the
        threads still waiting are left to stop with the process, their tasks ``not finished``); a
        batch until every thread ended. At most ``drain_cap`` seconds past the stop."""
        spec = self.spec
        stop = self.start + spec["run_seconds"]
        cap = stop + spec["drain_cap"]
        if spec["mode"] == "batch":
            for thread in self.threads:
                thread.join(max(0.0, cap - time.monotonic()))
            return
        time.sleep(max(0.0, stop - time.monotonic()))
        drain = Drain(spec["base_url"], stop)
        with httpx.Client(timeout=30) as client:
            while time.monotonic() < cap and any(thread.is_alive() for thread in self.threads):
                with self.lock:
                    snapshot = list(self.tasks)
                if drain.done(snapshot, client.get(drain.url).json()):
                    break
                time.sleep(0.1)


# -- the process ------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """Run one side in one mode and write the task records as JSON."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.poll_worker")
    parser.add_argument("--spec", type=Path, required=True, help="JSON: side, mode, sizes and intervals")
    parser.add_argument("--ready", type=Path, required=True, help="written once imports are done")
    parser.add_argument(
        "--go", type=Path, required=True, help="JSON with the start time (and a batch's jobs); waited for"
    )
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--log", type=Path, required=True, help="where the triggers' log lines go")
    args = parser.parse_args(argv)
    spec: dict[str, Any] = json.loads(args.spec.read_text())
    if spec["side"] not in SIDES or spec["mode"] not in MODES:
        parser.error(f"side must be one of {SIDES} and mode one of {MODES}")
    logging.basicConfig(filename=args.log, level=logging.INFO, force=True)
    # Import everything first: the caller starts the clock only once this process is ready.
    sdk: SdkThreads | None = None
    if spec["side"] == "ours":
        trigger_builder(spec)
        importlib.import_module("airflow_provider_aleph.shared")
    else:
        importlib.import_module("segmind.v2")
        sdk = SdkThreads(spec)
    args.ready.write_text("ready")
    while not args.go.exists():
        time.sleep(0.02)
    go: dict[str, Any] = json.loads(args.go.read_text())
    start = float(go["start"])
    tasks: list[dict[str, Any]] = []
    cpu_before = cpu_seconds()
    if spec["side"] == "ours" and spec["mode"] == "pool":
        asyncio.run(ours_pool(spec, start, tasks))
    elif spec["side"] == "ours":
        asyncio.run(ours_batch(spec, start, go["jobs"], tasks))
    elif sdk is not None:
        sdk.go(start, go["jobs"])
        sdk.finish()
        with sdk.lock:
            tasks = list(sdk.tasks)
    report = {
        "side": spec["side"],
        "policy": spec.get("policy"),
        "mode": spec["mode"],
        "start": start,
        "end": time.monotonic(),
        "cpu_seconds": cpu_seconds() - cpu_before,
        "greenback": _GREENBACK,
        # A snapshot: SDK threads still waiting may change their records while this is written.
        "tasks": [dict(task) for task in list(tasks)],
    }
    partial = args.out.with_name(args.out.name + ".partial")
    partial.write_text(json.dumps(report))
    os.replace(partial, args.out)
    if sdk is not None:
        # SDK threads may still be waiting (the SDK's wait cannot be interrupted): end without them.
        sys.stdout.flush()
        os._exit(0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
