"""Reattach on retry, in real dag.test() runs against the emulator: a retry never pays for a second job.

On Airflow 3.3+ (task_state_store) a retry picks up the request of the earlier try; on older Airflow
the same failures end the task without an Airflow retry, since a retry there would submit again.
"""

from __future__ import annotations

import httpx
import pytest
from airflow.version import version as airflow_version
from packaging.version import Version

from tests.dags.helpers import failure_message, says, state, task_instances, xcom

pytestmark = pytest.mark.dag

REATTACH = Version(airflow_version) >= Version("3.3.0")


@pytest.fixture
def video(segmind_conn) -> str:
    return f"{segmind_conn.base_url}/samples/sample.mp4"


@pytest.mark.parametrize("dag_name", ["deadline_retry", "deadline_retry_in_worker"])
def test_deadline_passed_then_retry_uses_the_same_request(dag_name, segmind_conn, video):
    import reattach_test_dags

    segmind_conn.config.latency = 3.0  # longer than the operator's 2 s timeout
    dag_run = getattr(reattach_test_dags, dag_name).test(run_conf={"video": video})

    assert segmind_conn.submissions == 1, "a retry must never submit a second, paid job"
    (request_id,) = segmind_conn.jobs
    (ti,) = task_instances(dag_run)
    assert xcom(dag_run, "request_id") == request_id
    if REATTACH:
        assert state(dag_run) == "success"
        assert ti.try_number == 2
        assert xcom(dag_run, "return_value")["request_id"] == request_id
    else:
        assert state(dag_run) == "failed"
        assert ti.try_number == 1, "without task_state_store a retry would pay again: no Airflow retry"


def test_failed_copy_is_retried_from_the_completed_request(segmind_conn, video, tmp_path):
    import reattach_test_dags

    # Every in-place attempt of the first try is cut half-way; the Airflow retry copies it whole.
    segmind_conn.config.cut_outputs = 5
    segmind_conn.config.cut_after_bytes = 1000
    target = tmp_path / "out" / "winter.mp4"
    dag_run = reattach_test_dags.copy_retry.test(run_conf={"video": video, "output_path": f"file://{target}"})

    assert segmind_conn.submissions == 1
    (request_id,) = segmind_conn.jobs
    (ti,) = task_instances(dag_run)
    record = f"{target.name}.segmind.json"  # beside a copied output, once the copy succeeded
    kept = (target.name, record)
    leftovers = [p.name for p in target.parent.iterdir() if p.name not in kept] if target.parent.exists() else []
    assert leftovers == [], "no partial file may be left behind"
    assert (target.parent / record).exists() == target.exists()
    if REATTACH:
        assert state(dag_run) == "success"
        assert ti.try_number == 2
        result = xcom(dag_run, "return_value")
        assert result["request_id"] == request_id
        assert result["output_path"] == f"file://{target}"
        assert target.read_bytes() == httpx.get(result["output_url"]).content
    else:
        assert state(dag_run) == "failed"
        assert ti.try_number == 1
        assert not target.exists()


@pytest.mark.skipif(not REATTACH, reason="the submit intent lives in task_state_store (Airflow 3.3+)")
def test_a_try_lost_inside_the_submit_window_is_not_submitted_again(segmind_conn, video, capfd):
    import reattach_test_dags

    dag_run = reattach_test_dags.submit_window.test(run_conf={"video": video})

    assert segmind_conn.submissions == 1, "the retry must not pay for a second job"
    (ti,) = task_instances(dag_run)
    assert state(dag_run) == "failed"
    assert ti.try_number == 2, "the lost try is retried once, and that retry fails for good"
    assert xcom(dag_run, "request_id") is None, "the lost try never recorded its request id"
    failure = failure_message(capfd)
    assert says(failure, "The outcome of the submit an earlier try of this task began at")
    assert says(failure, "Check the Segmind dashboard's request history")
    assert says(failure, "clear the task to submit again if no job exists")
    assert says(failure, "conn_id=segmind_default")
