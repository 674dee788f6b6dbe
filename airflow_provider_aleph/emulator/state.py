"""Everything one emulator instance keeps: settings, jobs, counters, files, rate limit and fault draws."""

from __future__ import annotations

import threading
import time
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


class EmulatorState:
    """The shared state of one emulator, used by the app on the event loop and by tests from other threads.

    :param config: the settings, changed in place at run time.
    :param clock: monotonic time source in seconds for jobs and the rate limit.
    :param seed: seed of the job failure and fault draws.
    """

    def __init__(self, config: EmulatorConfig, clock: Callable[[], float] = time.monotonic, seed: int = 0) -> None:
        self.config = config
        self.jobs = JobStore(config, clock=clock, seed=seed)
        self.counters = Counters()
        self.files = FileStore()
        self.limiter = SlidingWindowLimiter(clock)
        self.faults = FaultInjector(seed)
        self.fetcher = InputFetcher(self)
        self._lock = threading.Lock()

    def take(self, setting: str) -> bool:
        """Use up one of a countdown setting (``cut_outputs``, ``lose_submit_answers``); False when at 0.

        :param setting: the name of an integer setting of :class:`EmulatorConfig`.
        """
        with self._lock:
            left = getattr(self.config, setting)
            if left <= 0:
                return False
            setattr(self.config, setting, left - 1)
            return True

    def stats(self) -> dict[str, Any]:
        """Return every counter as a JSON-ready dict (``GET /_emulator/stats``)."""
        return {**self.jobs.stats(), **self.counters.snapshot()}

    def reset(self) -> None:
        """Forget every job, counter, stored file and rate-limit window; restart the seeded draws."""
        self.jobs.reset()
        self.counters.reset()
        self.files.reset()
        self.limiter.reset()
        self.faults.reset()
