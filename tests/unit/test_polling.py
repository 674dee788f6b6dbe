"""The poll scheduler's decisions on virtual time: when a request is polled, which request gets the budget's
next slot, the operator's prior, what is learned from finished jobs, and the budget's decrease on 429 and
its gradual recovery. The same scheduler over real sockets is in ``tests/integration/test_trigger_polling.py``.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import random
import statistics
from datetime import timedelta

import pytest

from airflow_provider_aleph.budget import DECREASE, MIN_RATE_SHARE, RECOVERY_CALLS, RequestBudget
from airflow_provider_aleph.durations import PRIOR_SIGMA, DurationModel, measured_duration
from airflow_provider_aleph.polling import (
    COMPLETION_ODDS,
    DEFAULT_MAX_POLL_INTERVAL,
    FIRST_LOOK_ODDS,
    SCOUTS,
    PollJob,
    PollPolicy,
    PollScheduler,
)
from airflow_provider_aleph.protocol import RequestState
from airflow_provider_aleph.states import SegmindStatus
from tests.fakes import FakeClock
from tests.support.virtual_time import EPOCH, VirtualTimeLoop, run_virtual

ALEPH = "runway-gen4-aleph"


def state(rid: str, status: str, **metrics: float) -> RequestState:
    return RequestState(request_id=rid, status=SegmindStatus(status), reported=status, metrics=dict(metrics))


def scheduler_on(loop: VirtualTimeLoop, rate: float = 6000.0, policy: str = "adaptive") -> PollScheduler:
    budget = RequestBudget(rate, name="test", clock=loop.time, adaptive=policy == "adaptive")
    return PollScheduler(budget, policy, clock=loop.time, wall=loop.wall)


async def poll_until_done(
    scheduler: PollScheduler,
    job: PollJob,
    duration: float,
    submitted: float,
    looks: list[float],
    metrics: bool = True,
) -> None:
    """Poll ``job`` through the scheduler, against a job that completes ``duration`` after ``submitted``."""
    clock = scheduler.clock
    while True:
        await scheduler.turn(job)
        looks.append(clock())
        if clock() - submitted >= duration:
            timing = {"inference_time": duration, "queue_time": 0.0} if metrics else {}
            scheduler.seen(job, state(job.request_id, "COMPLETED", **timing))
            return
        scheduler.seen(job, state(job.request_id, "PROCESSING"))


# -- the duration estimate ----------------------------------------------------------------------------


def test_the_prior_sets_the_median_and_observations_pull_it_towards_what_is_seen() -> None:
    model = DurationModel(169.0)
    assert model.known
    assert model.median == pytest.approx(169.0)
    assert model.sigma == pytest.approx(PRIOR_SIGMA)
    assert model.survival(169.0) == pytest.approx(0.5)
    assert model.when_survival(0.5) == pytest.approx(169.0)
    model.observe(20.0)
    model.observe(45.0)
    # What is seen replaces the hint: the median of the observations; the spread is pulled towards the prior's.
    assert model.median == pytest.approx(30.0)
    assert model.sigma == pytest.approx(math.sqrt((2 * PRIOR_SIGMA**2 + 2 * (math.log(1.5) ** 2)) / 4))
    for _ in range(40):
        model.observe(30.0)
    assert model.median == pytest.approx(30.0, rel=0.01)
    assert model.sigma < 0.15
    assert model.survival(model.median * 3) < 0.01


def test_jobs_still_running_keep_the_first_finishers_from_making_the_estimate_short() -> None:
    """In a batch the fast jobs finish first; the slow ones, still running, count as 'longer than their age'."""
    rng = random.Random(5)
    durations = sorted(169.0 * math.exp(0.3 * rng.gauss(0, 1)) for _ in range(400))
    naive, censored = DurationModel(None), DurationModel(None)
    # The first tenth finishes, one by one; at each finish, the others have been running that long.
    for index, finished in enumerate(durations[:40]):
        naive.observe(finished)
        censored.observe(finished, running=[finished] * (len(durations) - 1 - index))
    assert naive.median < 120.0, "the first finishers alone say jobs are short"
    assert censored.median == pytest.approx(169.0, rel=0.1)
    assert censored.sigma == pytest.approx(0.3, abs=0.1)


def test_without_a_prior_nothing_is_known_until_a_duration_is_seen() -> None:
    model = DurationModel(None)
    assert not model.known
    model.observe(-1.0)
    model.observe(math.nan)
    assert not model.known, "nonsense durations are ignored"
    model.observe(12.0)
    assert model.known
    assert model.median == pytest.approx(12.0)


def test_survival_and_its_inverse_agree_over_the_whole_range() -> None:
    model = DurationModel(100.0)
    for chance in (0.999, 0.75, 0.5, 0.1, 1e-6):
        assert model.survival(model.when_survival(chance)) == pytest.approx(chance, rel=1e-6)
    assert model.survival(0.0) == 1.0
    assert model.when_survival(0.0) < math.inf  # clamped: a job far in the tail still gets a time


def test_metrics_give_queue_plus_inference_time_when_present() -> None:
    assert measured_duration({"inference_time": 150.0, "queue_time": 19.0}) == pytest.approx(169.0)
    assert measured_duration({"inference_time": 150}) == pytest.approx(150.0)
    assert measured_duration({"inference_time": 0}) is None
    assert measured_duration({"inference_time": True}) is None
    assert measured_duration({"queue_time": 3.0}) is None
    assert measured_duration({"inference_time": 10.0, "queue_time": "soon"}) == pytest.approx(10.0)


# -- when one request is polled -----------------------------------------------------------------------


def claim_the_scout(scheduler: PollScheduler, model: str = ALEPH, expected: float = 169.0) -> list[PollJob]:
    """Register jobs that take the model's scout places and are never polled: the others follow the estimate."""
    scouts = []
    for place in range(SCOUTS):
        scout = scheduler.register(
            f"scout-{place}", model=model, poll_interval=1.0, expected_duration=expected, submitted_at=scheduler.wall()
        )
        scheduler.due_at(scout)
        scouts.append(scout)
    return scouts


