"""Every request state goes through the four places that read one: the trigger, the worker-side wait, the
sensor's poke and reattach. A state added to ``SegmindStatus`` without a row in the table, or without an
expectation here, fails this module."""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import respx
from airflow.providers.common.compat.sdk import AirflowException, AirflowFailException, PokeReturnValue

from airflow_provider_aleph.events import RequestEvent, wait_in_worker
from airflow_provider_aleph.hooks.segmind import SegmindHook
from airflow_provider_aleph.reattach import STATE_KEY, Resume, recover
from airflow_provider_aleph.sensors.segmind import SegmindRequestSensor
from airflow_provider_aleph.states import STATE_RULES, Meaning, SegmindStatus
from airflow_provider_aleph.triggers.segmind import SegmindRequestTrigger

CONN_ID = "segmind_states_unit"
KEY = "fake-STATES-not-a-real-key-secret"
BASE = "https://api.segmind.test"
RID = "req-states-7"
STATUS_URL = f"{BASE}/v2/requests/{RID}/status"
RESULT_URL = f"{BASE}/v2/requests/{RID}"
OUTPUT = "https://cdn.segmind.test/outputs/req-states-7.mp4"

#: What each state must mean, written out so that a new member needs a decision here too.
EXPECTED = {
    SegmindStatus.QUEUED: "running",
    SegmindStatus.PROCESSING: "running",
    SegmindStatus.COMPLETED: "success",
    SegmindStatus.FAILED: "failed",
    SegmindStatus.UNKNOWN: "running",
}
ALL = list(SegmindStatus)


@pytest.fixture(autouse=True)
def _conn(monkeypatch: pytest.MonkeyPatch) -> None:
    conn = {"conn_type": "segmind", "password": KEY, "host": BASE, "extra": {"max_requests_per_minute": 60000}}
    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", json.dumps(conn))


def answer(status: SegmindStatus) -> httpx.Response:
    body: dict[str, Any] = {"request_id": RID, "status": status.value, "metrics": {}}
    if STATE_RULES[status].meaning is Meaning.FAILED:
        return httpx.Response(422, json={**body, "error": "refused by the model"})
    return httpx.Response(200, json=body)


def mock_api(status: SegmindStatus) -> respx.Route:
    """The status answers ``status`` once, then COMPLETED; the result body holds an output."""
    route = respx.get(STATUS_URL).mock(side_effect=[answer(status), answer(SegmindStatus.COMPLETED)])
    respx.get(RESULT_URL).mock(
        return_value=httpx.Response(200, json={"request_id": RID, "status": "COMPLETED", "output": OUTPUT})
    )
    return route


def trigger() -> SegmindRequestTrigger:
    return SegmindRequestTrigger(
        request_id=RID,
        segmind_conn_id=CONN_ID,
        deadline=datetime.now(UTC) + timedelta(seconds=30),
        poll_interval=0.01,
    )


def test_every_state_has_a_row_and_an_expectation() -> None:
    assert set(STATE_RULES) == set(SegmindStatus)
    assert set(EXPECTED) == set(SegmindStatus), "decide what a new state means for the task, here and in the table"
    for status, meaning in EXPECTED.items():
        assert status.rule.meaning.value == {"success": "succeeded"}.get(meaning, meaning)
        assert status.is_terminal is (meaning != "running")
    assert SegmindStatus.FAILED.rule.retry is False, "a FAILED job resubmitted would be refused again, and billed"
    assert not SegmindStatus.UNKNOWN.rule.documented


def _first_event(status: SegmindStatus, route: respx.Route, event: RequestEvent) -> None:
    """What a wait made of a first answer ``status`` (then COMPLETED, if it polled again)."""
    if EXPECTED[status] == "running":
        assert route.call_count == 2, f"{status} must be polled again"
        assert event.status == "success"
    else:
        assert route.call_count == 1, f"{status} ends the wait"
        assert event.status == EXPECTED[status]


@pytest.mark.parametrize("status", ALL, ids=str)
@respx.mock
async def test_the_trigger(status: SegmindStatus) -> None:
    route = mock_api(status)
    events = [event async for event in trigger().run()]
    assert len(events) == 1
    _first_event(status, route, RequestEvent.from_payload(events[0].payload))


