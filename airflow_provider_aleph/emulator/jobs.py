"""Job records for the Segmind emulator, with every state derived from the clock.

Nothing runs in the background: a job is a record of its submit time, and each query computes
its state, so thousands of jobs cost one dict entry each. A job submitted at ``t`` with latency
``L`` is QUEUED during ``[t, t + L/4)``, PROCESSING during ``[t + L/4, t + L)``, then COMPLETED
or FAILED. Its request record answers 404 once ``t + L + retention`` has passed; its output
file stays downloadable for as long as the emulator keeps the job.

Failures are decided at submit time: each job draws from ``random.Random(seed)`` and fails when
the draw is below ``fail_rate``. A prompt containing ``[emulator:fail]`` always fails, for tests
that need one deterministic failure. Failed jobs end with :data:`FAILURE_REASON`.

Latency, fail rate and retention are copied into each job when it is submitted, so changing
:class:`EmulatorConfig` affects new jobs only.
"""

from __future__ import annotations

import math
import random
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, fields, replace
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

QUEUED = "QUEUED"
PROCESSING = "PROCESSING"
COMPLETED = "COMPLETED"
FAILED = "FAILED"

FAIL_MARKER = "[emulator:fail]"
FAILURE_REASON = "Content blocked by safety filter (emulated)"

# Only these knobs may change at run time through the admin route.
RUNTIME_KEYS = frozenset({"latency", "fail_rate", "retention", "retired_models"})


def _check_number(name: str, value: object, upper: float | None = None) -> None:
    """Raise ValueError unless ``value`` is a finite, non-negative number (bounded by ``upper``)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    if value < 0 or (upper is not None and value > upper):
        bound = f"between 0 and {upper}" if upper is not None else "at least 0"
        raise ValueError(f"{name} must be {bound}, got {value!r}")


@dataclass
class EmulatorConfig:
    """Run-time settings of an emulator; changes apply to jobs submitted afterwards.

    :param latency: seconds from submit to the terminal state; the first quarter is QUEUED.
    :param fail_rate: probability, from 0 to 1, that a job ends FAILED.
    :param retention: seconds a terminal request record is kept before it answers 404.
    :param retired_models: model slugs whose submissions answer 410 Gone.
    """

    latency: float = 1.0
    fail_rate: float = 0.0
    retention: float = 3600.0
    retired_models: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        """Validate every field and normalise ``retired_models`` to a tuple."""
        _check_number("latency", self.latency)
        _check_number("fail_rate", self.fail_rate, upper=1.0)
        _check_number("retention", self.retention)
        models: object = self.retired_models
        if isinstance(models, str) or not isinstance(models, list | tuple | set | frozenset):
            raise ValueError(f"retired_models must be a list of model slugs, got {models!r}")
        if not all(isinstance(slug, str) for slug in models):
            raise ValueError(f"retired_models must contain only strings, got {models!r}")
        self.retired_models = tuple(models)

    def update(self, changes: Mapping[str, Any]) -> None:
        """Apply ``changes`` all at once after validating them; raise ValueError if any is bad.

        :param changes: new values keyed by field name.
        """
        unknown = sorted(set(changes) - RUNTIME_KEYS)
        if unknown:
            raise ValueError(f"unknown setting(s): {', '.join(unknown)}")
        # replace() re-runs __post_init__, so nothing changes unless every value is valid.
        candidate = replace(self, **changes)
        for item in fields(self):
            setattr(self, item.name, getattr(candidate, item.name))

    def as_dict(self) -> dict[str, Any]:
        """Return the settings as a JSON-ready dict."""
        return {
            "latency": self.latency,
            "fail_rate": self.fail_rate,
            "retention": self.retention,
            "retired_models": list(self.retired_models),
        }


@dataclass(frozen=True)
class Job:
    """One accepted submission; its state at any instant follows from its timestamps.

    :param request_id: the uuid4 handed back to the client.
    :param model: the model slug from the submit path.
    :param payload: the JSON object the client sent.
    :param submitted_at: clock reading when the job was accepted.
    :param started_at: clock reading when it leaves the queue.
    :param finished_at: clock reading when it reaches its terminal state.
    :param expires_at: clock reading after which its request record answers 404.
    :param failed: whether its terminal state is FAILED.
    """

    request_id: str
    model: str
    payload: dict[str, Any]
    submitted_at: float
    started_at: float
    finished_at: float
    expires_at: float
    failed: bool

    @property
    def error(self) -> str | None:
        """Return the failure reason of a failing job, else None."""
        return FAILURE_REASON if self.failed else None

    def status_at(self, now: float) -> str:
        """Return the job's status at clock reading ``now``.

        :param now: a reading of the emulator's clock.
        """
        if now < self.started_at:
            return QUEUED
        if now < self.finished_at:
            return PROCESSING
        return FAILED if self.failed else COMPLETED

    def metrics_at(self, now: float) -> dict[str, float]:
        """Return the metrics the API reports at clock reading ``now``.

        :param now: a reading of the emulator's clock.
        """
        status = self.status_at(now)
        if status == QUEUED:
            return {}
        queue_time = round(self.started_at - self.submitted_at, 3)
        if status == PROCESSING:
            return {"queue_time": queue_time}
        inference_time = round(self.finished_at - self.started_at, 3)
        return {"inference_time": inference_time, "queue_time": queue_time, "cost": 0.0}

    def is_expired(self, now: float) -> bool:
        """Return whether the request record has outlived its retention at ``now``.

        :param now: a reading of the emulator's clock.
        """
        return now > self.expires_at


def _prompt_has_marker(payload: Mapping[str, Any]) -> bool:
    """Return whether the payload's prompt asks for a deterministic failure."""
    prompt = payload.get("prompt")
    return isinstance(prompt, str) and FAIL_MARKER in prompt