def adaptive_times(
    duration: float, expected: float | None, poll: float = 10.0, cap: float | None = None
) -> list[float]:
    loop = VirtualTimeLoop()
    scheduler = scheduler_on(loop)
    looks: list[float] = []

    async def main() -> None:
        if expected is not None:
            claim_the_scout(scheduler)
        job = scheduler.register(
            "r1",
            model=ALEPH,
            poll_interval=poll,
            max_poll_interval=cap,
            expected_duration=expected,
            submitted_at=loop.wall(),
        )
        await poll_until_done(scheduler, job, duration, loop.time(), looks)
        scheduler.forget(job)
        await scheduler.close()

    run_virtual(main(), loop)
    return looks


def test_a_fresh_job_is_not_polled_in_the_early_part_of_its_likely_duration() -> None:
    looks = adaptive_times(duration=200.0, expected=169.0)
    prior = DurationModel(169.0)
    first = prior.when_survival(1 - FIRST_LOOK_ODDS)
    assert looks[0] == pytest.approx(first, abs=0.01)
    assert 100.0 < looks[0] < 169.0
    # Each later poll comes when the job has had COMPLETION_ODDS of finishing since the previous one, within
    # the poll interval and the longest interval.
    for before, after in itertools.pairwise(looks):
        chance = 1 - prior.survival(after) / prior.survival(before)
        gap = after - before
        assert 10.0 - 1e-6 <= gap <= DEFAULT_MAX_POLL_INTERVAL + 1e-6
        if 10.0 + 1e-6 < gap < DEFAULT_MAX_POLL_INTERVAL - 1e-6:
            assert chance == pytest.approx(COMPLETION_ODDS, abs=1e-6)
    assert looks[-1] >= 200.0
    # Far fewer polls than at a fixed 10 s, which would take 20.
    assert len(looks) <= 4


