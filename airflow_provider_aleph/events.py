"""How a wait for a Segmind request ends: the one event the trigger yields, and what the worker makes of it.

The trigger (or the worker itself, with ``deferrable=False``, or the sensor's poke) turns a request's
state into a :class:`RequestEvent` with :func:`conclude`, which reads the state table; the worker checks
the event against an allow-list and either returns the task's result (copying the output and recording
asset events) or fails the task. Whether Airflow may retry a failure is decided in
:func:`task_failure` alone, for every failure the provider raises.
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal, get_args

from airflow.providers.common.compat.sdk import AirflowException, AirflowFailException

from airflow_provider_aleph.exceptions import (
    InvalidParameter,
    SegmindError,
    SegmindProtocolError,
    SegmindRequestFailed,
    SegmindWaitTimeout,
)
from airflow_provider_aleph.lineage import record_asset_events
from airflow_provider_aleph.links import OUTPUT_URL_XCOM_KEY
from airflow_provider_aleph.metrics import job_ended, summary
from airflow_provider_aleph.states import Meaning

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context, ObjectStoragePath

    from airflow_provider_aleph.protocol import RequestState
    from airflow_provider_aleph.storage.record import Provenance
    from airflow_provider_aleph.triggers.segmind import SegmindRequestTrigger
    from airflow_provider_aleph.types import SegmindResult, TaskLog, WaitingTask

EventStatus = Literal["success", "failed", "error", "timeout"]
EVENT_STATUSES: frozenset[str] = frozenset(get_args(EventStatus))


class InvalidEventError(ValueError):
    """A trigger event that is missing, malformed or has a status outside the allow-list."""


@dataclass(frozen=True)
class RequestEvent:
    """What the trigger tells the worker about a request, as plain JSON.

    :param status: ``success`` (the job succeeded), ``failed`` (it ended without output), ``error``
        (the API could not be asked) or ``timeout`` (the deadline passed first).
    :param request_id: the Segmind request id; always present.
    :param message: a sentence for the task log.
    :param output_url: the output's URL, on success, when the output is (or holds) a URL.
    :param output: the API's raw ``output`` value, on success.
    :param metrics: the API's metrics, on success or failure.
    :param error_type: the provider's error class name, on ``error``.
    :param status_code: the HTTP status behind an ``error``, if any.
    :param retryable: whether another attempt could succeed (see :func:`task_failure`).
    :param detail: the API's own failure text (a FAILED job's ``error``, an error answer's detail).
    :param elapsed: seconds from the submit until the wait ended, when the waiter knew the submit time
        (an event of an earlier version has none).
    """

    status: EventStatus
    request_id: str
    message: str = ""
    output_url: str | None = None
    output: Any = None
    metrics: dict[str, Any] = field(default_factory=dict)
    error_type: str | None = None
    status_code: int | None = None
    retryable: bool = False
    detail: str | None = None
    elapsed: float | None = None

    def to_payload(self) -> dict[str, Any]:
        """The event as the JSON-able dict a TriggerEvent carries."""
        return asdict(self)

    @classmethod
    def from_payload(cls, payload: Any) -> RequestEvent:
        """Validate an event received by ``execute_complete``: anything unexpected is an error.

        :param payload: the ``event`` argument Airflow passed in.
        """
        if not isinstance(payload, dict):
            raise InvalidEventError(f"expected a trigger event dict, got {type(payload).__name__}: {payload!r}")
        status = payload.get("status")
        if status not in EVENT_STATUSES:
            raise InvalidEventError(
                f"trigger event status {status!r} is not one of {sorted(EVENT_STATUSES)}: {payload!r}"
            )
        request_id = payload.get("request_id")
        if not isinstance(request_id, str) or not request_id:
            raise InvalidEventError(f"trigger event has no request_id: {payload!r}")
        known = {name: payload[name] for name in cls.__dataclass_fields__ if name in payload}
        # An event written by an earlier version carries no retryable flag on a timeout: a deadline always is.
        known.setdefault("retryable", status == "timeout")
        metrics = known.get("metrics")
        known["metrics"] = metrics if isinstance(metrics, dict) else {}
        elapsed = known.get("elapsed")
        usable = isinstance(elapsed, int | float) and not isinstance(elapsed, bool) and math.isfinite(elapsed)
        known["elapsed"] = float(elapsed) if usable and elapsed is not None else None
        return cls(**known)

    def since(self, submitted_at: datetime | None) -> RequestEvent:
        """This event with ``elapsed`` measured from ``submitted_at`` to now (unchanged when it is None).

        :param submitted_at: when the request was submitted (aware datetime), or None when unknown.
        """
        if submitted_at is None:
            return self
        if submitted_at.tzinfo is None:
            submitted_at = submitted_at.replace(tzinfo=UTC)
        return replace(self, elapsed=max(0.0, (datetime.now(UTC) - submitted_at).total_seconds()))

    def failure(self, conn_id: str) -> SegmindError:
        """The error a non-success event stands for, naming the request and the connection.

        :param conn_id: the connection the wait used.
        """
        kind = {"failed": SegmindRequestFailed, "timeout": SegmindWaitTimeout}.get(self.status, SegmindError)
        err = kind(
            self.message or f"Segmind request ended with {self.status}",
            status_code=self.status_code,
            detail=self.detail,
            request_id=self.request_id,
            conn_id=conn_id,
        )
        err.retryable = self.retryable
        return err


# -- the trigger's side: a state becomes an event -----------------------------------------------------


def conclude(state: RequestState, elapsed: str = "?") -> RequestEvent | None:
    """The event for a finished request, or None while it is still running (by the state table).

    :param state: the request's latest state (its result body, once it succeeded).
    :param elapsed: time since submit, for the message.
    """
    rule = state.status.rule
    if rule.meaning is Meaning.RUNNING:
        return None
    if rule.meaning is Meaning.SUCCEEDED:
        return RequestEvent(
            status="success",
            request_id=state.request_id,
            message=f"Segmind request {state.request_id} {state.reported or state.status} after {elapsed}",
            output_url=state.output_url,
            output=state.output,
            metrics=state.metrics,
        )
    detail = state.error or "no detail given"
    return RequestEvent(
        status="failed",
        request_id=state.request_id,
        message=f"Segmind request {state.reported or state.status}: {detail}",
        metrics=state.metrics,
        retryable=rule.retry,
        detail=detail,
    )


def error_event(request_id: str, err: SegmindError) -> RequestEvent:
    """The event for a request whose state could not be read."""
    return RequestEvent(
        status="error",
        request_id=request_id,
        message=err.message,
        error_type=type(err).__name__,
        status_code=err.status_code,
        retryable=err.retryable,
        detail=err.detail,
    )


def timeout_event(request_id: str, deadline: str, last_seen: str | None) -> RequestEvent:
    """The event for a request still unfinished at the deadline; it says how to pick it up later."""
    return RequestEvent(
        status="timeout",
        request_id=request_id,
        message=(
            f"Segmind request {request_id} was still {last_seen or 'unfinished'} at the deadline {deadline}; "
            f"it may still finish. Wait for it with SegmindRequestSensor(request_id={request_id!r}) "
            "within the 1-hour retention"
        ),
        retryable=True,
    )


# -- the worker's side: an event becomes the result, or the task's failure ----------------------------


def task_failure(err: Exception, *, retry_safe: bool, note: str = "", on_retry: str = "") -> AirflowException:
    """The one answer to "may Airflow retry this failure?", for the operators, the sensor and the copy.

    Airflow may retry only an error that another attempt can fix (``err.retryable``: 429, 5xx, network,
    a deadline, a cut download), and only when that retry cannot pay for a second job (``retry_safe``).
    Everything else fails the task for good (``AirflowFailException``).

    :param err: what went wrong; its text (request id and connection included) becomes the message.
    :param retry_safe: True when a retry cannot submit again: nothing was submitted yet, the task is
        the sensor, or the task state store lets the retry reattach to the same request.
    :param note: appended to the message, e.g. ``nothing was submitted``.
    :param on_retry: appended when Airflow may retry: what the retry will do.
    """
    retry = bool(getattr(err, "retryable", False)) and retry_safe
    message = f"{err} ({note})" if note else str(err)
    if retry and on_retry:
        message = f"{message}; {on_retry}"
    return (AirflowException if retry else AirflowFailException)(message)


def finish(
    task: WaitingTask,
    context: Context,
    payload: Any,
    *,
    require_output_url: bool,
    retry_safe: bool,
    provenance: Provenance | None = None,
) -> SegmindResult:
    """The worker-side end of every wait (operators and sensor alike): check the event, return the result
    dict, copy the output into ``task.output_path`` when set (with its record beside it), and record it on
    the task's asset outlets.

    :param task: the operator or sensor that waited.
    :param context: the task's context (its ``ti`` receives XCom ``output_url``).
    :param payload: the event as received; None or an unknown status is an error, never success.
    :param require_output_url: whether a COMPLETED result without an output URL is a failure.
    :param retry_safe: whether an Airflow retry would pick up this same request (never submit again).
    :param provenance: what made the job, for the output record; None (the sensor, which knows neither
        model nor parameters) writes a record that never matches, so a later run never reuses it.
    """
    conn_id = task.segmind_conn_id
    try:
        event = RequestEvent.from_payload(payload)
    except InvalidEventError as err:
        raise task_failure(
            SegmindProtocolError(f"Invalid Segmind trigger event: {err}", conn_id=conn_id), retry_safe=retry_safe
        ) from None
    model = getattr(task, "model", None)
    model = model if isinstance(model, str) else None
    if event.status != "success":
        failure = event.failure(conn_id)
        if event.status == "failed":
            # Segmind's verdict: what the job took (and cost, where Segmind bills it) is worth a line too.
            task.log.error("%s", summary(event.request_id, "FAILED", event.metrics, event.elapsed))
            job_ended(False, event.metrics, event.elapsed, model)
        task.log.error("Segmind request %s ended with %s: %s", event.request_id, event.status, failure)
        raise task_failure(failure, retry_safe=retry_safe, on_retry="an Airflow retry of this task reattaches to it")
    # Counted before the output check: Segmind completed (and billed) it either way.
    line = summary(event.request_id, "COMPLETED", event.metrics, event.elapsed)
    task.log.info("%s; output: %s", line, event.output_url)
    job_ended(True, event.metrics, event.elapsed, model)
    if require_output_url and not event.output_url:
        raise task_failure(
            SegmindProtocolError(
                f"Segmind request COMPLETED but its result has no output URL (output={event.output!r})",
                request_id=event.request_id,
                conn_id=conn_id,
            ),
            retry_safe=retry_safe,
        )
    context["ti"].xcom_push(key=OUTPUT_URL_XCOM_KEY, value=event.output_url)
    result: SegmindResult = {
        "request_id": event.request_id,
        "status": "COMPLETED",
        "output_url": event.output_url,
        "output_path": None,
        "metrics": event.metrics,
        "output": event.output,
        "cost": event.metrics.get("cost"),
    }
    result["output_path"] = deliver_output(
        result,
        task.output_path,
        local_roots=task.local_roots,
        retry_safe=retry_safe,
        log=task.log,
        provenance=provenance,
    )
    if getattr(task, "preview", False) and result["output_path"]:
        add_previews(result, keep_existing=False, retry_safe=retry_safe, log=task.log)
    record_asset_events(context, task.outlets, result)
    return result


def add_previews(result: SegmindResult, *, keep_existing: bool, retry_safe: bool, log: TaskLog) -> None:
    """Write the poster and contact sheet beside the copied output (``preview=True``) and name them in
    ``result`` as ``preview_path`` and ``contact_sheet_path``. A failure fails the task naming the request:
    the output itself is copied, so a retry makes only the previews again.

    :param result: the result, its ``output_path`` set.
    :param keep_existing: keep previews already there (a reused output); False writes both anew.
    :param retry_safe: whether an Airflow retry would reuse this request.
    :param log: the task's logger.
    """
    from airflow_provider_aleph.media.preview import PreviewError, write_previews
    from airflow_provider_aleph.storage.outbound import as_output_path

    try:
        previews = write_previews(as_output_path(str(result["output_path"])), log=log, keep_existing=keep_existing)
    except PreviewError as err:
        err.request_id = err.request_id or result["request_id"]
        raise task_failure(err, retry_safe=retry_safe, note="the output is copied; its previews are not") from None
    result["preview_path"] = str(previews.poster)
    result["contact_sheet_path"] = str(previews.sheet)


def deliver_output(
    result: SegmindResult,
    output_path: str | ObjectStoragePath | None,
    *,
    local_roots: tuple[str, ...],
    retry_safe: bool,
    log: TaskLog,
    provenance: Provenance | None = None,
) -> str | None:
    """Copy the finished job's output into ``output_path`` (when set); where it landed, as a URI. The record
    ``<output>.segmind.json`` is written beside it (see :mod:`airflow_provider_aleph.storage.record`).

    The copy retries in place; if it still fails, the task fails naming the output URL, and Airflow may
    retry it only as :func:`task_failure` says (the next try reuses the COMPLETED request).

    :param result: the result so far.
    :param output_path: a URI string or ObjectStoragePath, or None/"" for no copy.
    :param local_roots: the folders a local ``output_path`` may resolve under.
    :param retry_safe: whether an Airflow retry would reuse this request.
    :param log: the task's logger.
    :param provenance: what made the job, for the record (None: unknown, the record never matches).
    """
    if output_path is None or (isinstance(output_path, str) and not output_path.strip()):
        return None
    from airflow_provider_aleph.storage.outbound import check_output_path, copy_output
    from airflow_provider_aleph.storage.record import Provenance, discard_record, record_for, write_record

    request_id = result["request_id"]
    url = result["output_url"]
    try:
        check_output_path(output_path, local_roots=local_roots)
    except InvalidParameter as err:
        raise task_failure(
            err, retry_safe=retry_safe, note=f"the output of request {request_id} was not copied"
        ) from None
    try:
        if not url:
            raise SegmindProtocolError(f"the job has no output URL to copy to output_path {output_path!s}")
        path = copy_output(url, output_path, log=log)
    except SegmindError as err:
        err.request_id = err.request_id or request_id
        hint = "a retry copies it again without a new job" if retry_safe else "it stays at its URL for about 7 days"
        raise task_failure(err, retry_safe=retry_safe, note=f"output not copied; {hint}") from None
    log.info("Copied the output of Segmind request %s to %s", request_id, path)
    record = record_for(result, path, provenance or Provenance())
    if record is not None:
        write_record(path, record, log=log)
    else:
        # A store that reports no identity for the file: no record can vouch for it, and an old one must go.
        discard_record(path, log=log)
    return str(path)


def wait_in_worker(trigger: SegmindRequestTrigger) -> dict[str, Any]:
    """Run the trigger's own loop in the worker, so deferrable and not share one way of waiting."""

    async def first() -> dict[str, Any]:
        async for event in trigger.run():
            payload: dict[str, Any] = event.payload
            return payload
        return error_event(trigger.request_id, SegmindProtocolError("the wait ended without an event")).to_payload()

    return asyncio.run(first())
