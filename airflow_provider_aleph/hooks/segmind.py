"""SegmindHook: the one place that speaks HTTP to Segmind, with sync and async twins."""

from __future__ import annotations

import contextlib
import uuid
from dataclasses import replace
from typing import TYPE_CHECKING, Any, TypeVar

import httpx
from airflow.providers.common.compat.sdk import BaseHook

from airflow_provider_aleph import __version__
from airflow_provider_aleph.exceptions import (
    SegmindAuthError,
    SegmindError,
    SegmindRequestExpired,
    SegmindSubmitOutcomeUnknown,
    SegmindTransportError,
)
from airflow_provider_aleph.hooks.params import (
    ConnectionParams,
    read_connection_params,
)
from airflow_provider_aleph.protocol import (
    USER_AGENT,
    Kind,
    RequestSpec,
    RequestState,
    SegmindStatus,
    SubmitResponse,
    UploadBody,
    parse_state,
    parse_submit,
    parse_upload,
    result_spec,
    status_spec,
    submit_spec,
    upload_spec,
)
from airflow_provider_aleph.retry import RetryPolicy

if TYPE_CHECKING:
    import asyncio
    from collections.abc import Callable
    from typing import BinaryIO

    from airflow_provider_aleph.budget import RequestBudget

T = TypeVar("T")


