"""Real DAG runs of the generic operator and the request sensor against the emulator."""

from __future__ import annotations

import pytest

from airflow_provider_aleph.hooks.segmind import SegmindHook
from tests.dags.helpers import state, task_instances, xcom

pytestmark = pytest.mark.dag


def test_generic_operator_submits_any_model_with_a_templated_payload(segmind_conn):
    import segmind_test_dags

    dag_run = segmind_test_dags.generic.test(run_conf={"prompt": "a rainy street"})

    assert state(dag_run) == "success"
    (job,) = segmind_conn.jobs.values()
    assert job.model == "flux-schnell"
    assert job.payload == {"prompt": "a rainy street", "steps": 4}
    result = xcom(dag_run, "return_value")
    assert result["request_id"] == job.request_id
    assert result["output_url"]


@pytest.mark.parametrize("dag_name", ["sensor_deferred", "sensor_poke"])
def test_sensor_waits_for_a_request_submitted_elsewhere(dag_name, segmind_conn):
    import segmind_test_dags

    submitted = SegmindHook().submit(
        "runway-gen4-aleph", {"prompt": "make it winter", "video": segmind_conn.sample_url()}
    )
    dag_run = getattr(segmind_test_dags, dag_name).test(run_conf={"request_id": submitted.request_id})

    assert state(dag_run) == "success"
    assert segmind_conn.submissions == 1, "the sensor must never submit"
    result = xcom(dag_run, "return_value")
    assert result["request_id"] == submitted.request_id
    assert result["output_url"] == f"{segmind_conn.base_url}/outputs/{submitted.request_id}.mp4"


@pytest.mark.parametrize("dag_name", ["sensor_deferred", "sensor_poke"])
def test_sensor_fails_on_a_failed_request(dag_name, segmind_conn):
    import segmind_test_dags

    submitted = SegmindHook().submit(
        "runway-gen4-aleph", {"prompt": "[emulator:fail]", "video": "https://x.test/a.mp4"}
    )
    dag_run = getattr(segmind_test_dags, dag_name).test(run_conf={"request_id": submitted.request_id})

    assert state(dag_run) == "failed"
    (ti,) = task_instances(dag_run)
    assert state(ti) == "failed"
    assert segmind_conn.submissions == 1


@pytest.mark.parametrize("dag_name", ["sensor_deferred", "sensor_poke"])
def test_sensor_fails_on_an_unknown_request(dag_name, segmind_conn, capfd):
    import segmind_test_dags

    dag_run = getattr(segmind_test_dags, dag_name).test(run_conf={"request_id": "no-such-request"})

    assert state(dag_run) == "failed"
    out, err = capfd.readouterr()
    assert "unknown or expired" in out + err
    assert segmind_conn.submissions == 0
