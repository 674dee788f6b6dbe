"""SegmindHook and input checks over real loopback sockets against the Segmind emulator."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from typing import TYPE_CHECKING

import httpx
import pytest

from airflow_provider_aleph.access import origin_of
from airflow_provider_aleph.emulator import FAIL_MARKER, FAILURE_REASON, Emulator
from airflow_provider_aleph.exceptions import SegmindAuthError, SegmindBadRequest, SegmindRequestExpired
from airflow_provider_aleph.hooks.segmind import SegmindHook
from airflow_provider_aleph.inputs import InvalidParameter, check_url_input, remote_size
from airflow_provider_aleph.operators.aleph import RunwayAlephOperator
from airflow_provider_aleph.protocol import SegmindStatus
from airflow_provider_aleph.retry import RetryPolicy
from tests.fakes import FakeClock

if TYPE_CHECKING:
    from collections.abc import Iterator

    from airflow_provider_aleph.protocol import RequestState

ALEPH = "runway-gen4-aleph"
# Reads give up once failures have lasted outage_tolerance; submits and uploads after max_attempts.
FAST = RetryPolicy(max_attempts=3, outage_tolerance=0.05, base_delay=0.001, max_delay=0.01)
WAIT = 15.0


def fast_hook(conn_id: str = "segmind_default") -> SegmindHook:
    return SegmindHook(conn_id, retry_policy=FAST)


def payload(emu: Emulator, prompt: str = "make it winter") -> dict[str, str]:
    return {"prompt": prompt, "video": emu.sample_url()}


def wait_terminal(hook: SegmindHook, request_id: str, status_url: str | None = None) -> list[RequestState]:
    seen: list[RequestState] = []
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        seen.append(hook.get_status(request_id, status_url))
        if seen[-1].status.is_terminal:
            return seen
        time.sleep(0.05)
    raise AssertionError(f"request {request_id} not terminal after {WAIT}s: {seen[-1]}")


async def await_terminal(hook: SegmindHook, request_id: str, status_url: str | None = None) -> list[RequestState]:
    seen: list[RequestState] = []
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        seen.append(await hook.aget_status(request_id, status_url))
        if seen[-1].status.is_terminal:
            return seen
        await asyncio.sleep(0.05)
    raise AssertionError(f"request {request_id} not terminal after {WAIT}s: {seen[-1]}")


@pytest.fixture
def hook(segmind_conn: Emulator) -> Iterator[SegmindHook]:
    hook = fast_hook()
    yield hook
    hook.close()


@pytest.fixture
def wrong_key_conn(segmind_conn: Emulator, monkeypatch: pytest.MonkeyPatch) -> str:
    conn = {"conn_type": "segmind", "password": "fake-wrong-key-for-the-hook-test", "host": segmind_conn.base_url}
    monkeypatch.setenv("AIRFLOW_CONN_SEGMIND_WRONG", json.dumps(conn))
    return "segmind_wrong"


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def assert_downloads(url: str) -> None:
    response = httpx.get(url, timeout=10)
    assert response.status_code == 200
    assert len(response.content) > 0
    assert response.headers["content-type"] == "video/mp4"


# -- the happy path ----------------------------------------------------------------------------


def test_sync_submit_poll_and_result_give_a_downloadable_output(segmind_conn: Emulator, hook: SegmindHook) -> None:
    submitted = hook.submit(ALEPH, payload(segmind_conn))
    assert submitted.status_url.startswith(segmind_conn.base_url)

    seen = wait_terminal(hook, submitted.request_id, submitted.status_url)
    result = hook.get_result(submitted.request_id, submitted.response_url)

    assert seen[0].status in (SegmindStatus.QUEUED, SegmindStatus.PROCESSING)
    assert seen[-1].status is SegmindStatus.COMPLETED
    assert result.status is SegmindStatus.COMPLETED
    assert result.request_id == submitted.request_id
    assert "inference_time" in result.metrics
    assert result.output_url is not None
    assert_downloads(result.output_url)
    assert segmind_conn.submissions == 1


async def test_async_submit_poll_and_result_give_a_downloadable_output(segmind_conn: Emulator) -> None:
    hook = fast_hook()
    try:
        submitted = await hook.asubmit(ALEPH, payload(segmind_conn))
        seen = await await_terminal(hook, submitted.request_id)
        result = await hook.aget_result(submitted.request_id)
    finally:
        await hook.aclose()

    assert seen[-1].status is SegmindStatus.COMPLETED
    assert result.status is SegmindStatus.COMPLETED
    assert result.output_url is not None
    assert submitted.request_id in result.output_url
    assert_downloads(result.output_url)
    assert segmind_conn.submissions == 1


# -- FAILED, unknown, expired ---------------------------------------------------------------------


def test_failed_request_is_read_as_a_state_on_status_and_result(segmind_conn: Emulator, hook: SegmindHook) -> None:
    submitted = hook.submit(ALEPH, payload(segmind_conn, f"make it winter {FAIL_MARKER}"))

    final = wait_terminal(hook, submitted.request_id)[-1]
    result = hook.get_result(submitted.request_id)

    for state in (final, result):
        assert state.status is SegmindStatus.FAILED
        assert state.error == FAILURE_REASON
        assert state.request_id == submitted.request_id
        assert state.output_url is None


async def test_failed_request_is_read_as_a_state_by_the_async_twins(segmind_conn: Emulator) -> None:
    hook = fast_hook()
    try:
        submitted = await hook.asubmit(ALEPH, payload(segmind_conn, f"{FAIL_MARKER} please"))
        final = (await await_terminal(hook, submitted.request_id))[-1]
        result = await hook.aget_result(submitted.request_id)
    finally:
        await hook.aclose()
    assert (final.status, final.error) == (SegmindStatus.FAILED, FAILURE_REASON)
    assert (result.status, result.error) == (SegmindStatus.FAILED, FAILURE_REASON)


@pytest.mark.parametrize("read", ["get_status", "get_result"])
def test_unknown_request_id_is_expired(segmind_conn: Emulator, hook: SegmindHook, read: str) -> None:
    with pytest.raises(SegmindRequestExpired) as caught:
        getattr(hook, read)("00000000-0000-4000-8000-000000000000")
    assert caught.value.status_code == 404
    assert caught.value.conn_id == "segmind_default"
    assert "1 hour" in str(caught.value)


def test_request_expires_after_retention(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = FakeClock()
    with Emulator(api_key="fake-expiry-test-key", latency=2.0, retention=60.0, clock=clock) as emu:
        conn = {"conn_type": "segmind", "password": "fake-expiry-test-key", "host": emu.base_url}
        monkeypatch.setenv("AIRFLOW_CONN_SEGMIND_EXPIRY", json.dumps(conn))
        hook = fast_hook("segmind_expiry")
        try:
            submitted = hook.submit(ALEPH, payload(emu))
            clock.now += 2.0 + 59.0
            assert hook.get_result(submitted.request_id).status is SegmindStatus.COMPLETED
            clock.now += 2.0
            with pytest.raises(SegmindRequestExpired):
                hook.get_status(submitted.request_id)
            with pytest.raises(SegmindRequestExpired) as caught:
                hook.get_result(submitted.request_id)
        finally:
            hook.close()
    assert caught.value.request_id == submitted.request_id


def test_request_expires_after_a_small_configured_retention(segmind_conn: Emulator, hook: SegmindHook) -> None:
    segmind_conn.config.retention = 0.2
    submitted = hook.submit(ALEPH, payload(segmind_conn))
    assert wait_terminal(hook, submitted.request_id)[-1].status is SegmindStatus.COMPLETED
    time.sleep(0.5)
    with pytest.raises(SegmindRequestExpired):
        hook.get_result(submitted.request_id)


# -- keys and connection test -----------------------------------------------------------------------


def test_wrong_key_is_an_auth_error_and_creates_nothing(segmind_conn: Emulator, wrong_key_conn: str) -> None:
    hook = fast_hook(wrong_key_conn)
    try:
        with pytest.raises(SegmindAuthError) as on_submit:
            hook.submit(ALEPH, payload(segmind_conn))
        with pytest.raises(SegmindAuthError):
            hook.get_status("00000000-0000-4000-8000-000000000000")
    finally:
        hook.close()
    assert on_submit.value.status_code == 401
    assert on_submit.value.conn_id == wrong_key_conn
    assert "fake-wrong-key-for-the-hook-test" not in str(on_submit.value)
    assert segmind_conn.submissions == 0


async def test_wrong_key_is_an_auth_error_for_the_async_twins(segmind_conn: Emulator, wrong_key_conn: str) -> None:
    hook = fast_hook(wrong_key_conn)
    try:
        with pytest.raises(SegmindAuthError):
            await hook.asubmit(ALEPH, payload(segmind_conn))
        with pytest.raises(SegmindAuthError):
            await hook.aget_result("00000000-0000-4000-8000-000000000000")
    finally:
        await hook.aclose()
    assert segmind_conn.submissions == 0


def test_test_connection_accepts_the_right_key(hook: SegmindHook, segmind_conn: Emulator) -> None:
    ok, message = hook.test_connection()
    assert ok is True
    assert segmind_conn.base_url in message
    assert segmind_conn.submissions == 0


def test_test_connection_refuses_a_wrong_key(wrong_key_conn: str) -> None:
    ok, message = fast_hook(wrong_key_conn).test_connection()
    assert ok is False
    assert "401" in message


# -- billing count --------------------------------------------------------------------------------------


def test_submissions_count_exactly_the_accepted_submits(segmind_conn: Emulator, hook: SegmindHook) -> None:
    ids = {hook.submit(ALEPH, payload(segmind_conn, f"edit {i}")).request_id for i in range(2)}

    async def one_async() -> str:
        other = fast_hook()
        try:
            return (await other.asubmit(ALEPH, payload(segmind_conn, "edit async"))).request_id
        finally:
            await other.aclose()

    ids.add(asyncio.run(one_async()))
    with pytest.raises(SegmindBadRequest) as refused:
        hook.submit(ALEPH, {**payload(segmind_conn), "aspect_ratio": "2:1"})

    assert "aspect_ratio" in str(refused.value)
    assert len(ids) == 3
    assert segmind_conn.submissions == 3
    assert set(segmind_conn.jobs) == ids


# -- input checks over sockets ---------------------------------------------------------------------------


VIDEO = next(spec for spec in RunwayAlephOperator.file_inputs if spec.name == "video")


def require_video_size(url: str, *, timeout: float = 30.0) -> int | None:
    """Aleph's checks of an http(s) video, with the emulator's own host allowed (as the operator does)."""
    return check_url_input(VIDEO, url, allowed_hosts=(origin_of(url),), timeout=timeout)


def test_oversized_video_is_refused_naming_video(emulator: Emulator) -> None:
    with pytest.raises(InvalidParameter) as caught:
        require_video_size(emulator.sample_url("oversized.mp4"))
    assert caught.value.parameter == "video"
    assert "'video'" in str(caught.value)
    assert "17.0 MiB" in str(caught.value)


def test_sample_video_size_is_returned(emulator: Emulator) -> None:
    expected = len(httpx.get(emulator.sample_url(), timeout=10).content)
    assert expected > 0
    assert require_video_size(emulator.sample_url()) == expected


def test_missing_sample_is_refused_naming_the_parameter(emulator: Emulator) -> None:
    with pytest.raises(InvalidParameter) as caught:
        remote_size("reference_image", f"{emulator.base_url}/samples/nope.png")
    assert caught.value.parameter == "reference_image"
    assert "404" in str(caught.value)


def check_video(url: str) -> object:
    return require_video_size(url, timeout=5)


def check_reference_image(url: str) -> object:
    return remote_size("reference_image", url, timeout=5)


@pytest.mark.parametrize(("parameter", "check"), [("video", check_video), ("reference_image", check_reference_image)])
def test_unreachable_input_is_refused_naming_the_parameter(parameter: str, check) -> None:
    url = f"http://127.0.0.1:{closed_port()}/in.mp4"
    with pytest.raises(InvalidParameter) as caught:
        check(url)
    assert caught.value.parameter == parameter
    assert f"'{parameter}'" in str(caught.value)
    assert "could not reach" in str(caught.value)
