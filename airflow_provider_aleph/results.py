"""Worker-side end of a wait: turn the final event into the task's result, or a clear failure."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import AirflowException, AirflowFailException

from airflow_provider_aleph.events import InvalidEventError, RequestEvent
from airflow_provider_aleph.exceptions import SegmindError
from airflow_provider_aleph.lineage import record_asset_events
from airflow_provider_aleph.links import OUTPUT_URL_XCOM_KEY

if TYPE_CHECKING:
    import logging

    from airflow.providers.common.compat.sdk import Context

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
    retry_safe: bool = False,
) -> dict[str, Any]:
    """Validate the event and return the task's result dict; fail the task for anything but success.

    FAILED, expired and invalid events raise AirflowFailException: the job itself is over. A deadline
    passed, or the API unreachable past the retry budget, lets Airflow retry only when ``retry_safe``
    (the next try reattaches to the same request instead of paying for a new one).

    :param context: the task's context (its ``ti`` receives XCom ``output_url``).
    :param payload: the event as received; None or an unknown status is an error, never success.
    :param conn_id: the connection id, named in failure messages.
    :param require_output_url: whether a COMPLETED result without an output URL is a failure.
    :param log: the task's logger.
    :param retry_safe: whether an Airflow retry would pick up this same request (never submit again).
    """
    try:
        event = RequestEvent.from_payload(payload)
    except InvalidEventError as err:
        raise AirflowFailException(f"Invalid Segmind trigger event: {err} (conn_id={conn_id})") from None
    named = [f"request_id={event.request_id}"] if event.request_id not in event.message else []
    named += [f"conn_id={conn_id}"] if f"conn_id={conn_id}" not in event.message else []
    where = f"({', '.join(named)})" if named else ""
    if event.status != "success":
        log.error("Segmind request %s ended with %s: %s", event.request_id, event.status, event.message)
        may_retry = retry_safe and (event.status == "timeout" or (event.status == "error" and event.retryable))
        if may_retry:
            raise AirflowException(
                f"{event.message} {where}".rstrip() + "; an Airflow retry of this task reattaches to it"
            )
        raise AirflowFailException(f"{event.message} {where}".rstrip())
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


def deliver_output(
    result: dict[str, Any],
    output_path: Any,
    *,
    retry_safe: bool,
    log: logging.Logger | Any,
) -> dict[str, Any]:
    """Copy the finished job's output into ``output_path`` (when set) and record where it landed.

    The copy retries in place; if it still fails, the task fails with the output URL, and Airflow
    may retry it only when ``retry_safe`` (the next try reuses the COMPLETED request, never pays again).

    :param result: the result dict from :func:`result_from_event`; ``output_path`` is filled in.
    :param output_path: a URI string or ObjectStoragePath, or None/"" for no copy.
    :param retry_safe: whether an Airflow retry would reuse this request.
    :param log: the task's logger.
    """
    if output_path is None or (isinstance(output_path, str) and not output_path.strip()):
        return result
    from airflow_provider_aleph.storage import copy_output

    url = result.get("output_url")
    if not url:
        raise AirflowFailException(
            f"Segmind request {result['request_id']} has no output URL to copy to output_path {output_path!s}"
        )
    try:
        path = copy_output(url, output_path, log=log)
    except SegmindError as err:
        hint = (
            "an Airflow retry of this task copies it again without a new job"
            if retry_safe
            else "the output stays at its URL for about 7 days"
        )
        raise (AirflowException if retry_safe else AirflowFailException)(
            f"Could not copy the output of Segmind request {result['request_id']} to {output_path!s}: {err}; {hint}"
        ) from None
    log.info("Copied the output of Segmind request %s to %s", result["request_id"], path)
    return {**result, "output_path": str(path)}


def finish_wait(
    task: Any,
    context: Context,
    payload: Any,
    *,
    require_output_url: bool,
    retry_safe: bool,
) -> dict[str, Any]:
    """The worker-side end of every wait (operators and sensor alike): check the event, copy the output
    into ``task.output_path`` when set, and attach where it landed to the task's asset outlets.

    :param task: the operator or sensor (its ``segmind_conn_id``, ``output_path``, ``outlets``, ``log``).
    :param context: the task's context.
    :param payload: the trigger's event as received.
    :param require_output_url: whether a COMPLETED result without an output URL is a failure.
    :param retry_safe: whether an Airflow retry would pick up the same request instead of paying again.
    """
    result = result_from_event(
        context,
        payload,
        conn_id=task.segmind_conn_id,
        require_output_url=require_output_url,
        log=task.log,
        retry_safe=retry_safe,
    )
    result = deliver_output(result, task.output_path, retry_safe=retry_safe, log=task.log)
    record_asset_events(context, task.outlets, result)
    return result


def wait_in_worker(trigger: SegmindRequestTrigger) -> dict[str, Any]:
    """Run the trigger's own loop in the worker, so deferrable and not share one way of waiting."""

    async def first() -> dict[str, Any]:
        async for event in trigger.run():
            return event.payload
        raise AirflowFailException(f"Segmind trigger for {trigger.request_id} ended without an event")

    return asyncio.run(first())
