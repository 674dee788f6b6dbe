"""The API key never shows: not in task logs, XCom, trigger kwargs, exception messages or reprs."""

from __future__ import annotations

import json

import pytest
from airflow.models.xcom import XComModel
from airflow.utils.session import create_session
from sqlalchemy import select

from airflow_provider_aleph.emulator import Emulator
from airflow_provider_aleph.hooks.segmind import SegmindHook
from airflow_provider_aleph.operators.aleph import RunwayAlephOperator
from tests.dags.helpers import state

pytestmark = pytest.mark.dag

SECRET = "fake-SECRET-5e1f0c2b9a8d7e6f-never-print-me"


@pytest.fixture
def secret_emulator(monkeypatch: pytest.MonkeyPatch):
    with Emulator(api_key=SECRET, latency=0.2) as emu:
        monkeypatch.setenv(
            "AIRFLOW_CONN_SEGMIND_DEFAULT",
            json.dumps({"conn_type": "segmind", "password": SECRET, "host": emu.base_url}),
        )
        yield emu


def _task_output(capfd: pytest.CaptureFixture[str]) -> str:
    out, err = capfd.readouterr()
    # Airflow 3.0's in-process dag.test() prints its own debug line for every secret handed to the
    # masker ("Sending request msg=MaskSecret(value=...)"), the connection's password included;
    # 3.1+ omits the body. That line is Airflow's, not ours: leave it out of the search.
    return "".join(line for line in (out + err).splitlines(keepends=True) if "MaskSecret(" not in line)


def _all_xcom_text(dag_run) -> str:
    with create_session() as session:
        rows = session.scalars(
            select(XComModel).where(XComModel.dag_id == dag_run.dag_id, XComModel.run_id == dag_run.run_id)
        ).all()
        return " ".join(json.dumps(XComModel.deserialize_value(row), default=str) for row in rows)


@pytest.mark.parametrize("dag_name", ["deferrable", "in_worker", "failing_in_worker"])
def test_key_absent_from_logs_and_xcom_of_real_runs(dag_name, secret_emulator, capfd, caplog):
    import aleph_test_dags

    dag_run = getattr(aleph_test_dags, dag_name).test(run_conf={"video": secret_emulator.sample_url()})

    assert state(dag_run) == ("failed" if dag_name.startswith("failing") else "success")
    assert secret_emulator.submissions == 1, "the key was used: the job went through"
    output = _task_output(capfd)
    (request_id,) = secret_emulator.jobs
    assert request_id in output, "the captured logs are the task's (they name the request)"
    assert SECRET not in output + caplog.text
    xcoms = _all_xcom_text(dag_run)
    assert request_id in xcoms
    assert SECRET not in xcoms


def test_rejected_key_is_not_echoed_in_the_failure(secret_emulator, monkeypatch, capfd, caplog):
    import aleph_test_dags

    wrong = "fake-WRONG-0a1b2c3d4e5f6a7b-also-secret"
    monkeypatch.setenv(
        "AIRFLOW_CONN_SEGMIND_DEFAULT",
        json.dumps({"conn_type": "segmind", "password": wrong, "host": secret_emulator.base_url}),
    )
    dag_run = aleph_test_dags.in_worker.test(run_conf={"video": secret_emulator.sample_url()})

    assert state(dag_run) == "failed"
    output = _task_output(capfd)
    assert "rejected the API key" in output
    assert wrong not in output + caplog.text
    assert secret_emulator.submissions == 0


def test_key_absent_from_reprs_and_trigger_kwargs(secret_emulator):
    hook = SegmindHook()
    submitted = hook.submit("runway-gen4-aleph", {"prompt": "snow", "video": secret_emulator.sample_url()})
    params = hook.get_conn_params()
    assert params.api_key == SECRET
    from airflow_provider_aleph.triggers.segmind import SegmindRequestTrigger

    trigger = SegmindRequestTrigger(
        request_id=submitted.request_id,
        segmind_conn_id="segmind_default",
        deadline="2030-01-01T00:00:00+00:00",
        status_url=submitted.status_url,
        response_url=submitted.response_url,
    )
    operator = RunwayAlephOperator(task_id="t", prompt="snow", video="https://x.test/a.mp4")
    for text in (repr(hook), repr(params), repr(trigger), json.dumps(trigger.serialize()), repr(operator)):
        assert SECRET not in text
