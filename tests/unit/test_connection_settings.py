"""Connection settings have one home (``hooks/connection.py``): each extra's default, parsing and error,
the form built from them, and the retry policy's attempts drawn from the same constant."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
import respx

from airflow_provider_aleph.exceptions import SegmindConfigError, SegmindRateLimited, SegmindUnavailable
from airflow_provider_aleph.get_provider_info import SEGMIND_CONN_FIELDS, SEGMIND_UI_FIELD_BEHAVIOUR
from airflow_provider_aleph.hooks.connection import (
    DEFAULT_MAX_CONSECUTIVE_FAILURES,
    DEFAULT_MAX_REQUESTS_PER_MINUTE,
    EXTRAS,
    read_extra,
)
from airflow_provider_aleph.hooks.segmind import SegmindHook
from airflow_provider_aleph.retry import RetryPolicy
from tests.fakes import set_segmind_conn

CONN_ID = "segmind_settings_unit"
KEY = "fake-SETTINGS-not-a-real-key-secret"
BASE = "https://api.segmind.test"


def set_conn(monkeypatch: pytest.MonkeyPatch, **extra: Any) -> None:
    set_segmind_conn(monkeypatch, CONN_ID, KEY, BASE, **extra)


def status_url(rid: str) -> str:
    return f"{BASE}/v2/requests/{rid}/status"


@pytest.fixture(autouse=True)
def _no_retry_sleep(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("airflow_provider_aleph.retry.RetryPolicy.wait_seconds", lambda self, error, attempt: 0.0)


def test_the_retry_policy_attempts_come_from_the_connection_default() -> None:
    assert RetryPolicy().max_attempts == DEFAULT_MAX_CONSECUTIVE_FAILURES == EXTRAS["max_consecutive_failures"].default


def test_the_connection_form_lists_every_extra_with_its_default() -> None:
    assert set(SEGMIND_CONN_FIELDS) == set(EXTRAS)
    placeholders = SEGMIND_UI_FIELD_BEHAVIOUR["placeholders"]
    for name, spec in EXTRAS.items():
        assert SEGMIND_CONN_FIELDS[name]["schema"]["default"] == spec.default
        assert SEGMIND_CONN_FIELDS[name]["label"] == spec.label
        shown = f"{spec.default:g}" if isinstance(spec.default, float) else str(spec.default)
        assert placeholders[name] == shown


@pytest.mark.parametrize("name", sorted(EXTRAS))
def test_every_extra_refuses_a_bad_value_naming_itself_and_the_connection(name: str) -> None:
    with pytest.raises(SegmindConfigError) as caught:
        read_extra({name: [object()]}, name, CONN_ID)
    assert f"'{name}'" in str(caught.value)
    assert CONN_ID in str(caught.value)
    assert EXTRAS[name].allowed in str(caught.value)


@pytest.mark.parametrize("name", sorted(EXTRAS))
def test_every_extra_has_its_default_when_absent_or_empty(name: str) -> None:
    assert read_extra({}, name, CONN_ID) == EXTRAS[name].default
    assert read_extra({name: ""}, name, CONN_ID) == EXTRAS[name].default


# -- the connection extras --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"), [(None, DEFAULT_MAX_REQUESTS_PER_MINUTE), ("", 40.0), (5, 5.0), ("50", 50.0), (0.5, 0.5)]
)
def test_max_requests_per_minute_reads_positive_numbers(raw: Any, expected: float) -> None:
    extra = {} if raw is None else {"max_requests_per_minute": raw}
    assert read_extra(extra, "max_requests_per_minute", CONN_ID) == expected


@pytest.mark.parametrize("raw", [0, -3, "0", "fast", True, float("nan"), float("inf"), [40], {"rpm": 40}])
def test_max_requests_per_minute_refuses_anything_else_naming_the_extra(raw: Any) -> None:
    with pytest.raises(SegmindConfigError) as caught:
        read_extra({"max_requests_per_minute": raw}, "max_requests_per_minute", CONN_ID)
    message = str(caught.value)
    assert "'max_requests_per_minute'" in message
    assert "positive number" in message
    assert CONN_ID in message
    assert repr(raw) in message


@pytest.mark.parametrize(
    ("raw", "expected"), [(None, DEFAULT_MAX_CONSECUTIVE_FAILURES), ("", 6), (1, 1), ("12", 12), (3.0, 3)]
)
def test_max_consecutive_failures_reads_whole_numbers_from_one(raw: Any, expected: int) -> None:
    extra = {} if raw is None else {"max_consecutive_failures": raw}
    assert read_extra(extra, "max_consecutive_failures", CONN_ID) == expected


@pytest.mark.parametrize("raw", [0, -1, "0", "2.5", 2.5, "many", False, [3]])
def test_max_consecutive_failures_refuses_anything_else_naming_the_extra(raw: Any) -> None:
    with pytest.raises(SegmindConfigError) as caught:
        read_extra({"max_consecutive_failures": raw}, "max_consecutive_failures", CONN_ID)
    message = str(caught.value)
    assert "'max_consecutive_failures'" in message
    assert "whole number" in message
    assert CONN_ID in message


@respx.mock(assert_all_mocked=True)
def test_a_bad_extra_fails_a_submit_before_anything_is_sent(monkeypatch: pytest.MonkeyPatch) -> None:
    set_conn(monkeypatch, max_requests_per_minute="lots")
    hook = SegmindHook(CONN_ID)
    with pytest.raises(SegmindConfigError, match="max_requests_per_minute"):
        hook.submit("runway-gen4-aleph", {"prompt": "snow", "video": "https://x.test/a.mp4"})
    assert len(respx.calls) == 0


SUBMIT_URL = f"{BASE}/v2/flux-schnell"


@pytest.mark.parametrize("mode", ["sync", "async"])
@respx.mock
def test_max_consecutive_failures_sets_the_attempts_of_a_submit(monkeypatch: pytest.MonkeyPatch, mode: str) -> None:
    # Changed on purpose (issue 12): the extra counts the attempts of submits and uploads only.
    set_conn(monkeypatch, max_consecutive_failures=2)
    route = respx.post(SUBMIT_URL).mock(return_value=httpx.Response(429, json={"error": "slow down"}))
    hook = SegmindHook(CONN_ID)

    async def asubmit() -> Any:
        try:
            return await hook.asubmit("flux-schnell", {"prompt": "x"})
        finally:
            await hook.aclose()

    with pytest.raises(SegmindRateLimited):
        hook.submit("flux-schnell", {"prompt": "x"}) if mode == "sync" else asyncio.run(asubmit())
    assert route.call_count == 2


@respx.mock
def test_outage_tolerance_sets_how_long_a_read_rides_out_failures(monkeypatch: pytest.MonkeyPatch) -> None:
    set_conn(monkeypatch, outage_tolerance=0.2, max_consecutive_failures=1)
    route = respx.get(status_url("req-503")).mock(return_value=httpx.Response(503))
    with pytest.raises(SegmindUnavailable) as caught:
        SegmindHook(CONN_ID).get_status("req-503")
    assert route.call_count > 1, "max_consecutive_failures does not apply to reads"
    assert "outage_tolerance" in str(caught.value)


@respx.mock
def test_an_explicit_retry_policy_wins_over_the_extras(monkeypatch: pytest.MonkeyPatch) -> None:
    set_conn(monkeypatch, max_consecutive_failures=5, outage_tolerance=3600)
    submit = respx.post(SUBMIT_URL).mock(return_value=httpx.Response(429, json={"error": "slow down"}))
    read = respx.get(status_url("req-503")).mock(return_value=httpx.Response(503))
    hook = SegmindHook(CONN_ID, retry_policy=RetryPolicy(max_attempts=3, outage_tolerance=0.1))
    with pytest.raises(SegmindRateLimited):
        hook.submit("flux-schnell", {"prompt": "x"})
    with pytest.raises(SegmindUnavailable):
        hook.get_status("req-503")
    assert submit.call_count == 3
    assert read.call_count > 1
