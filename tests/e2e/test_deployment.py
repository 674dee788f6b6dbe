"""The provider in a real deployment: scheduler, LocalExecutor workers, triggerer, api-server.

``dag.test()`` runs triggers inline; these tests run the example DAGs the way users do and check,
through Airflow's REST API and the emulator's counters, that waiting jobs free their worker slots,
that a killed triggerer or worker loses nothing and pays nothing twice.
"""

from __future__ import annotations

import json
import os
import re
import signal
import time
from datetime import datetime
from typing import TYPE_CHECKING

import pytest
from airflow import __version__ as airflow_version
from packaging.version import Version

from tests.e2e import batch
from tests.e2e.batch import BATCH_DAG, TRIGGER, batch_conf, edit_tis, logged, video_inputs, wait_until
from tests.e2e.conftest import ADMIN_PASSWORD, API_KEY, JOB_LATENCY, PARALLELISM
from tests.support.intervals import TaskKey

if TYPE_CHECKING:
    from pathlib import Path

    from tests.e2e.conftest import EmulatorProcess
    from tests.support.deployment import AirflowDeployment
    from tests.support.proxy import RefusingProxy

INPUTS = 6


def six_inputs(tmp_path: Path) -> tuple[Path, Path]:
    """An input folder holding six videos (the three samples, twice) and an empty output folder."""
    return video_inputs(tmp_path, INPUTS)


def jobs_in_flight(airflow: AirflowDeployment, emulator: EmulatorProcess) -> dict[str, int]:
    """Wait until all six jobs are submitted and deferred; return the default pool's counts then."""
    return batch.jobs_in_flight(airflow, emulator, INPUTS, JOB_LATENCY)


def parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def test_batch_releases_slots_while_jobs_run(
    deployment: AirflowDeployment, e2e_emulator: EmulatorProcess, tmp_path: Path
) -> None:
    """Six edits on an executor with two slots: all six wait deferred at once, the slots stay free."""
    e2e_emulator.reset()
    inputs, outputs = six_inputs(tmp_path)
    deployment.wait_for_dag(BATCH_DAG)
    run_id = deployment.trigger(BATCH_DAG, batch_conf(inputs, outputs))

    usage = jobs_in_flight(deployment, e2e_emulator)
    # More jobs in flight than the executor has slots, yet its slots are not taken by them.
    assert usage["deferred_slots"] > PARALLELISM, usage
    assert usage["running_slots"] + usage["queued_slots"] < PARALLELISM, usage
    print(f"in flight: {usage}")
    # Each deferred task waits on our trigger, and nothing the REST API shows of them holds the key.
    deferred = [ti for ti in edit_tis(deployment, run_id) if ti["state"] == "deferred"]
    assert deferred
    assert {ti["trigger"]["classpath"] for ti in deferred} == {TRIGGER}, deferred
    assert API_KEY not in json.dumps(deferred)

    assert deployment.wait_for_run(BATCH_DAG, run_id, timeout=6 * JOB_LATENCY) == "success", deployment.tails()
    tis = edit_tis(deployment, run_id)
    assert [ti["state"] for ti in tis] == ["success"] * INPUTS
    assert all(ti["try_number"] == 1 for ti in tis)
    started = min(parse_time(ti["start_date"]) for ti in tis)
    ended = max(parse_time(ti["end_date"]) for ti in tis)
    span = (ended - started).total_seconds()
    # Holding a slot per wait, two slots would need three rounds of the job latency.
    assert span < 3 * JOB_LATENCY, f"the six edits took {span:.0f}s, latency {JOB_LATENCY:.0f}s"
    print(f"six edits on {PARALLELISM} slots: {span:.1f}s from first start to last end ({span / JOB_LATENCY:.2f}x)")

    assert e2e_emulator.stats()["submissions"] == INPUTS
    edited = sorted(f"{path.stem}-edited.mp4" for path in inputs.iterdir())
    # Each edited video, and beside it the record a later run reuses it by (if_output_exists="reuse").
    landed = sorted(path.name for path in outputs.iterdir())
    assert landed == sorted([*edited, *(f"{name}.segmind.json" for name in edited)])


def test_triggerer_killed_mid_job_loses_nothing(
    deployment: AirflowDeployment, e2e_emulator: EmulatorProcess, tmp_path: Path
) -> None:
    """SIGKILL the triggerer while six jobs wait on it; a new triggerer finishes every one of them."""
    e2e_emulator.reset()
    inputs, outputs = six_inputs(tmp_path)
    run_id = deployment.trigger(BATCH_DAG, batch_conf(inputs, outputs))

    usage = jobs_in_flight(deployment, e2e_emulator)
    assert usage["deferred_slots"] > 0, usage
    assert deployment.kill("triggerer") == -signal.SIGKILL
    # Nothing runs the triggers now; the jobs go on at Segmind's side. A new triggerer takes them
    # over once the dead one's heartbeat is older than the health-check threshold.
    deployment.start_component("triggerer")

    assert deployment.wait_for_run(BATCH_DAG, run_id, timeout=8 * JOB_LATENCY) == "success", deployment.tails()
    tis = edit_tis(deployment, run_id)
    assert [(ti["state"], ti["try_number"]) for ti in tis] == [("success", 1)] * INPUTS
    assert e2e_emulator.stats()["submissions"] == INPUTS
    assert len(list(outputs.glob("*.mp4"))) == INPUTS


