"""The poll scheduler: which waiting request gets the next call of the connection's request budget.

One :class:`PollScheduler` sits behind the triggers of one connection on one event loop (it lives in
:class:`~airflow_provider_aleph.shared.SharedConnection`). Each trigger registers its request, then
asks for a *turn* before every status poll: :meth:`PollScheduler.turn` returns when this request is
the one to poll, with a slot of the request budget already taken for the call. The trigger polls,
tells the scheduler what it saw (:meth:`PollScheduler.seen`), and asks again. Nothing here survives a
restart, and nothing needs to: a trigger rebuilt from its kwargs registers again with its submit time.

Two policies, chosen by the connection extra ``poll_policy``:

``adaptive`` (the default)
    Polls go where a completion is likely. The scheduler keeps, per model, a lognormal estimate of job
    durations seen on this connection (:class:`DurationModel`: the result's ``metrics``, queue plus
    inference time, where present, else the poll timing), started from the operator's
    ``expected_duration`` hint. A fresh job is first polled once it has a :data:`FIRST_LOOK_ODDS`
    chance of being done; after a look that found it running, the next poll is due when the chance
    that it finished since that look reaches :data:`COMPLETION_ODDS`, but never sooner than
    ``poll_interval`` and never later than ``max_poll_interval`` after the look. Jobs still running
    count in the estimate too (each takes longer than its age when last seen running), so the first
    jobs of a batch to finish, the fast ones, do not make it short. Until a model's first job has been
    seen to finish, one of its jobs (the *scout*) also looks early, at gaps growing from
    ``poll_interval`` by :data:`SCOUT_BACKOFF`, so a hint that is far off (a test emulator, a model
    that got faster) costs one job a few polls, not every job a long wait; when the estimate moves,
    the waiting jobs are planned again. With no hint and nothing learned yet, a job is polled every
    ``poll_interval``.
``fixed``
    What the provider did before the scheduler: the first poll at once, then one every
    ``poll_interval``, stretched evenly so that all the connection's waiting requests fit the budget.
    Kept for comparison (``make bench``) and as a fallback.

When more polls are due than the budget allows, the request due first polls first. Calls that are not
scheduled polls (fetching a finished job's result, retries, submits) wait in the budget's own queue,
where the scheduler takes one slot at a time, so they never wait behind a backlog of polls.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
import math
import random
import statistics
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from airflow_provider_aleph.states import Meaning

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

    from airflow_provider_aleph.budget import RequestBudget
    from airflow_provider_aleph.protocol import RequestState

log = logging.getLogger(__name__)

#: The chance of being done that a fresh job must reach before its first poll: the early part of its
#: likely duration is skipped.
FIRST_LOOK_ODDS = 0.25
#: After a look that found the job running, the chance that it finished since then that makes the next
#: poll due. Higher spends fewer polls per job and sees completions later.
COMPLETION_ODDS = 0.6
#: Default longest time between two polls of one request, when the budget allows (``max_poll_interval``).
DEFAULT_MAX_POLL_INTERVAL = 60.0
#: Spread of the log of job durations assumed before anything is learned (lognormal sigma).
PRIOR_SIGMA = 0.4
#: How many observed durations the assumed spread is worth, against the spread of those observed.
PRIOR_WEIGHT = 2.0
#: Growth of the gaps between the scout's early looks (see the module's description).
SCOUT_BACKOFF = 1.5
#: Durations kept per model: the estimate follows the recent ones (and as many running jobs, at most).
KEPT_DURATIONS = 200
#: EM steps of a fit that includes running jobs (each fit starts from the one before).
FIT_STEPS = 20
#: The estimate is fitted again at each of a model's first this many observed durations (when the finished
#: jobs are few, and the fast ones), then at every this-many-th: a fit weighs up to KEPT_DURATIONS running jobs.
REFIT_EVERY = 20
#: A change of the estimate's median or spread by this share re-plans the model's waiting jobs.
REPLAN_CHANGE = 0.1
_NORMAL = statistics.NormalDist()


class PollPolicy(StrEnum):
    """How the scheduler spaces the polls of a request (the connection extra ``poll_policy``)."""

    ADAPTIVE = "adaptive"
    FIXED = "fixed"


class DurationModel:
    """A lognormal estimate of one model's job durations on one connection, from a hint and what was seen.

    Until a duration is observed, the estimate is the operator's hint (its median) with a log-spread of
    :data:`PRIOR_SIGMA`. From the first observation on, it is fitted to what was seen (the hint is a
    starting point, not evidence: a hint that is far off must not slow the jobs that follow): the
    finished jobs' durations, and the jobs still running, each known to take longer than its age when
    last seen running. Without the second part, the first jobs to finish (the fast ones) would make the
    estimate too short. The fit is the maximum-likelihood lognormal for such right-censored data (a few
    EM steps), its spread pulled towards :data:`PRIOR_SIGMA` as if that had been seen :data:`PRIOR_WEIGHT`
    times.
    With no hint and nothing observed there is no estimate (:attr:`known` is False).

    :param expected: the hint: the typical duration in seconds, or None for none.
    """

    def __init__(self, expected: float | None = None) -> None:
        self.expected = expected
        self._logs: deque[float] = deque(maxlen=KEPT_DURATIONS)
        self._sum = 0.0  # of the kept logs, and of their squares
        self._squares = 0.0
        self._total = 0  # durations observed, kept or not
        self._mu = math.log(expected) if expected else 0.0
        self._sigma = PRIOR_SIGMA

    def __repr__(self) -> str:
        if not self.known:
            return f"{type(self).__name__}(unknown)"
        return f"{type(self).__name__}(median={self.median:.1f}s, sigma={self._sigma:.2f}, seen={len(self._logs)})"

    @property
    def known(self) -> bool:
        """Whether there is an estimate: a hint, or at least one observed duration."""
        return bool(self.expected) or bool(self._logs)

    @property
    def observed(self) -> int:
        """How many durations were observed (the most recent :data:`KEPT_DURATIONS`)."""
        return len(self._logs)

    @property
    def median(self) -> float:
        """The estimated median duration, in seconds."""
        return math.exp(self._mu)

    @property
    def sigma(self) -> float:
        """The estimated standard deviation of the log of a duration."""
        return self._sigma

    def hint(self, expected: float | None) -> None:
        """Take the operator's hint, if none was given before; it counts only until a duration is observed."""
        if expected and not self.expected:
            self.expected = expected
            if not self._logs:
                self._mu = math.log(expected)

    @property
    def wants_running(self) -> bool:
        """Whether the next observation refits the estimate, running jobs included (see :data:`REFIT_EVERY`)."""
        return self._total < REFIT_EVERY or (self._total + 1) % REFIT_EVERY == 0

    def observe(self, seconds: float, running: Sequence[float] = ()) -> None:
        """Take in one job's duration, and fit the estimate again.

        :param seconds: how long the job took, submit to completion.
        :param running: the ages (seconds since submit) at which the jobs still waiting were last seen
            running: each takes longer than that (used while :attr:`wants_running`).
        """
        if not (math.isfinite(seconds) and seconds > 0):
            return
        value = math.log(seconds)
        if len(self._logs) == self._logs.maxlen:
            evicted = self._logs[0]
            self._sum -= evicted
            self._squares -= evicted * evicted
        refit = self.wants_running
        self._logs.append(value)
        self._total += 1
        self._sum += value
        self._squares += value * value
        if not refit:
            return
        censored = [math.log(age) for age in running if math.isfinite(age) and age > 0]
        weight = 1.0
        if len(censored) > KEPT_DURATIONS:
            # A sample of the running jobs, each standing for as many as were left out.
            weight = len(censored) / KEPT_DURATIONS
            censored = random.sample(censored, KEPT_DURATIONS)
        self._fit(censored, weight)

    def _fit(self, censored: list[float], weight: float = 1.0) -> None:
        seen = len(self._logs)
        count = seen + weight * len(censored)
        mu = self._sum / seen
        variance = max(self._squares / seen - mu * mu, 0.0)
        if censored:
            sigma = max(math.sqrt(variance), 0.05)
            if seen > 1:
                mu, sigma = max(mu, self._mu), max(sigma, self._sigma)  # start from the last fit: fewer steps
            for _ in range(FIT_STEPS):
                # E step: a running job's log-duration, given that it exceeds its log-age c.
                first, second = 0.0, 0.0
                for c in censored:
                    z = (c - mu) / sigma
                    tail = 0.5 * math.erfc(z / math.sqrt(2.0))
                    mills = z + 1.0 / z if tail < 1e-12 else math.exp(-0.5 * z * z) / math.sqrt(2 * math.pi) / tail
                    mean = mu + sigma * mills
                    first += mean
                    second += sigma**2 * (1.0 + z * mills - mills**2) + mean**2
                # M step.
                mu = (self._sum + weight * first) / count
                variance = max((self._squares + weight * second) / count - mu * mu, 1e-6)
                sigma = math.sqrt(variance)
        self._mu = mu
        self._sigma = math.sqrt((PRIOR_WEIGHT * PRIOR_SIGMA**2 + count * variance) / (PRIOR_WEIGHT + count))

    def survival(self, seconds: float) -> float:
        """The chance that a job is still running ``seconds`` after its submit."""
        if seconds <= 0:
            return 1.0
        return 1.0 - _NORMAL.cdf((math.log(seconds) - self._mu) / self._sigma)

    def when_survival(self, chance: float) -> float:
        """The time after submit at which the chance of still running falls to ``chance``.

        :param chance: from 0 to 1, exclusive; clamped into that range.
        """
        chance = min(max(chance, 1e-12), 1.0 - 1e-12)
        return math.exp(self._mu + self._sigma * _NORMAL.inv_cdf(1.0 - chance))


