"""What a connection learns of a model's job durations: a lognormal estimate, fitted to finished and running jobs.

The poll scheduler (:mod:`airflow_provider_aleph.polling`) keeps one :class:`DurationModel` per model and
connection, and asks it how likely a job of a given age is to be still running.
"""

from __future__ import annotations

import math
import random
import statistics
from collections import deque
from typing import TYPE_CHECKING, Any

import pendulum

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence


def in_words(seconds: float) -> str:
    """A length of time for a log line, in words to the second: ``4 minutes 12 seconds``.

    :param seconds: the length, in seconds.
    """
    whole = round(seconds)
    return pendulum.duration(seconds=whole).in_words() if whole > 0 else "under a second"


#: Spread of the log of job durations assumed before anything is learned (lognormal sigma).
PRIOR_SIGMA = 0.4
#: How many observed durations the assumed spread is worth, against the spread of those observed.
PRIOR_WEIGHT = 2.0
#: Durations kept per model: the estimate follows the recent ones (and as many running jobs, at most).
KEPT_DURATIONS = 200
#: EM steps of a fit that includes running jobs (each fit starts from the one before).
FIT_STEPS = 20
#: The estimate is fitted again at each of a model's first this many observed durations (when the finished
#: jobs are few, and the fast ones), then at every this-many-th: a fit weighs up to KEPT_DURATIONS running jobs.
REFIT_EVERY = 20
_NORMAL = statistics.NormalDist()


class DurationModel:
    """A lognormal estimate of one model's job durations on one connection, from a hint and what was seen.

    Until a duration is observed, the estimate is the operator's hint (its median) with a log-spread of
    :data:`PRIOR_SIGMA`. From the first observation on, it is fitted to what was seen (the hint is a
    starting point, not evidence: a hint that is far off must not slow the jobs that follow): the
    finished jobs' durations, and the jobs still running, each known to take longer than its age when
    last seen running. Without the second part, the first jobs to finish (the fast ones) would make the
    estimate too short. The fit is the maximum-likelihood lognormal for such right-censored data (a few
    EM steps), its spread pulled towards :data:`PRIOR_SIGMA` as if that had been seen :data:`PRIOR_WEIGHT`
    times.
    With no hint and nothing observed there is no estimate (:attr:`known` is False).

    :param expected: the hint: the typical duration in seconds, or None for none.
    """

    def __init__(self, expected: float | None = None) -> None:
        self.expected = expected
        self._logs: deque[float] = deque(maxlen=KEPT_DURATIONS)
        self._sum = 0.0  # of the kept logs, and of their squares
        self._squares = 0.0
        self._total = 0  # durations observed, kept or not
        self._mu = math.log(expected) if expected else 0.0
        self._sigma = PRIOR_SIGMA

    def __repr__(self) -> str:
        if not self.known:
            return f"{type(self).__name__}(unknown)"
        return f"{type(self).__name__}(median={self.median:.1f}s, sigma={self._sigma:.2f}, seen={len(self._logs)})"

    @property
    def known(self) -> bool:
        """Whether there is an estimate: a hint, or at least one observed duration."""
        return bool(self.expected) or bool(self._logs)

    @property
    def observed(self) -> int:
        """How many durations were observed (the most recent :data:`KEPT_DURATIONS`)."""
        return len(self._logs)

    @property
    def median(self) -> float:
        """The estimated median duration, in seconds."""
        return math.exp(self._mu)

    @property
    def sigma(self) -> float:
        """The estimated standard deviation of the log of a duration."""
        return self._sigma

    def hint(self, expected: float | None) -> None:
        """Take the operator's hint, if none was given before; it counts only until a duration is observed."""
        if expected and not self.expected:
            self.expected = expected
            if not self._logs:
                self._mu = math.log(expected)

    @property
    def wants_running(self) -> bool:
        """Whether the next observation refits the estimate, running jobs included (see :data:`REFIT_EVERY`)."""
        return self._total < REFIT_EVERY or (self._total + 1) % REFIT_EVERY == 0

    def observe(self, seconds: float, running: Sequence[float] = ()) -> None:
        """Take in one job's duration, and fit the estimate again.

        :param seconds: how long the job took, submit to completion.
        :param running: the ages (seconds since submit) at which the jobs still waiting were last seen
            running: each takes longer than that (used while :attr:`wants_running`).
        """
        if not (math.isfinite(seconds) and seconds > 0):
            return
        value = math.log(seconds)
        if len(self._logs) == self._logs.maxlen:
            evicted = self._logs[0]
            self._sum -= evicted
            self._squares -= evicted * evicted
        refit = self.wants_running
        self._logs.append(value)
        self._total += 1
        self._sum += value
        self._squares += value * value
        if not refit:
            return
        censored = [math.log(age) for age in running if math.isfinite(age) and age > 0]
        weight = 1.0
        if len(censored) > KEPT_DURATIONS:
            # A sample of the running jobs, each standing for as many as were left out.
            weight = len(censored) / KEPT_DURATIONS
            censored = random.sample(censored, KEPT_DURATIONS)
        self._fit(censored, weight)

    def _fit(self, censored: list[float], weight: float = 1.0) -> None:
        seen = len(self._logs)
        count = seen + weight * len(censored)
        mu = self._sum / seen
        variance = max(self._squares / seen - mu * mu, 0.0)
        if censored:
            sigma = max(math.sqrt(variance), 0.05)
            if seen > 1:
                mu, sigma = max(mu, self._mu), max(sigma, self._sigma)  # start from the last fit: fewer steps
            for _ in range(FIT_STEPS):
                # E step: a running job's log-duration, given that it exceeds its log-age c.
                first, second = 0.0, 0.0
                for c in censored:
                    z = (c - mu) / sigma
                    tail = 0.5 * math.erfc(z / math.sqrt(2.0))
                    mills = z + 1.0 / z if tail < 1e-12 else math.exp(-0.5 * z * z) / math.sqrt(2 * math.pi) / tail
                    mean = mu + sigma * mills
                    first += mean
                    second += sigma**2 * (1.0 + z * mills - mills**2) + mean**2
                # M step.
                mu = (self._sum + weight * first) / count
                variance = max((self._squares + weight * second) / count - mu * mu, 1e-6)
                sigma = math.sqrt(variance)
        self._mu = mu
        self._sigma = math.sqrt((PRIOR_WEIGHT * PRIOR_SIGMA**2 + count * variance) / (PRIOR_WEIGHT + count))

    def survival(self, seconds: float) -> float:
        """The chance that a job is still running ``seconds`` after its submit."""
        if seconds <= 0:
            return 1.0
        return 1.0 - _NORMAL.cdf((math.log(seconds) - self._mu) / self._sigma)

    def when_survival(self, chance: float) -> float:
        """The time after submit at which the chance of still running falls to ``chance``.

        :param chance: from 0 to 1, exclusive; clamped into that range.
        """
        chance = min(max(chance, 1e-12), 1.0 - 1e-12)
        return math.exp(self._mu + self._sigma * _NORMAL.inv_cdf(1.0 - chance))


def measured_duration(metrics: Mapping[str, Any]) -> float | None:
    """A job's duration from the API's ``metrics`` (queue plus inference time), if it gave them.

    :param metrics: the result's ``metrics`` object.
    """
    inference = metrics.get("inference_time")
    if isinstance(inference, bool) or not isinstance(inference, int | float) or not inference > 0:
        return None
    queued = metrics.get("queue_time")
    if isinstance(queued, bool) or not isinstance(queued, int | float) or not queued >= 0:
        queued = 0.0
    return float(inference) + float(queued)