#: Each half of the outage: first every call answers 503, then every connection is refused.
OUTAGE_HALF = 45.0


def test_an_outage_with_a_triggerer_restart_loses_nothing(
    deployment: AirflowDeployment, e2e_emulator: EmulatorProcess, e2e_proxy: RefusingProxy, tmp_path: Path
) -> None:
    """With six jobs deferred, the API is down for 90 s (503s, then refused connections) and the triggerer
    is killed and restarted meanwhile: every job still succeeds on its first try, with no new submission."""
    e2e_emulator.reset()
    inputs, outputs = six_inputs(tmp_path)
    run_id = deployment.trigger(BATCH_DAG, batch_conf(inputs, outputs))
    usage = jobs_in_flight(deployment, e2e_emulator)
    assert usage["deferred_slots"] > 0, usage

    e2e_emulator.configure(outage_seconds=OUTAGE_HALF)
    time.sleep(OUTAGE_HALF / 2)
    assert deployment.kill("triggerer") == -signal.SIGKILL
    deployment.start_component("triggerer")  # it takes the triggers over while the API is still down
    wait_until(lambda: e2e_emulator.stats()["outage_remaining"] == 0, OUTAGE_HALF, "the 503s to end", deployment)
    e2e_proxy.refuse_for(OUTAGE_HALF)
    time.sleep(OUTAGE_HALF)

    # Polls back off to at most about a minute apart: allow one backoff after the outage, then the copies.
    assert deployment.wait_for_run(BATCH_DAG, run_id, timeout=180) == "success", deployment.tails()
    tis = edit_tis(deployment, run_id)
    assert [(ti["state"], ti["try_number"]) for ti in tis] == [("success", 1)] * INPUTS
    stats = e2e_emulator.stats()
    assert stats["submissions"] == INPUTS, "nothing was paid twice"
    assert stats["outage_answers"] > 0, "the triggers met the 503s"
    retried = logged(deployment, "retrying in")
    assert any("ConnectError" in line for line in retried), "the triggers met the refused connections"
    assert any("HTTP 503" in line for line in retried), "and the 503s"
    assert len(list(outputs.glob("*.mp4"))) == INPUTS


WORKER_DAG = "e2e_aleph_worker_wait"


STATE_STORE = Version(airflow_version).release >= (3, 3)


@pytest.mark.skipif(not STATE_STORE, reason="task_state_store (reattach on retry) needs Airflow 3.3+")
def test_worker_killed_mid_wait_reattaches(deployment: AirflowDeployment, e2e_emulator: EmulatorProcess) -> None:
    """SIGKILL the task's process while it waits in the worker: the retry waits on the same request."""
    e2e_emulator.reset()
    deployment.wait_for_dag(WORKER_DAG)
    run_id = deployment.trigger(WORKER_DAG)
    first_log = deployment.task_log_file(WORKER_DAG, run_id, TaskKey("edit", -1, 1))

    def waiting() -> bool:
        return first_log.exists() and "Waiting in the worker" in first_log.read_text(errors="replace")

    wait_until(waiting, 3 * JOB_LATENCY, "the edit to wait in its worker", deployment)
    (ti,) = [ti for ti in deployment.task_instances(WORKER_DAG, run_id) if ti["task_id"] == "edit"]
    assert (ti["state"], ti["try_number"]) == ("running", 1), ti
    submitted = re.search(r"request_id=([\w-]+)", first_log.read_text(errors="replace"))
    assert submitted is not None
    request_id = submitted.group(1)
    os.kill(int(ti["pid"]), signal.SIGKILL)

    assert deployment.wait_for_run(WORKER_DAG, run_id, timeout=6 * JOB_LATENCY) == "success", deployment.tails()
    (ti,) = [ti for ti in deployment.task_instances(WORKER_DAG, run_id) if ti["task_id"] == "edit"]
    assert (ti["state"], ti["try_number"]) == ("success", 2)
    assert e2e_emulator.stats()["submissions"] == 1
    second_log = deployment.task_log_file(WORKER_DAG, run_id, TaskKey("edit", -1, 2)).read_text(errors="replace")
    assert f"Reattaching to Segmind request {request_id}" in second_log
    xcom = deployment.api(
        "GET",
        f"/dags/{WORKER_DAG}/dagRuns/{run_id}/taskInstances/edit/xcomEntries/return_value",
        params={"deserialize": True},
    )
    assert xcom["value"]["request_id"] == request_id
    assert xcom["value"]["status"] == "COMPLETED"


def test_no_secret_in_any_component_or_task_log(deployment: AirflowDeployment) -> None:
    """The API key and the admin password appear in no log the deployment wrote.

    Run last in this module, it reads the logs of every run above (and of start-up when run alone).
    """
    logs = [
        path
        for folder in (deployment.logs, deployment.home / "logs")
        if folder.exists()
        for path in folder.rglob("*")
        if path.is_file()
    ]
    assert logs
    for path in logs:
        text = path.read_text(errors="replace")
        assert API_KEY not in text, path
        assert ADMIN_PASSWORD not in text, path
