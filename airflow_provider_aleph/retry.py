"""One retry policy for the sync and async hook: which failures to try again, how long to wait, when to stop.

Two kinds of call, two rules:

- A **read** of a running request (status, result) is for a job already paid for. A 429 is flow control:
  it never counts towards giving up (with a shared request budget, the budget holds every caller until
  the announced reset). 5xx answers, unreadable answers, dropped or refused connections and read
  timeouts are retried with capped, jittered backoff until they have lasted ``outage_tolerance``
  seconds (the connection extra, minutes by default); the caller's own deadline bounds it too. Giving
  up raises :class:`~airflow_provider_aleph.exceptions.SegmindUnavailable`, which names the request,
  the last answer and how long the API has been failing.
- A **submit** or an **upload** is tried at most ``max_attempts`` times (the connection extra
  ``max_consecutive_failures``), and a submit only when nothing can have been created.
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NoReturn

import tenacity

from airflow_provider_aleph.exceptions import (
    SegmindError,
    SegmindRateLimited,
    SegmindTransportError,
    SegmindUnavailable,
)
from airflow_provider_aleph.hooks.connection import DEFAULT_MAX_CONSECUTIVE_FAILURES, DEFAULT_OUTAGE_TOLERANCE
from airflow_provider_aleph.protocol import Kind

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from airflow_provider_aleph.protocol import RequestSpec

log = logging.getLogger(__name__)

_READS = frozenset({Kind.STATUS, Kind.RESULT})


def duration(seconds: float) -> str:
    """``seconds`` in words for a message: ``42 s``, ``3 min 5 s``."""
    whole = round(seconds)
    return f"{whole} s" if whole < 60 else f"{whole // 60} min {whole % 60} s"


@dataclass
class _Streak:
    """The failures of one call since its last answer: when the first that counts came, and the last."""

    since: float | None = None
    last: BaseException | None = None


@dataclass(frozen=True)
class RetryPolicy:
    """How the hook retries a call that failed in a way another attempt may fix.

    :param max_attempts: attempts of a submit or upload, the first included (the connection extra
        ``max_consecutive_failures``).
    :param outage_tolerance: seconds a read keeps retrying a failing API before it gives up (the
        connection extra ``outage_tolerance``); 429s do not count.
    :param base_delay: first backoff, in seconds; doubles each attempt, with full jitter.
    :param max_delay: cap on one backoff, and on a wait the API asked for with ``Retry-After``.
    :param clock: monotonic seconds, for the tolerance (tests pass a fake one).
    :param sleep: how a blocking call waits (default ``time.sleep``).
    :param asleep: how an awaited call waits (default ``asyncio.sleep``).
    """

    max_attempts: int = DEFAULT_MAX_CONSECUTIVE_FAILURES
    outage_tolerance: float = DEFAULT_OUTAGE_TOLERANCE
    base_delay: float = 1.0
    max_delay: float = 60.0
    clock: Callable[[], float] = field(default=time.monotonic, compare=False, repr=False)
    sleep: Callable[[float], None] | None = field(default=None, compare=False, repr=False)
    asleep: Callable[[float], Awaitable[None]] | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if isinstance(self.max_attempts, bool) or not isinstance(self.max_attempts, int) or self.max_attempts < 1:
            raise ValueError(f"max_attempts must be a whole number from 1, got {self.max_attempts!r}")
        if not self.outage_tolerance > 0:
            raise ValueError(f"outage_tolerance must be a positive number of seconds, got {self.outage_tolerance!r}")

    def may_retry(self, spec: RequestSpec, error: BaseException) -> bool:
        """Whether ``error`` on ``spec`` may be retried without risking a second paid job."""
        if spec.kind is Kind.SUBMIT:
            # A 429 created nothing; a connection that never opened sent nothing. Anything
            # else after the body left (timeout, reset, 5xx) may have created a paid job.
            if isinstance(error, SegmindRateLimited):
                return True
            return isinstance(error, SegmindTransportError) and not error.sent
        return bool(getattr(error, "retryable", False))

    def wait_seconds(self, error: BaseException | None, attempt: int) -> float:
        """The pause before attempt ``attempt + 1``: the API's own hint if it gave one."""
        if isinstance(error, SegmindRateLimited) and error.retry_after is not None:
            return min(error.retry_after, self.max_delay)
        # Full jitter spreads the retries of many triggers that failed together.
        return random.uniform(0, min(self.max_delay, self.base_delay * 2 ** min(max(0, attempt - 1), 30)))

    def _tenacity_kwargs(self, spec: RequestSpec, shared_pause: bool = False) -> dict[str, Any]:
        reads = spec.kind in _READS
        streak = _Streak()

        def failing_for() -> float:
            return 0.0 if streak.since is None else self.clock() - streak.since

        def stop(state: tenacity.RetryCallState) -> bool:
            error = state.outcome.exception() if state.outcome else None
            streak.last = error
            if not reads:
                return state.attempt_number >= self.max_attempts
            if isinstance(error, SegmindRateLimited):
                return False  # flow control: the API answered, and asked us to wait
            if streak.since is None:
                streak.since = self.clock()
            return failing_for() >= self.outage_tolerance

        def wait(state: tenacity.RetryCallState) -> float:
            error = state.outcome.exception() if state.outcome else None
            if shared_pause and isinstance(error, SegmindRateLimited):
                # The shared request budget already holds every caller until the rate limit resets.
                return 0.0
            return self.wait_seconds(error, state.attempt_number)

        def before_sleep(state: tenacity.RetryCallState) -> None:
            if isinstance(streak.last, SegmindRateLimited) and shared_pause:
                return  # the budget logs the pause once for every caller
            progress = (
                f"failing for {duration(failing_for())} of the {duration(self.outage_tolerance)} outage tolerance"
                if reads
                else f"attempt {state.attempt_number} of {self.max_attempts}"
            )
            log.warning(
                "Segmind call %s failed (%s): %s; retrying in %.1fs",
                spec.describe(),
                progress,
                streak.last,
                state.upcoming_sleep,
            )

        def gave_up(state: tenacity.RetryCallState) -> NoReturn:
            error = state.outcome.exception() if state.outcome else None
            if not reads or not isinstance(error, SegmindError):
                raise error if error is not None else SegmindError(f"{spec.describe()} failed")
            raise self.unavailable(spec, error, failing_for()) from error

        kwargs: dict[str, Any] = {
            "stop": stop,
            "retry": tenacity.retry_if_exception(lambda e: self.may_retry(spec, e)),
            "wait": wait,
            "before_sleep": before_sleep,
            "retry_error_callback": gave_up,
        }
        return kwargs

    def unavailable(self, spec: RequestSpec, last: SegmindError, seconds: float) -> SegmindUnavailable:
        """The error for a read given up after ``seconds`` of failures, naming what the API answered last.

        :param spec: the read.
        :param last: its last error.
        :param seconds: how long it had been failing.
        """
        answer = f"HTTP {last.status_code}" if last.status_code is not None else "no answer"
        return SegmindUnavailable(
            f"Segmind has been failing for {duration(seconds)} on {spec.describe()} (outage tolerance "
            f"{duration(self.outage_tolerance)}, the connection's extra 'outage_tolerance'); its last answer: "
            f"{answer} ({last.message})",
            status_code=last.status_code,
            detail=last.detail,
            request_id=spec.request_id,
            conn_id=last.conn_id,
        )

    def retrying(self, spec: RequestSpec) -> tenacity.Retrying:
        """A tenacity controller for a blocking call of ``spec``."""
        kwargs = self._tenacity_kwargs(spec)
        if self.sleep is not None:
            kwargs["sleep"] = self.sleep
        return tenacity.Retrying(**kwargs)

    def aretrying(self, spec: RequestSpec, shared_pause: bool = False) -> tenacity.AsyncRetrying:
        """A tenacity controller for an awaited call of ``spec`` (sleeps with asyncio).

        :param spec: the call.
        :param shared_pause: the caller waits on a shared request budget before each attempt, which
            a 429 pauses for everyone; a 429 then adds no wait of its own.
        """
        kwargs = self._tenacity_kwargs(spec, shared_pause)
        if self.asleep is not None:
            kwargs["sleep"] = self.asleep
        return tenacity.AsyncRetrying(**kwargs)
