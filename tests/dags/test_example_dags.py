"""The example DAGs users copy: each parses cleanly and runs against the emulator."""

from __future__ import annotations

import pytest

from tests.dags.helpers import state, xcom
from tests.support.examples import EXAMPLES, load_example

pytestmark = pytest.mark.dag


def test_every_example_dag_parses_without_import_errors():
    try:
        from airflow.dag_processing.dagbag import DagBag  # Airflow 3.2+
    except ImportError:
        from airflow.models.dagbag import DagBag

    bag = DagBag(dag_folder=str(EXAMPLES))  # examples are off: AIRFLOW__CORE__LOAD_EXAMPLES=False
    assert bag.import_errors == {}
    assert "example_aleph_winterize" in bag.dags


def test_winterize_example_puts_the_output_url_in_xcom(segmind_conn):
    segmind_conn.config.latency = 0.0  # done by the first poll, so the default 10 s interval never waits
    example = load_example("example_aleph_winterize")

    dag_run = example.dag.test(run_conf={"video": segmind_conn.sample_url()})

    assert state(dag_run) == "success"
    (job,) = segmind_conn.jobs.values()
    assert job.payload == {
        "prompt": "make it winter",
        "video": segmind_conn.sample_url(),
        "aspect_ratio": "16:9",
        "seed": 42,
    }
    result = xcom(dag_run, "return_value", task_id="winterize")
    assert result["request_id"] == job.request_id
    assert xcom(dag_run, "output_url", task_id="winterize") == result["output_url"]


def test_the_winterize_example_admits_only_web_and_bucket_uris_as_its_video() -> None:
    params = load_example("example_aleph_winterize").dag.params
    for bad in ("file:///etc/hostname", "/etc/hostname", "local:///x.mp4"):
        with pytest.raises(Exception, match="does not match"):
            params.get_param("video").resolve(bad)
    for good in ("https://cdn.example.com/a.mp4", "s3://bucket/a.mp4", "gs://bucket/a.mp4"):
        assert params.get_param("video").resolve(good) == good


def test_submit_then_wait_example_copies_the_output_through_the_sensor(segmind_conn, tmp_path):
    segmind_conn.config.latency = 0.0  # done by the first poll, so the default 10 s interval never waits
    example = load_example("example_aleph_submit_then_wait")

    dag_run = example.dag.test(run_conf={"video": segmind_conn.sample_url(), "output_path": f"{tmp_path.as_uri()}/"})

    assert state(dag_run) == "success"
    (job,) = segmind_conn.jobs.values()
    assert xcom(dag_run, "return_value", task_id="submit")["status"] == "QUEUED"
    result = xcom(dag_run, "return_value", task_id="wait")
    assert result["request_id"] == job.request_id
    assert result["output_path"] == f"{tmp_path.as_uri()}/{job.request_id}.mp4"
    assert (tmp_path / f"{job.request_id}.mp4").stat().st_size > 0
