"""Triggers sharing a connection per event loop: one client and budget, released when the last trigger
finishes or is cancelled; a 429 seen by one holding back the others; the connection's retry settings."""

from __future__ import annotations

import asyncio
import json
import math
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import respx

from airflow_provider_aleph.events import RequestEvent
from airflow_provider_aleph.hooks.segmind import SegmindHook
from airflow_provider_aleph.polling import PollPolicy
from airflow_provider_aleph.shared import acquire_shared
from airflow_provider_aleph.triggers.segmind import SegmindRequestTrigger
from tests.fakes import open_shares, set_segmind_conn

CONN_ID = "segmind_shared_unit"
KEY = "fake-SHARED-not-a-real-key-secret"
BASE = "https://api.segmind.test"


def set_conn(monkeypatch: pytest.MonkeyPatch, **extra: Any) -> None:
    set_segmind_conn(monkeypatch, CONN_ID, KEY, BASE, **extra)


def status_url(rid: str) -> str:
    return f"{BASE}/v2/requests/{rid}/status"


def result_url(rid: str) -> str:
    return f"{BASE}/v2/requests/{rid}"


def body(rid: str, status: str, **extra: Any) -> dict[str, Any]:
    return {"request_id": rid, "status": status, "metrics": {}, **extra}


def trigger(rid: str, seconds: float = 30.0, poll: float = 0.01) -> SegmindRequestTrigger:
    return SegmindRequestTrigger(
        request_id=rid,
        segmind_conn_id=CONN_ID,
        deadline=datetime.now(UTC) + timedelta(seconds=seconds),
        poll_interval=poll,
    )


async def only_event(t: SegmindRequestTrigger) -> RequestEvent:
    events = [event async for event in t.run()]
    assert len(events) == 1
    return RequestEvent.from_payload(events[0].payload)


