"""RequestEvent validation, and SegmindRequestTrigger serialization, run(), cleanup() with a faked transport."""

from __future__ import annotations

import asyncio
import importlib
import json
import logging
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from unittest.mock import patch

import httpx
import pytest
import respx

from airflow_provider_aleph.events import EVENT_STATUSES, InvalidEventError, RequestEvent
from airflow_provider_aleph.triggers.segmind import SegmindRequestTrigger

CONN_ID = "segmind_trigger_unit"
KEY = "fake-TRIGGER-not-a-real-key-secret"
BASE = "https://api.segmind.test"
RID = "req-trigger-42"
STATUS_URL = f"{BASE}/v2/requests/{RID}/status"
RESULT_URL = f"{BASE}/v2/requests/{RID}"
OUTPUT = "https://cdn.segmind.test/outputs/req-trigger-42.mp4"


@pytest.fixture(autouse=True)
def _conn(monkeypatch: pytest.MonkeyPatch) -> None:
    # A budget of 60000 calls a minute spaces calls 1 ms apart: these tests are about statuses, not rates.
    conn = {"conn_type": "segmind", "password": KEY, "host": BASE, "extra": {"max_requests_per_minute": 60000}}
    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", json.dumps(conn))


# -- RequestEvent.from_payload ----------------------------------------------------------------


@pytest.mark.parametrize(
    "payload",
    [
        None,
        "success",
        ["success", RID],
        42,
        {"status": "done", "request_id": RID},
        {"status": "SUCCESS", "request_id": RID},
        {"status": None, "request_id": RID},
        {"request_id": RID},
        {"status": "success"},
        {"status": "success", "request_id": ""},
        {"status": "success", "request_id": None},
        {"status": "success", "request_id": 42},
    ],
    ids=[
        "none",
        "string",
        "list",
        "int",
        "unknown-status",
        "uppercase-status",
        "null-status",
        "no-status",
        "no-request-id",
        "empty-request-id",
        "null-request-id",
        "int-request-id",
    ],
)
def test_from_payload_rejects_a_malformed_event(payload: Any) -> None:
    with pytest.raises(InvalidEventError):
        RequestEvent.from_payload(payload)


def test_invalid_event_is_a_value_error_that_shows_the_allowed_statuses() -> None:
    with pytest.raises(ValueError, match="not one of") as caught:
        RequestEvent.from_payload({"status": "done", "request_id": RID})
    for status in ("success", "failed", "error", "timeout"):
        assert status in str(caught.value)


@pytest.mark.parametrize("status", ["success", "failed", "error", "timeout"])
def test_from_payload_accepts_each_known_status(status: str) -> None:
    event = RequestEvent.from_payload({"status": status, "request_id": RID, "message": "m", "metrics": None})
    assert event.status == status
    assert event.request_id == RID
    assert event.message == "m"
    assert event.metrics == {}


def test_allow_list_is_exactly_the_four_statuses() -> None:
    assert frozenset({"success", "failed", "error", "timeout"}) == EVENT_STATUSES


def test_event_payload_round_trips_and_ignores_unknown_keys() -> None:
    event = RequestEvent(
        status="error", request_id=RID, message="m", error_type="SegmindAuthError", status_code=401, retryable=False
    )
    payload = event.to_payload()
    json.dumps(payload)
    assert RequestEvent.from_payload({**payload, "future_key": 1}) == event


# -- serialize -----------------------------------------------------------------------------------


def make_trigger(deadline: datetime | str | None = None, **kwargs: Any) -> SegmindRequestTrigger:
    when = deadline if deadline is not None else datetime.now(UTC) + timedelta(seconds=30)
    return SegmindRequestTrigger(request_id=RID, segmind_conn_id=CONN_ID, deadline=when, **kwargs)


def rebuild(trigger: SegmindRequestTrigger) -> SegmindRequestTrigger:
    classpath, kwargs = trigger.serialize()
    module, _, name = classpath.rpartition(".")
    cls = getattr(importlib.import_module(module), name)
    return cls(**json.loads(json.dumps(kwargs)))


