"""What a job took and cost: the task log's summary line, and the metrics sent through Airflow's ``Stats``.

The metrics go wherever the deployment's ``[metrics]`` section sends Airflow's own (StatsD, DogStatsD
or OpenTelemetry), under its prefix:

- ``segmind.jobs.submitted`` (counter): a submit that Segmind accepted (each one is a paid job).
- ``segmind.jobs.completed`` (counter): a job seen COMPLETED at the end of a wait.
- ``segmind.jobs.failed`` (counter): a job seen FAILED (Segmind's own verdict, safety blocks included).
  A wait that ends in a timeout or an API error is not counted: the job may still complete.
- ``segmind.job.duration`` (timer): from the submit until the wait saw the job end, for jobs whose
  submit time the waiting task knows (the operators; not the sensor).
- ``segmind.job.cost`` (counter): incremented by each ended job's ``metrics["cost"]``, when the API
  sends one, so its rate is the spend per interval in the account's credits.

Each is tagged ``model`` when the task knows the model (the operators do, the sensor does not); the
tags reach the backend where Airflow passes them on (DogStatsD, OpenTelemetry, or StatsD with
``statsd_influxdb_enabled``). A metric that cannot be sent is logged and never fails the task.
"""

from __future__ import annotations

import logging
import math
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import pendulum

if TYPE_CHECKING:
    from collections.abc import Mapping

log = logging.getLogger(__name__)

SUBMITTED = "segmind.jobs.submitted"
COMPLETED = "segmind.jobs.completed"
FAILED = "segmind.jobs.failed"
DURATION = "segmind.job.duration"
COST = "segmind.job.cost"


def _tags(model: str | None) -> dict[str, str]:
    return {"model": model} if model else {}


def _number(value: Any) -> float | None:
    """``value`` as a finite number, or None (an absent, text or non-finite metric is not a number)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def _send(kind: str, stat: str, value: Any, model: str | None) -> None:
    """Send one metric through Airflow's ``Stats``; any failure is logged, never raised."""
    try:
        from airflow.providers.common.compat.sdk import Stats

        if kind == "incr":
            Stats.incr(stat, value, tags=_tags(model))
        else:
            Stats.timing(stat, value, tags=_tags(model))
    except Exception:  # a metrics backend must never fail the task that reports to it
        log.warning("Could not send the metric %s", stat, exc_info=True)


def job_submitted(model: str) -> None:
    """Count an accepted submit.

    :param model: the model slug.
    """
    _send("incr", SUBMITTED, 1, model)


def job_ended(completed: bool, metrics: Mapping[str, Any], elapsed: float | None, model: str | None) -> None:
    """Count a job that ended COMPLETED or FAILED, with its duration and cost when known.

    :param completed: True for COMPLETED, False for FAILED.
    :param metrics: the API's ``metrics`` of the job.
    :param elapsed: seconds from the submit until the end was seen, or None when unknown.
    :param model: the model slug, or None when the task does not know it.
    """
    _send("incr", COMPLETED if completed else FAILED, 1, model)
    if elapsed is not None and elapsed >= 0:
        _send("timing", DURATION, timedelta(seconds=elapsed), model)
    cost = _number(metrics.get("cost"))
    if cost is not None and cost >= 0:
        _send("incr", COST, cost, model)


def _seconds(value: float) -> str:
    return f"{value:.1f} s"


def _total(value: float) -> str:
    """A job's total time: tenths of a second under a minute, else in words ("2 minutes 49 seconds")."""
    if value < 60:
        return _seconds(value)
    # Whole seconds: pendulum's wording of fractions differs between its versions.
    return pendulum.duration(seconds=round(value)).in_words()


def _amount(value: float) -> str:
    """A credit amount without float noise or trailing zeros: 0.75, 3, 999999.25."""
    return f"{value:.6f}".rstrip("0").rstrip(".")


def summary(request_id: str, outcome: str, metrics: Mapping[str, Any], elapsed: float | None) -> str:
    """One line for the task log: the request, how long it took and what it cost, as far as known.

    The total time is the provider's own (submit until the end was seen), else the API's
    ``total_time``; queue and inference times, cost and remaining credits are the API's, each left
    out when it did not send it. No cost sent is said plainly.

    :param request_id: the Segmind request id.
    :param outcome: how the job ended, e.g. ``COMPLETED``.
    :param metrics: the API's ``metrics`` of the job.
    :param elapsed: seconds from the submit until the end was seen, or None when unknown.
    """
    total = elapsed if elapsed is not None else _number(metrics.get("total_time"))
    line = f"Segmind request {request_id} {outcome}"
    if total is not None:
        line += f" after {_total(total)}"
    times = [
        f"{label} {_seconds(value)}"
        for label, key in (("queued", "queue_time"), ("inference", "inference_time"))
        if (value := _number(metrics.get(key))) is not None
    ]
    if times:
        line += f" ({', '.join(times)})"
    cost = _number(metrics.get("cost"))
    spend = [f"cost {_amount(cost)}" if cost is not None else "no cost reported"]
    remaining = _number(metrics.get("remaining_credits"))
    if remaining is not None:
        spend.append(f"remaining credits {_amount(remaining)}")
    return f"{line}; {', '.join(spend)}"
