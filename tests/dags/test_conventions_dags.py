"""Real DAG runs of the Airflow conventions against the emulator: wait_for_completion=False with a sensor
downstream, and a templated connection id."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from airflow_provider_aleph.exceptions import InvalidParameter
from airflow_provider_aleph.operators.aleph import RunwayAlephOperator
from tests.conftest import TEST_API_KEY
from tests.dags.helpers import failure_message, says, state, xcom

pytestmark = pytest.mark.dag

REPO = Path(__file__).resolve().parents[2]


def test_the_operator_returns_at_once_and_the_sensor_waits_and_copies(segmind_conn, tmp_path):
    import conventions_test_dags

    target = tmp_path / "winter.mp4"
    conf = {"video": segmind_conn.sample_url(), "output_path": target.as_uri(), "conn_id": "segmind_default"}
    dag_run = conventions_test_dags.submit_then_sense.test(run_conf=conf)

    assert state(dag_run) == "success"
    assert segmind_conn.submissions == 1, "the sensor never submits"
    (request_id,) = segmind_conn.jobs
    submitted = xcom(dag_run, "return_value", task_id="edit")
    assert submitted == {
        "request_id": request_id,
        "status": "QUEUED",
        "output_url": None,
        "output_path": None,
        "metrics": {},
        "output": None,
        "cost": None,
    }
    assert xcom(dag_run, "request_id", task_id="edit") == request_id
    waited = xcom(dag_run, "return_value", task_id="wait")
    assert waited["request_id"] == request_id
    assert waited["status"] == "COMPLETED"
    assert waited["output_path"] == target.as_uri()
    assert target.read_bytes() == b"".join(segmind_conn.output_bytes_iter(request_id))


def test_the_connection_id_is_templated_on_the_operator_and_the_sensor(segmind_conn, monkeypatch, tmp_path):
    import conventions_test_dags

    # Only the connection the run names points at the emulator: the default one goes nowhere.
    monkeypatch.setenv(
        "AIRFLOW_CONN_SEGMIND_ALT",
        json.dumps({"conn_type": "segmind", "password": TEST_API_KEY, "host": segmind_conn.base_url}),
    )
    monkeypatch.setenv(
        "AIRFLOW_CONN_SEGMIND_DEFAULT",
        json.dumps({"conn_type": "segmind", "password": TEST_API_KEY, "host": "http://127.0.0.1:9"}),
    )
    conf = {"video": segmind_conn.sample_url(), "output_path": (tmp_path / "a.mp4").as_uri(), "conn_id": "segmind_alt"}
    dag_run = conventions_test_dags.submit_then_sense.test(run_conf=conf)

    assert state(dag_run) == "success"
    assert segmind_conn.submissions == 1
    assert xcom(dag_run, "return_value", task_id="wait")["request_id"] in segmind_conn.jobs


def test_a_literal_output_path_without_waiting_is_refused_when_the_dag_is_parsed():
    with pytest.raises(InvalidParameter) as refused:
        RunwayAlephOperator(
            task_id="edit",
            prompt="make it winter",
            video="https://example.com/a.mp4",
            output_path="s3://bucket/out.mp4",
            wait_for_completion=False,
        )
    assert refused.value.parameter == "output_path"
    assert "wait_for_completion=False" in str(refused.value)
    assert "SegmindRequestSensor" in str(refused.value)


def test_a_rendered_output_path_without_waiting_fails_before_any_submit(segmind_conn, tmp_path, capfd):
    import conventions_test_dags

    conf = {"video": segmind_conn.sample_url(), "output_path": (tmp_path / "a.mp4").as_uri()}
    dag_run = conventions_test_dags.no_wait_with_output.test(run_conf=conf)

    assert state(dag_run) == "failed"
    assert segmind_conn.submissions == 0
    failure = failure_message(capfd)
    assert says(failure, "Invalid parameter 'output_path'")
    assert says(failure, "wait_for_completion=False")


def test_an_empty_rendered_output_path_without_waiting_submits_and_returns(segmind_conn):
    import conventions_test_dags

    dag_run = conventions_test_dags.no_wait_with_output.test(
        run_conf={"video": segmind_conn.sample_url(), "output_path": ""}
    )

    assert state(dag_run) == "success"
    assert segmind_conn.submissions == 1
    assert xcom(dag_run, "return_value")["status"] == "QUEUED"


def test_the_demo_reads_job_progress_from_a_real_runs_log(segmind_conn, tmp_path, capfd, monkeypatch):
    # `make demo` prints progress from the run's log as it is written: read here from a real run's output.
    import conventions_test_dags

    spec = importlib.util.spec_from_file_location("demo", REPO / "scripts" / "demo.py")
    assert spec is not None
    assert spec.loader is not None
    demo = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "demo", demo)  # its dataclass looks its module up there
    spec.loader.exec_module(demo)
    target = tmp_path / "winter.mp4"
    conf = {"video": segmind_conn.sample_url(), "output_path": target.as_uri(), "conn_id": "segmind_default"}
    capfd.readouterr()
    dag_run = conventions_test_dags.submit_then_sense.test(run_conf=conf)
    out, err = capfd.readouterr()

    assert state(dag_run) == "success"
    (request_id,) = segmind_conn.jobs
    progress = demo.Progress(total=1)
    changes = [change for line in (out + err).splitlines() if (change := progress.read(line))]
    assert changes[0] == f"request {request_id}: submitted  [1 of 1 submitted, 1 waiting, 0 done]"
    assert changes[-1] == (f"request {request_id}: done, copied to {target}  [1 of 1 submitted, 0 waiting, 1 done]")
