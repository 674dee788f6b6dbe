"""Reattach on retry: remember the request a task instance paid for, and pick it up again on its next try.

Segmind has no idempotency key, so a second try of a task that already submitted must not submit again
while the first job can still deliver. On Airflow 3.3+ the request is recorded in the task's
``task_state_store`` (kept across tries of one task instance) the moment the submit answers; the next try
asks the API about it and waits on it again, reuses its result, or submits anew only when it FAILED or
expired. Older Airflow has no such store: there, failures after a submit never let Airflow retry.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from enum import Enum
from typing import TYPE_CHECKING, Any

from airflow_provider_aleph.exceptions import SegmindNotFound
from airflow_provider_aleph.states import Meaning

if TYPE_CHECKING:
    from collections.abc import Mapping

    from airflow_provider_aleph.hooks.segmind import SegmindHook
    from airflow_provider_aleph.protocol import RequestState, SubmitResponse
    from airflow_provider_aleph.types import StateStore, TaskLog

#: The task_state_store key holding the request of this task instance.
STATE_KEY = "segmind_request"

_unavailable_logged = False  # the warning that this Airflow cannot reattach, once per process


def fingerprint(model: str, payload: dict[str, Any]) -> str:
    """A digest of what the task asks for, before inputs are presigned or uploaded.

    A stored request is reused only for the same model and parameters, so a task whose parameters
    changed between tries never picks up the old job.
    """
    text = json.dumps({"model": model, "payload": payload}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class StoredRequest:
    """What a later try needs to find a request again (plain JSON, no secret).

    :param request_id: the Segmind request id.
    :param fingerprint: :func:`fingerprint` of the model and parameters it was submitted with.
    :param status_url: the status URL the submit returned.
    :param response_url: the result URL the submit returned.
    :param submitted_at: ISO-8601 time of the submit.
    :param output_fingerprint: the fingerprint of parameters and input content that the output record
        (``<output>.segmind.json``) carries, or None; a later try that reattaches writes it too.
    """

    request_id: str
    fingerprint: str
    status_url: str | None = None
    response_url: str | None = None
    submitted_at: str | None = None
    output_fingerprint: str | None = None

    @classmethod
    def from_submit(
        cls, submitted: SubmitResponse, digest: str, submitted_at: str, output_fingerprint: str | None = None
    ) -> StoredRequest:
        """The record for a submit that just answered."""
        return cls(
            submitted.request_id, digest, submitted.status_url, submitted.response_url, submitted_at, output_fingerprint
        )

    @classmethod
    def from_json(cls, value: Any) -> StoredRequest | None:
        """Read a stored record back; anything unreadable counts as none."""
        if not isinstance(value, dict) or not isinstance(value.get("request_id"), str):
            return None
        if not isinstance(value.get("fingerprint"), str):
            return None

        def text(name: str) -> str | None:
            found = value.get(name)
            return found if found is None or isinstance(found, str) else str(found)

        return cls(
            request_id=value["request_id"],
            fingerprint=value["fingerprint"],
            status_url=text("status_url"),
            response_url=text("response_url"),
            submitted_at=text("submitted_at"),
            output_fingerprint=text("output_fingerprint"),
        )

    def to_json(self) -> dict[str, Any]:
        """The record as stored."""
        return asdict(self)


def state_store(context: Mapping[str, Any], log: TaskLog) -> StateStore | None:
    """The task's ``task_state_store``, or None (logged once per process) where Airflow has none."""
    global _unavailable_logged
    store: StateStore | None = context.get("task_state_store")
    if store is None and not _unavailable_logged:
        _unavailable_logged = True
        log.warning(
            "Reattach on retry is unavailable: this Airflow has no task_state_store (Airflow 3.3+). "
            "Failures after a submit will not be retried by Airflow, since a retry would pay for a new job"
        )
    return store


def remember(store: StateStore, record: StoredRequest) -> None:
    """Record the request for later tries of this task instance."""
    store.set(STATE_KEY, record.to_json())


class Resume(Enum):
    """What a new try does with the request an earlier try submitted (by the state table's meaning)."""

    WAIT = "wait"
    """Still running (QUEUED, PROCESSING, or a state we do not know): wait on it again."""
    DONE = "done"
    """Succeeded (COMPLETED) within retention: use its result."""
    RESUBMIT = "resubmit"
    """Failed (FAILED) or expired (404): submit anew."""


#: The action for each meaning of the state table.
RESUME_BY_MEANING = {Meaning.RUNNING: Resume.WAIT, Meaning.SUCCEEDED: Resume.DONE, Meaning.FAILED: Resume.RESUBMIT}


@dataclass(frozen=True)
class Recovery:
    """The stored request, its state as the API reports it now, and what to do about it."""

    stored: StoredRequest
    action: Resume
    state: RequestState | None = None


def recover(store: StateStore, hook: SegmindHook, digest: str, log: TaskLog) -> Recovery | None:
    """Ask the API about the request an earlier try stored; None when there is none to pick up.

    Errors other than 404 (auth, an API failing past the outage tolerance) propagate: the caller
    fails the task rather than risk a second job.
    """
    stored = StoredRequest.from_json(store.get(STATE_KEY))
    if stored is None:
        return None
    if stored.fingerprint != digest:
        log.warning(
            "An earlier try submitted Segmind request %s with other parameters; not reusing it",
            stored.request_id,
        )
        return None
    try:
        state = hook.get_state(stored.request_id, stored.status_url, stored.response_url)
    except SegmindNotFound:
        log.warning("Segmind request %s from an earlier try has expired (404); submitting anew", stored.request_id)
        return Recovery(stored, Resume.RESUBMIT)
    action = RESUME_BY_MEANING[state.status.rule.meaning]
    if action is Resume.RESUBMIT:
        log.warning(
            "Segmind request %s from an earlier try ended %s (%s); submitting anew",
            stored.request_id,
            state.reported or state.status.value,
            state.error or "no detail",
        )
    elif action is Resume.DONE:
        log.info("Segmind request %s from an earlier try %s; using its result", stored.request_id, state.reported)
    else:
        log.info("Reattaching to Segmind request %s from an earlier try (%s)", stored.request_id, state.reported)
    return Recovery(stored, action, state)