class SegmindHook(BaseHook):
    """Talk to Segmind's v2 async API through an Airflow connection of type ``segmind``.

    The connection's password is the API key (``SEGMIND_API_KEY`` from the environment when it is
    empty), its host the API base URL; extra may set ``upload_url``, ``timeout``,
    ``max_requests_per_minute`` and ``max_consecutive_failures``.

    :param segmind_conn_id: the Airflow connection id.
    :param retry_policy: how transient failures (429, 5xx, network) are retried; when omitted, the
        default policy with the connection's ``max_consecutive_failures`` as its attempts.
    """

    conn_name_attr = "segmind_conn_id"
    default_conn_name = "segmind_default"
    conn_type = "segmind"
    hook_name = "Segmind"

    def __init__(self, segmind_conn_id: str = default_conn_name, *, retry_policy: RetryPolicy | None = None) -> None:
        super().__init__()
        self.segmind_conn_id = segmind_conn_id
        self.retry_policy = retry_policy or RetryPolicy()
        self._policy_given = retry_policy is not None
        self._params: ConnectionParams | None = None
        self._client: httpx.Client | None = None
        self._aclient: httpx.AsyncClient | None = None
        self._aclient_owned = True
        self._budget: RequestBudget | None = None
        self._gate: asyncio.Semaphore | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(segmind_conn_id={self.segmind_conn_id!r})"

    # -- connection -------------------------------------------------------------------------

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        """Connection form for Airflow 3.0-3.1 (3.2+ reads the same from provider info)."""
        from airflow_provider_aleph.get_provider_info import SEGMIND_UI_FIELD_BEHAVIOUR

        # Provider info spells the keys "hidden-fields"; the hook API spells them "hidden_fields".
        return {key.replace("-", "_"): value for key, value in SEGMIND_UI_FIELD_BEHAVIOUR.items()}

    @classmethod
    def get_connection_form_widgets(cls) -> dict[str, Any]:
        """Extra form fields for Airflow 3.0-3.1 (needs the FAB provider's Flask pieces there)."""
        from flask_appbuilder.fieldwidgets import BS3TextFieldWidget
        from flask_babel import lazy_gettext
        from wtforms import StringField

        from airflow_provider_aleph.get_provider_info import SEGMIND_CONN_FIELDS

        return {
            name: StringField(
                lazy_gettext(field["label"]), widget=BS3TextFieldWidget(), description=field["description"]
            )
            for name, field in SEGMIND_CONN_FIELDS.items()
        }

    def get_conn_params(self) -> ConnectionParams:
        """Read the connection once (blocking); later calls reuse it."""
        if self._params is None:
            conn = self.get_connection(self.segmind_conn_id)
            self._params = read_connection_params(conn, conn.extra_dejson, self.segmind_conn_id)
        return self._params

    async def aget_conn_params(self) -> ConnectionParams:
        """Read the connection once without blocking the event loop; later calls reuse it."""
        if self._params is None:
            from airflow.providers.common.compat.connection import (
                get_async_connection,
                get_async_extra_dejson,
            )

            conn = await get_async_connection(self.segmind_conn_id, hook=self)
            extra = await get_async_extra_dejson(conn)
            self._params = read_connection_params(conn, extra, self.segmind_conn_id)
        return self._params

    @staticmethod
    def _client_kwargs(params: ConnectionParams) -> dict[str, Any]:
        return {
            "timeout": httpx.Timeout(params.timeout, connect=min(params.timeout, 10.0)),
            "headers": {"User-Agent": f"{USER_AGENT}/{__version__}", "Accept": "application/json"},
            # The key travels per request, so a client may fetch third-party URLs safely.
            "follow_redirects": False,
        }

    @classmethod
    def new_async_client(cls, params: ConnectionParams, max_connections: int | None = None) -> httpx.AsyncClient:
        """A new async client for the connection ``params`` describe (the key is not in it).

        :param params: the connection's settings.
        :param max_connections: cap on open connections (httpx's default pool when None).
        """
        kwargs = cls._client_kwargs(params)
        if max_connections is not None:
            kwargs["limits"] = httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)
        return httpx.AsyncClient(**kwargs)

    def share_async(
        self,
        params: ConnectionParams,
        client: httpx.AsyncClient,
        budget: RequestBudget | None,
        gate: asyncio.Semaphore | None = None,
    ) -> None:
        """Make async calls through a client and budget owned elsewhere; :meth:`aclose` leaves them open.

        :param params: the connection's settings, already read.
        :param client: the shared async client.
        :param budget: the request budget every async attempt waits on; None for no limit.
        :param gate: bounds how many calls are in the client at once; waiting callers queue here, in
            order, instead of in the client's connection pool (whose queue costs grow with its length).
        """
        self._params = params
        self._aclient = client
        self._aclient_owned = False
        self._budget = budget
        self._gate = gate

    def get_conn(self) -> httpx.Client:
        """The hook's blocking HTTP client, created on first use."""
        if self._client is None:
            self._client = httpx.Client(**self._client_kwargs(self.get_conn_params()))
        return self._client

    async def aget_conn(self) -> httpx.AsyncClient:
        """The hook's async HTTP client, created on first use; close it with :meth:`aclose`."""
        if self._aclient is None:
            self._aclient = self.new_async_client(await self.aget_conn_params())
            self._aclient_owned = True
        return self._aclient

    def close(self) -> None:
        """Close the blocking client."""
        if self._client is not None:
            self._client.close()
            self._client = None

    async def aclose(self) -> None:
        """Close the async client, unless it is shared (see :meth:`share_async`): then only let go of it."""
        client, self._aclient = self._aclient, None
        if client is not None and self._aclient_owned:
            await client.aclose()
        self._aclient_owned = True
        self._budget = None
        self._gate = None

    # -- sending: the only difference between the twins -------------------------------------

    @staticmethod
    def _request(
        client: httpx.Client | httpx.AsyncClient, spec: RequestSpec, params: ConnectionParams
    ) -> httpx.Request:
        return client.build_request(spec.method, spec.url, headers={"x-api-key": params.api_key}, json=spec.json)

    def _transport_error(self, exc: httpx.HTTPError, spec: RequestSpec) -> SegmindError:
        never_sent = isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout)
        if spec.kind is Kind.SUBMIT and not never_sent:
            return submit_outcome_unknown(spec, f"{type(exc).__name__}", self.segmind_conn_id)
        return SegmindTransportError(
            f"Network error on {spec.describe()}: {type(exc).__name__}: {exc}",
            sent=not never_sent,
            request_id=spec.request_id,
            conn_id=self.segmind_conn_id,
        )

    def _parsed(
        self, parse: Callable[[httpx.Response, RequestSpec], T], response: httpx.Response, spec: RequestSpec
    ) -> T:
        try:
            return parse(response, spec)
        except SegmindError as err:
            err.conn_id = self.segmind_conn_id
            if spec.kind is Kind.SUBMIT and response.status_code >= 500:
                unknown = submit_outcome_unknown(spec, f"HTTP {response.status_code}", self.segmind_conn_id)
                unknown.status_code, unknown.detail = err.status_code, err.detail
                raise unknown from err
            raise

    def _policy(self, params: ConnectionParams) -> RetryPolicy:
        if self._policy_given or params.max_consecutive_failures == self.retry_policy.max_attempts:
            return self.retry_policy
        return replace(self.retry_policy, max_attempts=params.max_consecutive_failures)

    def _call(self, spec: RequestSpec, parse: Callable[[httpx.Response, RequestSpec], T]) -> T:
        client, params = self.get_conn(), self.get_conn_params()
        for attempt in self._policy(params).retrying(spec):
            with attempt:
                try:
                    response = client.send(self._request(client, spec, params))
                except httpx.HTTPError as exc:
                    raise self._transport_error(exc, spec) from None
                return self._parsed(parse, response, spec)
        raise AssertionError("unreachable: tenacity reraises the last error")

    async def _acall(self, spec: RequestSpec, parse: Callable[[httpx.Response, RequestSpec], T]) -> T:
        client, params = await self.aget_conn(), await self.aget_conn_params()
        budget = self._budget
        # With a shared budget, a 429 pauses the budget for every caller: no private wait on top.
        async for attempt in self._policy(params).aretrying(spec, shared_pause=budget is not None):
            with attempt:
                ticket = await budget.acquire() if budget is not None else 0.0
                try:
                    async with self._gate or contextlib.nullcontext():
                        response = await client.send(self._request(client, spec, params))
                except httpx.HTTPError as exc:
                    raise self._transport_error(exc, spec) from None
                if budget is not None:
                    budget.answered(ticket, response)
                return self._parsed(parse, response, spec)
        raise AssertionError("unreachable: tenacity reraises the last error")

    # -- the API ------------------------------------------------------------------------------

    def submit(self, model: str, payload: dict[str, Any]) -> SubmitResponse:
        """Create a paid job: ``POST /v2/{model}``. Retried only when nothing can have been created.

        :param model: the model slug, e.g. ``runway-gen4-aleph``.
        :param payload: the model's parameters.
        """
        return self._call(submit_spec(self.get_conn_params().base_url, model, payload), parse_submit)

    async def asubmit(self, model: str, payload: dict[str, Any]) -> SubmitResponse:
        """Async twin of :meth:`submit`."""
        params = await self.aget_conn_params()
        return await self._acall(submit_spec(params.base_url, model, payload), parse_submit)

    def get_status(self, request_id: str, status_url: str | None = None) -> RequestState:
        """Read a request's state; a FAILED request (HTTP 422) is returned, not raised.

        :param request_id: the Segmind request id.
        :param status_url: the ``status_url`` the submit returned; built from the id when omitted.
        """
        return self._call(status_spec(self.get_conn_params().base_url, request_id, status_url), parse_state)

    async def aget_status(self, request_id: str, status_url: str | None = None) -> RequestState:
        """Async twin of :meth:`get_status`."""
        params = await self.aget_conn_params()
        return await self._acall(status_spec(params.base_url, request_id, status_url), parse_state)

    def get_result(self, request_id: str, response_url: str | None = None) -> RequestState:
        """Read a request's final body, with its output URL once COMPLETED.

        :param request_id: the Segmind request id.
        :param response_url: the ``response_url`` the submit returned; built from the id when omitted.
        """
        return self._call(result_spec(self.get_conn_params().base_url, request_id, response_url), parse_state)

    async def aget_result(self, request_id: str, response_url: str | None = None) -> RequestState:
        """Async twin of :meth:`get_result`."""
        params = await self.aget_conn_params()
        return await self._acall(result_spec(params.base_url, request_id, response_url), parse_state)

    def get_state(
        self, request_id: str, status_url: str | None = None, response_url: str | None = None
    ) -> RequestState:
        """A request's status, or once it says COMPLETED its result body, which holds the output.

        :param request_id: the Segmind request id.
        :param status_url: the ``status_url`` the submit returned; built from the id when omitted.
        :param response_url: the ``response_url`` the submit returned; built from the id when omitted.
        """
        state = self.get_status(request_id, status_url)
        if state.status is SegmindStatus.COMPLETED:
            return self.get_result(request_id, response_url)
        return state

    async def aget_state(
        self, request_id: str, status_url: str | None = None, response_url: str | None = None
    ) -> RequestState:
        """Async twin of :meth:`get_state`."""
        state = await self.aget_status(request_id, status_url)
        if state.status is SegmindStatus.COMPLETED:
            return await self.aget_result(request_id, response_url)
        return state

    def upload_asset(self, source: Callable[[], BinaryIO], *, content_type: str, size: int) -> str:
        """Store a file with Segmind's files API (``POST {upload_url}/upload-asset``) and return its URL.

        The body is streamed, base64-encoded piece by piece. Uploads cost nothing, so network errors,
        429 and 5xx are retried, each attempt reading a fresh file object from ``source``.

        :param source: a callable returning a new binary file object positioned at the start.
        :param content_type: the file's media type, e.g. ``video/mp4``.
        :param size: the file's exact size in bytes.
        """
        client, params, body = self.get_conn(), self.get_conn_params(), UploadBody(content_type, size)
        spec = upload_spec(params.upload_url)
        headers = {"x-api-key": params.api_key, "Content-Type": "application/json", "Content-Length": str(body.length)}
        for attempt in self._policy(params).retrying(spec):
            with attempt, source() as stream:
                request = client.build_request("POST", spec.url, headers=headers, content=body.pieces(stream))
                try:
                    response = client.send(request)
                except httpx.HTTPError as exc:
                    raise self._transport_error(exc, spec) from None
                return self._parsed(parse_upload, response, spec)
        raise AssertionError("unreachable: tenacity reraises the last error")

    def test_connection(self) -> tuple[bool, str]:
        """Prove the API key without spending credits: ask for the status of a random request id.

        404 means the key was accepted (the id is unknown); 401/403 means it was not.
        """
        probe = f"airflow-connection-test-{uuid.uuid4()}"
        try:
            self.get_status(probe)
        except SegmindRequestExpired:
            return (
                True,
                f"Connection works: Segmind at {self.get_conn_params().base_url} accepted the API key",
            )
        except SegmindAuthError as err:
            return False, f"Segmind rejected the API key (HTTP {err.status_code})"
        except SegmindError as err:
            return False, str(err)
        finally:
            self.close()
        return False, "Segmind answered a status for a random request id; is the host a Segmind API?"


def submit_outcome_unknown(spec: RequestSpec, cause: str, conn_id: str) -> SegmindSubmitOutcomeUnknown:
    """The error for a submit whose answer was lost after it was sent."""
    return SegmindSubmitOutcomeUnknown(
        f"The outcome of {spec.describe()} is unknown ({cause} after the request was sent): Segmind may "
        "have created and billed a job. It was not resubmitted, to avoid paying twice. Check the "
        "Segmind dashboard's request history; clear the task to submit again if no job exists",
        conn_id=conn_id,
    )
