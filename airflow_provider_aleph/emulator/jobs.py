"""Job records for the Segmind emulator, with every state derived from the clock.

Nothing runs in the background for the timeline: a job is a record of its submit time, and each
query computes its state, so thousands of jobs cost one dict entry each. A job submitted at ``t``
with duration ``D`` is QUEUED during ``[t, t + D/4)``, PROCESSING during ``[t + D/4, t + D)``,
then COMPLETED or FAILED. Its request record answers 404 once ``t + D + retention`` has passed;
its output file stays downloadable for as long as the emulator keeps the job.

A job's duration ``D`` is ``latency`` when ``latency_sigma`` is 0. Above 0, it is drawn at submit
from a lognormal whose median is ``latency`` and whose log has standard deviation ``latency_sigma``:
``latency * exp(latency_sigma * z)``, with ``z`` a standard normal draw from a second random source
seeded from the same seed. Every submit draws ``z``, whatever the settings, so a job's duration
depends only on the seed, its position in the sequence and the settings at its submit; and the
failure draws are the same sequence whatever ``latency_sigma`` is.

Failures are decided at submit time: each job draws from ``random.Random(seed)`` and fails when
the draw is below ``fail_rate``. A prompt containing ``[emulator:fail]`` always fails, for tests
that need one deterministic failure. Failed jobs end with :data:`FAILURE_REASON`.

A job whose payload names input URLs waits for their fetch (see ``fetch``): until it is settled
the job never leaves PROCESSING, and a failed fetch turns it FAILED with the fetch's reason.

Every accepted submit is paid for: it debits ``cost_per_job`` from the ``credits`` balance, and a
submit the balance does not cover (any submit once it is 0) raises :class:`InsufficientCredits` and
creates nothing. A COMPLETED job reports its cost and the balance left after its debit in
``metrics``; a FAILED one reports only its times, as Segmind's FAILED bodies carry no cost fields.

Latency (as the drawn duration), fail rate, retention, output size and cost are copied into each job
when it is submitted, so changing :class:`EmulatorConfig` affects new jobs only.
"""

from __future__ import annotations

import math
import random
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from airflow_provider_aleph.emulator.config import EmulatorConfig

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

QUEUED = "QUEUED"
PROCESSING = "PROCESSING"
COMPLETED = "COMPLETED"
FAILED = "FAILED"

FAIL_MARKER = "[emulator:fail]"
FAILURE_REASON = "Content blocked by safety filter (emulated)"

__all__ = [
    "COMPLETED",
    "FAILED",
    "PROCESSING",
    "QUEUED",
    "EmulatorConfig",
    "InsufficientCredits",
    "Job",
    "JobStore",
]


class InsufficientCredits(Exception):
    """A submit the account balance does not cover: nothing was created or debited."""


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
    :param reason: the ``error`` of a failed job; defaults to :data:`FAILURE_REASON`.
    :param inputs_pending: whether its input URLs are still being fetched.
    :param video_path: local copy of the fetched input video, served as the job's output.
    :param output_size: size of a generated output stream, or None for a video output.
    :param cost: credits the submit debited.
    :param remaining_credits: the account balance right after that debit.
    """

    request_id: str
    model: str
    payload: dict[str, Any]
    submitted_at: float
    started_at: float
    finished_at: float
    expires_at: float
    failed: bool
    reason: str | None = None
    inputs_pending: bool = False
    video_path: str | None = None
    output_size: int | None = None
    cost: float = 0.0
    remaining_credits: float | None = None

    @property
    def error(self) -> str | None:
        """Return the failure reason of a failing job, else None."""
        if not self.failed:
            return None
        return self.reason or FAILURE_REASON

    def status_at(self, now: float) -> str:
        """Return the job's status at clock reading ``now``.

        :param now: a reading of the emulator's clock.
        """
        if now < self.started_at:
            return QUEUED
        # A job cannot end before its inputs are in.
        if now < self.finished_at or self.inputs_pending:
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
        times = {"inference_time": round(self.finished_at - self.started_at, 3), "queue_time": queue_time}
        if status == FAILED:
            return times
        billed = {"cost": self.cost}
        if self.remaining_credits is not None:
            billed["remaining_credits"] = self.remaining_credits
        return times | billed

    def is_expired(self, now: float) -> bool:
        """Return whether the request record has outlived its retention at ``now``.

        :param now: a reading of the emulator's clock.
        """
        return now > self.expires_at


def _prompt_has_marker(payload: Mapping[str, Any]) -> bool:
    """Return whether the payload's prompt asks for a deterministic failure."""
    prompt = payload.get("prompt")
    return isinstance(prompt, str) and FAIL_MARKER in prompt


