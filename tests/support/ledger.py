"""The soak's accounting: what our side saw of each logical job against the jobs the emulator was paid for.

``benchmarks/soak.py`` plans its logical jobs with :func:`plan_jobs`, records an :class:`Outcome` per job,
and checks the run with :func:`account`: ``lost`` counts paid jobs that ended with neither an output nor
a failure naming their request id (a lost submit answer counts as accounted for when reported as "outcome
unknown"), ``duplicated`` logical jobs with more than one paid job, ``unsafe_retries`` failures Airflow
would retry although a paid job exists. Pure functions of plain data, so the tests check them directly.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Sequence


@dataclass(frozen=True)
class Plan:
    """One logical job: ``index`` (in its video URL and prompt), and what is done to it on purpose: a prompt
    that ends FAILED, a lost submit answer (the emulator is told to lose the next one just before its submit),
    an invalid aspect ratio (refused before any submit)."""

    index: int
    fail: bool = False
    lose_answer: bool = False
    invalid: bool = False


def plan_jobs(count: int, fail_rate: float, lost_answer_rate: float, invalid_rate: float) -> list[Plan]:
    """Spread the deliberate incidents evenly over ``count`` jobs (deterministic: every 1/rate-th job)."""

    def every(rate: float, offset: int) -> set[int]:
        if rate <= 0:
            return set()
        step = max(1, round(1 / rate))
        return set(range(offset % step, count, step))

    fail, lose, invalid = every(fail_rate, 5), every(lost_answer_rate, 7), every(invalid_rate, 42)
    return [Plan(i, i in fail, i in lose and i not in invalid, i in invalid) for i in range(count)]


@dataclass
class Outcome:
    """What our side saw of one logical job: ``kind`` is ``accepted`` (while waiting), ``completed``, ``failed``
    (after submit), ``unknown`` (submit answer lost), ``refused`` (invalid parameter) or ``submit_failed``;
    ``airflow_retry`` says whether Airflow would retry the task after this failure."""

    kind: str
    request_id: str | None = None
    message: str = ""
    airflow_retry: bool = False
    urls: tuple[str, str] | None = None
    output_url: str | None = None

    @property
    def names_request(self) -> bool:
        """Whether the outcome is an output, or a failure that names its request id."""
        return bool(self.request_id) and (self.kind == "completed" or str(self.request_id) in self.message)


@dataclass
class Account:
    """The run's numbers: our outcomes, the emulator's view, and the checks."""

    outcomes: Counter[str]
    paid_unknown: int
    lost: int
    duplicated: int
    unsafe_retries: int
    inconsistencies: list[str]
    stats: dict[str, Any]

    @property
    def ok(self) -> bool:
        """Whether nothing paid was lost or doubled and both views agree."""
        return not (self.lost or self.duplicated or self.unsafe_retries or self.inconsistencies)


def account(
    plans: Sequence[Plan], outcomes: dict[int, Outcome], fetches: dict[int, int], stats: dict[str, Any]
) -> Account:
    """Compare what our side saw of each logical job with the jobs the emulator created for it."""
    paid_ids = set(stats["request_ids"])
    kinds: Counter[str] = Counter()
    lost = duplicated = unsafe = paid_unknown = 0
    problems: list[str] = []
    for plan in plans:
        outcome = outcomes.get(plan.index) or Outcome("missing", message="no outcome recorded")
        created = fetches.get(plan.index, 0)
        unnamed = outcome.kind == "failed" and not outcome.names_request
        kinds["failed without its request id" if unnamed else outcome.kind] += 1
        if outcome.kind in ("completed", "failed") and (not created or outcome.request_id not in paid_ids):
            problems.append(f"job {plan.index}: request {outcome.request_id} ({created} fetches) is not a paid job")
        reported_unknown = outcome.kind == "unknown" and "unknown" in outcome.message
        paid_unknown += bool(reported_unknown and created)
        lost += max(0, created - (outcome.names_request or reported_unknown))
        duplicated += created > 1
        unsafe += bool(created and outcome.airflow_retry)
    if sum(fetches.values()) != stats["submissions"]:
        problems.append(f"{sum(fetches.values())} video fetches for {stats['submissions']} paid jobs")
    return Account(kinds, paid_unknown, lost, duplicated, unsafe, problems, stats)
