"""The states of a Segmind request, and the one table that says what each means for the task.

Every place that looks at a request's state (the trigger, the worker-side wait, the sensor's poke and
reattach on retry) reads :data:`STATE_RULES` through :attr:`SegmindStatus.rule`; none has its own
chain of ``if status is ...``. Adding a state is one enum member and one row here: the import-time
check below and the test that walks every member through those paths fail until both exist.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Mapping


class Meaning(enum.Enum):
    """What a request's state means for the task waiting on it."""

    RUNNING = "running"
    """Not finished: keep waiting (until the deadline)."""
    SUCCEEDED = "succeeded"
    """Finished with an output: read the result body and finish the task."""
    FAILED = "failed"
    """Finished without an output: the task fails."""


class SegmindStatus(enum.StrEnum):
    """States of a v2 request, as the status endpoint reports them.

    ``UNKNOWN`` stands for any value the API never documented (say ``STARTING``): the job exists and
    is billed, so it is waited on like a running one, never taken as success.
    """

    QUEUED = "QUEUED"
    PROCESSING = "PROCESSING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    UNKNOWN = "UNKNOWN"

    @classmethod
    def read(cls, value: Any) -> SegmindStatus | None:
        """The state a reported value names, matched without regard to case; ``UNKNOWN`` for a value
        we do not know, None for no value at all (no ``status`` key, or not a string).

        :param value: the ``status`` field of an answer.
        """
        if not isinstance(value, str) or not value.strip():
            return None
        return cls._value2member_map_.get(value.strip().upper(), cls.UNKNOWN)  # type: ignore[return-value]

    @property
    def rule(self) -> StateRule:
        """What this state means for the task (its row of :data:`STATE_RULES`)."""
        return STATE_RULES[self]

    @property
    def is_terminal(self) -> bool:
        """Whether the request can no longer change state."""
        return self.rule.terminal


@dataclass(frozen=True)
class StateRule:
    """One row of the state table.

    :param meaning: running, succeeded or failed.
    :param retry: for a failed state, whether Airflow may retry the task: a retry submits a new,
        billed job, so only where a resubmit can succeed (FAILED is a content or input refusal that
        would fail again).
    :param documented: False for a value the API never documented; the wait warns once about it.
    """

    meaning: Meaning
    retry: bool = False
    documented: bool = True

    @property
    def terminal(self) -> bool:
        """Whether a request in this state is over (succeeded or failed)."""
        return self.meaning is not Meaning.RUNNING


STATE_RULES: Mapping[SegmindStatus, StateRule] = MappingProxyType(
    {
        SegmindStatus.QUEUED: StateRule(Meaning.RUNNING),
        SegmindStatus.PROCESSING: StateRule(Meaning.RUNNING),
        SegmindStatus.COMPLETED: StateRule(Meaning.SUCCEEDED),
        SegmindStatus.FAILED: StateRule(Meaning.FAILED, retry=False),
        SegmindStatus.UNKNOWN: StateRule(Meaning.RUNNING, documented=False),
    }
)

_unmapped = set(SegmindStatus) - set(STATE_RULES)
if _unmapped:  # pragma: no cover - fails at import, which is the point
    raise RuntimeError(f"SegmindStatus members without a row in STATE_RULES: {sorted(_unmapped)}")