@dataclass(eq=False)
class PollJob:
    """One waiting request, as the scheduler sees it.

    :param request_id: the Segmind request id.
    :param model: the model slug, which keys the duration estimate ("" when unknown).
    :param poll_interval: shortest gap between two polls of this request, in seconds.
    :param max_poll_interval: longest gap between two polls, while the budget allows.
    :param submitted: when the job was submitted, on the scheduler's clock; None when unknown.
    """

    request_id: str
    model: str
    poll_interval: float
    max_poll_interval: float
    submitted: float | None
    #: When the job was last looked at (scheduler clock), and how many times.
    last_look: float | None = None
    looks: int = 0
    #: The look before the last one that found the job running, for a duration from poll timing.
    running_at: float | None = None
    due: float = 0.0
    _turn: asyncio.Future[float] | None = field(default=None, repr=False)
    _entry: int = field(default=-1, repr=False)  # which queue entry is the live one


class PollScheduler:
    """Hands out the request budget's slots to the status polls of the requests waiting on one connection.

    :param budget: the connection's request budget on this loop; every poll takes one of its slots.
    :param policy: ``adaptive`` or ``fixed`` (see the module's description).
    :param clock: monotonic seconds; must follow the event loop's clock (tests pass a fake loop's).
    :param wall: the wall clock, for submit times given as datetimes.
    """

    def __init__(
        self,
        budget: RequestBudget,
        policy: PollPolicy | str = PollPolicy.ADAPTIVE,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.budget = budget
        self.policy = PollPolicy(policy)
        self.clock = clock
        self.wall = wall
        self.jobs: dict[str, PollJob] = {}
        self.models: dict[str, DurationModel] = {}
        self._queue: list[tuple[float, int, PollJob]] = []  # (due, order, job) of jobs awaiting a turn
        self._order = itertools.count()
        self._dispatcher: asyncio.Task[None] | None = None
        self._wake: asyncio.Event | None = None
        #: Per model, the job polled every poll_interval until the model's first duration is seen.
        self._scouts: dict[str, PollJob] = {}
        #: Per model, the (median, sigma) the waiting jobs were last planned with.
        self._planned: dict[str, tuple[float, float]] = {}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.policy.value}, jobs={len(self.jobs)}, models={self.models!r})"

    # -- what the triggers call ----------------------------------------------------------------------

    def register(
        self,
        request_id: str,
        *,
        model: str | None = None,
        poll_interval: float,
        max_poll_interval: float | None = None,
        expected_duration: float | None = None,
        submitted_at: datetime | None = None,
    ) -> PollJob:
        """Start scheduling the polls of a request; :meth:`forget` it when done.

        :param request_id: the Segmind request id.
        :param model: the model slug; jobs of one model share a duration estimate.
        :param poll_interval: shortest gap between two polls of this request, in seconds.
        :param max_poll_interval: longest gap between two polls while the budget allows; None for the default.
        :param expected_duration: the operator's hint for the model's typical duration, in seconds.
        :param submitted_at: when the job was submitted; None when unknown (polled at once, then on
            ``poll_interval``, until the job's own timing is known).
        """
        key = model or ""
        estimate = self.models.get(key)
        if estimate is None:
            self.models[key] = DurationModel(expected_duration)
        else:
            estimate.hint(expected_duration)
        submitted = None
        if submitted_at is not None:
            submitted = self.clock() - max(0.0, (self.wall() - submitted_at).total_seconds())
        job = PollJob(
            request_id=request_id,
            model=key,
            poll_interval=poll_interval,
            max_poll_interval=max(poll_interval, max_poll_interval or DEFAULT_MAX_POLL_INTERVAL),
            submitted=submitted,
        )
        self.jobs[request_id] = job
        return job

    def forget(self, job: PollJob) -> None:
        """Stop scheduling ``job`` (its trigger ended or was cancelled)."""
        if self.jobs.get(job.request_id) is job:
            del self.jobs[job.request_id]
        if self._scouts.get(job.model) is job:
            del self._scouts[job.model]
        if job._turn is not None and not job._turn.done():
            job._turn.cancel()

    async def turn(self, job: PollJob) -> float:
        """Wait until ``job`` is the request to poll; return the budget ticket taken for the poll.

        Pass the ticket to the status call (``aget_status(..., ticket=...)``) so it does not queue again.
        Cancelling the wait (a deadline, the trigger stopped) gives up the turn.
        """
        job.due = self.due_at(job)
        turn: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        job._turn = turn
        job._entry = next(self._order)
        heapq.heappush(self._queue, (job.due, job._entry, job))
        self._kick(job.due)
        try:
            return await turn
        finally:
            job._turn = None

    def seen(self, job: PollJob, state: RequestState) -> None:
        """Note what a poll of ``job`` found; a success teaches the model's duration estimate.

        :param job: the polled job.
        :param state: the state the poll read.
        """
        now = self.clock()
        previous, job.last_look = job.last_look, now
        job.looks += 1
        meaning = state.status.rule.meaning
        if meaning is Meaning.RUNNING:
            job.running_at = now
            return
        if meaning is Meaning.SUCCEEDED:
            seconds = measured_duration(state.metrics)
            if seconds is None and job.submitted is not None:
                # Done somewhere between the last look that found it running and this one.
                since = job.running_at if job.running_at is not None else previous
                seconds = (now if since is None else (since + now) / 2) - job.submitted
            if seconds is not None:
                estimate = self.models[job.model]
                running = (
                    [
                        other.running_at - other.submitted
                        for other in self.jobs.values()
                        if other.model == job.model
                        and other is not job
                        and other.running_at is not None
                        and other.submitted is not None
                    ]
                    if estimate.wants_running
                    else []
                )
                estimate.observe(seconds, running)
                self._replan(job.model)

    # -- the decision --------------------------------------------------------------------------------

    def due_at(self, job: PollJob) -> float:
        """When ``job`` should next be polled, on the scheduler's clock (the past means at once)."""
        now = self.clock()
        if job.last_look is None and (self.policy is PollPolicy.FIXED or job.submitted is None):
            return now  # what happens to it is unknown: look at once
        if self.policy is PollPolicy.FIXED:
            assert job.last_look is not None
            return job.last_look + self.budget.stretched_interval(job.poll_interval, len(self.jobs))
        assert job.submitted is not None or job.last_look is not None
        estimate = self.models[job.model]
        if job.submitted is None:
            # Where the job is in its run is unknown: the shortest interval, as the budget allows.
            return (now if job.last_look is None else job.last_look) + job.poll_interval
        if not estimate.known:
            return self._unknown(job)
        planned = self._planned_look(job, estimate)
        if not estimate.observed:
            scout = self._scouts.get(job.model)
            if scout is None or scout is job or self.jobs.get(scout.request_id) is not scout:
                # The hint is not confirmed yet: this job also looks early, at gaps growing from poll_interval.
                self._scouts[job.model] = job
                gap = min(job.poll_interval * SCOUT_BACKOFF ** min(job.looks, 64), job.max_poll_interval)
                return min(planned, (job.submitted if job.last_look is None else job.last_look) + gap)
        return planned

    @staticmethod
    def _planned_look(job: PollJob, estimate: DurationModel) -> float:
        """The next poll the estimate calls for: the first look, or the next on the chance of being done."""
        assert job.submitted is not None
        if job.last_look is None:
            return job.submitted + estimate.when_survival(1.0 - FIRST_LOOK_ODDS)
        seen_running = job.last_look - job.submitted
        target = estimate.when_survival((1.0 - COMPLETION_ODDS) * estimate.survival(seen_running))
        gap = min(max(target - seen_running, job.poll_interval), job.max_poll_interval)
        return job.last_look + gap

    async def close(self) -> None:
        """Stop handing out turns (the connection's last trigger left)."""
        dispatcher, self._dispatcher = self._dispatcher, None
        if dispatcher is not None and not dispatcher.done():
            dispatcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await dispatcher

    @staticmethod
    def _unknown(job: PollJob) -> float:
        """The next poll of a job with nothing known of its duration: ``poll_interval`` after the last."""
        assert job.submitted is not None
        return (job.submitted if job.last_look is None else job.last_look) + job.poll_interval

    def _replan(self, model: str) -> None:
        """Plan the waiting jobs of ``model`` again when its estimate moved by :data:`REPLAN_CHANGE` or more."""
        estimate = self.models[model]
        now = (estimate.median, estimate.sigma)
        before = self._planned.get(model)
        if before is not None and all(abs(a - b) < REPLAN_CHANGE * b for a, b in zip(now, before, strict=True)):
            return
        self._planned[model] = now
        waiting = [
            job
            for _, entry, job in self._queue
            if entry == job._entry and job._turn is not None and not job._turn.done()
        ]
        for job in waiting:
            if job.model == model:
                job.due = self.due_at(job)
            job._entry = next(self._order)
        self._queue = [(job.due, job._entry, job) for job in waiting]
        heapq.heapify(self._queue)
        if self._wake is not None:
            self._wake.set()

    # -- handing out turns ---------------------------------------------------------------------------

    def _kick(self, due: float) -> None:
        if self._dispatcher is None or self._dispatcher.done():
            self._wake = asyncio.Event()
            self._dispatcher = asyncio.get_running_loop().create_task(
                self._dispatch(), name=f"segmind-poll-scheduler-{self.budget.name}"
            )
        elif self._wake is not None and self._queue and self._queue[0][2].due >= due:
            self._wake.set()  # a turn due sooner than the one the dispatcher sleeps towards

    def _next_waiting(self) -> PollJob | None:
        """The job due first that still waits for a turn, dropping those that gave up theirs."""
        while self._queue:
            _, entry, job = self._queue[0]
            if entry == job._entry and job._turn is not None and not job._turn.done():
                return job
            heapq.heappop(self._queue)
        return None

    async def _dispatch(self) -> None:
        """Grant turns, due first, one budget slot each, until nobody waits."""
        assert self._wake is not None
        while (job := self._next_waiting()) is not None:
            wait = job.due - self.clock()
            if wait > 0:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wait):
                        await self._wake.wait()
                continue
            ticket = await self.budget.acquire()
            job = self._next_waiting()  # the slot goes to whoever is due first now
            if job is None or job.due > self.clock():
                self.budget.refund(ticket)
                continue
            heapq.heappop(self._queue)
            assert job._turn is not None
            job._turn.set_result(ticket)


def measured_duration(metrics: Mapping[str, Any]) -> float | None:
    """A job's duration from the API's ``metrics`` (queue plus inference time), if it gave them.

    :param metrics: the result's ``metrics`` object.
    """
    inference = metrics.get("inference_time")
    if isinstance(inference, bool) or not isinstance(inference, int | float) or not inference > 0:
        return None
    queued = metrics.get("queue_time")
    if isinstance(queued, bool) or not isinstance(queued, int | float) or not queued >= 0:
        queued = 0.0
    return float(inference) + float(queued)
