"""The request budget: the connection extras that configure it, window math on a fake clock, the
shared 429 pause, interval stretching, and FIFO waiting. Sharing per loop is in ``test_shared.py``."""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import random
from typing import Any

import httpx
import pytest
import respx

from airflow_provider_aleph.budget import (
    DEFAULT_MAX_CONSECUTIVE_FAILURES,
    DEFAULT_MAX_REQUESTS_PER_MINUTE,
    MAX_PAUSE_SECONDS,
    RequestBudget,
    read_max_consecutive_failures,
    read_max_requests_per_minute,
)
from airflow_provider_aleph.exceptions import SegmindConfigError, SegmindServerError
from airflow_provider_aleph.hooks.segmind import SegmindHook
from airflow_provider_aleph.retry import RetryPolicy
from tests.fakes import FakeClock

CONN_ID = "segmind_budget_unit"
KEY = "fake-BUDGET-5e6f7a8b9c0d-secret"
BASE = "https://api.segmind.test"


def set_conn(monkeypatch: pytest.MonkeyPatch, **extra: Any) -> None:
    conn = {"conn_type": "segmind", "password": KEY, "host": BASE, "extra": extra}
    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", json.dumps(conn))


def status_url(rid: str) -> str:
    return f"{BASE}/v2/requests/{rid}/status"


@pytest.fixture(autouse=True)
def _no_retry_sleep(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("airflow_provider_aleph.retry.RetryPolicy.wait_seconds", lambda self, error, attempt: 0.0)


# -- the connection extras --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"), [(None, DEFAULT_MAX_REQUESTS_PER_MINUTE), ("", 40.0), (5, 5.0), ("50", 50.0), (0.5, 0.5)]
)
def test_max_requests_per_minute_reads_positive_numbers(raw: Any, expected: float) -> None:
    extra = {} if raw is None else {"max_requests_per_minute": raw}
    assert read_max_requests_per_minute(extra, CONN_ID) == expected


@pytest.mark.parametrize("raw", [0, -3, "0", "fast", True, float("nan"), float("inf"), [40], {"rpm": 40}])
def test_max_requests_per_minute_refuses_anything_else_naming_the_extra(raw: Any) -> None:
    with pytest.raises(SegmindConfigError) as caught:
        read_max_requests_per_minute({"max_requests_per_minute": raw}, CONN_ID)
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
    assert read_max_consecutive_failures(extra, CONN_ID) == expected


@pytest.mark.parametrize("raw", [0, -1, "0", "2.5", 2.5, "many", False, [3]])
def test_max_consecutive_failures_refuses_anything_else_naming_the_extra(raw: Any) -> None:
    with pytest.raises(SegmindConfigError) as caught:
        read_max_consecutive_failures({"max_consecutive_failures": raw}, CONN_ID)
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


@pytest.mark.parametrize("mode", ["sync", "async"])
@respx.mock
def test_max_consecutive_failures_sets_the_attempts_of_a_call(monkeypatch: pytest.MonkeyPatch, mode: str) -> None:
    set_conn(monkeypatch, max_consecutive_failures=2)
    route = respx.get(status_url("req-503")).mock(return_value=httpx.Response(503))
    hook = SegmindHook(CONN_ID)

    async def aread() -> Any:
        try:
            return await hook.aget_status("req-503")
        finally:
            await hook.aclose()

    def read() -> Any:
        return hook.get_status("req-503") if mode == "sync" else asyncio.run(aread())

    with pytest.raises(SegmindServerError):
        read()
    assert route.call_count == 2


@respx.mock
def test_an_explicit_retry_policy_wins_over_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    set_conn(monkeypatch, max_consecutive_failures=5)
    route = respx.get(status_url("req-503")).mock(return_value=httpx.Response(503))
    with pytest.raises(SegmindServerError):
        SegmindHook(CONN_ID, retry_policy=RetryPolicy(max_attempts=3)).get_status("req-503")
    assert route.call_count == 3


# -- window math on a fake clock -------------------------------------------------------------------


