"""One retry policy for the sync and async hook: which failures to try again, and how long to wait."""

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
        consecutive failures.
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

    def wait_seconds(self, error: BaseException | None, attempt: int) -> float:
        """The pause before attempt ``attempt + 1``: the API's own hint if it gave one."""
        if isinstance(error, SegmindRateLimited) and error.retry_after is not None:
            return min(error.retry_after, self.max_delay)
        # Full jitter spreads the retries of many triggers that failed together.
        return random.uniform(0, min(self.max_delay, self.base_delay * 2 ** max(0, attempt - 1)))

    def _tenacity_kwargs(self, spec: RequestSpec) -> dict[str, Any]:
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
            "wait": lambda state: self.wait_seconds(
                state.outcome.exception() if state.outcome else None, state.attempt_number
            ),
            "before_sleep": before_sleep,
            "reraise": True,
        }

    def retrying(self, spec: RequestSpec) -> tenacity.Retrying:
        """A tenacity controller for a blocking call of ``spec``."""
        return tenacity.Retrying(**self._tenacity_kwargs(spec))

    def aretrying(self, spec: RequestSpec) -> tenacity.AsyncRetrying:
        """A tenacity controller for an awaited call of ``spec`` (sleeps with asyncio)."""
        return tenacity.AsyncRetrying(**self._tenacity_kwargs(spec))
