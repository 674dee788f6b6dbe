"""Reattach on retry: remember the request a task instance paid for, and pick it up again on its next try.

Segmind has no idempotency key, so a second try of a task that already submitted must not submit again
while the first job can still deliver. On Airflow 3.3+ the request is recorded in the task's
``task_state_store`` (kept across tries of one task instance) the moment the submit answers; the next try
asks the API about it and waits on it again, reuses its result, or submits anew only when it FAILED or
expired. Older Airflow has no such store: there, failures after a submit never let Airflow retry.

The submit itself leaves a window: the POST has left, the answer (and its request id) not yet stored. To
close it, an intent (:class:`SubmitIntent`) is stored under the same key right before the POST; the
accepted submit's request record replaces it, and a refused one (nothing created) removes it. A later try
that still finds an intent cannot know whether a job exists, so it fails for good with the "outcome
unknown" guidance instead of paying a second time. Clearing the task in Airflow keeps its
``task_state_store``; a clear after that failure was shown raises the task instance's ``max_tries``,
which is how a deliberate re-run is told from a retry and let through.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from enum import Enum
from typing import TYPE_CHECKING, Any

from airflow_provider_aleph.exceptions import SegmindNotFound, SegmindSubmitOutcomeUnknown
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
    """Record the request for later tries of this task instance (replacing the intent, if any)."""
    store.set(STATE_KEY, record.to_json())


@dataclass(frozen=True)
class SubmitIntent:
    """A submit begun but not yet answered (plain JSON, no secret).

    :param fingerprint: :func:`fingerprint` of the model and parameters being submitted.
    :param attempted_at: ISO-8601 time the submit began.
    :param reported_at_max_tries: the task instance's ``max_tries`` when a later try failed on this intent
        (None until then); a try with a higher ``max_tries`` comes after a clear, and may submit.
    """

    fingerprint: str
    attempted_at: str
    reported_at_max_tries: int | None = None

    @classmethod
    def from_json(cls, value: Any) -> SubmitIntent | None:
        """Read a stored intent back; a request record or anything unreadable counts as none."""
        if not isinstance(value, dict) or value.get("kind") != "intent":
            return None
        digest, attempted_at, reported = (
            value.get(k) for k in ("fingerprint", "attempted_at", "reported_at_max_tries")
        )
        if not isinstance(digest, str) or not isinstance(attempted_at, str):
            return None
        return cls(digest, attempted_at, reported if isinstance(reported, int) else None)

    def to_json(self) -> dict[str, Any]:
        """The intent as stored (``kind`` tells it from a request record)."""
        return {"kind": "intent", **asdict(self)}


def declare_intent(store: StateStore, digest: str, attempted_at: str) -> None:
    """Store the intent to submit, right before the POST: a later try that finds it will not submit again.

    :param store: the task's ``task_state_store``.
    :param digest: :func:`fingerprint` of what is submitted.
    :param attempted_at: ISO-8601 time of the submit.
    """
    store.set(STATE_KEY, SubmitIntent(digest, attempted_at).to_json())


def withdraw_intent(store: StateStore) -> None:
    """Remove the intent of a submit that surely created nothing, so that an Airflow retry may submit."""
    if SubmitIntent.from_json(store.get(STATE_KEY)) is not None:
        store.delete(STATE_KEY)


def intent_before_submit(store: StateStore, digest: str, attempted_at: str) -> None:
    """:func:`declare_intent`, or refuse to submit: without the intent, a try lost mid-submit would let
    its retry pay again. Raises ``AirflowException`` (nothing was submitted).

    :param store: the task's ``task_state_store``.
    :param digest: :func:`fingerprint` of what is submitted.
    :param attempted_at: ISO-8601 time of the submit.
    """
    from airflow.providers.common.compat.sdk import AirflowException

    try:
        declare_intent(store, digest, attempted_at)
    except Exception as err:
        raise AirflowException(
            f"Could not record the submit intent in the task state store ({type(err).__name__}: {err}); "
            "nothing was submitted"
        ) from None


def withdraw_or_warn(store: StateStore, log: TaskLog) -> None:
    """:func:`withdraw_intent`; when the store fails, the intent stays and a retry fails with "outcome
    unknown" rather than risk paying twice (logged).

    :param store: the task's ``task_state_store``.
    :param log: the task's logger.
    """
    try:
        withdraw_intent(store)
    except Exception as err:
        log.warning("Could not remove the submit intent (%s: %s)", type(err).__name__, err)


def _check_intent(
    store: StateStore, intent: SubmitIntent, digest: str, max_tries: int | None, conn_id: str, log: TaskLog
) -> None:
    """Let a try past an earlier try's unanswered submit only after a clear; otherwise fail for good."""
    reported = intent.reported_at_max_tries
    if reported is not None and max_tries is not None and max_tries > reported:
        log.warning(
            "The submit begun at %s by an earlier try has an unknown outcome, and the task was cleared since "
            "that was reported: submitting anew",
            intent.attempted_at,
        )
        return
    if reported is None and max_tries is not None:
        # Noted before failing: a clear after this raises max_tries past it, and lets the next try submit.
        store.set(STATE_KEY, SubmitIntent(intent.fingerprint, intent.attempted_at, max_tries).to_json())
    raise SegmindSubmitOutcomeUnknown.interrupted(
        intent.attempted_at, conn_id, other_parameters=intent.fingerprint != digest
    )


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


def recover(
    store: StateStore, hook: SegmindHook, digest: str, log: TaskLog, *, max_tries: int | None = None
) -> Recovery | None:
    """Ask the API about the request an earlier try stored; None when there is none to pick up.

    Errors other than 404 (auth, an API failing past the outage tolerance) propagate: the caller
    fails the task rather than risk a second job. An earlier try's submit that was begun but never
    answered raises :class:`~airflow_provider_aleph.exceptions.SegmindSubmitOutcomeUnknown` (never
    retryable), whatever the parameters, unless the task was cleared since that was reported.

    :param store: the task's ``task_state_store``.
    :param hook: the hook to ask the API with.
    :param digest: :func:`fingerprint` of what this try would submit.
    :param log: the task's log.
    :param max_tries: the task instance's ``max_tries`` (Airflow raises it when the task is cleared).
    """
    value = store.get(STATE_KEY)
    intent = SubmitIntent.from_json(value)
    if intent is not None:
        _check_intent(store, intent, digest, max_tries, hook.segmind_conn_id, log)
        return None
    stored = StoredRequest.from_json(value)
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
