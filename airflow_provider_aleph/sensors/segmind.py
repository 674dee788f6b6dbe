"""SegmindRequestSensor: wait for a Segmind request that was submitted elsewhere."""

from __future__ import annotations

from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any

import pendulum
from airflow.providers.common.compat.sdk import BaseSensorOperator, PokeReturnValue

from airflow_provider_aleph.access import local_roots_param
from airflow_provider_aleph.events import conclude, finish, task_failure
from airflow_provider_aleph.exceptions import InvalidParameter, SegmindError
from airflow_provider_aleph.hooks.segmind import SegmindHook
from airflow_provider_aleph.links import SegmindOutputLink, reset_output_url
from airflow_provider_aleph.storage.outbound import check_output_path
from airflow_provider_aleph.triggers.segmind import SegmindRequestTrigger, note_state

if TYPE_CHECKING:
    import os
    from collections.abc import Sequence

    from airflow.providers.common.compat.sdk import Context, ObjectStoragePath

    from airflow_provider_aleph.types import SegmindResult


class SegmindRequestSensor(BaseSensorOperator):
    """Wait for a Segmind request by id (from another task or system); return its result dict.

    Never submits anything, so every Airflow retry is safe: a deadline passed, a copy that failed or
    the API unreachable past the outage tolerance may be retried. A FAILED or expired request fails the
    task without retry. Deferrable by default; ``deferrable=False`` pokes in ``poke`` or ``reschedule``
    mode.

    :param request_id: the Segmind request id (templated).
    :param segmind_conn_id: the Airflow connection of type ``segmind`` (templated).
    :param deferrable: wait in the triggerer (True) or poke from the worker (False).
    :param poll_interval: seconds between status polls (also the poke interval).
    :param require_output_url: fail when the COMPLETED result has no output URL.
    :param output_path: where to copy the output, as for the operators (templated).
    :param local_roots: folders a local ``output_path`` may resolve under, as for the operators (not
        templated; default none).

    Asset outlets get the same event extra as the operators' (``output_path``, ``request_id``,
    ``output_url``, ``cost``).
    """

    template_fields: Sequence[str] = ("request_id", "segmind_conn_id", "output_path")
    operator_extra_links = (SegmindOutputLink(),)
    ui_color = "#d7e9f7"

    def __init__(
        self,
        *,
        request_id: str,
        segmind_conn_id: str = SegmindHook.default_conn_name,
        deferrable: bool = True,
        poll_interval: float = 10.0,
        require_output_url: bool = False,
        output_path: str | ObjectStoragePath | None = None,
        local_roots: Sequence[str | os.PathLike[str]] | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("poke_interval", poll_interval)
        super().__init__(**kwargs)
        self.output_path = output_path
        self.request_id = request_id
        self.segmind_conn_id = segmind_conn_id
        self.deferrable = deferrable
        self.poll_interval = float(poll_interval)
        self.require_output_url = require_output_url
        self.local_roots = local_roots_param(local_roots)
        self._reported: str | None = None

    @cached_property
    def hook(self) -> SegmindHook:
        """The hook for this task's connection."""
        return SegmindHook(self.segmind_conn_id)

    def execute(self, context: Context) -> Any:
        """Defer to the trigger (default) or poke until the request finishes."""
        try:
            if not isinstance(self.request_id, str) or not self.request_id.strip():
                raise InvalidParameter("request_id", f"must be a non-empty string; got {self.request_id!r}")
            check_output_path(self.output_path, local_roots=self.local_roots)
        except InvalidParameter as err:
            raise task_failure(err, retry_safe=True) from None
        reset_output_url(context["ti"])
        if self.deferrable:
            now = pendulum.now("UTC")
            self.defer(
                trigger=SegmindRequestTrigger(
                    request_id=self.request_id,
                    segmind_conn_id=self.segmind_conn_id,
                    deadline=now + timedelta(seconds=float(self.timeout)),
                    poll_interval=self.poll_interval,
                ),
                method_name="execute_complete",
            )
        return super().execute(context)

    def poke(self, context: Context) -> bool | PokeReturnValue:
        """One look at the request: not done, done with its result, or a failure."""
        try:
            state = self.hook.get_state(self.request_id)
        except SegmindError as err:
            # The sensor never submits: any Airflow retry waits on the same request.
            raise task_failure(err, retry_safe=True) from None
        finally:
            self.hook.close()
        if state.reported != self._reported:
            note_state(self.log, state)
            self._reported = state.reported
        event = conclude(state)
        if event is None:
            return False
        return PokeReturnValue(is_done=True, xcom_value=self.execute_complete(context, event.to_payload()))

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> SegmindResult:
        """Turn the final event into the result dict (copying the output when asked), or fail the task."""
        # The sensor never submits: any Airflow retry waits on the same request.
        return finish(self, context, event, require_output_url=self.require_output_url, retry_safe=True)