def test_serialize_classpath_imports_to_the_trigger_class() -> None:
    classpath, _ = make_trigger().serialize()
    module, _, name = classpath.rpartition(".")
    assert getattr(importlib.import_module(module), name) is SegmindRequestTrigger


def test_serialized_kwargs_are_plain_json_without_the_api_key() -> None:
    trigger = make_trigger(
        poll_interval=2, status_url=STATUS_URL, response_url=RESULT_URL, submitted_at=datetime.now(UTC)
    )
    _, kwargs = trigger.serialize()
    text = json.dumps(kwargs)
    assert KEY not in text
    assert "password" not in text
    assert json.loads(text) == kwargs


@pytest.mark.parametrize(
    "deadline",
    [
        datetime(2031, 5, 17, 9, 30, 15, 123456, tzinfo=UTC),
        datetime(2031, 5, 17, 14, 30, 15, tzinfo=timezone(timedelta(hours=5))),
        "2031-05-17T09:30:15+00:00",
        "2031-05-17T09:30:15",
    ],
    ids=["utc", "plus-five", "iso-string", "naive-string-is-utc"],
)
def test_rebuilt_trigger_keeps_the_same_absolute_deadline(deadline: datetime | str) -> None:
    trigger = make_trigger(deadline)
    again = rebuild(trigger)
    assert again.deadline == trigger.deadline
    assert again.deadline.utcoffset() == timedelta(0)
    expected = deadline if isinstance(deadline, datetime) else datetime.fromisoformat(deadline).replace(tzinfo=UTC)
    assert again.deadline == expected


def test_rebuilt_trigger_keeps_every_setting() -> None:
    submitted = datetime(2031, 5, 17, 9, 0, tzinfo=UTC)
    trigger = make_trigger(
        poll_interval=2.5,
        status_url=STATUS_URL,
        response_url=RESULT_URL,
        submitted_at=submitted,
        model="runway-gen4-aleph",
        expected_duration=169,
        max_poll_interval=45,
    )
    again = rebuild(trigger)
    assert again.serialize() == trigger.serialize()
    assert (again.request_id, again.segmind_conn_id) == (RID, CONN_ID)
    assert (again.poll_interval, again.status_url, again.response_url) == (2.5, STATUS_URL, RESULT_URL)
    assert again.submitted_at == submitted
    assert (again.model, again.expected_duration, again.max_poll_interval) == ("runway-gen4-aleph", 169.0, 45.0)


def test_kwargs_serialized_by_the_previous_version_still_load() -> None:
    """A trigger deferred before the poll scheduler existed is rebuilt from the kwargs it was saved with."""
    saved = {
        "request_id": RID,
        "segmind_conn_id": CONN_ID,
        "deadline": "2031-05-17T09:30:15+00:00",
        "poll_interval": 10.0,
        "status_url": STATUS_URL,
        "response_url": RESULT_URL,
        "submitted_at": "2031-05-17T09:00:00+00:00",
    }
    trigger = SegmindRequestTrigger(**saved)
    assert (trigger.model, trigger.expected_duration, trigger.max_poll_interval) == (None, None, None)
    _, kwargs = trigger.serialize()
    assert {key: kwargs[key] for key in saved} == saved


# -- run() ---------------------------------------------------------------------------------------


async def run_to_end(trigger: SegmindRequestTrigger) -> RequestEvent:
    """Run the trigger, check it yields exactly one valid event with the request id, and return it."""
    events = [event async for event in trigger.run()]
    assert len(events) == 1
    event = RequestEvent.from_payload(events[0].payload)
    assert event.request_id == RID
    return event


def body(status: str, **extra: Any) -> dict[str, Any]:
    return {"request_id": RID, "status": status, "metrics": {}, **extra}


