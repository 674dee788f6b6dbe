"""SegmindSubmitOperator: submit a job to any Segmind v2 model and wait for it without a worker slot."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any

import pendulum
from airflow.providers.common.compat.sdk import BaseOperator

from airflow_provider_aleph.access import allowed_hosts_param, host_of, local_roots_param
from airflow_provider_aleph.events import add_previews, conclude, finish, task_failure, wait_in_worker
from airflow_provider_aleph.exceptions import InvalidParameter, SegmindError, nothing_created
from airflow_provider_aleph.hooks.segmind import SegmindHook
from airflow_provider_aleph.inputs import (
    FileInput,
    InputPolicy,
    InspectedFiles,
    deliver_files,
    inspect_files,
    lineage_inputs,
    require_file,
    require_input_mode,
)
from airflow_provider_aleph.lineage import openlineage_facets
from airflow_provider_aleph.links import OUTPUT_URL_XCOM_KEY, SegmindOutputLink, reset_output_url
from airflow_provider_aleph.metrics import job_submitted
from airflow_provider_aleph.operators.params import (
    accepted,
    check_literal,
    is_empty,
    output_path_needs_waiting,
    payload_dict,
    presign_seconds,
    require_fit,
    require_media_options,
    require_model,
    require_preview,
    waiting_params,
)
from airflow_provider_aleph.reattach import (
    Resume,
    StoredRequest,
    fingerprint,
    intent_before_submit,
    recover,
    remember,
    state_store,
    withdraw_or_warn,
)
from airflow_provider_aleph.storage.inbound import DEFAULT_PRESIGN_SECONDS
from airflow_provider_aleph.storage.outbound import check_output_path, probe_output_path
from airflow_provider_aleph.storage.record import Provenance, existing_output, fingerprint_of, require_if_output_exists
from airflow_provider_aleph.triggers.segmind import SegmindRequestTrigger

if TYPE_CHECKING:
    import os
    from collections.abc import Sequence

    from airflow.providers.common.compat.sdk import Context, ObjectStoragePath

    from airflow_provider_aleph.protocol import SubmitResponse
    from airflow_provider_aleph.reattach import Recovery
    from airflow_provider_aleph.types import SegmindResult, StateStore

#: The XCom key holding, across a deferral, what made the job (model, fingerprint, submit time; no secret).
PROVENANCE_XCOM_KEY = "segmind_provenance"


class SegmindSubmitOperator(BaseOperator):
    """Submit one job to a Segmind v2 model, wait for it (deferred by default), return its result.

    XCom ``request_id`` is pushed as soon as Segmind accepts the job. The return value is a dict
    with ``request_id``, ``status``, ``output_url``, ``output_path`` (None when no copy is made),
    ``metrics``, the raw ``output`` and ``cost`` (see :class:`~airflow_provider_aleph.types.SegmindResult`).

    On Airflow 3.3+ the request is kept in the task's ``task_state_store``: a later try of the same
    task instance waits on it again, or reuses its result, instead of paying for a new job.

    A subclass for a particular model declares its file fields in :attr:`file_inputs`; checks,
    presigning or uploading, size limits and lineage follow from the declaration.

    :param model: the model slug, e.g. ``runway-gen4-aleph`` (templated).
    :param payload: the model's parameters as a dict (templated). Top-level values that are object
        storage URIs or ``ObjectStoragePath`` objects are presigned or uploaded (see ``input_mode``).
    :param segmind_conn_id: the Airflow connection of type ``segmind`` (templated).
    :param deferrable: wait in the triggerer (True, the default whatever Airflow's
        ``[operators] default_deferrable`` says) or in the worker (False).
    :param wait_for_completion: wait for the job (default); False returns as soon as Segmind accepts it,
        with ``status`` ``QUEUED``, so that a :class:`~airflow_provider_aleph.sensors.segmind.SegmindRequestSensor`
        downstream waits for it (and copies its output: ``output_path`` is refused here then).
    :param poll_interval: the shortest time between two status polls of the job, in seconds.
    :param max_poll_interval: the longest time between two status polls while the connection's request
        budget allows, in seconds (default 60).
    :param expected_duration: how long a job of this model typically takes, in seconds: polls skip the
        early part of it and then follow the chance that the job is done (default: none, learned from
        the jobs this connection sees).
    :param timeout: how long to wait for the job after submitting it (seconds or timedelta).
    :param input_mode: how object storage inputs reach Segmind: ``auto`` (a presigned URL when the
        filesystem can sign one, else an upload to Segmind's files API), ``presign`` or ``upload``.
    :param output_path: where to copy the output (URI string or ``ObjectStoragePath``; a path ending
        in ``/`` is a folder), right after the job completes (templated). Before anything is submitted,
        the worker proves it can write there (bucket exists, folder can be made, a marker file can be
        written). A record ``<output>.segmind.json`` is written beside the copy.
    :param if_output_exists: what to do when ``output_path`` names a file that already exists (templated):
        ``reuse`` (default) returns its recorded result without submitting when its record says it was
        made from the same model, parameters and input content, and submits to replace it otherwise;
        ``overwrite`` always submits; ``fail`` fails before submitting. A folder ``output_path`` always
        submits: its file name is known only after the job.
    :param local_roots: folders that local inputs (``file://``, local ``ObjectStoragePath``) and a local
        ``output_path`` may resolve under, symlinks and ``..`` resolved (not templated: a run's params
        cannot widen it). Default none: local files are refused.
    :param presign_expiration: how long a presigned input URL stays valid (seconds or timedelta; default
        6 hours, at most 7 days; not templated). Segmind fetches the input when the job starts, after
        any time in its queue: a URL that expires first fails the job.
    :param allowed_hosts: private or loopback hosts (``host`` or ``host:port``) that http(s) inputs may
        name (not templated). The connection's own API and files API hosts are always allowed.
    :param fit_input: in the worker, before anything is spent, cut a video longer than its field's seconds
        (Aleph: 5) or over its size limit to its first ``fit_seconds``, re-encoded as H.264 MP4 under the
        limit with a margin, and upload that; one within both is sent unchanged (default False).
    :param fit_seconds: seconds kept when fitting, 0.5 to 60 (default: the field's); needs ``fit_input``.
    :param preview: write a poster ``<output stem>.poster.jpg`` and a contact sheet ``<output stem>.sheet.jpg``
        beside the copied output, named in the result as ``preview_path`` and ``contact_sheet_path``
        (default False; needs ``output_path``). ``fit_input`` and ``preview`` need the ``[media]`` extra.

    Each ``Asset`` in the task's ``outlets`` gets, with every copied output, an asset event whose
    extra carries ``output_path``, ``request_id``, ``output_url`` and ``cost`` (and the preview paths). An
    output reused under ``if_output_exists="reuse"`` gets none: nothing new was made.
    """

    template_fields: Sequence[str] = (
        "model",
        "payload",
        "segmind_conn_id",
        "input_mode",
        "output_path",
        "if_output_exists",
    )
    template_fields_renderers = {"payload": "json"}
    operator_extra_links = (SegmindOutputLink(),)
    ui_color = "#d7e9f7"

    #: Whether a COMPLETED result without an output URL is a failure (True for video models).
    require_output_url: bool = False
    #: The payload fields that name files the model reads.
    file_inputs: tuple[FileInput, ...] = ()
    #: Whether undeclared top-level object storage values are resolved too (a model we know nothing of).
    resolve_every_storage_value: bool = True

    def __init__(
        self,
        *,
        model: str,
        payload: dict[str, Any] | None = None,
        segmind_conn_id: str = SegmindHook.default_conn_name,
        deferrable: bool = True,
        wait_for_completion: bool = True,
        poll_interval: float = 10.0,
        max_poll_interval: float | None = None,
        expected_duration: float | None = None,
        timeout: float | timedelta = timedelta(hours=1),
        input_mode: str = "auto",
        output_path: str | ObjectStoragePath | None = None,
        local_roots: Sequence[str | os.PathLike[str]] | None = None,
        allowed_hosts: Sequence[str] | None = None,
        if_output_exists: str = "reuse",
        presign_expiration: float | timedelta = timedelta(seconds=DEFAULT_PRESIGN_SECONDS),
        fit_input: bool = False,
        fit_seconds: float | None = None,
        preview: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.model = model
        self.payload = payload if payload is not None else {}
        self.segmind_conn_id = segmind_conn_id
        self.deferrable = deferrable
        self.wait_for_completion = wait_for_completion
        if not wait_for_completion and not is_empty(output_path) and "{{" not in str(output_path):
            raise output_path_needs_waiting()  # a literal at parse time, a template once rendered
        self.poll_interval, self.max_poll_interval, self.expected_duration, self.timeout = waiting_params(
            poll_interval, max_poll_interval, expected_duration, timeout
        )
        self.input_mode = input_mode
        self.output_path = output_path
        self.local_roots = local_roots_param(local_roots)
        self.allowed_hosts = allowed_hosts_param(allowed_hosts)
        check_literal(input_mode, require_input_mode)
        self.if_output_exists = if_output_exists
        self.presign_expiration = presign_seconds(presign_expiration)
        check_literal(if_output_exists, require_if_output_exists)
        self.preview = require_preview(preview, output_path)
        self.fit_input, self.fit_seconds = require_fit(fit_input, fit_seconds, self.file_inputs)

    @cached_property
    def hook(self) -> SegmindHook:
        """The hook for this task's connection."""
        return SegmindHook(self.segmind_conn_id)

    # -- what to submit: subclasses build and check their own parameters ---------------------------

    def build_payload(self) -> dict[str, Any]:
        """The validated body to submit; raises InvalidParameter before anything is spent."""
        require_model(self.model)
        return self.check_files(payload_dict(self.payload))

    def check_files(self, payload: dict[str, Any]) -> dict[str, Any]:
        """Check the declared file fields of ``payload``; an optional one that is None is left out."""
        checked = dict(payload)
        for spec in self.file_inputs:
            value = require_file(spec, checked.get(spec.name))
            if value is None:
                checked.pop(spec.name, None)
            else:
                checked[spec.name] = value
        return checked

    def given_inputs(self) -> Any:
        """The parameters as the user gave them (for lineage); the payload here, the fields in a subclass."""
        return self.payload

    def input_policy(self) -> InputPolicy:
        """How inputs reach Segmind and what the worker may touch for them (``input_mode`` checked here)."""
        params = self.hook.get_conn_params()
        # The connection's own hosts, any port: an emulator (or a private gateway) its owner set up.
        own = (host_of(params.base_url), host_of(params.upload_url))
        mode = require_input_mode(self.input_mode)
        return InputPolicy(mode, self.local_roots, self.allowed_hosts + own, self.fit_input, self.fit_seconds)

    def inspect_inputs(self, payload: dict[str, Any]) -> InspectedFiles:
        """Check every file input from its metadata, noting its identity; nothing is uploaded yet."""
        policy = self.input_policy()
        return inspect_files(
            payload, self.file_inputs, policy=policy, every_storage_value=self.resolve_every_storage_value
        )

    def resolve_inputs(self, payload: dict[str, Any]) -> dict[str, Any]:
        """Check every file input and turn object storage into URLs Segmind can fetch."""
        return self.deliver_inputs(self.inspect_inputs(payload))

    def deliver_inputs(self, inspected: InspectedFiles) -> dict[str, Any]:
        """Presign or upload the checked object storage inputs, as ``input_mode`` says."""
        return deliver_files(
            inspected,
            mode=require_input_mode(self.input_mode),
            hook=self.hook,
            log=self.log,
            expiration=self.presign_expiration,
        )

    # -- running --------------------------------------------------------------------------------

    def execute(self, context: Context) -> SegmindResult:
        """Validate, reattach, reuse an existing output or submit, push ``request_id``, then defer (or wait
        here) until the job ends."""
        reset_output_url(context["ti"])
        try:
            payload = self.build_payload()
            if not self.wait_for_completion and not is_empty(self.output_path):
                raise output_path_needs_waiting()
            check_output_path(self.output_path, local_roots=self.local_roots)
            if_exists = require_if_output_exists(self.if_output_exists)
            require_media_options(require_preview(self.preview, self.output_path), self.fit_input)
        except InvalidParameter as err:
            raise task_failure(err, retry_safe=True, note="nothing was submitted") from None
        digest = fingerprint(self.model, payload)
        store = state_store(context, self.log)
        if store is not None:
            recovery = self._recover(store, digest, getattr(context["ti"], "max_tries", None))
            if recovery is not None and recovery.action is not Resume.RESUBMIT:
                return self._resume(context, recovery)
        try:
            inspected = self.inspect_inputs(payload)
            made_of = fingerprint_of(self.model, payload, inspected.identities)
            reused = existing_output(self.output_path, mode=if_exists, fingerprint=made_of, log=self.log)
            if reused is None:
                probe_output_path(self.output_path, log=self.log)
                payload = self.deliver_inputs(inspected)
        except (InvalidParameter, SegmindError) as err:
            raise task_failure(err, retry_safe=True, note="nothing was submitted") from None
        if reused is not None:
            return self._reuse(context, reused)
        if store is not None:
            intent_before_submit(store, digest, datetime.now(UTC).isoformat())
        submitted = self._submit(payload, store)
        now = datetime.now(UTC)
        job_submitted(self.model)
        if store is not None:
            remember(store, StoredRequest.from_submit(submitted, digest, now.isoformat(), made_of))
        context["ti"].xcom_push(key="request_id", value=submitted.request_id)
        self.log.info("Submitted to Segmind model %s: request_id=%s, status QUEUED", self.model, submitted.request_id)
        if not self.wait_for_completion:
            return accepted(submitted.request_id, "QUEUED")
        return self._wait(context, submitted, now, Provenance(self.model, made_of, now.isoformat()))

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> SegmindResult:
        """Resume after the trigger fired: check its event, copy the output, return the result or fail."""
        ti = context["ti"]
        # This operator object was rebuilt for the resume: what made the job comes back from XCom.
        made = ti.xcom_pull(task_ids=ti.task_id, key=PROVENANCE_XCOM_KEY, map_indexes=ti.map_index)
        return self._finish(context, event, Provenance.from_json(made))

    def _submit(self, payload: dict[str, Any], store: StateStore | None = None) -> SubmitResponse:
        try:
            return self.hook.submit(self.model, payload)
        except SegmindError as err:
            if store is not None and nothing_created(err):
                withdraw_or_warn(store, self.log)
            # A retryable error here created nothing (the hook retries a POST only then, and raises the
            # never-retryable "outcome unknown" otherwise): an Airflow retry cannot pay twice.
            raise task_failure(err, retry_safe=True) from None
        finally:
            self.hook.close()

    def _recover(self, store: StateStore, digest: str, max_tries: int | None) -> Recovery | None:
        try:
            return recover(store, self.hook, digest, self.log, max_tries=max_tries)
        except SegmindError as err:
            raise task_failure(err, retry_safe=True) from None
        finally:
            self.hook.close()

    def _resume(self, context: Context, recovery: Recovery) -> SegmindResult:
        stored = recovery.stored
        context["ti"].xcom_push(key="request_id", value=stored.request_id)
        provenance = Provenance(self.model, stored.output_fingerprint, stored.submitted_at)
        if recovery.action is Resume.DONE and recovery.state is not None:
            # It ended at some point before this try: how long it took is not known here.
            event = conclude(recovery.state)
            return self._finish(context, event.to_payload() if event else None, provenance)
        if not self.wait_for_completion:
            return accepted(stored.request_id, recovery.state.reported if recovery.state else "QUEUED")
        submitted_at = datetime.fromisoformat(stored.submitted_at) if stored.submitted_at else None
        return self._wait(context, stored, submitted_at, provenance)

    def _reuse(self, context: Context, result: SegmindResult) -> SegmindResult:
        # Nothing new was made: only the recorded result and its request id, and no asset event (Airflow
        # emits one per outlet of a successful task, read from this object's outlets when it ends).
        self.outlets = []
        context["ti"].xcom_push(key="request_id", value=result["request_id"])
        context["ti"].xcom_push(key=OUTPUT_URL_XCOM_KEY, value=result["output_url"])
        self.delivered_path = result["output_path"]
        if self.preview and result["output_path"]:
            add_previews(result, keep_existing=True, retry_safe=True, log=self.log)
        return result

    def _wait(
        self,
        context: Context,
        request: SubmitResponse | StoredRequest,
        submitted_at: datetime | None,
        provenance: Provenance,
    ) -> SegmindResult:
        trigger = SegmindRequestTrigger(
            request_id=request.request_id,
            segmind_conn_id=self.segmind_conn_id,
            deadline=pendulum.now("UTC") + self.timeout,
            poll_interval=self.poll_interval,
            status_url=request.status_url,
            response_url=request.response_url,
            submitted_at=submitted_at,
            model=self.model,
            expected_duration=self.expected_duration,
            max_poll_interval=self.max_poll_interval,
        )
        if self.deferrable:
            # No defer timeout: Airflow would skip execute_complete when it fires. The trigger
            # emits its own timeout event against the same absolute deadline instead.
            # The worker that resumes rebuilds this operator: what the output record needs is kept in XCom
            # (dag.test() drops a deferral's own kwargs once the trigger fires).
            context["ti"].xcom_push(key=PROVENANCE_XCOM_KEY, value=provenance.to_json())
            self.defer(trigger=trigger, method_name="execute_complete")
        self.log.info("Waiting in the worker (deferrable=False), polling at most every %.1fs", self.poll_interval)
        return self._finish(context, wait_in_worker(trigger), provenance)

    def _finish(self, context: Context, payload: Any, provenance: Provenance) -> SegmindResult:
        # After a submit, a retry pays again unless the state store lets it reattach.
        retry_safe = context.get("task_state_store") is not None
        result = finish(
            self,
            context,
            payload,
            require_output_url=self.require_output_url,
            retry_safe=retry_safe,
            provenance=provenance,
        )
        self.delivered_path = result["output_path"]
        return result

    # -- lineage ----------------------------------------------------------------------------------
    #: Where the last successful run of this operator object copied its output (for lineage).
    delivered_path: str | None = None

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        """OpenLineage: the input files and the copied output (called by the OpenLineage provider)."""
        every = self.resolve_every_storage_value
        inputs = lineage_inputs(self.given_inputs(), self.file_inputs, every_file_value=every)
        return openlineage_facets(inputs, [self.delivered_path] if self.delivered_path else [])
