"""The request budget: window math on a fake clock, the shared 429 pause, interval stretching, and FIFO
waiting. Sharing per loop is in ``test_shared.py``; the extras that configure it in
``test_connection_settings.py``."""

from __future__ import annotations

import asyncio
import itertools
import math
import random

import httpx
import pytest

from airflow_provider_aleph.budget import MAX_PAUSE_SECONDS, RequestBudget
from tests.fakes import FakeClock

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
    assert budget._paused_until == pytest.approx(1005.05)
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
    assert budget._paused_until == -math.inf
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
    assert budget._paused_until == pytest.approx(1010.1)
    clock.now = budget.next_slot_at()
    after = budget.try_acquire()
    assert after is not None
    budget.succeeded(after)
    assert budget._paused_until == -math.inf


def test_answered_reads_a_429_response_and_its_headers() -> None:
    clock = FakeClock()
    budget = RequestBudget(600, clock=clock)
    ticket = budget.try_acquire()
    assert ticket is not None
    budget.answered(ticket, httpx.Response(503))
    assert budget._paused_until == -math.inf
    budget.answered(ticket, httpx.Response(429, headers={"Retry-After": "7"}))
    assert budget._paused_until == 1007.0


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
    assert len(budget._waiters) == 299
    # The first caller was served at once and is done; the 299 others wait on futures, not on tasks.
    assert len(asyncio.all_tasks()) == tasks_before + 299, "the budget starts no task of its own"
    await asyncio.gather(*callers)
    assert served == list(range(300))
    assert len(budget._waiters) == 0


async def test_cancelled_waiters_leave_the_queue_and_the_rest_keep_their_order() -> None:
    budget = RequestBudget(600, name="cancel")  # 100 ms apart: everyone but the first waits
    served: list[int] = []

    async def caller(n: int) -> None:
        await budget.acquire()
        served.append(n)

    callers = [asyncio.create_task(caller(n)) for n in range(6)]
    await asyncio.sleep(0)
    assert len(budget._waiters) == 5
    for n in (2, 4):
        callers[n].cancel()
    await asyncio.sleep(0)
    assert len(budget._waiters) == 3
    await asyncio.gather(*(callers[n] for n in (0, 1, 3, 5)))
    assert served == [0, 1, 3, 5]
    for n in (2, 4):
        assert callers[n].cancelled()
    assert len(budget._waiters) == 0


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
    assert len(budget._waiters) == 5
    # An answer to a call made after the 429 clears the pause (here: one sent by another process).
    budget.succeeded(budget.clock())
    await asyncio.wait_for(asyncio.gather(*callers), timeout=30)  # a hang guard
    assert served == list(range(5))