@respx.mock
async def test_run_polls_until_completed_and_yields_success_without_any_post() -> None:
    post = respx.post(url__startswith=BASE).mock(return_value=httpx.Response(500))
    status = respx.get(STATUS_URL).mock(
        side_effect=[
            httpx.Response(200, json=body("QUEUED")),
            httpx.Response(200, json=body("PROCESSING", metrics={"queue_time": 0.1})),
            httpx.Response(200, json=body("COMPLETED", metrics={"inference_time": 3.2})),
        ]
    )
    metrics = {"inference_time": 3.2, "queue_time": 0.1, "cost": 0.45}
    result = respx.get(RESULT_URL).mock(
        return_value=httpx.Response(200, json=body("COMPLETED", output=OUTPUT, metrics=metrics))
    )
    respx.route(url__startswith=BASE).mock(return_value=httpx.Response(599))  # anything else would show up

    event = await run_to_end(make_trigger(poll_interval=0.01))

    assert event.status == "success"
    assert event.output_url == OUTPUT
    assert event.output == OUTPUT
    assert event.metrics == metrics
    assert status.call_count == 3
    assert result.call_count == 1
    assert post.called is False
    assert {call.request.method for call in respx.calls} == {"GET"}
    assert all(call.request.headers["x-api-key"] == KEY for call in respx.calls)


@respx.mock
async def test_run_follows_the_status_and_response_urls_it_was_given() -> None:
    status = respx.get(f"{BASE}/custom/status/{RID}").mock(return_value=httpx.Response(200, json=body("COMPLETED")))
    result = respx.get(f"{BASE}/custom/result/{RID}").mock(
        return_value=httpx.Response(200, json=body("COMPLETED", output=[OUTPUT]))
    )
    trigger = make_trigger(
        poll_interval=0.01, status_url=f"{BASE}/custom/status/{RID}", response_url=f"{BASE}/custom/result/{RID}"
    )
    event = await run_to_end(trigger)
    assert event.status == "success"
    assert event.output_url == OUTPUT
    assert (status.call_count, result.call_count) == (1, 1)


@respx.mock
async def test_run_yields_failed_with_the_error_on_a_422_failed_body() -> None:
    respx.get(STATUS_URL).mock(
        side_effect=[
            httpx.Response(200, json=body("PROCESSING")),
            httpx.Response(422, json=body("FAILED", error="Content blocked by safety filter", metrics={"x": 1})),
        ]
    )
    event = await run_to_end(make_trigger(poll_interval=0.01))
    assert event.status == "failed"
    assert event.detail == "Content blocked by safety filter"
    failure = str(event.failure(CONN_ID))
    assert "Content blocked by safety filter" in failure
    assert f"request_id={RID}" in failure
    assert event.metrics == {"x": 1}
    assert event.output_url is None


@respx.mock
async def test_run_yields_a_non_retryable_error_on_401() -> None:
    status = respx.get(STATUS_URL).mock(return_value=httpx.Response(401, json={"error": "invalid x-api-key"}))
    event = await run_to_end(make_trigger(poll_interval=0.01))
    assert event.status == "error"
    assert event.retryable is False
    assert event.status_code == 401
    assert event.error_type == "SegmindAuthError"
    assert f"conn_id={CONN_ID}" in str(event.failure(CONN_ID))
    assert KEY not in json.dumps(event.to_payload())
    assert status.call_count == 1


@respx.mock
async def test_run_yields_an_error_naming_retention_on_404() -> None:
    respx.get(STATUS_URL).mock(return_value=httpx.Response(404, json={"error": "Request not found or expired"}))
    event = await run_to_end(make_trigger(poll_interval=0.01))
    assert event.status == "error"
    assert event.error_type == "SegmindRequestExpired"
    assert "1 hour" in event.message


async def test_run_with_a_past_deadline_times_out_without_any_http_call() -> None:
    with respx.mock(assert_all_called=False, assert_all_mocked=True) as router:
        event = await run_to_end(make_trigger(datetime.now(UTC) - timedelta(seconds=1), poll_interval=0.01))
    assert event.status == "timeout"
    assert RID in event.message
    assert "SegmindRequestSensor" in event.message
    assert len(router.calls) == 0


@respx.mock
async def test_run_times_out_at_the_deadline_while_still_queued() -> None:
    status = respx.get(STATUS_URL).mock(return_value=httpx.Response(200, json=body("QUEUED")))
    trigger = make_trigger(datetime.now(UTC) + timedelta(seconds=0.3), poll_interval=0.05)
    event = await run_to_end(trigger)
    assert event.status == "timeout"
    assert "QUEUED" in event.message
    assert trigger.deadline.isoformat() in event.message
    assert status.call_count >= 2
    assert datetime.now(UTC) >= trigger.deadline, "the timeout event came before the deadline"