@pytest.fixture(autouse=True)
def _no_retry_sleep(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("airflow_provider_aleph.retry.RetryPolicy.wait_seconds", lambda self, error, attempt: 0.0)


# -- the connection's settings in a trigger --------------------------------------------------------


@respx.mock(assert_all_mocked=True)
async def test_a_bad_extra_ends_the_trigger_with_an_error_event_and_no_call(monkeypatch: pytest.MonkeyPatch) -> None:
    set_conn(monkeypatch, max_consecutive_failures=0)
    event = await only_event(trigger("req-bad-extra"))
    assert event.status == "error"
    assert event.error_type == "SegmindConfigError"
    assert "max_consecutive_failures" in event.message
    assert KEY not in json.dumps(event.to_payload())
    assert len(respx.calls) == 0
    assert dict(open_shares()) == {}


@respx.mock
async def test_an_answered_poll_resets_the_count_of_failures(monkeypatch: pytest.MonkeyPatch) -> None:
    set_conn(monkeypatch, max_consecutive_failures=2, max_requests_per_minute=60000)
    rid = "req-flaky"
    failure = httpx.Response(502)
    respx.get(status_url(rid)).mock(
        side_effect=[failure, httpx.Response(200, json=body(rid, "PROCESSING"))] * 3
        + [failure, httpx.Response(200, json=body(rid, "COMPLETED"))]
    )
    respx.get(result_url(rid)).mock(
        side_effect=[failure, httpx.Response(200, json=body(rid, "COMPLETED", output="https://cdn.test/o.mp4"))]
    )
    event = await only_event(trigger(rid))
    assert event.status == "success", "one failure between answers never exhausts a budget of two"
    assert len(respx.calls) == 10


@respx.mock
async def test_failures_past_the_outage_tolerance_end_the_trigger_with_an_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Changed on purpose (issue 12): a poll gives up on time failing (outage_tolerance), not on a count.
    monkeypatch.setattr("airflow_provider_aleph.retry.RetryPolicy.wait_seconds", lambda self, error, attempt: 0.01)
    set_conn(monkeypatch, max_consecutive_failures=1, outage_tolerance=0.3, max_requests_per_minute=60000)
    rid = "req-down"
    route = respx.get(status_url(rid)).mock(return_value=httpx.Response(503))
    event = await only_event(trigger(rid))
    assert event.status == "error"
    assert event.error_type == "SegmindUnavailable"
    assert event.retryable is True
    assert event.status_code == 503
    assert "last answer: HTTP 503" in event.message
    assert route.call_count > 1


# -- sharing -------------------------------------------------------------


async def test_triggers_of_one_connection_share_one_client_and_budget_then_let_go(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    set_conn(monkeypatch, max_requests_per_minute=60000)
    first = await acquire_shared(CONN_ID)
    second = await acquire_shared(CONN_ID)
    assert first is second
    assert first.users == 2
    assert open_shares()[CONN_ID] is first
    assert first.channel is not None
    client = first.channel.client
    assert client is not None
    assert first.channel.budget is not None
    assert first.channel.budget.max_requests_per_minute == 60000
    scheduler = first.polls()
    assert scheduler.budget is first.channel.budget, "the scheduler hands out the shared budget's slots"
    assert scheduler.policy is PollPolicy.ADAPTIVE
    assert first.channel.budget.adaptive
    hook = first.hook()
    await hook.aclose()
    assert not client.is_closed, "a hook does not close the shared client"
    await first.release()
    assert not client.is_closed
    await second.release()
    assert client.is_closed
    assert dict(open_shares()) == {}
    with pytest.raises(RuntimeError, match="released more often"):
        await second.release()


async def test_concurrent_first_users_read_the_connection_once(monkeypatch: pytest.MonkeyPatch) -> None:
    set_conn(monkeypatch)
    reads = 0
    real = SegmindHook.aget_conn_params

    async def counting(self: SegmindHook) -> Any:
        nonlocal reads
        reads += 1
        await asyncio.sleep(0.01)
        return await real(self)

    monkeypatch.setattr(SegmindHook, "aget_conn_params", counting)
    shares = await asyncio.gather(*(acquire_shared(CONN_ID) for _ in range(50)))
    assert len({id(share) for share in shares}) == 1
    assert reads == 1
    for share in shares:
        await share.release()
    assert dict(open_shares()) == {}


def test_each_event_loop_gets_its_own_share_and_none_outlives_it(monkeypatch: pytest.MonkeyPatch) -> None:
    set_conn(monkeypatch)
    seen = []

    async def hold() -> None:
        share = await acquire_shared(CONN_ID)
        seen.append((share, asyncio.get_running_loop()))
        await share.release()
        assert dict(open_shares()) == {}

    asyncio.run(hold())
    asyncio.run(hold())
    (one, loop_one), (two, loop_two) = seen
    assert one is not two
    assert loop_one is not loop_two
    assert one.channel is None
    assert two.channel is None


@respx.mock
async def test_finished_triggers_release_the_share_and_close_the_client(monkeypatch: pytest.MonkeyPatch) -> None:
    set_conn(monkeypatch, max_requests_per_minute=60000)
    rids = [f"req-done-{n}" for n in range(3)]
    for rid in rids:
        respx.get(status_url(rid)).mock(
            side_effect=[httpx.Response(200, json=body(rid, "PROCESSING"))] * 3
            + [httpx.Response(200, json=body(rid, "COMPLETED"))]
        )
        respx.get(result_url(rid)).mock(return_value=httpx.Response(200, json=body(rid, "COMPLETED", output="x")))
    runs = [asyncio.create_task(only_event(trigger(rid))) for rid in rids]
    while CONN_ID not in open_shares() or open_shares()[CONN_ID].channel is None:
        await asyncio.sleep(0.001)
    share = open_shares()[CONN_ID]
    client = share.channel.client
    assert client is not None
    assert share.users == 3
    events = await asyncio.gather(*runs)
    assert [event.status for event in events] == ["success"] * 3
    assert share.users == 0
    assert client.is_closed
    assert dict(open_shares()) == {}


@respx.mock
async def test_cancelled_triggers_leave_the_budget_queue_and_release_the_share(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    set_conn(monkeypatch, max_requests_per_minute=6)  # ten seconds apart: all but one trigger wait their turn
    rids = [f"req-cancel-{n}" for n in range(5)]
    for rid in rids:
        respx.get(status_url(rid)).mock(return_value=httpx.Response(200, json=body(rid, "PROCESSING")))
    runs = [asyncio.create_task(only_event(trigger(rid, poll=60))) for rid in rids]

    def waiting_turns() -> int:
        share = open_shares().get(CONN_ID)
        return 0 if share is None or share.scheduler is None else len(share.scheduler._queue)

    while len(respx.calls) < 1 or waiting_turns() < 4:
        await asyncio.sleep(0.001)
    share = open_shares()[CONN_ID]
    assert share.channel is not None
    budget, client, scheduler = share.channel.budget, share.channel.client, share.polls()
    assert budget is not None
    assert client is not None
    dispatcher = scheduler._dispatcher
    assert dispatcher is not None
    assert not dispatcher.done()
    for run in runs:
        run.cancel()
    results = await asyncio.gather(*runs, return_exceptions=True)
    assert all(isinstance(result, asyncio.CancelledError) for result in results)
    assert len(budget._waiters) == 0
    assert scheduler.jobs == {}
    assert dispatcher.done(), "the scheduler stops handing out turns with its last trigger"
    assert share.users == 0
    assert client.is_closed
    assert dict(open_shares()) == {}
    assert len(respx.calls) == 1


@respx.mock
async def test_a_429_seen_by_one_trigger_holds_back_the_others(monkeypatch: pytest.MonkeyPatch) -> None:
    set_conn(monkeypatch, max_requests_per_minute=60000)
    limited, other = "req-limited", "req-other"
    respx.get(status_url(limited)).mock(
        side_effect=[
            httpx.Response(429, headers={"Retry-After": "0.4"}, json={"error": "Too many requests"}),
            httpx.Response(200, json=body(limited, "COMPLETED")),
        ]
    )
    respx.get(result_url(limited)).mock(return_value=httpx.Response(200, json=body(limited, "COMPLETED", output="a")))
    sent_at: list[tuple[float, float]] = []

    def record(request: httpx.Request) -> httpx.Response:
        budget = open_shares()[CONN_ID].channel.budget
        assert budget is not None
        sent_at.append((budget.clock(), budget._paused_until))
        return httpx.Response(200, json=body(other, "COMPLETED", output="b"))

    respx.get(status_url(other)).mock(side_effect=record)
    respx.get(result_url(other)).mock(side_effect=record)

    first = asyncio.create_task(only_event(trigger(limited)))
    while CONN_ID not in open_shares() or open_shares()[CONN_ID].channel is None:
        await asyncio.sleep(0.001)
    budget = open_shares()[CONN_ID].channel.budget
    assert budget is not None
    while budget._paused_until == -math.inf:
        await asyncio.sleep(0.001)
    paused_until = budget._paused_until
    assert paused_until > budget.clock()
    second = asyncio.create_task(only_event(trigger(other)))

    events = await asyncio.gather(first, second)

    assert [event.status for event in events] == ["success", "success"]
    assert len(sent_at) == 2
    assert all(clock >= paused_until for clock, _ in sent_at), "the other trigger called during the pause"
    assert respx.calls.call_count == 2 + 2 + 1, "one 429, then status and result of both"
    assert budget._paused_until == -math.inf, "the answered calls after the pause cleared it"


@respx.mock
async def test_calls_in_flight_per_connection_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """Hundreds of polls queue on the share's semaphore, not in the HTTP pool: at most a few are sent at once."""
    from airflow_provider_aleph.shared import MAX_CALLS_IN_FLIGHT

    set_conn(monkeypatch, max_requests_per_minute=10**7)
    in_flight = peak = 0

    async def answer(request: httpx.Request) -> httpx.Response:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.005)
        in_flight -= 1
        rid = request.url.path.split("/")[3]
        return httpx.Response(200, json=body(rid, "PROCESSING"))

    respx.get(url__regex=rf"{BASE}/v2/requests/[^/]+/status").mock(side_effect=answer)
    share = await acquire_shared(CONN_ID)
    try:
        hook = share.hook()
        states = await asyncio.gather(*(hook.aget_status(f"r{n}") for n in range(200)))
    finally:
        await share.release()

    assert [s.request_id for s in states] == [f"r{n}" for n in range(200)]
    assert 1 < peak <= MAX_CALLS_IN_FLIGHT