def test_calls_are_spaced_evenly_without_a_burst() -> None:
    clock = FakeClock()
    budget = RequestBudget(60, clock=clock)  # one call a second
    assert budget.interval == 1.0
    assert budget.try_acquire() == 1000.0
    assert budget.try_acquire() is None
    assert budget.next_slot_at() == 1001.0
    clock.now = 1000.999
    assert budget.try_acquire() is None
    clock.now = 1001.0
    assert budget.try_acquire() == 1001.0
    # A long idle spell earns no burst: the next slot is one interval after the call.
    clock.now = 5000.0
    assert budget.try_acquire() == 5000.0
    assert budget.try_acquire() is None
    assert budget.next_slot_at() == 5001.0


def test_no_sliding_minute_ever_holds_more_calls_than_the_budget() -> None:
    clock = FakeClock(0.0)
    budget = RequestBudget(40, clock=clock)
    rng = random.Random(7)
    granted: list[float] = []
    while clock.now < 600:
        clock.now += rng.expovariate(2.0)  # callers try about twice a second, far above the budget
        ticket = budget.try_acquire()
        if ticket is not None:
            granted.append(ticket)
    assert len(granted) > 300, "the budget was used, not just respected"
    for i, start in enumerate(granted):
        in_window = sum(1 for t in granted[i:] if t < start + 60.0)
        assert in_window <= 40, f"{in_window} calls in the minute from {start:.2f}"
    gaps = [b - a for a, b in itertools.pairwise(granted)]
    assert min(gaps) >= 1.5 - 1e-9


def test_a_429_pauses_every_caller_until_the_time_the_api_gave() -> None:
    clock = FakeClock()
    budget = RequestBudget(600, clock=clock)
    ticket = budget.try_acquire()
    assert ticket is not None
    clock.now += 0.05
    assert budget.rate_limited(ticket, retry_after=5.0) == 5.0
    assert budget.paused_until == pytest.approx(1005.05)
    clock.now = 1005.0
    assert budget.try_acquire() is None
    clock.now = 1005.05
    assert budget.try_acquire() is not None


def test_the_api_cannot_pause_the_budget_for_more_than_the_cap() -> None:
    clock = FakeClock()
    budget = RequestBudget(600, clock=clock)
    ticket = budget.try_acquire()
    assert ticket is not None
    assert budget.rate_limited(ticket, retry_after=3600.0) == MAX_PAUSE_SECONDS
    assert budget.next_slot_at() == 1000.0 + MAX_PAUSE_SECONDS


def test_without_a_hint_the_pause_doubles_while_429s_keep_coming() -> None:
    clock = FakeClock()
    budget = RequestBudget(6000, clock=clock)
    pauses = []
    for _ in range(9):
        clock.now = max(clock.now, budget.next_slot_at())
        ticket = budget.try_acquire()
        assert ticket is not None
        pauses.append(budget.rate_limited(ticket, retry_after=None))
    for n, pause in enumerate(pauses):
        ceiling = min(MAX_PAUSE_SECONDS, 2.0**n)
        assert ceiling / 2 <= pause <= ceiling
    # An answered call made after the pause ends the streak: the next 429 starts small again.
    clock.now = budget.next_slot_at()
    ticket = budget.try_acquire()
    assert ticket is not None
    budget.succeeded(ticket)
    assert budget.paused_until == -math.inf
    clock.now = budget.next_slot_at()
    ticket = budget.try_acquire()
    assert ticket is not None
    assert budget.rate_limited(ticket, retry_after=None) <= 1.0


def test_429s_of_calls_already_in_flight_do_not_raise_the_backoff() -> None:
    clock = FakeClock()
    budget = RequestBudget(6000, clock=clock)
    tickets = []
    for _ in range(5):
        clock.now = max(clock.now, budget.next_slot_at())
        tickets.append(budget.try_acquire())
    clock.now += 0.01
    for ticket in tickets:  # all five were sent before the first 429 came back
        assert ticket is not None
        assert budget.rate_limited(ticket, retry_after=None) <= 1.0