def _duration_random(seed: int) -> random.Random:
    """Return the random source of job durations: seeded from ``seed``, apart from the failure draws'."""
    # A string seed is hashed (SHA-512), so this sequence is unrelated to random.Random(seed)'s.
    return random.Random(f"durations:{seed}")


class JobStore:
    """Thread-safe registry of jobs and submission counters.

    :param config: settings read at each submit.
    :param clock: monotonic time source in seconds; inject one to move time in tests.
    :param seed: seed of the random sources that decide failures and durations.
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
        self._durations = _duration_random(seed)
        self._lock = threading.Lock()
        self._jobs: dict[str, Job] = {}
        self._by_model: Counter[str] = Counter()

    def now(self) -> float:
        """Return the current clock reading."""
        return self.clock()

    def submit(self, model: str, payload: dict[str, Any], inputs_pending: bool = False) -> Job:
        """Record an accepted, billable submission and return its job.

        :param model: model slug from the submit path.
        :param payload: the validated JSON object.
        :param inputs_pending: whether input URLs will be fetched before the job may end.
        :raises InsufficientCredits: the balance does not cover ``cost_per_job`` (or is 0).
        """
        with self._lock:
            cost = float(self.config.cost_per_job)
            balance = float(self.config.credits)
            if balance <= 0 or balance < cost:
                raise InsufficientCredits(f"balance {balance:g} does not cover a job costing {cost:g}")
            # Rounded, so that a balance of exactly N jobs reaches 0 rather than a float's remainder.
            remaining = round(balance - cost, 6)
            self.config.credits = remaining
            now = self.clock()
            # Always draw both, so a job's fate and duration depend only on the seed and its position.
            z = self._durations.normalvariate(0.0, 1.0)
            duration = float(self.config.latency) * math.exp(float(self.config.latency_sigma) * z)
            draw = self._random.random()
            failed = draw < self.config.fail_rate or _prompt_has_marker(payload)
            job = Job(
                request_id=str(uuid.uuid4()),
                model=model,
                payload=payload,
                submitted_at=now,
                started_at=now + duration / 4,
                finished_at=now + duration,
                expires_at=now + duration + float(self.config.retention),
                failed=failed,
                inputs_pending=inputs_pending,
                output_size=self.config.output_size,
                cost=cost,
                remaining_credits=remaining,
            )
            self._jobs[job.request_id] = job
            self._by_model[model] += 1
        return job

    def settle_inputs(self, request_id: str, error: str | None, video_path: str | None) -> Job | None:
        """Record the outcome of a job's input fetch; return the updated job, or None if it is gone.

        :param request_id: id handed out at submit.
        :param error: why the fetch failed (the job then ends FAILED with it), or None.
        :param video_path: local copy of the fetched video, or None.
        """
        with self._lock:
            job = self._jobs.get(request_id)
            if job is None:
                return None
            if error is not None:
                job = replace(job, inputs_pending=False, failed=True, reason=error, video_path=None)
            else:
                job = replace(job, inputs_pending=False, video_path=video_path)
            self._jobs[request_id] = job
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
        """Forget every job and counter and restart the failure and duration sequences from the seed."""
        with self._lock:
            self._jobs.clear()
            self._by_model.clear()
            self._random = random.Random(self._seed)
            self._durations = _duration_random(self._seed)
