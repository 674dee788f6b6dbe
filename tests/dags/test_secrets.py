"""The API key never shows: not in task logs, XCom, trigger kwargs, exception messages or reprs."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import pytest
from airflow.models.xcom import XComModel
from airflow.utils.session import create_session
from sqlalchemy import select

from airflow_provider_aleph.emulator import Emulator
from airflow_provider_aleph.emulator.assets import sample_bytes
from airflow_provider_aleph.hooks.segmind import SegmindHook
from airflow_provider_aleph.operators.aleph import RunwayAlephOperator
from airflow_provider_aleph.triggers.segmind import SegmindRequestTrigger
from tests.dags.helpers import state
from tests.fakes import open_shares

if TYPE_CHECKING:
    from airflow_provider_aleph.shared import SharedConnection

pytestmark = pytest.mark.dag

SECRET = "fake-SECRET-not-a-real-key-never-print-me"


@pytest.fixture
def secret_emulator(monkeypatch: pytest.MonkeyPatch):
    with Emulator(api_key=SECRET, latency=0.2) as emu:
        # Uploads (file:// inputs) go to the emulator's files API, with the same key.
        connection = {"conn_type": "segmind", "password": SECRET, "host": emu.base_url}
        connection["extra"] = {"upload_url": emu.base_url}
        monkeypatch.setenv("AIRFLOW_CONN_SEGMIND_DEFAULT", json.dumps(connection))
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

    wrong = "fake-WRONG-not-a-real-key-also-secret"
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


def test_key_absent_from_logs_and_xcom_of_an_upload_run(secret_emulator, tmp_path, capfd, caplog):
    import aleph_test_dags

    clip = tmp_path / "clip.mp4"
    clip.write_bytes(sample_bytes())
    conf = {"prompt": "make it winter", "video": clip.as_uri(), "aspect_ratio": None, "reference_image": None}
    dag_run = aleph_test_dags.parameters.test(run_conf=conf | {"seed": None, "input_mode": "upload"})

    assert state(dag_run) == "success"
    assert secret_emulator.stats()["uploads"]["count"] == 1, "the local file went through the files API, with the key"
    assert secret_emulator.submissions == 1
    (job,) = secret_emulator.jobs.values()
    assert job.payload["video"].startswith(f"{secret_emulator.base_url}/assets/")
    output = _task_output(capfd)
    assert "uploaded" in output, "the captured logs are the task's (they tell of the upload)"
    assert SECRET not in output + caplog.text
    xcoms = _all_xcom_text(dag_run)
    assert job.request_id in xcoms
    assert SECRET not in xcoms


def _trigger(request_id: str, conn_id: str = "segmind_default") -> SegmindRequestTrigger:
    return SegmindRequestTrigger(
        request_id=request_id,
        segmind_conn_id=conn_id,
        deadline=datetime.now(UTC) + timedelta(seconds=30),
        poll_interval=0.05,
    )


async def _shared_when_open(conn_id: str) -> SharedConnection:
    """The running loop's shared connection of ``conn_id``, once a trigger has opened it."""
    for _ in range(1000):
        share = open_shares().get(conn_id)
        if share is not None and share.channel is not None:
            return share
        await asyncio.sleep(0.01)
    raise AssertionError(f"no trigger opened a shared connection for {conn_id!r}")


async def test_key_absent_from_the_shared_client_budget_and_trigger_of_a_running_wait(secret_emulator, caplog):
    secret_emulator.config(latency=1.0)  # still running while the shared pieces are looked at
    hook = SegmindHook()
    try:
        submitted = hook.submit("runway-gen4-aleph", {"prompt": "snow", "video": secret_emulator.sample_url()})
    finally:
        hook.close()
    trigger = _trigger(submitted.request_id)
    waiting = asyncio.ensure_future(anext(trigger.run()))
    share = await _shared_when_open("segmind_default")

    assert share.channel.params.api_key == SECRET, "the key is there, only never shown"
    assert not waiting.done(), "looked at while the trigger was still polling"
    texts = [
        repr(share),
        repr(share.channel.params),
        repr(share.channel.budget),
        repr(share.hook()),
        repr(share.channel.client),
        json.dumps(dict(share.channel.client.headers)),
        repr(trigger),
        json.dumps(trigger.serialize()),
    ]
    event = await waiting
    assert event.payload["status"] == "success"
    texts.append(json.dumps(event.payload))
    for text in texts:
        assert SECRET not in text
    assert SECRET not in caplog.text


async def test_rejected_key_is_not_echoed_by_a_polling_trigger(secret_emulator, monkeypatch, caplog):
    wrong = "fake-WRONG-not-a-real-key-poll-secret"
    connection = {"conn_type": "segmind", "password": wrong, "host": secret_emulator.base_url}
    monkeypatch.setenv("AIRFLOW_CONN_SEGMIND_WRONG_POLL", json.dumps(connection))
    hook = SegmindHook()
    try:
        submitted = hook.submit("runway-gen4-aleph", {"prompt": "snow", "video": secret_emulator.sample_url()})
    finally:
        hook.close()

    event = await anext(_trigger(submitted.request_id, "segmind_wrong_poll").run())

    assert event.payload["status"] == "error"
    assert "rejected the API key" in event.payload["message"]
    assert wrong not in json.dumps(event.payload)
    assert wrong not in caplog.text
