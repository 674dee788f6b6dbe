"""What the poll scheduler says about a waiting request (``outlook.poll_outlook``), on virtual time: when
it will be polled next and why, as the triggerer's status line reports it. The line from a real trigger
against the emulator is in ``tests/integration/test_trigger_status_line.py``."""

from __future__ import annotations

import asyncio

import pytest

from airflow_provider_aleph.budget import RequestBudget
from airflow_provider_aleph.durations import in_words
from airflow_provider_aleph.outlook import poll_outlook
from airflow_provider_aleph.polling import FIRST_LOOK_ODDS, SCOUTS, PollJob, PollScheduler
from airflow_provider_aleph.protocol import RequestState
from airflow_provider_aleph.states import SegmindStatus
from tests.support.virtual_time import VirtualTimeLoop, run_virtual

ALEPH = "runway-gen4-aleph"


def scheduler_on(loop: VirtualTimeLoop, policy: str = "adaptive", rate: float = 6000.0) -> PollScheduler:
    budget = RequestBudget(rate, name="test", clock=loop.time, adaptive=policy == "adaptive")
    return PollScheduler(budget, policy, clock=loop.time, wall=loop.wall)


def register(scheduler: PollScheduler, rid: str, expected: float | None = 169.0, poll: float = 10.0) -> PollJob:
    return scheduler.register(
        rid, model=ALEPH, poll_interval=poll, expected_duration=expected, submitted_at=scheduler.wall()
    )


def test_durations_read_in_words() -> None:
    assert in_words(0.3) == "under a second"
    assert in_words(169) == "2 minutes 49 seconds"
    assert in_words(3600) == "1 hour"


def test_the_first_job_of_a_model_scouts_and_the_others_wait_for_the_likely_end() -> None:
    loop = VirtualTimeLoop()
    scheduler = scheduler_on(loop)
    scout = register(scheduler, "scout")
    scheduler.due_at(scout)  # the first job asked takes the first scout's place
    for place in range(1, SCOUTS):
        scheduler.due_at(register(scheduler, f"scout-{place}"))
    other = register(scheduler, "other")

    first = poll_outlook(scheduler, scout)
    assert first.due_in == pytest.approx(10.0), "the scout's first look: one poll_interval after submit"
    assert "looking early" in first.reason
    assert "expected_duration says 2 minutes 49 seconds" in first.reason

    planned = poll_outlook(scheduler, other)
    assert planned.due_in == pytest.approx(scheduler.models[ALEPH].when_survival(1.0 - FIRST_LOOK_ODDS))
    assert planned.reason == (
        f"when it is likely done: {ALEPH} jobs take about 2 minutes 49 seconds (the operator's expected_duration)"
    )
    assert not planned.rate_limited


def test_what_finished_jobs_taught_is_named() -> None:
    loop = VirtualTimeLoop()
    scheduler = scheduler_on(loop)
    done, waiting = register(scheduler, "done"), register(scheduler, "waiting")
    scheduler.seen(
        done,
        RequestState(done.request_id, SegmindStatus.COMPLETED, "COMPLETED", metrics={"inference_time": 100.0}),
    )
    assert poll_outlook(scheduler, waiting).reason.endswith("(learned from 1 finished job(s))")


def test_without_a_hint_the_poll_interval_rules() -> None:
    loop = VirtualTimeLoop()
    scheduler = scheduler_on(loop)
    job = register(scheduler, "r1", expected=None, poll=7.0)
    outlook = poll_outlook(scheduler, job)
    assert outlook.due_in == pytest.approx(7.0)
    assert outlook.reason == f"every poll_interval: nothing is known of the durations of {ALEPH} yet"


def test_the_fixed_policy_names_the_budget_and_how_many_jobs_share_it() -> None:
    loop = VirtualTimeLoop()
    scheduler = scheduler_on(loop, policy="fixed", rate=6.0)
    jobs = [register(scheduler, f"r{n}") for n in range(3)]
    for job in jobs:
        scheduler.seen(job, RequestState(job.request_id, SegmindStatus.PROCESSING, "PROCESSING"))
    outlook = poll_outlook(scheduler, jobs[0])
    # Three jobs on 6 calls a minute: one poll each every 30 s, not every 10 s.
    assert outlook.due_in == pytest.approx(30.0)
    assert "the connection's budget of 6 calls a minute, shared by 3 waiting job(s)" in outlook.reason


def test_a_429_pause_is_the_reason_while_it_lasts() -> None:
    loop = VirtualTimeLoop()
    scheduler = scheduler_on(loop)
    job = register(scheduler, "r1")

    async def main() -> None:
        ticket = await scheduler.budget.acquire()
        scheduler.budget.rate_limited(ticket, retry_after=45.0)
        paused = poll_outlook(scheduler, job)
        assert paused.rate_limited
        assert paused.due_in >= 45.0
        assert paused.reason == "Segmind answered 429: every call of the connection waits 45 seconds more"
        await asyncio.sleep(46.0)
        assert not poll_outlook(scheduler, job).rate_limited

    run_virtual(main(), loop)