def test_the_longest_interval_caps_the_gap_in_the_tail_and_the_shortest_holds_it_apart() -> None:
    tail = adaptive_times(duration=900.0, expected=169.0, cap=45.0)
    gaps = [b - a for a, b in itertools.pairwise(tail)]
    assert max(gaps) == pytest.approx(45.0)
    assert gaps[-1] == pytest.approx(45.0), "deep in the tail every poll is at the cap"
    tight = adaptive_times(duration=900.0, expected=169.0, poll=40.0, cap=45.0)
    assert min(b - a for a, b in itertools.pairwise(tight)) >= 40.0 - 1e-6


def test_with_no_hint_and_nothing_learned_a_job_is_polled_every_poll_interval() -> None:
    looks = adaptive_times(duration=35.0, expected=None, poll=10.0)
    assert looks == pytest.approx([10.0, 20.0, 30.0, 40.0])


def looks_of_a_batch(count: int, *, duration: float, expected: float, poll: float) -> dict[str, list[float]]:
    """Submit ``count`` jobs of ``duration`` s at once (hinted ``expected``), poll each until done; each one's looks."""
    loop = VirtualTimeLoop()
    scheduler = scheduler_on(loop)
    seen: dict[str, list[float]] = {}

    async def main() -> None:
        jobs = [
            scheduler.register(
                f"r{n}", model=ALEPH, poll_interval=poll, expected_duration=expected, submitted_at=loop.wall()
            )
            for n in range(count)
        ]
        await asyncio.gather(
            *(poll_until_done(scheduler, job, duration, 0.0, seen.setdefault(job.request_id, [])) for job in jobs)
        )
        await scheduler.close()

    run_virtual(main(), loop)
    return seen


def test_until_a_model_is_seen_to_finish_one_job_scouts_and_the_rest_follow_the_hint() -> None:
    """A hint far off (jobs of 5 s, hinted 169 s) costs the scout its polls, and nobody a long wait."""
    seen = looks_of_a_batch(5, duration=5.0, expected=169.0, poll=1.0)
    assert seen["r0"] == pytest.approx([1.0, 2.5, 4.75, 8.125]), "the first job scouts, gaps growing by 1.5"
    # Once the scout's 5 s is learned the others are planned again, and polled at once.
    for rid in ("r1", "r2", "r3", "r4"):
        assert seen[rid][0] == pytest.approx(8.125, abs=0.1)  # one after the other, at the budget's rate
        assert len(seen[rid]) == 1


def test_the_fixed_policy_polls_at_once_then_every_stretched_interval() -> None:
    loop = VirtualTimeLoop()
    scheduler = scheduler_on(loop, rate=6, policy="fixed")  # one call every 10 s
    looks: dict[str, list[float]] = {"a": [], "b": [], "c": []}

    async def main() -> None:
        jobs = {
            rid: scheduler.register(
                rid, model=ALEPH, poll_interval=5.0, expected_duration=169.0, submitted_at=loop.wall()
            )
            for rid in looks
        }
        await asyncio.gather(*(poll_until_done(scheduler, jobs[rid], 100.0, 0.0, looks[rid]) for rid in looks))
        await scheduler.close()

    run_virtual(main(), loop)
    # The first look at once (the budget spaces them 10 s apart), then every 3 x 10 s: the even stretch.
    assert [looks[rid][0] for rid in "abc"] == pytest.approx([0.0, 10.0, 20.0])
    for times in looks.values():
        assert all(b - a == pytest.approx(30.0) for a, b in itertools.pairwise(times))


def test_a_job_rebuilt_after_a_restart_is_reckoned_from_its_submit_time() -> None:
    loop = VirtualTimeLoop()
    scheduler = scheduler_on(loop)
    first: list[float] = []

    async def main() -> None:
        await asyncio.sleep(500.0)  # the triggerer was down; the job was submitted at 0
        job = scheduler.register("r1", model=ALEPH, poll_interval=10.0, expected_duration=169.0, submitted_at=EPOCH)
        await scheduler.turn(job)
        first.append(loop.time())
        scheduler.forget(job)
        await scheduler.close()

    run_virtual(main(), loop)
    assert first == [pytest.approx(500.0)], "a job well past its likely duration is polled at once"


