"""Everything one emulator instance keeps: settings, jobs, counters, files, rate limit, fault draws and outage."""

from __future__ import annotations

import threading
import time
from collections import Counter
from typing import TYPE_CHECKING, Any

from airflow_provider_aleph.emulator.assets import FileStore
from airflow_provider_aleph.emulator.faults import FaultInjector
from airflow_provider_aleph.emulator.fetch import InputFetcher
from airflow_provider_aleph.emulator.jobs import JobStore
from airflow_provider_aleph.emulator.ratelimit import SlidingWindowLimiter
from airflow_provider_aleph.emulator.stats import Counters

if TYPE_CHECKING:
    from collections.abc import Callable

    from airflow_provider_aleph.emulator.config import EmulatorConfig

#: The bodies of garbled answers, in the order they alternate: an HTML page, then JSON without ``status``.
GARBLED_KINDS = ("html", "no_status")


class EmulatorState:
    """The shared state of one emulator, used by the app on the event loop and by tests from other threads.

    :param config: the settings, changed in place at run time.
    :param clock: monotonic time source in seconds for jobs, the rate limit and outages.
    :param seed: seed of the job failure and fault draws.
    """

    def __init__(self, config: EmulatorConfig, clock: Callable[[], float] = time.monotonic, seed: int = 0) -> None:
        self.config = config
        self.jobs = JobStore(config, clock=clock, seed=seed)
        self.counters = Counters()
        self.files = FileStore()
        self.limiter = SlidingWindowLimiter(clock)
        self.faults = FaultInjector(seed)
        self.fetcher = InputFetcher(config, self.files, self.jobs, self.counters)
        self._lock = threading.Lock()
        self._interim_given: Counter[str] = Counter()
        self._garbled_given = 0
        self._clock = clock
        # An absolute end on the clock, so "90 seconds" counts from when the setting was applied.
        self._outage_ends_at: float | None = None
        config.watch(self._setting_applied)

    def _setting_applied(self, name: str, value: Any) -> None:
        """Act on a watched setting as it is set: ``outage_seconds`` starts (or with 0, ends) an outage."""
        if name == "outage_seconds":
            self.start_outage(value)

    def start_outage(self, seconds: float) -> None:
        """Answer every API call with a 503 gateway page from now for ``seconds``; 0 ends an outage.

        :param seconds: the outage's length from now.
        """
        with self._lock:
            self._outage_ends_at = self._clock() + seconds

    def outage_remaining(self) -> float:
        """Return the seconds left of the current outage; 0 when there is none."""
        with self._lock:
            ends_at = self._outage_ends_at
        return 0.0 if ends_at is None else max(0.0, ends_at - self._clock())

    def take_outage(self) -> bool:
        """Return whether an API call made now falls in an outage, and count it in ``outage_answers`` if so."""
        if self.outage_remaining() <= 0:
            return False
        self.counters.event("outage_answers")
        return True

    def take(self, setting: str) -> bool:
        """Use up one of a countdown setting (``cut_outputs``, ``garbled_answers``, ...); False when at 0.

        :param setting: the name of an integer setting of :class:`EmulatorConfig`.
        """
        with self._lock:
            left = getattr(self.config, setting)
            if left <= 0:
                return False
            setattr(self.config, setting, left - 1)
            return True

    def interim_answer(self, request_id: str) -> str | None:
        """Return the interim status this status poll of a job answers, or None for its real state.

        Each job answers ``interim_status`` to its first ``interim_polls`` polls made while it is set.

        :param request_id: the polled job's request id.
        """
        with self._lock:
            status = self.config.interim_status
            if status is None or self._interim_given[request_id] >= self.config.interim_polls:
                return None
            self._interim_given[request_id] += 1
            return status

    def take_garbled(self) -> str | None:
        """Use up one ``garbled_answers``; return its kind (see :data:`GARBLED_KINDS`), or None when at 0."""
        if not self.take("garbled_answers"):
            return None
        with self._lock:
            index = self._garbled_given
            self._garbled_given += 1
        return GARBLED_KINDS[index % len(GARBLED_KINDS)]

    def stats(self) -> dict[str, Any]:
        """Return every counter as a JSON-ready dict (``GET /_emulator/stats``), with ``outage_remaining``."""
        return {**self.jobs.stats(), **self.counters.snapshot(), "outage_remaining": self.outage_remaining()}

    def reset(self) -> None:
        """Forget every job, counter, stored file, rate-limit window and interim count; restart the draws.

        Settings are kept, and so is an outage under way: end it with ``outage_seconds=0``.
        """
        self.jobs.reset()
        self.counters.reset()
        self.files.reset()
        self.limiter.reset()
        self.faults.reset()
        with self._lock:
            self._interim_given.clear()
            self._garbled_given = 0
