"""Worker-side end of a wait: turn the final event into the task's result, or a clear failure."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import AirflowException, AirflowFailException

from airflow_provider_aleph.events import InvalidEventError, RequestEvent
from airflow_provider_aleph.links import OUTPUT_URL_XCOM_KEY

if TYPE_CHECKING:
    import logging

    from airflow.providers.common.compat.sdk import Context

    from airflow_provider_aleph.exceptions import SegmindError
    from airflow_provider_aleph.triggers.segmind import SegmindRequestTrigger


def airflow_error(err: SegmindError) -> AirflowException:
    """The task outcome for a provider error: Airflow may retry only what another attempt can fix
    without paying twice (429 or a refused connection before any job existed)."""
    return (AirflowException if err.retryable else AirflowFailException)(str(err))


def result_from_event(
    context: Context,
    payload: Any,
    *,
    conn_id: str,
    require_output_url: bool,
    log: logging.Logger | Any,
) -> dict[str, Any]:
    """Validate the event and return the task's result dict; fail the task for anything but success.

    Failures raise AirflowFailException: an Airflow retry would submit, and pay for, a second job.

    :param context: the task's context (its ``ti`` receives XCom ``output_url``).
    :param payload: the event as received; None or an unknown status is an error, never success.
    :param conn_id: the connection id, named in failure messages.
    :param require_output_url: whether a COMPLETED result without an output URL is a failure.
    :param log: the task's logger.
    """
    try:
        event = RequestEvent.from_payload(payload)
    except InvalidEventError as err:
        raise AirflowFailException(f"Invalid Segmind trigger event: {err} (conn_id={conn_id})") from None
    where = (
        f"(conn_id={conn_id})"
        if event.request_id in event.message
        else f"(request_id={event.request_id}, conn_id={conn_id})"
    )
    if event.status != "success":
        log.error("Segmind request %s ended with %s: %s", event.request_id, event.status, event.message)
        raise AirflowFailException(f"{event.message} {where}")
    if require_output_url and not event.output_url:
        raise AirflowFailException(
            f"Segmind request {event.request_id} COMPLETED but its result has no output URL "
            f"(output={event.output!r}) {where}"
        )
    log.info("%s; output: %s", event.message, event.output_url)
    context["ti"].xcom_push(key=OUTPUT_URL_XCOM_KEY, value=event.output_url)
    return {
        "request_id": event.request_id,
        "status": "COMPLETED",
        "output_url": event.output_url,
        "output_path": None,
        "metrics": event.metrics,
        "output": event.output,
    }


def wait_in_worker(trigger: SegmindRequestTrigger) -> dict[str, Any]:
    """Run the trigger's own loop in the worker, so deferrable and not share one way of waiting."""

    async def first() -> dict[str, Any]:
        async for event in trigger.run():
            return event.payload
        raise AirflowFailException(f"Segmind trigger for {trigger.request_id} ended without an event")

    return asyncio.run(first())
