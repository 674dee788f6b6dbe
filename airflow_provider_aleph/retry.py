"""One retry policy for the sync and async hook: which failures to try again, and how long to wait.

A call fails after ``max_attempts`` failed attempts in a row; each call starts counting afresh,
so a successful poll resets the count. The connection extra ``max_consecutive_failures`` sets
``max_attempts`` for hooks built without an explicit policy.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import tenacity

from airflow_provider_aleph.exceptions import SegmindRateLimited, SegmindTransportError
from airflow_provider_aleph.protocol import Kind

if TYPE_CHECKING:
    from airflow_provider_aleph.protocol import RequestSpec

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RetryPolicy:
    """How the hook retries a call that failed in a way another attempt may fix.

    :param max_attempts: attempts per call, the first included; the call fails after this many
        consecutive failures (the connection extra ``max_consecutive_failures``).
    :param base_delay: first backoff, in seconds; doubles each attempt, with full jitter.
    :param max_delay: cap on one backoff, and on a wait the API asked for with ``Retry-After``.
    """

    max_attempts: int = 6
    base_delay: float = 1.0
    max_delay: float = 60.0

    def may_retry(self, spec: RequestSpec, error: BaseException) -> bool:
        """Whether ``error`` on ``spec`` may be retried without risking a second paid job."""
        if spec.kind is Kind.SUBMIT:
            # A 429 created nothing; a connection that never opened sent nothing. Anything
            # else after the body left (timeout, reset, 5xx) may have created a paid job.
            if isinstance(error, SegmindRateLimited):
                return True
            return isinstance(error, SegmindTransportError) and not error.sent
        return bool(getattr(error, "retryable", False))

    def __post_init__(self) -> None:
        if isinstance(self.max_attempts, bool) or not isinstance(self.max_attempts, int) or self.max_attempts < 1:
            raise ValueError(f"max_attempts must be a whole number from 1, got {self.max_attempts!r}")

    def wait_seconds(self, error: BaseException | None, attempt: int) -> float:
        """The pause before attempt ``attempt + 1``: the API's own hint if it gave one."""
        if isinstance(error, SegmindRateLimited) and error.retry_after is not None:
            return min(error.retry_after, self.max_delay)
        # Full jitter spreads the retries of many triggers that failed together.
        return random.uniform(0, min(self.max_delay, self.base_delay * 2 ** max(0, attempt - 1)))

    def _tenacity_kwargs(self, spec: RequestSpec, shared_pause: bool = False) -> dict[str, Any]:
        def wait(state: tenacity.RetryCallState) -> float:
            error = state.outcome.exception() if state.outcome else None
            if shared_pause and isinstance(error, SegmindRateLimited):
                # The shared request budget already holds every caller until the rate limit resets.
                return 0.0
            return self.wait_seconds(error, state.attempt_number)

        def before_sleep(state: tenacity.RetryCallState) -> None:
            error = state.outcome.exception() if state.outcome else None
            log.warning(
                "Segmind call %s failed (attempt %d of %d): %s; retrying in %.1fs",
                spec.describe(),
                state.attempt_number,
                self.max_attempts,
                error,
                state.upcoming_sleep,
            )

        return {
            "stop": tenacity.stop_after_attempt(self.max_attempts),
            "retry": tenacity.retry_if_exception(lambda e: self.may_retry(spec, e)),
            "wait": wait,
            "before_sleep": before_sleep,
            "reraise": True,
        }

    def retrying(self, spec: RequestSpec) -> tenacity.Retrying:
        """A tenacity controller for a blocking call of ``spec``."""
        return tenacity.Retrying(**self._tenacity_kwargs(spec))

    def aretrying(self, spec: RequestSpec, shared_pause: bool = False) -> tenacity.AsyncRetrying:
        """A tenacity controller for an awaited call of ``spec`` (sleeps with asyncio).

        :param spec: the call.
        :param shared_pause: the caller waits on a shared request budget before each attempt, which
            a 429 pauses for everyone; a 429 then adds no wait of its own.
        """
        return tenacity.AsyncRetrying(**self._tenacity_kwargs(spec, shared_pause))