# -- learning -----------------------------------------------------------------------------------------


def test_durations_seen_on_the_connection_move_the_first_poll() -> None:
    loop = VirtualTimeLoop()
    scheduler = scheduler_on(loop)
    first_looks: list[float] = []

    async def main() -> None:
        claim_the_scout(scheduler)
        for index in range(30):
            start = loop.time()
            job = scheduler.register(
                f"r{index}", model=ALEPH, poll_interval=1.0, expected_duration=169.0, submitted_at=loop.wall()
            )
            looks: list[float] = []
            await poll_until_done(scheduler, job, 40.0, start, looks)
            first_looks.append(looks[0] - start)
            scheduler.forget(job)
        await scheduler.close()

    run_virtual(main(), loop)
    assert first_looks[0] > 100.0, "the first job follows the prior"
    assert all(25.0 < first < 40.0 for first in first_looks[1:]), "from the first 40 s job on, it follows them"
    # As the spread of identical durations narrows, the first look closes in on 40 s.
    assert first_looks[-1] > first_looks[1]
    assert scheduler.models[ALEPH].median == pytest.approx(40.0)


def test_without_metrics_the_duration_is_learned_from_poll_timing() -> None:
    loop = VirtualTimeLoop()
    scheduler = scheduler_on(loop)

    async def main() -> None:
        for index in range(1):
            start = loop.time()
            job = scheduler.register(f"r{index}", model="other", poll_interval=10.0, submitted_at=loop.wall())
            await poll_until_done(scheduler, job, 35.0, start, [], metrics=False)
            scheduler.forget(job)
        await scheduler.close()

    run_virtual(main(), loop)
    # Polled at 10, 20, 30 (running) and 40 (done): the estimate is the midpoint of the last two.
    assert scheduler.models["other"].median == pytest.approx(35.0)


def test_each_model_has_its_own_estimate_and_a_late_hint_counts_until_something_is_seen() -> None:
    clock = FakeClock(0.0)
    scheduler = PollScheduler(RequestBudget(60, clock=clock), clock=clock, wall=lambda: EPOCH)
    scheduler.register("a", model="m1", poll_interval=1.0, submitted_at=EPOCH)
    scheduler.models["m1"].observe(20.0)
    scheduler.register("b", model="m2", poll_interval=1.0, submitted_at=EPOCH)
    assert not scheduler.models["m2"].known
    scheduler.register("c", model="m2", poll_interval=1.0, expected_duration=300.0, submitted_at=EPOCH)
    scheduler.register("d", model="m1", poll_interval=1.0, expected_duration=100.0, submitted_at=EPOCH)
    assert scheduler.models["m1"].median == pytest.approx(20.0), "what was seen outranks a hint"
    assert scheduler.models["m2"].median == pytest.approx(300.0)


# -- who gets the budget's next slot ------------------------------------------------------------------


def test_when_more_polls_are_due_than_the_budget_allows_the_one_due_first_goes_first() -> None:
    loop = VirtualTimeLoop()
    scheduler = scheduler_on(loop, rate=6)  # one call every 10 s
    order: list[tuple[str, float]] = []

    async def wait_turn(job: PollJob) -> None:
        await scheduler.turn(job)
        order.append((job.request_id, loop.time()))

    async def main() -> None:
        # Submitted 300, 200 and 100 s ago, with nothing learned: each is due at once, the oldest most overdue.
        jobs = []
        for rid, age in (("young", 100.0), ("old", 300.0), ("middle", 200.0)):
            jobs.append(
                scheduler.register(
                    rid,
                    model=ALEPH,
                    poll_interval=1.0,
                    expected_duration=60.0,
                    submitted_at=loop.wall() - timedelta(seconds=age),
                )
            )
        await asyncio.gather(*(wait_turn(job) for job in jobs))
        await scheduler.close()

    run_virtual(main(), loop)
    assert [rid for rid, _ in order] == ["old", "middle", "young"]
    assert [when for _, when in order] == pytest.approx([0.0, 10.0, 20.0])


