"""Account rate limit of the emulator: a sliding window of API calls per key.

Segmind limits each account to a few requests a minute, counting every API call (submit, status,
result, upload). :class:`SlidingWindowLimiter` keeps the times of the calls each key made within the last
``window`` seconds; a call over the limit is refused and not recorded, so refused calls do not
push the reset further away.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable


class SlidingWindowLimiter:
    """Per-key sliding window over an injectable monotonic clock.

    :param clock: monotonic time source in seconds, shared with the job store.
    """

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._calls: dict[str, deque[float]] = {}

    def acquire(self, key: str, limit: int | None, window: float) -> float | None:
        """Record a call by ``key`` and return None, or return the seconds until it would be allowed.

        :param key: the caller's API key (kept in memory only).
        :param limit: calls allowed within ``window``; None allows everything.
        :param window: length of the window in seconds.
        """
        if limit is None:
            return None
        with self._lock:
            now = self._clock()
            calls = self._calls.setdefault(key, deque())
            while calls and calls[0] <= now - window:
                calls.popleft()
            if len(calls) < limit:
                calls.append(now)
                return None
            # The oldest call in the window leaves it first; the limit may have shrunk since it was set.
            return max(calls[-limit] + window - now, 0.0)

    def reset(self) -> None:
        """Forget every recorded call."""
        with self._lock:
            self._calls.clear()


def rate_limit_headers(wait: float) -> dict[str, str]:
    """Return the headers of a 429 answer for a caller who may retry in ``wait`` seconds.

    :param wait: seconds until the window lets the next call through.
    """
    seconds = max(1, math.ceil(wait))
    reset_at = datetime.now(UTC) + timedelta(seconds=wait)
    return {
        "retry-after": str(seconds),
        "x-rate-limit-reset-at-utc": reset_at.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
    }