@respx.mock
async def test_retries_inside_a_poll_do_not_carry_it_past_the_deadline() -> None:
    # Segmind asks for an hour's pause (the budget caps it at a minute): the deadline, 0.5 s away, wins.
    status = respx.get(STATUS_URL).mock(
        return_value=httpx.Response(429, headers={"Retry-After": "3600"}, json={"error": "slow down"})
    )
    trigger = make_trigger(datetime.now(UTC) + timedelta(seconds=0.5), poll_interval=0.05)
    event = await asyncio.wait_for(run_to_end(trigger), timeout=30)  # a hang guard, not a speed check
    assert event.status == "timeout"
    assert RID in event.message
    assert status.call_count == 1, "the paused budget let no second attempt through"


@respx.mock
async def test_success_comes_from_the_result_body_not_the_status_alone() -> None:
    respx.get(STATUS_URL).mock(return_value=httpx.Response(200, json=body("COMPLETED")))
    result = respx.get(RESULT_URL).mock(
        side_effect=[
            httpx.Response(200, json=body("PROCESSING", output=None)),
            httpx.Response(200, json=body("COMPLETED", output=OUTPUT)),
        ]
    )
    event = await run_to_end(make_trigger(poll_interval=0.01))
    assert event.status == "success"
    assert event.output_url == OUTPUT
    assert result.call_count == 2


@respx.mock
async def test_a_failed_body_under_a_5xx_is_a_server_error_not_a_failure() -> None:
    respx.get(STATUS_URL).mock(
        side_effect=[
            httpx.Response(500, json=body("FAILED", error="internal")),
            httpx.Response(200, json=body("COMPLETED")),
        ]
    )
    respx.get(RESULT_URL).mock(return_value=httpx.Response(200, json=body("COMPLETED", output=OUTPUT)))
    with patch("airflow_provider_aleph.retry.RetryPolicy.wait_seconds", return_value=0.0):
        event = await run_to_end(make_trigger(poll_interval=0.01))
    assert event.status == "success", "a 5xx is retried; only a 4xx FAILED body ends the request"


# -- cleanup() and on_kill(): log only -----------------------------------------------------------


def logged_lines(caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str], needle: str) -> list[str]:
    """Log lines with ``needle``: Airflow 3.0 routes trigger logs through stdlib logging (and may echo
    them to stdout), 3.3 prints them to stdout only."""
    printed = capsys.readouterr().out
    found = [line for line in caplog.text.splitlines() if needle in line]
    return found or [line for line in printed.splitlines() if needle in line]


async def test_cleanup_and_on_kill_log_the_sensor_hint_without_any_http_call(
    caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    trigger = make_trigger()
    with respx.mock(assert_all_called=False, assert_all_mocked=True) as router, caplog.at_level(logging.INFO):
        await trigger.cleanup()
        await trigger.on_kill()
    assert len(router.calls) == 0
    lines = logged_lines(caplog, capsys, "keeps running")
    assert len(lines) == 2
    for line in lines:
        assert f"SegmindRequestSensor(request_id={RID!r})" in line
        assert "no cancel endpoint" in line
        assert KEY not in line


@respx.mock
async def test_cleanup_after_the_event_says_nothing_about_a_job_left_running(
    caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    respx.get(STATUS_URL).mock(return_value=httpx.Response(200, json=body("COMPLETED")))
    respx.get(RESULT_URL).mock(return_value=httpx.Response(200, json=body("COMPLETED", output=OUTPUT)))
    trigger = make_trigger(poll_interval=0.01)
    assert (await run_to_end(trigger)).status == "success"
    calls = len(respx.calls)
    capsys.readouterr()
    with caplog.at_level(logging.INFO):
        await trigger.cleanup()
    assert logged_lines(caplog, capsys, "keeps running") == []
    assert len(respx.calls) == calls
