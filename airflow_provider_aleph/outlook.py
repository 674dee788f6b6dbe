"""What the poll scheduler means to do with a waiting request, in words, for the triggerer's status line.

The decisions are :mod:`airflow_provider_aleph.polling`'s; this module only reads them back.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from airflow_provider_aleph.durations import in_words
from airflow_provider_aleph.polling import PollPolicy

if TYPE_CHECKING:
    from airflow_provider_aleph.polling import PollJob, PollScheduler


@dataclass(frozen=True)
class PollOutlook:
    """When the scheduler means to poll a job next, and why, for the triggerer's status line.

    :param due_in: seconds until the next poll (0: due now, waiting for a slot of the budget).
    :param reason: why then, in words.
    :param rate_limited: whether a 429 pause holds every call of the connection.
    """

    due_in: float
    reason: str
    rate_limited: bool = False


def poll_outlook(scheduler: PollScheduler, job: PollJob) -> PollOutlook:
    """When ``job`` will be polled next and why: a 429 pause, the shared budget, or the policy's plan.

    :param scheduler: the connection's poll scheduler on this loop.
    :param job: one of its waiting requests.
    """
    now, budget, waiting = scheduler.clock(), scheduler.budget, len(scheduler.jobs)
    due = job.due if job._turn is not None else scheduler.due_at(job)
    shared = f"the connection's budget of {budget.rate:g} calls a minute, shared by {waiting} waiting job(s)"
    if (pause := budget.paused_for()) > 0:
        why = f"Segmind answered 429: every call of the connection waits {in_words(pause)} more"
        return PollOutlook(max(due - now, pause), why, rate_limited=True)
    if due <= now:
        return PollOutlook(max(0.0, budget.next_slot_at() - now), f"due now, queued for {shared}")
    if scheduler.policy is PollPolicy.FIXED:
        return PollOutlook(due - now, f"every poll_interval ({in_words(job.poll_interval)}), fitted to {shared}")
    estimate = scheduler.models[job.model]
    model = job.model or "an unnamed model"
    if job.submitted is None or not estimate.known:
        unknown = "its submit time" if job.submitted is None else f"the durations of {model}"
        return PollOutlook(due - now, f"every poll_interval: nothing is known of {unknown} yet")
    typical = f"{model} jobs take about {in_words(estimate.median)}"
    hint = "the operator's expected_duration"
    if scheduler.is_scout(job):
        why = f"looking early until a job of {model} is seen to finish ({hint} says "
        return PollOutlook(due - now, f"{why}{in_words(estimate.median)})")
    source = f"learned from {estimate.observed} finished job(s)" if estimate.observed else hint
    return PollOutlook(due - now, f"when it is likely done: {typical} ({source})")
