"""A paid job outlasts the API's bad minutes (faked transport, fake clock): the outage tolerance, 429 as
flow control, and the connection read again when the API rejects its key or every few minutes."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import respx

from airflow_provider_aleph.exceptions import SegmindAuthError, SegmindServerError, SegmindUnavailable
from airflow_provider_aleph.hooks.connection import REREAD_SECONDS
from airflow_provider_aleph.hooks.segmind import SegmindHook
from airflow_provider_aleph.retry import RetryPolicy
from airflow_provider_aleph.shared import AsyncChannel, acquire_shared
from airflow_provider_aleph.triggers.segmind import SegmindRequestTrigger
from tests.fakes import FakeClock, set_segmind_conn

CONN_ID = "segmind_outage_unit"
OLD_KEY = "fake-OUTAGE-old-not-a-real-key"
NEW_KEY = "fake-OUTAGE-new-not-a-real-key"
BASE = "https://api.segmind.test"
RID = "req-outage-1"
STATUS_URL = f"{BASE}/v2/requests/{RID}/status"
RESULT_URL = f"{BASE}/v2/requests/{RID}"
MINUTE = 60.0


def running() -> httpx.Response:
    return httpx.Response(200, json={"request_id": RID, "status": "PROCESSING"})


def fake_time_policy(clock: FakeClock, **kwargs: Any) -> RetryPolicy:
    """The default policy (15 min tolerance, 60 s backoff cap), on a clock that moves only when it sleeps."""

    async def asleep(seconds: float) -> None:
        clock.advance(seconds)

    return RetryPolicy(clock=clock, sleep=clock.advance, asleep=asleep, **kwargs)


def answers(*steps: tuple[float, Any], clock: FakeClock, then: Any = running) -> Any:
    """A respx side effect: each step answers ``make()`` until the fake clock passes ``until`` seconds."""
    start = clock.now

    def respond(request: httpx.Request) -> httpx.Response:
        elapsed = clock.now - start
        make = next((make for until, make in steps if elapsed < until), then)
        outcome = make()
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    return respond


@pytest.fixture(autouse=True)
def _conn(monkeypatch: pytest.MonkeyPatch) -> None:
    set_segmind_conn(monkeypatch, CONN_ID, OLD_KEY, BASE, max_requests_per_minute=60000)


def read(mode: str, hook: SegmindHook) -> Any:
    async def aread() -> Any:
        try:
            return await hook.aget_status(RID)
        finally:
            await hook.aclose()

    return hook.get_status(RID) if mode == "sync" else asyncio.run(aread())


# -- the outage tolerance ------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["sync", "async"])
@respx.mock
def test_ten_minutes_of_5xx_and_refused_connections_are_ridden_out(mode: str) -> None:
    clock = FakeClock()
    failing = [(5 * MINUTE, lambda: httpx.Response(503)), (10 * MINUTE, lambda: httpx.ConnectError("refused"))]
    route = respx.get(STATUS_URL).mock(side_effect=answers(*failing, clock=clock))
    state = read(mode, SegmindHook(CONN_ID, retry_policy=fake_time_policy(clock)))
    assert state.status.value == "PROCESSING"
    assert clock.now - 1000.0 >= 10 * MINUTE
    assert route.call_count > 10


@pytest.mark.parametrize("mode", ["sync", "async"])
@respx.mock
def test_a_read_gives_up_once_failures_have_lasted_the_tolerance(mode: str) -> None:
    clock = FakeClock()
    route = respx.get(STATUS_URL).mock(
        side_effect=answers((24 * 60 * MINUTE, lambda: httpx.Response(502)), clock=clock)
    )
    with pytest.raises(SegmindUnavailable) as caught:
        read(mode, SegmindHook(CONN_ID, retry_policy=fake_time_policy(clock)))
    failed_for = clock.now - 1000.0
    assert 15 * MINUTE <= failed_for <= 15 * MINUTE + 61, "gave up at the tolerance, not before, not much later"
    message = str(caught.value)
    assert f"request_id={RID}" in message
    assert "last answer: HTTP 502" in message
    assert "failing for 15 min" in message
    assert caught.value.retryable
    assert isinstance(caught.value.__cause__, SegmindServerError)
    waits = route.call_count
    assert waits < 60, "backoff grows to about a minute apart, not a poll per second"


@pytest.mark.parametrize("mode", ["sync", "async"])
@respx.mock
def test_429s_never_count_towards_giving_up(mode: str) -> None:
    clock = FakeClock()
    limited = lambda: httpx.Response(429, headers={"Retry-After": "60"}, json={"error": "slow down"})  # noqa: E731
    route = respx.get(STATUS_URL).mock(side_effect=answers((2 * 60 * MINUTE, limited), clock=clock))
    state = read(mode, SegmindHook(CONN_ID, retry_policy=fake_time_policy(clock)))
    assert state.status.value == "PROCESSING"
    assert clock.now - 1000.0 >= 2 * 60 * MINUTE, "two hours of 429s, eight times the tolerance"
    assert 115 <= route.call_count <= 125, "one call per announced reset (Retry-After: 60)"


@pytest.mark.parametrize("mode", ["sync", "async"])
@respx.mock
def test_three_429s_then_three_5xx_in_a_row_do_not_fail_a_poll(mode: str) -> None:
    clock = FakeClock()
    faults = iter(
        [httpx.Response(429, json={"error": "slow"})] * 3
        + [httpx.Response(500), httpx.Response(502), httpx.Response(503)]
    )
    route = respx.get(STATUS_URL).mock(side_effect=lambda request: next(faults, None) or running())
    state = read(mode, SegmindHook(CONN_ID, retry_policy=fake_time_policy(clock)))
    assert state.status.value == "PROCESSING"
    assert route.call_count == 7


@respx.mock
def test_a_submit_keeps_its_attempts_and_never_retries_a_5xx() -> None:
    clock = FakeClock()
    route = respx.post(f"{BASE}/v2/flux-schnell").mock(return_value=httpx.Response(503))
    hook = SegmindHook(CONN_ID, retry_policy=fake_time_policy(clock))
    with pytest.raises(Exception, match=r"outcome .* is unknown"):
        hook.submit("flux-schnell", {"prompt": "x"})
    assert route.call_count == 1, "a 5xx after the POST was sent may have created a paid job"


# -- a rotated key -------------------------------------------------------------------------------------


def _by_key(request: httpx.Request) -> httpx.Response:
    if request.headers.get("x-api-key") == NEW_KEY:
        return running()
    return httpx.Response(401, json={"error": "Unauthorized: invalid x-api-key"})


@pytest.mark.parametrize("mode", ["sync", "async"])
@respx.mock
def test_a_rejected_key_reads_the_connection_again_and_uses_the_rotated_one(
    mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    hook = SegmindHook(CONN_ID)
    assert hook.get_conn_params().api_key == OLD_KEY  # read, and held, before the rotation
    set_segmind_conn(monkeypatch, CONN_ID, NEW_KEY, BASE, max_requests_per_minute=60000)
    route = respx.get(STATUS_URL).mock(side_effect=_by_key)
    assert read(mode, hook).status.value == "PROCESSING"
    assert [call.request.headers["x-api-key"] for call in route.calls] == [OLD_KEY, NEW_KEY]


@pytest.mark.parametrize("mode", ["sync", "async"])
@respx.mock
def test_a_job_fails_for_its_key_only_when_the_current_key_is_rejected_too(mode: str) -> None:
    route = respx.get(STATUS_URL).mock(side_effect=_by_key)
    with pytest.raises(SegmindAuthError):
        read(mode, SegmindHook(CONN_ID))
    assert route.call_count == 1, "the connection still holds the rejected key: nothing to try again"


async def test_a_shared_channel_reads_the_connection_again_every_few_minutes_and_once_per_rejection() -> None:
    clock = FakeClock()
    reads: list[str] = []
    keys = iter([NEW_KEY, "fake-OUTAGE-third-not-a-real-key"])

    async def reread() -> Any:
        reads.append("read")
        await asyncio.sleep(0.01)  # a slow lookup: concurrent callers must wait for this one, not start theirs
        return params.__class__(**{**params.__dict__, "api_key": next(keys)})

    params = SegmindHook(CONN_ID).get_conn_params()
    async with httpx.AsyncClient() as client:
        channel = AsyncChannel(params, client, reread=reread, clock=clock)
        assert (await channel.current()).api_key == OLD_KEY
        assert reads == []
        rotated = await asyncio.gather(*(channel.after_rejection(OLD_KEY) for _ in range(50)))
        assert all(rotated)
        assert reads == ["read"], "fifty triggers rejected at once read the connection once"
        assert channel.params.api_key == NEW_KEY
        clock.advance(REREAD_SECONDS - 1)
        assert (await channel.current()).api_key == NEW_KEY
        assert reads == ["read"]
        clock.advance(2)
        assert (await channel.current()).api_key == "fake-OUTAGE-third-not-a-real-key"
        assert reads == ["read", "read"], "read again once the settings are a few minutes old"


@respx.mock
async def test_waiting_triggers_pick_up_a_rotated_key_without_a_restart(monkeypatch: pytest.MonkeyPatch) -> None:
    rids = [f"req-rotate-{n}" for n in range(3)]
    for rid in rids:

        def status(request: httpx.Request, rid: str = rid) -> httpx.Response:
            if request.headers.get("x-api-key") != current["key"]:
                return httpx.Response(401, json={"error": "Unauthorized: invalid x-api-key"})
            state = "COMPLETED" if current["done"] else "PROCESSING"
            return httpx.Response(200, json={"request_id": rid, "status": state})

        respx.get(f"{BASE}/v2/requests/{rid}/status").mock(side_effect=status)
        respx.get(f"{BASE}/v2/requests/{rid}").mock(
            return_value=httpx.Response(200, json={"request_id": rid, "status": "COMPLETED", "output": "https://o/x"})
        )
    current = {"key": OLD_KEY, "done": False}
    share = await acquire_shared(CONN_ID)  # the triggerer has read the old key
    deadline = datetime.now(UTC) + timedelta(seconds=30)
    runs = [
        asyncio.create_task(_first(SegmindRequestTrigger(rid, CONN_ID, deadline, poll_interval=0.02))) for rid in rids
    ]
    await asyncio.sleep(0.2)
    # The key is rotated: the connection gets the new one, and the API revokes the old one at once.
    set_segmind_conn(monkeypatch, CONN_ID, NEW_KEY, BASE, max_requests_per_minute=60000)
    current["key"] = NEW_KEY
    await asyncio.sleep(0.2)
    current["done"] = True
    events = await asyncio.wait_for(asyncio.gather(*runs), timeout=30)  # a hang guard, not a speed check
    await share.release()
    assert [event["status"] for event in events] == ["success"] * 3


async def _first(trigger: SegmindRequestTrigger) -> dict[str, Any]:
    async for event in trigger.run():
        return dict(event.payload)
    raise AssertionError("no event")


# -- the sensor keeps the same rules -------------------------------------------------------------------


class _TI:
    def xcom_push(self, key: str, value: Any) -> None:
        pass


@respx.mock
def test_a_poking_sensor_rides_out_an_outage_and_a_rotated_key(monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow_provider_aleph.sensors.segmind import SegmindRequestSensor

    clock = FakeClock()
    sensor = SegmindRequestSensor(task_id="wait", request_id=RID, segmind_conn_id=CONN_ID, deferrable=False)
    sensor.__dict__["hook"] = SegmindHook(CONN_ID, retry_policy=fake_time_policy(clock))
    down = [(10 * MINUTE, lambda: httpx.Response(503))]
    respx.get(STATUS_URL).mock(side_effect=answers(*down, clock=clock))
    assert sensor.poke({"ti": _TI()}) is False  # type: ignore[arg-type]
    assert clock.now - 1000.0 >= 10 * MINUTE, "the poke rode the outage out instead of failing"

    set_segmind_conn(monkeypatch, CONN_ID, NEW_KEY, BASE, max_requests_per_minute=60000)
    route = respx.get(STATUS_URL).mock(side_effect=_by_key)
    before = route.call_count
    assert sensor.poke({"ti": _TI()}) is False  # type: ignore[arg-type]
    assert [call.request.headers["x-api-key"] for call in route.calls[before:]] == [OLD_KEY, NEW_KEY]
