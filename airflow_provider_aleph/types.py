"""The shapes that cross module boundaries: the task's result, and what finishing code needs of a task."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NotRequired, Protocol, TypedDict

if TYPE_CHECKING:
    from collections.abc import Iterable

    from airflow.providers.common.compat.sdk import ObjectStoragePath


class SegmindResult(TypedDict):
    """The return value (XCom ``return_value``) of the operators and the sensor.

    :param request_id: the Segmind request id.
    :param status: ``COMPLETED`` once the task waited (anything else fails it); the state at submit
        (``QUEUED``) when it did not (``wait_for_completion=False``).
    :param output_url: the output's URL (public, kept about 7 days), or None for a model whose output
        is not a URL.
    :param output_path: where the output was copied, as a full URI; None when no copy was asked for.
    :param metrics: the API's ``metrics`` (``inference_time``, maybe ``queue_time``, ``cost``...).
    :param output: the API's raw ``output`` value.
    :param cost: ``metrics["cost"]``, or None when the API sent none.
    :param preview_path: with ``preview=True``, the poster JPEG beside the copied output (a URI, like
        ``output_path``); absent otherwise.
    :param contact_sheet_path: with ``preview=True``, the contact sheet JPEG beside it; absent otherwise.
    """

    request_id: str
    status: str
    output_url: str | None
    output_path: str | None
    metrics: dict[str, Any]
    output: Any
    cost: Any
    preview_path: NotRequired[str]
    contact_sheet_path: NotRequired[str]


class TaskLog(Protocol):
    """The part of a logger the provider uses (a task's ``log``, or a ``logging.Logger``)."""

    def info(self, msg: Any, /, *args: Any) -> Any:
        """Log at INFO."""

    def warning(self, msg: Any, /, *args: Any) -> Any:
        """Log at WARNING."""

    def error(self, msg: Any, /, *args: Any) -> Any:
        """Log at ERROR."""


class StateStore(Protocol):
    """Airflow 3.3's ``context["task_state_store"]``: keys that survive the retries of one task instance."""

    def get(self, key: str) -> Any:
        """The value stored under ``key``, or None."""

    def set(self, key: str, value: Any) -> None:
        """Store a JSON-able ``value`` under ``key``."""

    def delete(self, key: str) -> None:
        """Remove ``key``; nothing happens when it is absent."""


class WaitingTask(Protocol):
    """What the worker-side end of a wait needs of the operator or sensor that waited."""

    @property
    def segmind_conn_id(self) -> str:
        """The Airflow connection id."""

    @property
    def output_path(self) -> str | ObjectStoragePath | None:
        """Where to copy the output, or None."""

    @property
    def local_roots(self) -> tuple[str, ...]:
        """The folders a local ``output_path`` may resolve under."""

    @property
    def outlets(self) -> Iterable[Any]:
        """The task's outlets (assets get an event per copied output)."""

    @property
    def log(self) -> TaskLog:
        """The task's logger."""
