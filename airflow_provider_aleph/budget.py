"""Account-wide request budget: one rate limiter per connection and event loop, shared by its triggers.

Segmind limits requests per account and per minute, and status polls count. Every trigger of a
connection that runs on one event loop (one triggerer process) draws its API calls from one
:class:`RequestBudget`, so a thousand waiting jobs slow their polling instead of drawing 429s.

The limiter spaces calls evenly, one every ``60 / max_requests_per_minute`` seconds, rather than
letting a whole minute's allowance go at once (GCRA with no burst). Evenly spaced calls stay under
a per-minute sliding window of the same size on the server whatever its phase, and they stay
under a scaled-down window too, which is what the emulator tests use.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import time
from collections import deque
from typing import TYPE_CHECKING

from airflow_provider_aleph.hooks.connection import DEFAULT_MAX_REQUESTS_PER_MINUTE
from airflow_provider_aleph.protocol import retry_after_seconds

if TYPE_CHECKING:
    from collections.abc import Callable

    import httpx

log = logging.getLogger(__name__)

#: Longest shared pause after a 429, whatever the API asked for: a waiting trigger re-checks by then.
MAX_PAUSE_SECONDS = 60.0
#: First shared pause after a 429 that gave no hint; doubles while 429s keep coming.
BASE_PAUSE_SECONDS = 1.0
#: An adaptive budget's rate after a 429, as a share of the rate before it (multiplicative decrease).
DECREASE = 0.5
#: An adaptive budget regains its rate linearly (additive increase): from none to the ceiling in the
#: time this many calls take at the ceiling (at 50 a minute: from half to full in 5 minutes).
RECOVERY_CALLS = 500
#: The lowest rate a run of 429s can bring an adaptive budget to, as a share of its ceiling.
MIN_RATE_SHARE = 0.05


class RequestBudget:
    """A FIFO-fair limiter of API calls, with one pause that a 429 imposes on every caller.

    Callers ``await acquire()`` before each call. When a slot is free and nobody queues, it is
    granted at once; otherwise the caller waits on a future in a queue served strictly in order
    by one timer, so waiting costs a future per caller and no task. A caller cancelled while
    waiting leaves the queue. Use it from one event loop only.

    An *adaptive* budget also lowers its rate at once when the API answers 429 (by :data:`DECREASE`, once
    for the calls in flight together) and regains it gradually afterwards (:data:`RECOVERY_CALLS`), so
    several processes sharing one account settle under its limit with no coordination; the rate never
    exceeds ``max_requests_per_minute``.

    :param max_requests_per_minute: the rate, spread evenly: one call every ``60 / rate`` seconds; the
        ceiling of an adaptive budget.
    :param name: what the budget is for (the connection id), for log lines.
    :param clock: monotonic time in seconds; must follow the event loop's clock when waiting.
    :param adaptive: lower the rate on 429 and regain it gradually (AIMD); False keeps it fixed.
    """

    def __init__(
        self,
        max_requests_per_minute: float = DEFAULT_MAX_REQUESTS_PER_MINUTE,
        *,
        name: str = "segmind",
        clock: Callable[[], float] = time.monotonic,
        adaptive: bool = False,
    ) -> None:
        if not max_requests_per_minute > 0:
            raise ValueError(f"max_requests_per_minute must be positive, got {max_requests_per_minute!r}")
        self.max_requests_per_minute = float(max_requests_per_minute)
        self.name = name
        self.clock = clock
        self.adaptive = adaptive
        #: The current rate, in calls a minute: the ceiling, or less after a 429 when adaptive.
        self.rate = self.max_requests_per_minute
        self._rate_at = -math.inf  # when the rate was last brought up to date
        self._last_grant: tuple[float, float] | None = None  # (ticket, the slot time before it), for refund
        self._next_at = -math.inf  # when the next call may go (the GCRA theoretical arrival time)
        self._paused_until = -math.inf
        self._paused_at = -math.inf  # when the latest 429 was noted
        self._streak = 0  # 429s in a row, each from a call granted after the previous one's pause
        self._waiters: deque[asyncio.Future[float]] = deque()
        self._timer: asyncio.TimerHandle | None = None

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.name!r}, max_requests_per_minute={self.max_requests_per_minute:g}, "
            f"waiting={len(self._waiters)})"
        )

    @property
    def interval(self) -> float:
        """Seconds between two calls at the current rate."""
        return 60.0 / self.rate

    def next_slot_at(self) -> float:
        """The clock reading from which the next call may go: the rate's spacing, or a 429 pause."""
        return max(self._next_at, self._paused_until)

    def paused_for(self) -> float:
        """Seconds left of the pause a 429 imposed on every caller (0 when there is none)."""
        return max(0.0, self._paused_until - self.clock())

    def stretched_interval(self, poll_interval: float, pollers: int) -> float:
        """The poll interval for one of ``pollers`` callers sharing this budget: never shorter than
        ``poll_interval``, and long enough that their polls together fit the rate instead of queueing.

        :param poll_interval: the interval the caller asked for, in seconds.
        :param pollers: how many callers poll through this budget.
        """
        return max(poll_interval, pollers * self.interval)

    def try_acquire(self) -> float | None:
        """Take a slot if one is free now and nobody queues before us; its ticket, else None."""
        now = self.clock()
        if self._waiters or now < self.next_slot_at():
            return None
        return self._take(now)

    async def acquire(self) -> float:
        """Wait for a slot, in arrival order, and return its ticket (the clock reading it was granted)."""
        ticket = self.try_acquire()
        if ticket is not None:
            return ticket
        waiter: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        self._arm()
        try:
            return await waiter
        except asyncio.CancelledError:
            if not waiter.done() or waiter.cancelled():
                # Still queued: leave the queue so it never grows with callers who left.
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)
                waiter.cancel()
            # A slot granted in the instant before the cancel is spent: slower, never over the rate.
            if not self._waiters:
                self._disarm()
            raise

    def rate_limited(self, ticket: float, retry_after: float | None) -> float:
        """Note a 429 on a call granted at ``ticket``: pause every caller; return the pause length.

        The pause is what the API asked for (``Retry-After`` or the reset time), else a backoff that
        doubles while 429s keep coming from calls made after the previous pause; capped at
        :data:`MAX_PAUSE_SECONDS`.

        :param ticket: what :meth:`acquire` returned for the call that was refused.
        :param retry_after: seconds the API asked to wait, if it said.
        """
        now = self.clock()
        if ticket >= self._paused_at:
            # Calls already in flight when the previous 429 came back do not raise the backoff again.
            self._streak += 1
        if retry_after is not None:
            pause = min(max(0.0, retry_after), MAX_PAUSE_SECONDS)
        else:
            ceiling = min(MAX_PAUSE_SECONDS, BASE_PAUSE_SECONDS * 2 ** (self._streak - 1))
            pause = random.uniform(ceiling / 2, ceiling)
        if self.adaptive and ticket >= self._paused_at:
            self._recover(now)
            self.rate = max(self.max_requests_per_minute * MIN_RATE_SHARE, self.rate * DECREASE)
            # It regains its rate once the pause is over, not during it.
            self._rate_at = now + pause
            log.warning(
                "Segmind rate limit reached on connection %s: its calls slow to %.1f a minute and speed up "
                "again gradually (ceiling %g)",
                self.name,
                self.rate,
                self.max_requests_per_minute,
            )
        self._paused_at = now
        if now + pause > self._paused_until:
            self._paused_until = now + pause
            log.warning(
                "Segmind rate limit reached on connection %s: pausing its %d queued call(s) for %.1fs",
                self.name,
                len(self._waiters),
                pause,
            )
        self._rearm()
        return pause

    def succeeded(self, ticket: float) -> None:
        """Note an answered call (not a 429) granted at ``ticket``: a call made after the latest
        429 clears the pause and its backoff.

        :param ticket: what :meth:`acquire` returned for the call.
        """
        if ticket >= self._paused_at and (self._streak or self._paused_until > -math.inf):
            self._streak = 0
            self._paused_until = -math.inf
            self._rearm()

    def answered(self, ticket: float, response: httpx.Response) -> None:
        """Note the answer to a call granted at ``ticket``: a 429 pauses everyone, a 5xx says
        nothing about the rate, any other answer counts as :meth:`succeeded`.

        :param ticket: what :meth:`acquire` returned for the call.
        :param response: the API's answer.
        """
        if response.status_code == 429:
            self.rate_limited(ticket, retry_after_seconds(response))
        elif response.status_code < 500:
            self.succeeded(ticket)

    # -- internals ---------------------------------------------------------------------------

    def refund(self, ticket: float) -> None:
        """Give back a slot taken at ``ticket`` and not used, if no slot was taken after it.

        :param ticket: what :meth:`acquire` returned.
        """
        if self._last_grant is not None and self._last_grant[0] == ticket:
            self._next_at = self._last_grant[1]
            self._last_grant = None
            self._rearm()

    def _recover(self, now: float) -> None:
        if self.adaptive and self.rate < self.max_requests_per_minute and now > self._rate_at:
            per_second = self.max_requests_per_minute**2 / (60.0 * RECOVERY_CALLS)
            self.rate = min(self.max_requests_per_minute, self.rate + (now - self._rate_at) * per_second)
        self._rate_at = max(self._rate_at, now)

    def _take(self, now: float) -> float:
        self._recover(now)
        self._last_grant = (now, self._next_at)
        self._next_at = max(self._next_at, now) + self.interval
        return now

    def _arm(self) -> None:
        if self._timer is not None or not self._waiters:
            return
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(max(0.0, self.next_slot_at() - self.clock()), self._serve)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _rearm(self) -> None:
        if self._timer is not None:
            self._disarm()
            self._arm()

    def _serve(self) -> None:
        self._timer = None
        now = self.clock()
        while self._waiters and now >= self.next_slot_at():
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(self._take(now))
        self._arm()