class JobStore:
    """Thread-safe registry of jobs and submission counters.

    :param config: settings read at each submit.
    :param clock: monotonic time source in seconds; inject one to move time in tests.
    :param seed: seed of the random source that decides failures.
    """

    def __init__(
        self,
        config: EmulatorConfig,
        clock: Callable[[], float] = time.monotonic,
        seed: int = 0,
    ) -> None:
        self.config = config
        self.clock = clock
        self._seed = seed
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self._jobs: dict[str, Job] = {}
        self._by_model: Counter[str] = Counter()

    def now(self) -> float:
        """Return the current clock reading."""
        return self.clock()

    def submit(self, model: str, payload: dict[str, Any]) -> Job:
        """Record an accepted, billable submission and return its job.

        :param model: model slug from the submit path.
        :param payload: the validated JSON object.
        """
        with self._lock:
            now = self.clock()
            latency = float(self.config.latency)
            # Always draw, so a job's fate depends only on the seed and its position in the sequence.
            draw = self._random.random()
            failed = draw < self.config.fail_rate or _prompt_has_marker(payload)
            job = Job(
                request_id=str(uuid.uuid4()),
                model=model,
                payload=payload,
                submitted_at=now,
                started_at=now + latency / 4,
                finished_at=now + latency,
                expires_at=now + latency + float(self.config.retention),
                failed=failed,
            )
            self._jobs[job.request_id] = job
            self._by_model[model] += 1
        return job

    def get(self, request_id: str) -> Job | None:
        """Return the job with this id, expired or not, or None.

        :param request_id: id handed out at submit.
        """
        with self._lock:
            return self._jobs.get(request_id)

    def lookup(self, request_id: str, now: float) -> Job | None:
        """Return the job whose request record is still served at ``now``, or None.

        :param request_id: id handed out at submit.
        :param now: a reading of the emulator's clock.
        """
        job = self.get(request_id)
        if job is None or job.is_expired(now):
            return None
        return job

    @property
    def submissions(self) -> int:
        """Return the number of accepted (HTTP 200) submissions."""
        with self._lock:
            return sum(self._by_model.values())

    def snapshot(self) -> dict[str, Job]:
        """Return a copy of all jobs keyed by request id, in submit order."""
        with self._lock:
            return dict(self._jobs)

    def stats(self) -> dict[str, Any]:
        """Return the submission counters as a JSON-ready dict."""
        with self._lock:
            return {
                "submissions": sum(self._by_model.values()),
                "by_model": dict(self._by_model),
                "request_ids": list(self._jobs),
            }

    def reset(self) -> None:
        """Forget every job and counter and restart the failure sequence from the seed."""
        with self._lock:
            self._jobs.clear()
            self._by_model.clear()
            self._random = random.Random(self._seed)
