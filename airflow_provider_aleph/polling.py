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
    seen to finish, :data:`SCOUTS` of its jobs (the *scouts*) also look early: the first at gaps
    growing from ``poll_interval`` by :data:`SCOUT_BACKOFF` from its submit, so a hint that is far off
    (a test emulator, a model that got faster) costs one job a few polls, not every job a long wait;
    and from the first-look point on, each every ``poll_interval``, staggered, so the first completion
    is seen soon after it happens. When the estimate moves, the waiting jobs are planned again. With
    no hint and nothing learned yet, a job is polled every ``poll_interval``.
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
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING

from airflow_provider_aleph.durations import DurationModel, measured_duration
from airflow_provider_aleph.states import Meaning

if TYPE_CHECKING:
    from collections.abc import Callable

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
#: Growth of the gaps between the first scout's early looks (see the module's description).
SCOUT_BACKOFF = 1.5
#: Scouts per model until its first job is seen to finish; in the likely window their looks are staggered
#: by ``poll_interval / SCOUTS``, so the first completion is seen within that, not a whole poll_interval.
SCOUTS = 4
#: A change of the estimate's median or spread by this share re-plans the model's waiting jobs.
REPLAN_CHANGE = 0.1


class PollPolicy(StrEnum):
    """How the scheduler spaces the polls of a request (the connection extra ``poll_policy``)."""

    ADAPTIVE = "adaptive"
    FIXED = "fixed"


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
        #: Per model, the jobs that look early until the model's first duration is seen (the first at growing
        #: gaps from its submit, all of them every poll_interval in the likely window, staggered).
        self._scouts: dict[str, list[PollJob]] = {}
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
        if job in (scouts := self._scouts.get(job.model, [])):
            scouts.remove(job)
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
        if not estimate.observed and (rank := self._scout_rank(job)) is not None:
            look = self._scout_look(job, estimate, rank)
            # The first scout never looks later than the plan would; the others' first look is staggered.
            return min(self._planned_look(job, estimate), look) if rank == 0 else look
        return self._planned_look(job, estimate)

    def _scout_rank(self, job: PollJob) -> int | None:
        """``job``'s place among its model's scouts (taking a free place), or None when it is not one."""
        scouts = self._scouts.setdefault(job.model, [])
        if job not in scouts and len(scouts) < SCOUTS:
            scouts.append(job)
        return scouts.index(job) if job in scouts else None

    @staticmethod
    def _scout_look(job: PollJob, estimate: DurationModel, rank: int) -> float:
        """A scout's next look while the hint is unconfirmed: the first scout at gaps growing from its submit
        (a hint far off costs it a few polls, not every job a long wait); from the first-look point on, each
        scout every ``poll_interval``, the n-th starting ``n / SCOUTS`` of one later."""
        assert job.submitted is not None
        last = job.submitted if job.last_look is None else job.last_look
        window = job.submitted + estimate.when_survival(1.0 - FIRST_LOOK_ODDS)
        if rank == 0:
            if last >= window:
                return last + job.poll_interval
            gap = min(job.poll_interval * SCOUT_BACKOFF ** min(job.looks, 64), job.max_poll_interval)
            return last + gap
        start = window + rank * job.poll_interval / SCOUTS
        return start if job.last_look is None or job.last_look < start else job.last_look + job.poll_interval

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

    def is_scout(self, job: PollJob) -> bool:
        """Whether ``job`` looks early, as one of its model's scouts, until a job of the model is seen to finish."""
        return not self.models[job.model].observed and job in self._scouts.get(job.model, [])

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
