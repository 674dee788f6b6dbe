"""SegmindRequestTrigger: wait for a submitted request in the triggerer, with GETs only.

The triggers of one connection on one event loop share its settings, one HTTP client, one request
budget and one poll scheduler (see :mod:`airflow_provider_aleph.shared`): each trigger asks the
scheduler for its turn before every poll (:mod:`airflow_provider_aleph.polling` decides which
request's poll is worth the budget's next call), and a 429 pauses them all together. Every
:data:`STATUS_LOG_PERIOD` a waiting trigger logs a status line: the request's state, the time since
submit, when it will be polled next and why.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pendulum
from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_provider_aleph.durations import in_words
from airflow_provider_aleph.events import RequestEvent, conclude, error_event, timeout_event
from airflow_provider_aleph.exceptions import SegmindError
from airflow_provider_aleph.outlook import PollOutlook, poll_outlook
from airflow_provider_aleph.shared import acquire_shared

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from airflow_provider_aleph.hooks.segmind import SegmindHook
    from airflow_provider_aleph.polling import PollJob, PollScheduler
    from airflow_provider_aleph.protocol import RequestState
    from airflow_provider_aleph.shared import SharedConnection
    from airflow_provider_aleph.types import TaskLog

#: Seconds between two status lines of a waiting request in the triggerer log: a few minutes, not every poll.
STATUS_LOG_PERIOD = 5 * 60.0


def to_utc(value: datetime | str) -> datetime:
    """Parse an ISO-8601 string or take a datetime, as an aware UTC datetime."""
    when = datetime.fromisoformat(value) if isinstance(value, str) else value
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.astimezone(UTC)


def note_state(log: TaskLog, state: RequestState, elapsed: str = "?") -> None:
    """Log a request's new state; a state the API never documented is a warning that names it.

    :param log: where to log (the trigger's, or the sensor's logger).
    :param state: the state just read.
    :param elapsed: time since submit.
    """
    if state.status.rule.documented:
        log.info("Segmind request %s is %s (%s since submit)", state.request_id, state.reported, elapsed)
        return
    log.warning(
        "Segmind request %s reports the undocumented status %r (%s since submit); treating it as still "
        "running and polling on until it finishes or the deadline passes (never as success)",
        state.request_id,
        state.reported,
        elapsed,
    )


class SegmindRequestTrigger(BaseTrigger):
    """Poll one Segmind request until it finishes or an absolute deadline passes.

    It never submits: a trigger rebuilt after a triggerer restart resumes the same request with
    the same deadline. Its serialized kwargs are plain JSON and hold no secret (the key is read
    from the connection in ``run()``). When it polls is the connection's poll scheduler's decision
    (extra ``poll_policy``), within the connection's request budget (extra ``max_requests_per_minute``):
    by default, when the job is likely to be done, from the durations seen of the same model.

    :param request_id: the Segmind request id.
    :param segmind_conn_id: the Airflow connection id.
    :param deadline: when to give up waiting (aware datetime or ISO-8601 string, UTC).
    :param poll_interval: the shortest time between two status polls of this request, in seconds.
    :param status_url: the ``status_url`` the submit returned; built from the id when omitted.
    :param response_url: the ``response_url`` the submit returned; built from the id when omitted.
    :param submitted_at: when the request was submitted: the scheduler reckons the job's progress
        from it (without it, the request is polled at once, then every ``poll_interval``).
    :param model: the model slug; requests of one model share what is learned of their durations.
    :param expected_duration: the typical duration of the model's jobs, in seconds, as a starting
        point for the scheduler (None: learned from the jobs seen).
    :param max_poll_interval: the longest time between two polls of this request while the request
        budget allows, in seconds; None for the scheduler's default (60 s).
    """

    def __init__(
        self,
        request_id: str,
        segmind_conn_id: str,
        deadline: datetime | str,
        poll_interval: float = 10.0,
        status_url: str | None = None,
        response_url: str | None = None,
        submitted_at: datetime | str | None = None,
        model: str | None = None,
        expected_duration: float | None = None,
        max_poll_interval: float | None = None,
    ) -> None:
        super().__init__()
        self.request_id = request_id
        self.segmind_conn_id = segmind_conn_id
        self.deadline = to_utc(deadline)
        self.poll_interval = float(poll_interval)
        self.status_url = status_url
        self.response_url = response_url
        self.submitted_at = to_utc(submitted_at) if submitted_at else None
        self.model = model
        self.expected_duration = float(expected_duration) if expected_duration else None
        self.max_poll_interval = float(max_poll_interval) if max_poll_interval else None
        self._finished = False
        self._last: str | None = None  # the status the latest poll read
        self._polling_since: float | None = None  # loop time a poll began, while one is under way

    def __repr__(self) -> str:
        return f"{type(self).__name__}(request_id={self.request_id!r}, segmind_conn_id={self.segmind_conn_id!r})"

    def serialize(self) -> tuple[str, dict[str, Any]]:
        """Class path and plain-JSON kwargs; the deadline stays absolute across restarts."""
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "request_id": self.request_id,
                "segmind_conn_id": self.segmind_conn_id,
                "deadline": self.deadline.isoformat(),
                "poll_interval": self.poll_interval,
                "status_url": self.status_url,
                "response_url": self.response_url,
                "submitted_at": self.submitted_at.isoformat() if self.submitted_at else None,
                "model": self.model,
                "expected_duration": self.expected_duration,
                "max_poll_interval": self.max_poll_interval,
            },
        )

    def _seconds_left(self) -> float:
        return (self.deadline - pendulum.now("UTC")).total_seconds()

    def _elapsed(self) -> str:
        if self.submitted_at is None:
            return "?"
        return in_words(pendulum.now("UTC").timestamp() - self.submitted_at.timestamp())

    def status_line(self, outlook: PollOutlook, hook: SegmindHook, now: float) -> str:
        """What the scheduler is doing for this request, for the triggerer log.

        :param outlook: the scheduler's answer for the request's next poll.
        :param hook: the shared hook (its connection's timeout and outage tolerance).
        :param now: the event loop's clock.
        """
        params = hook.get_conn_params()
        polling = 0.0 if self._polling_since is None else now - self._polling_since
        if polling > params.timeout and not outlook.rate_limited:
            # Longer than one call may take: the hook is retrying a failing API within the outage tolerance.
            when = "as soon as Segmind answers"
            why = (
                f"riding out an outage, this poll has been retried for {in_words(polling)} (the connection's "
                f"outage tolerance is {in_words(params.outage_tolerance)})"
            )
        else:
            when, why = f"in {in_words(outlook.due_in)}", outlook.reason
        state = self._last or "not polled yet"
        return f"Segmind request {self.request_id} is {state}, {self._elapsed()} since submit; next look {when}: {why}"

    async def _report(self, scheduler: PollScheduler, job: PollJob, hook: SegmindHook) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(STATUS_LOG_PERIOD)
            self.log.info("%s", self.status_line(poll_outlook(scheduler, job), hook, loop.time()))

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """Yield exactly one event: success, failed, error or timeout, each with the request id.

        Cancelled mid-poll (a triggerer restart or hand-off), it lets go of its place in the
        request budget and of the shared client, and the remote job keeps running.
        """
        # The share is released before the event is yielded: the triggerer may never resume us after it.
        async with contextlib.AsyncExitStack() as releases:
            event = await self._wait(releases)
        self._finished = True
        yield TriggerEvent(event.since(self.submitted_at).to_payload())

    async def _wait(self, releases: contextlib.AsyncExitStack) -> RequestEvent:
        share: SharedConnection | None = None
        hook: SegmindHook | None = None
        scheduler: PollScheduler | None = None
        job: PollJob | None = None
        warned = False  # about an undocumented status: once per request
        while (left := self._seconds_left()) > 0:
            try:
                # The connection lookup, the turn and the retries inside the hook must not run past the deadline.
                async with asyncio.timeout(left):
                    if share is None or hook is None or scheduler is None or job is None:
                        share = await acquire_shared(self.segmind_conn_id)
                        releases.push_async_callback(share.release)
                        hook, scheduler = share.hook(), share.polls()
                        job = scheduler.register(
                            self.request_id,
                            model=self.model,
                            poll_interval=self.poll_interval,
                            max_poll_interval=self.max_poll_interval,
                            expected_duration=self.expected_duration,
                            submitted_at=self.submitted_at,
                        )
                        releases.callback(scheduler.forget, job)
                        reporter = asyncio.get_running_loop().create_task(self._report(scheduler, job, hook))
                        releases.callback(reporter.cancel)
                    ticket = await scheduler.turn(job)
                    self._polling_since = asyncio.get_running_loop().time()
                    try:
                        state = await hook.aget_state(
                            self.request_id, self.status_url, self.response_url, ticket=ticket
                        )
                    finally:
                        self._polling_since = None
            except TimeoutError:
                break
            except SegmindError as err:
                return error_event(self.request_id, err)
            scheduler.seen(job, state)
            if state.reported != self._last and (state.status.rule.documented or not warned):
                note_state(self.log, state, self._elapsed())
                warned = warned or not state.status.rule.documented
            self._last = state.reported
            if event := conclude(state, self._elapsed()):
                return event
        return timeout_event(self.request_id, self.deadline.isoformat(), self._last)

    def _left_running(self, why: str) -> None:
        self.log.info(
            "%s: Segmind request %s keeps running on Segmind (it has no cancel endpoint) and is billed. "
            "If the task is still deferred, a triggerer resumes it; otherwise wait for it with "
            "SegmindRequestSensor(request_id=%r) within the 1-hour retention",
            why,
            self.request_id,
            self.request_id,
        )

    async def cleanup(self) -> None:
        """Log what happens to the remote job; no HTTP call (Segmind has no cancel endpoint)."""
        if not self._finished:
            self._left_running("Trigger stopped before the request finished")

    async def on_kill(self) -> None:
        """A user killed or cleared the task (Airflow 3.3+): log that the job is left running; no HTTP call."""
        self._left_running("Task killed while waiting")
