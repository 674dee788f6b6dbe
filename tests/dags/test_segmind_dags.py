"""Real DAG runs of the generic operator and the request sensor against the emulator."""

from __future__ import annotations

import httpx
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


@pytest.mark.parametrize("dag_name", ["sensor_copy", "sensor_copy_reschedule"])
def test_sensor_copies_the_output_like_the_operator(dag_name, segmind_conn, tmp_path):
    import segmind_test_dags

    submitted = SegmindHook().submit("runway-gen4-aleph", {"prompt": "winter", "video": segmind_conn.sample_url()})
    target = tmp_path / "picked-up" / "winter.mp4"
    dag_run = getattr(segmind_test_dags, dag_name).test(
        run_conf={"request_id": submitted.request_id, "output_path": target.as_uri()}
    )

    assert state(dag_run) == "success"
    assert segmind_conn.submissions == 1, "the sensor must never submit"
    result = xcom(dag_run, "return_value")
    assert result["request_id"] == submitted.request_id
    assert result["output_path"] == target.as_uri()
    assert target.read_bytes() == httpx.get(result["output_url"]).content


def test_generic_operator_uploads_a_local_file_in_its_payload(segmind_conn, tmp_path):
    import segmind_test_dags

    image = tmp_path / "style.png"
    image.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)))
    out = tmp_path / "results"
    dag_run = segmind_test_dags.generic_file_input.test(
        run_conf={"image": image.as_uri(), "output_path": out.as_uri() + "/"}
    )

    assert state(dag_run) == "success"
    (job,) = segmind_conn.jobs.values()
    assert job.payload["image"].startswith(f"{segmind_conn.base_url}/assets/")
    assert httpx.get(job.payload["image"]).content == image.read_bytes()
    result = xcom(dag_run, "return_value")
    assert result["output_path"].startswith(out.as_uri() + "/")
    landed = result["output_path"].removeprefix(out.as_uri() + "/")
    # The output, and its record beside it (what made it), and nothing else.
    assert sorted(p.name for p in out.iterdir()) == [landed, f"{landed}.segmind.json"]