def test_a_call_that_is_not_a_scheduled_poll_waits_for_one_slot_at_most() -> None:
    loop = VirtualTimeLoop()
    scheduler = scheduler_on(loop, rate=6)
    got: dict[str, float] = {}

    async def main() -> None:
        jobs = [
            scheduler.register(f"r{n}", poll_interval=1.0, submitted_at=loop.wall() - timedelta(seconds=60))
            for n in range(5)
        ]
        turns = [asyncio.ensure_future(scheduler.turn(job)) for job in jobs]
        await asyncio.sleep(1.0)  # the first turn went at 0; the dispatcher waits for the slot at 10
        await scheduler.budget.acquire()  # a result fetch, say
        got["result"] = loop.time()
        await asyncio.gather(*turns)
        got["last poll"] = loop.time()
        await scheduler.close()

    run_virtual(main(), loop)
    # The result's call takes the slot after the one the dispatcher already waits for, not the sixth.
    assert got["result"] == pytest.approx(20.0)
    assert got["last poll"] == pytest.approx(50.0)


def test_a_turn_given_up_before_it_came_returns_its_slot() -> None:
    loop = VirtualTimeLoop()
    scheduler = scheduler_on(loop, rate=6)
    seen: list[float] = []

    async def main() -> None:
        gone = scheduler.register("gone", poll_interval=1.0, submitted_at=loop.wall() - timedelta(seconds=60))
        stays = scheduler.register("stays", poll_interval=1.0, submitted_at=loop.wall())
        early = asyncio.ensure_future(scheduler.turn(gone))
        await asyncio.sleep(0)
        early.cancel()
        scheduler.forget(gone)
        await scheduler.turn(stays)
        seen.append(loop.time())
        await scheduler.close()
        assert scheduler._queue == [] or all(j._turn is None for _, _, j in scheduler._queue)

    run_virtual(main(), loop)
    # "stays" has no estimate: due one poll interval after its submit; the cancelled turn cost nothing.
    assert seen == [pytest.approx(1.0)]
    assert list(scheduler.jobs) == ["stays"]


# -- the rate: down at once on 429, back up gradually -------------------------------------------------


def test_a_429_halves_the_rate_once_for_the_calls_in_flight_and_it_recovers_linearly() -> None:
    clock = FakeClock(0.0)
    budget = RequestBudget(50, clock=clock, adaptive=True)
    tickets = [budget.try_acquire()]
    clock.advance(1.2)
    tickets.append(budget.try_acquire())
    assert None not in tickets
    clock.advance(0.3)  # both calls in flight; the first one's 429 comes back
    pause = budget.rate_limited(tickets[0], retry_after=5.0)
    assert pause == 5.0
    assert budget.rate == pytest.approx(50 * DECREASE)
    budget.rate_limited(tickets[1], retry_after=5.0)  # in flight together: no second cut
    assert budget.rate == pytest.approx(50 * DECREASE)
    assert budget.interval == pytest.approx(60 / 25)
    # The pause holds every call; afterwards the rate climbs back by the ceiling over RECOVERY_CALLS calls' time.
    clock.now = 6.4
    assert budget.try_acquire() is None, "paused until 1.5 + 5 s"
    clock.now = 6.6
    assert budget.try_acquire() is not None
    assert budget.rate == pytest.approx(25.0 + 0.1 * 50**2 / (60 * RECOVERY_CALLS))
    per_second = 50**2 / (60 * RECOVERY_CALLS)
    clock.now = 66.5
    budget.try_acquire()
    assert budget.rate == pytest.approx(25.0 + 60 * per_second)
    clock.now = 10_000.0
    budget.try_acquire()
    assert budget.rate == 50.0, "never above the ceiling"


