"""Measurements 1 and 4: worker-slot seconds and API calls per job, ours against Segmind's own SDK.

One real Airflow (:class:`~tests.support.deployment.AirflowDeployment`: scheduler with the
LocalExecutor, dag-processor, triggerer, api-server) runs ``benchmarks/dags/aleph_bench_slot.py``
once: for each emulator latency, ``jobs`` Aleph jobs through ``RunwayAlephOperator`` (deferrable,
defaults) and ``jobs`` through a ``PythonOperator`` calling ``submit_async(...).wait()``, all in the
same DAG run, at the same time. Each (latency, side) pair has its own emulator process, so the
emulator's request counts per job need no attribution.

Slot seconds are the sum of a task try's running intervals, from Airflow's own records (see
:meth:`~tests.support.deployment.AirflowDeployment.running_intervals`). API calls per job are the
submit, status and result requests the emulator served for that job.
"""

from __future__ import annotations

import json
import shutil
import sys
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from benchmarks.emulator_proc import EmulatorProcess
from benchmarks.stats import mean
from tests.support.deployment import AirflowDeployment
from tests.support.intervals import Interval, TaskKey

API_KEY = "bench-slot-key-0123456789"
DAG_ID = "aleph_bench_slot"
DAG_FILE = Path(__file__).resolve().parent / "dags" / "aleph_bench_slot.py"
SIDES = ("ours", "sdk")
API_KINDS = ("submit", "status", "result")


@dataclass(frozen=True)
class SlotCase:
    """The jobs of one slot-time run.

    :param latencies: emulator latencies, in seconds; one cell of jobs each.
    :param jobs: jobs per cell and side.
    :param parallelism: the LocalExecutor's parallelism (all tasks fit at once, so none waits for a slot).
    """

    latencies: tuple[float, ...]
    jobs: int
    parallelism: int


FULL_CASE = SlotCase(latencies=(30.0, 120.0), jobs=2, parallelism=10)
SMOKE_CASE = SlotCase(latencies=(4.0,), jobs=1, parallelism=3)
FLOOR_TASK = "airflow_floor"


def cell_name(latency: float) -> str:
    """The task-id suffix of a latency cell, e.g. ``30s``.

    :param latency: seconds.
    """
    return f"{latency:g}s".replace(".", "_")


def _conn(base_url: str) -> str:
    return json.dumps({"conn_type": "segmind", "host": base_url, "password": API_KEY})


def run(case: SlotCase, workdir: Path, python: str = sys.executable, log: Any = print) -> dict[str, Any]:
    """Run the benchmark DAG once and return one row per (latency, side).

    :param case: latencies, jobs and parallelism.
    :param workdir: where the Airflow home and DAG folder go (kept when a step fails).
    :param python: the interpreter whose Airflow runs.
    :param log: prints progress.
    """
    emulators: dict[tuple[str, str], EmulatorProcess] = {}
    try:
        env: dict[str, str] = {}
        cells: list[dict[str, Any]] = []
        for latency in case.latencies:
            name = cell_name(latency)
            for side in SIDES:
                emulator = EmulatorProcess(latency=latency, api_key=API_KEY, python=python).start()
                emulators[(name, side)] = emulator
                env[f"AIRFLOW_CONN_SEGMIND_{side.upper()}_{name.upper()}"] = _conn(emulator.base_url)
            cells.append(
                {
                    "name": name,
                    "latency": latency,
                    # Each side's input comes from its own emulator, so each one's counts are its own.
                    "ours_video": f"{emulators[(name, 'ours')].base_url}/samples/sample.mp4",
                    "sdk_video": f"{emulators[(name, 'sdk')].base_url}/samples/sample.mp4",
                    "ours_conn": f"segmind_ours_{name}",
                    "sdk_conn": f"segmind_sdk_{name}",
                }
            )
        env["ALEPH_BENCH_SLOT"] = json.dumps({"jobs": case.jobs, "cells": cells})
        dags = workdir / "dags"
        dags.mkdir(parents=True, exist_ok=True)
        shutil.copy(DAG_FILE, dags / DAG_FILE.name)
        deployment = AirflowDeployment(dags, workdir / "airflow", python=python, parallelism=case.parallelism, env=env)
        with deployment:
            log(f"  slot: Airflow up at {deployment.base_url} (home {deployment.home})")
            deployment.wait_for_dag(DAG_ID)
            run_id = deployment.trigger(DAG_ID)
            state = deployment.wait_for_run(DAG_ID, run_id, timeout=2 * max(case.latencies) + 600)
            log(f"  slot: run {run_id} ended {state}")
            instances = deployment.task_instances(DAG_ID, run_id)
            intervals = deployment.running_intervals(DAG_ID, run_id)
            airflow_version = deployment.api("GET", "/version").get("version")
        counts = {key: emulator.counts() for key, emulator in emulators.items()}
    finally:
        for emulator in emulators.values():
            emulator.stop()
    rows = []
    for cell in cells:
        for side in SIDES:
            served = counts[(cell["name"], side)]
            api_calls = sum(served["by_kind"].get(kind, 0) for kind in API_KINDS)
            rows.append(
                {
                    "latency": cell["latency"],
                    "side": side,
                    **slot_stats(f"{side}_{cell['name']}", instances, intervals),
                    "api_calls_per_job": api_calls / len(served["by_request"]) if served["by_request"] else None,
                    "requests_by_kind": served["by_kind"],
                }
            )
    floor = slot_stats(FLOOR_TASK, instances, intervals)
    return {"case": asdict(case), "run_state": state, "airflow_version": airflow_version, "rows": rows, "floor": floor}


def slot_stats(
    task_id: str, instances: list[dict[str, Any]], intervals: dict[TaskKey, list[Interval]]
) -> dict[str, Any]:
    """Slot seconds of the mapped task ``task_id``: per job, and per run of the task on a worker.

    :param task_id: the task.
    :param instances: the run's task instances.
    :param intervals: the run's running intervals by task try.
    """
    tis = [ti for ti in instances if ti["task_id"] == task_id]
    runs = [intervals.get(TaskKey(task_id, ti["map_index"], ti["try_number"]), []) for ti in tis]
    slot = [sum(span.seconds for span in spans) for spans in runs]
    longest = max((len(spans) for spans in runs), default=0)
    return {
        "jobs": len(tis),
        "states": dict(Counter(str(ti["state"]) for ti in tis)),
        "slot_seconds_mean": mean(slot),
        "slot_seconds_max": max(slot) if slot else None,
        "running_intervals_per_job": mean([len(spans) for spans in runs]),
        # Mean length of the first run on a worker, the second, ...: for ours, submit then resume.
        "run_seconds_mean": [mean([spans[i].seconds for spans in runs if len(spans) > i]) for i in range(longest)],
    }
