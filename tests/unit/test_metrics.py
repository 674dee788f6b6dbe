"""The completion line, the event's elapsed time, and metrics that can never fail a task.

What a real StatsD server receives from a real run is in ``tests/dags/test_metrics.py``.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import respx
from airflow.providers.common.compat import sdk as compat_sdk
from airflow.providers.common.compat.sdk import AirflowFailException

from airflow_provider_aleph.events import RequestEvent
from airflow_provider_aleph.metrics import job_ended, job_submitted, summary
from airflow_provider_aleph.operators.aleph import RunwayAlephOperator
from airflow_provider_aleph.triggers.segmind import SegmindRequestTrigger
from tests.fakes import RecordingTI

RID = "req-metrics-7"
CONN_ID = "segmind_metrics_unit"
BASE = "https://api.segmind.test"


# -- the completion line ----------------------------------------------------------------------------


def test_the_line_has_total_time_in_words_the_api_times_cost_and_credits_left() -> None:
    metrics = {"queue_time": 12.04, "inference_time": 156.96, "cost": 0.75, "remaining_credits": 41.5}
    assert summary(RID, "COMPLETED", metrics, 169.4) == (
        f"Segmind request {RID} COMPLETED after 2 minutes 49 seconds (queued 12.0 s, inference 157.0 s); "
        "cost 0.75, remaining credits 41.5"
    )


def test_without_any_metric_the_line_says_no_cost_was_reported() -> None:
    assert summary(RID, "COMPLETED", {}, None) == f"Segmind request {RID} COMPLETED; no cost reported"


def test_the_api_total_time_stands_in_when_the_submit_time_is_unknown() -> None:
    line = summary(RID, "FAILED", {"total_time": 3725, "cost": 2}, None)
    assert line == f"Segmind request {RID} FAILED after 1 hour 2 minutes 5 seconds; cost 2"


@pytest.mark.parametrize("value", ["0.75", True, None, float("nan"), [1]])
def test_a_metric_that_is_not_a_number_is_left_out(value: Any) -> None:
    metrics = {"cost": value, "remaining_credits": value, "queue_time": value}
    assert summary(RID, "COMPLETED", metrics, None) == f"Segmind request {RID} COMPLETED; no cost reported"


def test_credit_amounts_carry_no_float_noise() -> None:
    line = summary(RID, "COMPLETED", {"cost": 0.1 + 0.2, "remaining_credits": 999999.25}, None)
    assert line.endswith("cost 0.3, remaining credits 999999.25")


# -- the event's elapsed time -----------------------------------------------------------------------


def test_an_event_from_the_previous_version_has_no_elapsed_time() -> None:
    saved = {"status": "success", "request_id": RID, "message": "m", "metrics": {"cost": 1}, "retryable": False}
    assert RequestEvent.from_payload(saved).elapsed is None


@pytest.mark.parametrize("elapsed", ["12", True, float("inf"), {"s": 1}])
def test_an_unusable_elapsed_time_is_dropped(elapsed: Any) -> None:
    event = RequestEvent.from_payload({"status": "success", "request_id": RID, "elapsed": elapsed})
    assert event.elapsed is None


def test_since_measures_from_the_submit_and_survives_the_round_trip() -> None:
    event = RequestEvent(status="success", request_id=RID)
    assert event.since(None) is event
    stamped = event.since(datetime.now(UTC) - timedelta(minutes=5))
    assert stamped.elapsed is not None
    assert stamped.elapsed >= 300
    assert RequestEvent.from_payload(json.loads(json.dumps(stamped.to_payload()))) == stamped


@respx.mock
async def test_the_trigger_stamps_its_event_with_the_time_since_submit(monkeypatch: pytest.MonkeyPatch) -> None:
    conn = {"conn_type": "segmind", "password": "fake-key", "host": BASE, "extra": {"max_requests_per_minute": 60000}}
    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", json.dumps(conn))
    done = {"request_id": RID, "status": "COMPLETED", "metrics": {"cost": 0.5}, "output": "https://o/x.mp4"}
    respx.get(f"{BASE}/v2/requests/{RID}/status").respond(200, json=done)
    respx.get(f"{BASE}/v2/requests/{RID}").respond(200, json=done)
    trigger = SegmindRequestTrigger(
        request_id=RID,
        segmind_conn_id=CONN_ID,
        deadline=datetime.now(UTC) + timedelta(seconds=30),
        poll_interval=0.01,
        submitted_at=datetime.now(UTC) - timedelta(minutes=10),
    )
    (event,) = [RequestEvent.from_payload(fired.payload) async for fired in trigger.run()]
    assert event.status == "success"
    assert event.elapsed is not None
    assert event.elapsed >= 600


# -- a FAILED job's line, and metrics that cannot fail a task ---------------------------------------


def _lines(caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str], needle: str) -> list[str]:
    """Lines with ``needle``, from stdlib logging (Airflow 3.0) or printed by structlog (3.3)."""
    found = [line for line in caplog.text.splitlines() if needle in line]
    return found or [line for line in capsys.readouterr().out.splitlines() if needle in line]


def test_a_failed_job_that_reports_a_cost_logs_it_before_the_task_fails(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_SEGMIND_DEFAULT", json.dumps({"conn_type": "segmind", "password": "k"}))
    event = {
        "status": "failed",
        "request_id": RID,
        "detail": "Content blocked",
        "metrics": {"queue_time": 2.0, "inference_time": 30.0, "cost": 0.3, "remaining_credits": 9.7},
        "elapsed": 33.0,
    }
    task = RunwayAlephOperator(task_id="edit", prompt="p", video="https://cdn.example.com/in.mp4")
    with caplog.at_level(logging.INFO), pytest.raises(AirflowFailException, match="Content blocked"):
        task.execute_complete({"ti": RecordingTI()}, event)
    (line,) = _lines(caplog, capsys, f"Segmind request {RID} FAILED after")
    assert "FAILED after 33.0 s (queued 2.0 s, inference 30.0 s); cost 0.3, remaining credits 9.7" in line


class _BrokenStats:
    """A metrics backend whose every call raises, as a misconfigured one might."""

    @staticmethod
    def incr(*args: Any, **kwargs: Any) -> None:
        raise OSError("metrics backend unreachable")

    timing = incr


def test_a_failing_metrics_backend_is_logged_and_never_raised(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(compat_sdk, "Stats", _BrokenStats, raising=False)
    with caplog.at_level(logging.WARNING, logger="airflow_provider_aleph.metrics"):
        job_submitted("runway-gen4-aleph")
        job_ended(True, {"cost": 0.75}, 12.0, "runway-gen4-aleph")
    sent = [record.getMessage() for record in caplog.records]
    assert sent == [
        "Could not send the metric segmind.jobs.submitted",
        "Could not send the metric segmind.jobs.completed",
        "Could not send the metric segmind.job.duration",
        "Could not send the metric segmind.job.cost",
    ]