@pytest.mark.parametrize("status", ALL, ids=str)
@respx.mock
def test_the_worker_side_wait(status: SegmindStatus) -> None:
    route = mock_api(status)
    _first_event(status, route, RequestEvent.from_payload(wait_in_worker(trigger())))


class RecordingTI:
    def __init__(self) -> None:
        self.xcom: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.xcom[key] = value


@pytest.mark.parametrize("status", ALL, ids=str)
@respx.mock
def test_the_sensor_poke(status: SegmindStatus) -> None:
    mock_api(status)
    sensor = SegmindRequestSensor(task_id="wait", request_id=RID, segmind_conn_id=CONN_ID, deferrable=False)
    context: dict[str, Any] = {"ti": RecordingTI()}
    if EXPECTED[status] == "failed":
        with pytest.raises(AirflowException) as raised:
            sensor.poke(context)  # type: ignore[arg-type]
        assert isinstance(raised.value, AirflowFailException) is not status.rule.retry
        assert RID in str(raised.value)
        return
    outcome = sensor.poke(context)  # type: ignore[arg-type]
    if EXPECTED[status] == "running":
        assert outcome is False
    else:
        assert isinstance(outcome, PokeReturnValue)
        assert outcome.is_done
        assert outcome.xcom_value["output_url"] == OUTPUT


class DictStore:
    def __init__(self, value: Any) -> None:
        self.values = {STATE_KEY: value}

    def get(self, key: str) -> Any:
        return self.values.get(key)

    def set(self, key: str, value: Any) -> None:
        self.values[key] = value


@pytest.mark.parametrize("status", ALL, ids=str)
@respx.mock
def test_reattach(status: SegmindStatus) -> None:
    mock_api(status)
    store = DictStore({"request_id": RID, "fingerprint": "digest"})
    recovery = recover(store, SegmindHook(CONN_ID), "digest", logging.getLogger(__name__))
    assert recovery is not None
    expected = {"running": Resume.WAIT, "success": Resume.DONE, "failed": Resume.RESUBMIT}[EXPECTED[status]]
    assert recovery.action is expected


@respx.mock
async def test_an_undocumented_status_is_warned_about_once_and_polled_to_the_end(
    capsys: pytest.CaptureFixture[str],
) -> None:
    route = respx.get(STATUS_URL).mock(
        side_effect=[httpx.Response(200, json={"request_id": RID, "status": "STARTING"})] * 4
        + [answer(SegmindStatus.COMPLETED)]
    )
    respx.get(RESULT_URL).mock(
        return_value=httpx.Response(200, json={"request_id": RID, "status": "COMPLETED", "output": OUTPUT})
    )
    events = [event async for event in trigger().run()]
    assert events[0].payload["status"] == "success"
    assert route.call_count == 5
    # Airflow's logging writes to the captured stream (structlog), not through caplog.
    warnings = [line for line in capsys.readouterr().out.splitlines() if "undocumented status 'STARTING'" in line]
    assert len(warnings) == 1, "one warning per request, naming the value"
    assert "warning" in warnings[0].lower()
    assert RID in warnings[0]


@respx.mock
async def test_an_undocumented_status_is_never_success_even_at_the_deadline() -> None:
    respx.get(STATUS_URL).mock(return_value=httpx.Response(200, json={"request_id": RID, "status": "STARTING"}))
    short = SegmindRequestTrigger(
        request_id=RID, segmind_conn_id=CONN_ID, deadline=datetime.now(UTC) + timedelta(seconds=0.3), poll_interval=0.02
    )
    events = await asyncio.wait_for(_collect(short), timeout=30)  # a hang guard, not a speed check
    event = RequestEvent.from_payload(events[0].payload)
    assert event.status == "timeout"
    assert "STARTING" in event.message


async def _collect(waiting: SegmindRequestTrigger) -> list[Any]:
    return [event async for event in waiting.run()]


def test_a_timeout_event_from_an_earlier_version_is_still_retryable() -> None:
    old = {"status": "timeout", "request_id": RID, "message": "still PROCESSING at the deadline"}
    assert RequestEvent.from_payload(old).retryable
    assert RequestEvent.from_payload(old).failure("c").retryable
    assert not RequestEvent.from_payload({"status": "failed", "request_id": RID}).retryable