def test_429s_after_the_cut_keep_cutting_down_to_a_floor() -> None:
    clock = FakeClock(0.0)
    budget = RequestBudget(50, clock=clock, adaptive=True)
    for _ in range(20):
        clock.now = budget.next_slot_at()  # the next slot: too soon to recover much
        ticket = budget.try_acquire()
        assert ticket is not None
        budget.rate_limited(ticket, retry_after=0.0)
    assert budget.rate == pytest.approx(50 * MIN_RATE_SHARE, rel=0.2)


def test_a_fixed_budget_never_changes_its_rate() -> None:
    clock = FakeClock(0.0)
    budget = RequestBudget(50, clock=clock)
    ticket = budget.try_acquire()
    assert ticket is not None
    budget.rate_limited(ticket, retry_after=1.0)
    assert budget.rate == 50.0


def test_processes_sharing_one_limit_settle_under_it() -> None:
    """Two adaptive budgets whose calls share one sliding-window limit: after the first minute, few 429s."""
    clock = FakeClock(0.0)
    limit, window = 50, 60.0
    budgets = [RequestBudget(limit, clock=clock, adaptive=True, name=f"p{n}") for n in range(2)]
    window_calls: list[float] = []
    answered: list[float] = []
    refused: list[float] = []
    while clock.now < 1800.0:
        for budget in budgets:
            ticket = budget.try_acquire()
            if ticket is None:
                continue
            while window_calls and window_calls[0] <= clock.now - window:
                window_calls.pop(0)
            if len(window_calls) < limit:
                window_calls.append(clock.now)
                answered.append(clock.now)
                budget.succeeded(ticket)
            else:
                refused.append(clock.now)
                budget.rate_limited(ticket, retry_after=window_calls[0] + window - clock.now)
        clock.advance(0.01)
    late_answered = sum(1 for t in answered if t > 60.0)
    late_refused = sum(1 for t in refused if t > 60.0)
    assert late_refused <= 0.05 * (late_answered + late_refused)
    # And the account's limit is used, not abandoned: at least 70 % of it over the last 29 minutes.
    assert late_answered >= 0.7 * limit * (1800 - 60) / 60


def test_the_policy_extra_is_one_of_the_schedulers_policies() -> None:
    from airflow_provider_aleph.hooks.connection import POLL_POLICIES

    assert set(POLL_POLICIES) == {policy.value for policy in PollPolicy}


def test_in_the_likely_window_the_scouts_look_staggered_and_the_first_finish_replans_the_others() -> None:
    """A right hint, jobs of exactly 60 s: the first scout backs off early on, then every scout looks every
    poll_interval from the first-look point, each a quarter of one later than the one before; the first
    completion is seen within a quarter of poll_interval and every other job is polled at once."""
    seen = looks_of_a_batch(SCOUTS + 2, duration=60.0, expected=60.0, poll=10.0)
    assert SCOUTS == 4
    window = 60.0 * math.exp(PRIOR_SIGMA * statistics.NormalDist().inv_cdf(FIRST_LOOK_ODDS))  # 45.8 s
    # The first scout: growing gaps (10, 15, 22.5) until past the window's start, then every poll_interval.
    assert seen["r0"][:4] == pytest.approx([10.0, 25.0, 47.5, 57.5])
    # The others start 2.5 s apart; the one starting at window + 5 s sees the first finish, at window + 15 s,
    # 0.8 s after it (alone, the first scout would have seen it at 67.5 s).
    assert seen["r1"][:2] == pytest.approx([window + 2.5, window + 12.5], abs=0.1)
    assert seen["r2"] == pytest.approx([window + 5.0, window + 15.0], abs=0.1)
    assert seen["r3"][0] == pytest.approx(window + 7.5, abs=0.1)
    # The rest look first at the window's start. Under the hint their next look was planned for 74 s (the
    # odds on a spread of 0.4); the finish narrows the estimate, and it comes sooner.
    prior = DurationModel(60.0)
    planned = prior.when_survival((1 - COMPLETION_ODDS) * prior.survival(window))
    assert planned > 73.0
    for rid in ("r4", "r5"):
        assert seen[rid][0] == pytest.approx(window, abs=0.1)
        assert window + 15.0 < seen[rid][1] < planned - 5.0