def test_only_an_answer_to_a_call_made_after_the_429_clears_the_pause() -> None:
    clock = FakeClock()
    budget = RequestBudget(600, clock=clock)
    early = budget.try_acquire()
    clock.now += 0.1
    late_429 = budget.try_acquire()
    assert early is not None
    assert late_429 is not None
    budget.rate_limited(late_429, retry_after=10.0)
    budget.succeeded(early)  # sent before the 429 came back: says nothing about the limit now
    assert budget.paused_until == pytest.approx(1010.1)
    clock.now = budget.next_slot_at()
    after = budget.try_acquire()
    assert after is not None
    budget.succeeded(after)
    assert budget.paused_until == -math.inf


def test_answered_reads_a_429_response_and_its_headers() -> None:
    clock = FakeClock()
    budget = RequestBudget(600, clock=clock)
    ticket = budget.try_acquire()
    assert ticket is not None
    budget.answered(ticket, httpx.Response(503))
    assert budget.paused_until == -math.inf
    budget.answered(ticket, httpx.Response(429, headers={"Retry-After": "7"}))
    assert budget.paused_until == 1007.0
    assert budget.rate_limited_count == 1


def test_interval_stretches_with_the_number_of_pollers() -> None:
    budget = RequestBudget(40)
    assert budget.stretched_interval(10.0, 1) == 10.0
    assert budget.stretched_interval(10.0, 6) == 10.0
    assert budget.stretched_interval(10.0, 7) == pytest.approx(10.5)
    assert budget.stretched_interval(10.0, 1000) == pytest.approx(1500.0)
    assert budget.stretched_interval(0.5, 0) == 0.5


def test_a_budget_needs_a_positive_rate() -> None:
    with pytest.raises(ValueError, match="positive"):
        RequestBudget(0)


# -- waiting in order ----------------------------------------------------------------------------


async def test_waiters_are_served_in_arrival_order_without_a_task_each() -> None:
    budget = RequestBudget(120000, name="order")  # 0.5 ms apart
    served: list[int] = []

    async def caller(n: int) -> None:
        await budget.acquire()
        served.append(n)

    tasks_before = len(asyncio.all_tasks())
    callers = [asyncio.create_task(caller(n)) for n in range(300)]
    await asyncio.sleep(0)  # every caller has queued
    assert budget.waiting == 299
    # The first caller was served at once and is done; the 299 others wait on futures, not on tasks.
    assert len(asyncio.all_tasks()) == tasks_before + 299, "the budget starts no task of its own"
    await asyncio.gather(*callers)
    assert served == list(range(300))
    assert budget.granted == 300
    assert budget.waiting == 0


async def test_cancelled_waiters_leave_the_queue_and_the_rest_keep_their_order() -> None:
    budget = RequestBudget(600, name="cancel")  # 100 ms apart: everyone but the first waits
    served: list[int] = []

    async def caller(n: int) -> None:
        await budget.acquire()
        served.append(n)

    callers = [asyncio.create_task(caller(n)) for n in range(6)]
    await asyncio.sleep(0)
    assert budget.waiting == 5
    for n in (2, 4):
        callers[n].cancel()
    await asyncio.sleep(0)
    assert budget.waiting == 3
    await asyncio.gather(*(callers[n] for n in (0, 1, 3, 5)))
    assert served == [0, 1, 3, 5]
    for n in (2, 4):
        assert callers[n].cancelled()
    assert budget.waiting == 0


async def test_a_pause_holds_the_queue_and_a_clear_resumes_it_in_order() -> None:
    budget = RequestBudget(60000, name="pause")
    first = await budget.acquire()
    budget.rate_limited(first, retry_after=30.0)
    served: list[int] = []

    async def caller(n: int) -> None:
        await budget.acquire()
        served.append(n)

    callers = [asyncio.create_task(caller(n)) for n in range(5)]
    for _ in range(5):
        await asyncio.sleep(0.01)
    assert served == []
    assert budget.waiting == 5
    # An answer to a call made after the 429 clears the pause (here: one sent by another process).
    budget.succeeded(budget.clock())
    await asyncio.wait_for(asyncio.gather(*callers), timeout=30)  # a hang guard
    assert served == list(range(5))
