"""SegmindSubmitOperator: submit a job to any Segmind v2 model and wait for it without a worker slot."""

from __future__ import annotations

import contextlib
import json
import re
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import AirflowFailException, BaseOperator

from airflow_provider_aleph.exceptions import SegmindError
from airflow_provider_aleph.hooks.segmind import SegmindHook
from airflow_provider_aleph.inputs import InvalidParameter
from airflow_provider_aleph.links import SegmindOutputLink, reset_output_url
from airflow_provider_aleph.results import airflow_error, result_from_event, wait_in_worker
from airflow_provider_aleph.triggers.segmind import SegmindRequestTrigger

if TYPE_CHECKING:
    from collections.abc import Sequence

    from airflow.providers.common.compat.sdk import Context

    from airflow_provider_aleph.protocol import SubmitResponse

MODEL_SLUG = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class SegmindSubmitOperator(BaseOperator):
    """Submit one job to a Segmind v2 model, wait for it (deferred by default), return its result.

    XCom ``request_id`` is pushed as soon as Segmind accepts the job. The return value is a dict
    with ``request_id``, ``status``, ``output_url``, ``output_path`` (None: no copy is made),
    ``metrics`` and the raw ``output``.

    :param model: the model slug, e.g. ``runway-gen4-aleph`` (templated).
    :param payload: the model's parameters as a dict (templated).
    :param segmind_conn_id: the Airflow connection of type ``segmind``.
    :param deferrable: wait in the triggerer (True) or in the worker (False).
    :param poll_interval: seconds between status polls.
    :param timeout: how long to wait for the job after submitting it (seconds or timedelta).
    """

    template_fields: Sequence[str] = ("model", "payload")
    template_fields_renderers = {"payload": "json"}
    operator_extra_links = (SegmindOutputLink(),)
    ui_color = "#d7e9f7"

    #: Whether a COMPLETED result without an output URL is a failure (True for video models).
    require_output_url: bool = False

    def __init__(
        self,
        *,
        model: str,
        payload: dict[str, Any] | None = None,
        segmind_conn_id: str = SegmindHook.default_conn_name,
        deferrable: bool = True,
        poll_interval: float = 10.0,
        timeout: float | timedelta = timedelta(hours=1),
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.model = model
        self.payload = payload if payload is not None else {}
        self.segmind_conn_id = segmind_conn_id
        self.deferrable = deferrable
        self.poll_interval = float(poll_interval)
        self.timeout = timeout if isinstance(timeout, timedelta) else timedelta(seconds=float(timeout))
        if self.poll_interval <= 0:
            raise ValueError(f"poll_interval must be a positive number of seconds, got {poll_interval!r}")
        if self.timeout.total_seconds() <= 0:
            raise ValueError(f"timeout must be positive, got {timeout!r}")

    @cached_property
    def hook(self) -> SegmindHook:
        """The hook for this task's connection."""
        return SegmindHook(self.segmind_conn_id)

    # -- what to submit: subclasses validate their own parameters ------------------------------

    def build_payload(self) -> dict[str, Any]:
        """The validated body to submit; raises InvalidParameter before anything is spent."""
        if not isinstance(self.model, str) or not MODEL_SLUG.match(self.model):
            raise InvalidParameter(
                "model", f"must be a Segmind model slug such as 'runway-gen4-aleph'; got {self.model!r}"
            )
        payload: Any = self.payload
        if isinstance(payload, str):
            with contextlib.suppress(ValueError):
                payload = json.loads(payload)
        if not isinstance(payload, dict):
            raise InvalidParameter("payload", f"must be a dict of the model's parameters; got {type(payload).__name__}")
        return payload

    def check_inputs(self, payload: dict[str, Any]) -> None:
        """Checks that need the network (input sizes); the generic operator has none."""

    # -- running --------------------------------------------------------------------------------

    def execute(self, context: Context) -> dict[str, Any]:
        """Validate, submit, push ``request_id``, then defer (or wait here) until the job ends."""
        reset_output_url(context["ti"])
        try:
            payload = self.build_payload()
            self.check_inputs(payload)
        except InvalidParameter as err:
            raise AirflowFailException(f"{err} (nothing was submitted)") from None
        submitted = self._submit(payload)
        context["ti"].xcom_push(key="request_id", value=submitted.request_id)
        self.log.info("Submitted to Segmind model %s: request_id=%s, status QUEUED", self.model, submitted.request_id)
        now = datetime.now(UTC)
        trigger = SegmindRequestTrigger(
            request_id=submitted.request_id,
            segmind_conn_id=self.segmind_conn_id,
            deadline=now + self.timeout,
            poll_interval=self.poll_interval,
            status_url=submitted.status_url,
            response_url=submitted.response_url,
            submitted_at=now,
        )
        if self.deferrable:
            # No defer timeout: Airflow would skip execute_complete when it fires. The trigger
            # emits its own timeout event against the same absolute deadline instead.
            self.defer(trigger=trigger, method_name="execute_complete")
        self.log.info("Waiting in the worker (deferrable=False), polling every %.1fs", self.poll_interval)
        return self._finish(context, wait_in_worker(trigger))

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> dict[str, Any]:
        """Resume after the trigger fired: check its event, then return the result or fail."""
        return self._finish(context, event)

    def _submit(self, payload: dict[str, Any]) -> SubmitResponse:
        try:
            return self.hook.submit(self.model, payload)
        except SegmindError as err:
            raise airflow_error(err) from None
        finally:
            self.hook.close()

    def _finish(self, context: Context, payload: Any) -> dict[str, Any]:
        return result_from_event(
            context, payload, conn_id=self.segmind_conn_id, require_output_url=self.require_output_url, log=self.log
        )
