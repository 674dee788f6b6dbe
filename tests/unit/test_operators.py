"""Operators without a scheduler: the defer path, execute_complete's event checks, validation order."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import respx
from airflow.providers.common.compat.sdk import AirflowException, AirflowFailException, TaskDeferred

from airflow_provider_aleph.exceptions import InvalidParameter
from airflow_provider_aleph.operators.aleph import RunwayAlephOperator
from airflow_provider_aleph.operators.segmind import SegmindSubmitOperator
from airflow_provider_aleph.sensors.segmind import SegmindRequestSensor
from airflow_provider_aleph.triggers.segmind import SegmindRequestTrigger
from tests.fakes import RecordingTI

KEY = "fake-OPERATOR-unit-not-a-real-key"
BASE = "https://api.segmind.test"
VIDEO = "https://cdn.example.com/in.mp4"
RID = "req-op-1"
SUBMITTED = {
    "request_id": RID,
    "status": "QUEUED",
    "status_url": f"{BASE}/v2/requests/{RID}/status",
    "response_url": f"{BASE}/v2/requests/{RID}",
}


@pytest.fixture
def context() -> dict[str, Any]:
    return {"ti": RecordingTI()}


@pytest.fixture(autouse=True)
def _conn(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_SEGMIND_DEFAULT", json.dumps({"conn_type": "segmind", "password": KEY, "host": BASE})
    )


def aleph(**overrides: Any) -> RunwayAlephOperator:
    kwargs = {"task_id": "edit", "prompt": "make it winter", "video": VIDEO, "poll_interval": 3} | overrides
    return RunwayAlephOperator(**kwargs)


@respx.mock
def test_execute_submits_pushes_request_id_then_defers_with_an_absolute_deadline(context):
    respx.head(VIDEO).respond(200, headers={"content-length": "1000"})
    submit = respx.post(f"{BASE}/v2/runway-gen4-aleph").respond(200, json=SUBMITTED)
    before = datetime.now(UTC)

    with pytest.raises(TaskDeferred) as deferred:
        aleph(timeout=timedelta(minutes=20), seed="42", aspect_ratio="1:1").execute(context)

    assert submit.call_count == 1
    assert json.loads(submit.calls[0].request.content) == {
        "prompt": "make it winter",
        "video": VIDEO,
        "aspect_ratio": "1:1",
        "seed": 42,
    }
    assert context["ti"].xcom["request_id"] == RID
    assert deferred.value.method_name == "execute_complete"
    assert deferred.value.timeout is None, "the trigger owns the deadline; a defer timeout skips execute_complete"
    trigger = deferred.value.trigger
    assert isinstance(trigger, SegmindRequestTrigger)
    assert trigger.request_id == RID
    assert trigger.status_url == SUBMITTED["status_url"]
    assert trigger.response_url == SUBMITTED["response_url"]
    assert trigger.poll_interval == 3
    assert before + timedelta(minutes=20) <= trigger.deadline <= datetime.now(UTC) + timedelta(minutes=20)


@respx.mock
def test_invalid_parameter_fails_without_any_request(context):
    route = respx.route()
    with pytest.raises(AirflowFailException, match=r"'aspect_ratio'.*nothing was submitted"):
        aleph(aspect_ratio="2:1").execute(context)
    assert route.call_count == 0
    assert "request_id" not in context["ti"].xcom


@respx.mock
def test_oversized_video_fails_before_the_submit(context):
    respx.head(VIDEO).respond(200, headers={"content-length": str(17 * 1024 * 1024)})
    submit = respx.post(f"{BASE}/v2/runway-gen4-aleph")
    with pytest.raises(AirflowFailException, match=r"'video'.*16 MiB"):
        aleph().execute(context)
    assert submit.call_count == 0


@pytest.mark.parametrize(
    ("status", "exception"),
    [
        (400, AirflowFailException),
        (401, AirflowFailException),
        (406, AirflowFailException),
        (410, AirflowFailException),
    ],
)
@respx.mock
def test_terminal_submit_errors_fail_without_retry_and_name_the_connection(context, status, exception):
    respx.head(VIDEO).respond(200)
    respx.post(f"{BASE}/v2/runway-gen4-aleph").respond(status, json={"error": "detail from the API"})
    with pytest.raises(exception) as raised:
        aleph().execute(context)
    assert type(raised.value) is exception
    assert "detail from the API" in str(raised.value)
    assert "conn_id=segmind_default" in str(raised.value)
    assert KEY not in str(raised.value)


@respx.mock
def test_submit_rate_limited_until_the_budget_ends_is_left_to_airflow_retries(context, monkeypatch):
    monkeypatch.setattr("airflow_provider_aleph.retry.RetryPolicy.wait_seconds", lambda self, e, a: 0.0)
    respx.head(VIDEO).respond(200)
    submit = respx.post(f"{BASE}/v2/runway-gen4-aleph").respond(429, json={"error": "slow down"})
    with pytest.raises(AirflowException) as raised:
        aleph().execute(context)
    assert not isinstance(raised.value, AirflowFailException), "a 429 created nothing: an Airflow retry is safe"
    assert submit.call_count == 6


@respx.mock
def test_lost_submit_answer_fails_without_retry(context):
    respx.head(VIDEO).respond(200)
    submit = respx.post(f"{BASE}/v2/runway-gen4-aleph").mock(side_effect=httpx.ReadTimeout("lost"))
    with pytest.raises(AirflowFailException, match=r"outcome .* is unknown"):
        aleph().execute(context)
    assert submit.call_count == 1


SUCCESS = {"status": "success", "request_id": RID, "message": "done", "output_url": "https://o/x.mp4", "metrics": {}}


def test_execute_complete_returns_the_result_dict_and_pushes_output_url(context):
    result = aleph().execute_complete(context, dict(SUCCESS, metrics={"inference_time": 3.5}))
    assert result == {
        "request_id": RID,
        "status": "COMPLETED",
        "output_url": "https://o/x.mp4",
        "output_path": None,
        "metrics": {"inference_time": 3.5},
        "cost": None,
        "output": None,
    }
    assert context["ti"].xcom["output_url"] == "https://o/x.mp4"


@pytest.mark.parametrize(
    "event",
    [
        pytest.param(None, id="none"),
        pytest.param("success", id="not-a-dict"),
        pytest.param({"status": "done", "request_id": RID}, id="unknown-status"),
        pytest.param({"status": "success"}, id="no-request-id"),
        pytest.param({"status": "failed", "request_id": RID, "message": "FAILED: blocked"}, id="failed"),
        pytest.param({"status": "error", "request_id": RID, "message": "HTTP 404"}, id="error"),
        pytest.param({"status": "timeout", "request_id": RID, "message": "deadline"}, id="timeout"),
    ],
)
def test_execute_complete_never_treats_anything_but_success_as_success(context, event):
    with pytest.raises(AirflowFailException) as raised:
        aleph().execute_complete(context, event)
    if isinstance(event, dict) and "request_id" in event:
        assert RID in str(raised.value)
    assert "conn_id=segmind_default" in str(raised.value)
    assert "output_url" not in context["ti"].xcom


def test_aleph_success_without_an_output_url_is_a_failure(context):
    with pytest.raises(AirflowFailException, match="no output URL"):
        aleph().execute_complete(context, dict(SUCCESS, output_url=None, output={"text": "?"}))


def test_generic_operator_accepts_success_without_an_output_url(context):
    op = SegmindSubmitOperator(task_id="llm", model="some-llm", payload={"prompt": "hi"})
    result = op.execute_complete(context, dict(SUCCESS, output_url=None, output="hello"))
    assert result["output"] == "hello"
    assert result["output_url"] is None


@pytest.mark.parametrize(
    ("kwargs", "parameter"),
    [
        ({"model": "bad slug!", "payload": {}}, "model"),
        ({"model": "flux", "payload": ["not", "a", "dict"]}, "payload"),
        ({"model": "flux", "payload": "{not json"}, "payload"),
    ],
)
def test_generic_operator_validates_model_and_payload(kwargs, parameter, context):
    op = SegmindSubmitOperator(task_id="t", **kwargs)
    with pytest.raises(AirflowFailException, match=f"Invalid parameter '{parameter}'"):
        op.execute(context)


def test_generic_operator_reads_a_rendered_json_payload():
    op = SegmindSubmitOperator(task_id="t", model="flux", payload='{"prompt": "snow", "steps": 4}')
    assert op.build_payload() == {"prompt": "snow", "steps": 4}


@pytest.mark.parametrize("kwargs", [{"poll_interval": 0}, {"poll_interval": -1}, {"timeout": 0}])
def test_operator_refuses_non_positive_intervals_at_definition(kwargs):
    with pytest.raises(ValueError, match=r"poll_interval|timeout"):
        aleph(**kwargs)


@pytest.mark.parametrize("given", [0, -5, 8 * 24 * 3600, timedelta(days=8), "600", True, float("nan")])
def test_presign_expiration_outside_one_second_to_seven_days_is_refused_at_definition(given):
    with pytest.raises(InvalidParameter, match=r"'presign_expiration'.*1 second to 7 days"):
        aleph(presign_expiration=given)


@pytest.mark.parametrize(("given", "seconds"), [(None, 6 * 3600), (600, 600), (timedelta(days=7), 7 * 24 * 3600)])
def test_presign_expiration_in_seconds(given, seconds):
    kwargs = {} if given is None else {"presign_expiration": given}
    assert aleph(**kwargs).presign_expiration == seconds


def test_templated_fields_of_the_aleph_operator():
    assert set(RunwayAlephOperator.template_fields) == {
        "prompt",
        "video",
        "aspect_ratio",
        "reference_image",
        "seed",
        "segmind_conn_id",
        "input_mode",
        "output_path",
        "if_output_exists",
    }
    assert set(SegmindSubmitOperator.template_fields) == {
        "model",
        "payload",
        "segmind_conn_id",
        "input_mode",
        "output_path",
        "if_output_exists",
    }
    assert set(SegmindRequestSensor.template_fields) == {"request_id", "segmind_conn_id", "output_path"}
