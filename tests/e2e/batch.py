"""What the deployment tests share: the batch example's inputs and configuration, and readings of
a running batch (the default pool, the jobs in flight, the logs)."""

from __future__ import annotations

import shutil
import time
from typing import TYPE_CHECKING, Any

from tests.e2e.conftest import REPO

if TYPE_CHECKING:
    from pathlib import Path

    from tests.e2e.conftest import EmulatorProcess
    from tests.support.deployment import AirflowDeployment

BATCH_DAG = "example_aleph_batch_enrichment"
SAMPLES = REPO / "example_dags" / "sample_videos"
TRIGGER = "airflow_provider_aleph.triggers.segmind.SegmindRequestTrigger"


def video_inputs(tmp_path: Path, count: int) -> tuple[Path, Path]:
    """An input folder holding ``count`` videos (the samples, repeated) and an empty output folder."""
    inputs, outputs = tmp_path / "in", tmp_path / "out"
    inputs.mkdir()
    outputs.mkdir()
    samples = sorted(SAMPLES.glob("*.mp4"))
    for index in range(count):
        sample = samples[index % len(samples)]
        shutil.copyfile(sample, inputs / f"{index}-{sample.name}")
    return inputs, outputs


def batch_conf(inputs: Path, outputs: Path) -> dict[str, Any]:
    """The batch example's whole run configuration for local folders."""
    return {
        "input_prefix": inputs.as_uri() + "/",
        "output_prefix": outputs.as_uri() + "/",
        "storage_conn_id": "",
        "prompt": "make it winter",
        "input_mode": "auto",
    }


def edit_tis(airflow: AirflowDeployment, run_id: str) -> list[dict[str, Any]]:
    """The mapped ``edit`` task instances of a batch run."""
    return [ti for ti in airflow.task_instances(BATCH_DAG, run_id) if ti["task_id"] == "edit"]


def slot_usage(airflow: AirflowDeployment) -> dict[str, int]:
    """What the default pool reports: task instances running, queued and deferred in it."""
    pool = airflow.api("GET", "/pools/default_pool")
    return {key: int(pool[key]) for key in ("running_slots", "queued_slots", "deferred_slots", "open_slots")}


def wait_until(predicate: Any, timeout: float, what: str, airflow: AirflowDeployment) -> Any:
    """Poll ``predicate`` every half second until it returns something truthy; return that."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}{airflow.tails()}")


def jobs_in_flight(
    airflow: AirflowDeployment, emulator: EmulatorProcess, expected: int, latency: float
) -> dict[str, int]:
    """Wait until ``expected`` jobs are submitted and deferred at once; return the default pool's counts then.

    They are normally all deferred within seconds (each submit takes a worker a few seconds, the
    jobs take ``latency``). On a machine slow enough that the first job finishes before the last is
    submitted, the reading with the most deferred tasks is returned instead.

    :param expected: how many jobs the run has in flight at its peak.
    :param latency: the emulator's job latency, in seconds.
    """
    best: dict[str, int] = {"deferred_slots": -1}
    deadline = time.monotonic() + 3 * latency
    while time.monotonic() < deadline:
        submitted = emulator.stats()["submissions"]
        usage = slot_usage(airflow)
        if usage["deferred_slots"] > best["deferred_slots"]:
            best = usage
        if submitted >= expected and usage["deferred_slots"] == expected:
            return usage
        if submitted >= expected and 0 < usage["deferred_slots"] < best["deferred_slots"]:
            return best  # past the peak: some jobs have already come back
        time.sleep(0.5)
    raise AssertionError(f"{expected} jobs were not in flight within {3 * latency:.0f}s: {best}{airflow.tails()}")


def logged(airflow: AirflowDeployment, phrase: str) -> list[str]:
    """Every line containing ``phrase`` in the deployment's component and task logs."""
    lines: list[str] = []
    for path in airflow.home.rglob("*.log"):
        lines += [line for line in path.read_text(errors="replace").splitlines() if phrase in line]
    return lines
