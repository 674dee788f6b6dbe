"""The one event a wait for a Segmind request ends with: built in the trigger, checked on the worker."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Literal, get_args

from airflow_provider_aleph.protocol import SegmindStatus

if TYPE_CHECKING:
    from airflow_provider_aleph.exceptions import SegmindError
    from airflow_provider_aleph.protocol import RequestState

EventStatus = Literal["success", "failed", "error", "timeout"]
EVENT_STATUSES: frozenset[str] = frozenset(get_args(EventStatus))


class InvalidEventError(ValueError):
    """A trigger event that is missing, malformed or has a status outside the allow-list."""


@dataclass(frozen=True)
class RequestEvent:
    """What the trigger tells the worker about a request, as plain JSON.

    :param status: ``success`` (COMPLETED), ``failed`` (FAILED), ``error`` (the API could not be
        asked) or ``timeout`` (the deadline passed first).
    :param request_id: the Segmind request id; always present.
    :param message: a sentence for the task log.
    :param output_url: the output's URL, on success, when the output is (or holds) a URL.
    :param output: the API's raw ``output`` value, on success.
    :param metrics: the API's metrics, on success or failure.
    :param error_type: the provider's error class name, on ``error``.
    :param status_code: the HTTP status behind an ``error``, if any.
    :param retryable: whether an Airflow retry of the task could help.
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
        metrics = known.get("metrics")
        known["metrics"] = metrics if isinstance(metrics, dict) else {}
        return cls(**known)


def terminal_event(state: RequestState, elapsed: str = "?") -> RequestEvent | None:
    """The event for a finished request (COMPLETED read from its result body, or FAILED), else None.

    :param state: the request's latest state.
    :param elapsed: time since submit, for the message.
    """
    if state.status is SegmindStatus.COMPLETED:
        return RequestEvent(
            status="success",
            request_id=state.request_id,
            message=f"Segmind request {state.request_id} COMPLETED after {elapsed}",
            output_url=state.output_url,
            output=state.output,
            metrics=state.metrics,
        )
    if state.status is SegmindStatus.FAILED:
        return RequestEvent(
            status="failed",
            request_id=state.request_id,
            message=f"Segmind request {state.request_id} FAILED: {state.error or 'no detail given'}",
            metrics=state.metrics,
        )
    return None


def error_event(request_id: str, err: SegmindError) -> RequestEvent:
    """The event for a request whose state could not be read."""
    return RequestEvent(
        status="error",
        request_id=request_id,
        message=str(err),
        error_type=type(err).__name__,
        status_code=err.status_code,
        retryable=err.retryable,
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
    )
