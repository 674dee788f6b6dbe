"""SegmindHook: the one place that speaks HTTP to Segmind, with sync and async twins."""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from dataclasses import replace
from typing import TYPE_CHECKING, Any, TypeVar

import httpx
from airflow.providers.common.compat.sdk import BaseHook

from airflow_provider_aleph.exceptions import (
    SegmindAuthError,
    SegmindError,
    SegmindSubmitOutcomeUnknown,
)
from airflow_provider_aleph.hooks.connection import (
    REREAD_SECONDS,
    ConnectionParams,
    form_widgets,
    judge_key_probe,
    read_connection_params,
    ui_field_behaviour,
)
from airflow_provider_aleph.hooks.transport import client_kwargs, transport_error
from airflow_provider_aleph.protocol import (
    Kind,
    RequestSpec,
    RequestState,
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
from airflow_provider_aleph.states import Meaning

if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import BinaryIO

    from airflow_provider_aleph.shared import AsyncChannel

T = TypeVar("T")
log = logging.getLogger(__name__)


class SegmindHook(BaseHook):
    """Talk to Segmind's v2 async API through an Airflow connection of type ``segmind``.

    The connection's password is the API key (``SEGMIND_API_KEY`` from the environment when it is
    empty), its host the API base URL; its extras are in :mod:`airflow_provider_aleph.hooks.connection`.

    :param segmind_conn_id: the Airflow connection id.
    :param retry_policy: how transient failures (429, 5xx, network) are retried; when omitted, the
        default policy with the connection's ``max_consecutive_failures`` and ``outage_tolerance``.
    :param channel: make async calls through a client, budget and settings owned elsewhere (see
        :class:`~airflow_provider_aleph.shared.AsyncChannel`); :meth:`aclose` then leaves them open.
    """

    conn_name_attr = "segmind_conn_id"
    default_conn_name = "segmind_default"
    conn_type = "segmind"
    hook_name = "Segmind"

    def __init__(
        self,
        segmind_conn_id: str = default_conn_name,
        *,
        retry_policy: RetryPolicy | None = None,
        channel: AsyncChannel | None = None,
    ) -> None:
        super().__init__()
        self.segmind_conn_id = segmind_conn_id
        self.retry_policy = retry_policy or RetryPolicy()
        self._policy_given = retry_policy is not None
        self._channel = channel
        self._params: ConnectionParams | None = None
        self._read_at = 0.0
        self._client: httpx.Client | None = None
        self._aclient: httpx.AsyncClient | None = channel.client if channel else None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(segmind_conn_id={self.segmind_conn_id!r})"

    # -- connection -------------------------------------------------------------------------

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        """Connection form for Airflow 3.0-3.1 (3.2+ reads the same from provider info)."""
        return ui_field_behaviour()

    @classmethod
    def get_connection_form_widgets(cls) -> dict[str, Any]:
        """Extra form fields for Airflow 3.0-3.1 (needs the FAB provider's Flask pieces there)."""
        return form_widgets()

    def get_conn_params(self) -> ConnectionParams:
        """The connection's settings (blocking), read again when older than :data:`REREAD_SECONDS`."""
        if self._channel is not None:
            return self._channel.params
        if self._params is None or time.monotonic() - self._read_at >= REREAD_SECONDS:
            conn = self.get_connection(self.segmind_conn_id)
            self._params = read_connection_params(conn, conn.extra_dejson, self.segmind_conn_id)
            self._read_at = time.monotonic()
        return self._params

    async def aget_conn_params(self) -> ConnectionParams:
        """The connection's settings, read without blocking the event loop (from the channel, if any)."""
        if self._channel is not None:
            return await self._channel.current()
        if self._params is None or time.monotonic() - self._read_at >= REREAD_SECONDS:
            from airflow.providers.common.compat.connection import get_async_connection, get_async_extra_dejson

            conn = await get_async_connection(self.segmind_conn_id, hook=self)
            extra = await get_async_extra_dejson(conn)
            self._params = read_connection_params(conn, extra, self.segmind_conn_id)
            self._read_at = time.monotonic()
        return self._params

    def _key_rotated(self, rejected_key: str) -> bool:
        """After the API rejected ``rejected_key``: read the connection again; whether its key changed."""
        self._params = None
        try:
            return self.get_conn_params().api_key != rejected_key
        except SegmindError:
            return False

    async def _akey_rotated(self, rejected_key: str) -> bool:
        """Async twin of :meth:`_key_rotated` (through the channel, once for all its callers)."""
        if self._channel is not None:
            return await self._channel.after_rejection(rejected_key)
        self._params = None
        try:
            return (await self.aget_conn_params()).api_key != rejected_key
        except SegmindError:
            return False

    @staticmethod
    def new_async_client(params: ConnectionParams, max_connections: int | None = None) -> httpx.AsyncClient:
        """A new async client for the connection ``params`` describe (the key is not in it).

        :param params: the connection's settings.
        :param max_connections: cap on open connections (httpx's default pool when None).
        """
        return httpx.AsyncClient(**client_kwargs(params, max_connections))

    def get_conn(self) -> httpx.Client:
        """The hook's blocking HTTP client, created on first use."""
        if self._client is None:
            self._client = httpx.Client(**client_kwargs(self.get_conn_params()))
        return self._client

    async def aget_conn(self) -> httpx.AsyncClient:
        """The hook's async HTTP client, created on first use; close it with :meth:`aclose`."""
        if self._aclient is None:
            self._aclient = self.new_async_client(await self.aget_conn_params())
        return self._aclient

    def close(self) -> None:
        """Close the blocking client."""
        if self._client is not None:
            self._client.close()
            self._client = None

    async def aclose(self) -> None:
        """Close the async client, unless it came with a ``channel``: that one stays open for its owner."""
        if self._channel is not None:
            return
        client, self._aclient = self._aclient, None
        if client is not None:
            await client.aclose()

    # -- sending: the only difference between the twins -------------------------------------

    @staticmethod
    def _request(
        client: httpx.Client | httpx.AsyncClient, spec: RequestSpec, params: ConnectionParams
    ) -> httpx.Request:
        return client.build_request(spec.method, spec.url, headers={"x-api-key": params.api_key}, json=spec.json)

    def _parsed(
        self, parse: Callable[[httpx.Response, RequestSpec], T], response: httpx.Response, spec: RequestSpec
    ) -> T:
        try:
            return parse(response, spec)
        except SegmindError as err:
            err.conn_id = self.segmind_conn_id
            if spec.kind is Kind.SUBMIT and response.status_code >= 500:
                unknown = SegmindSubmitOutcomeUnknown.after(
                    spec.describe(), f"HTTP {response.status_code}", self.segmind_conn_id
                )
                unknown.status_code, unknown.detail = err.status_code, err.detail
                raise unknown from err
            raise

    def _policy(self, params: ConnectionParams) -> RetryPolicy:
        if self._policy_given:
            return self.retry_policy
        return replace(
            self.retry_policy,
            max_attempts=params.max_consecutive_failures,
            outage_tolerance=params.outage_tolerance,
        )

    def _call(self, spec: RequestSpec, parse: Callable[[httpx.Response, RequestSpec], T]) -> T:
        key = self.get_conn_params().api_key
        try:
            return self._attempts(spec, parse)
        except SegmindAuthError:
            # A rotated key: the connection may already hold the new one. Fail only if it does not.
            if not self._key_rotated(key):
                raise
            return self._attempts(spec, parse)

    def _attempts(self, spec: RequestSpec, parse: Callable[[httpx.Response, RequestSpec], T]) -> T:
        client = self.get_conn()
        for attempt in self._policy(self.get_conn_params()).retrying(spec):
            with attempt:
                params = self.get_conn_params()
                try:
                    response = client.send(self._request(client, spec, params))
                except httpx.HTTPError as exc:
                    raise transport_error(exc, spec, self.segmind_conn_id) from None
                return self._parsed(parse, response, spec)
        raise AssertionError("unreachable: the policy returns or raises")

    async def _acall(
        self, spec: RequestSpec, parse: Callable[[httpx.Response, RequestSpec], T], ticket: float | None = None
    ) -> T:
        key = (await self.aget_conn_params()).api_key
        try:
            return await self._aattempts(spec, parse, ticket)
        except SegmindAuthError:
            if not await self._akey_rotated(key):
                raise
            return await self._aattempts(spec, parse)

    async def _aattempts(
        self, spec: RequestSpec, parse: Callable[[httpx.Response, RequestSpec], T], ticket: float | None = None
    ) -> T:
        """Try ``spec`` under the retry policy; each attempt takes a slot of the budget, except that the
        first uses ``ticket`` when given (a slot the poll scheduler already took for it)."""
        client = await self.aget_conn()
        budget, gate = (self._channel.budget, self._channel.gate) if self._channel else (None, None)
        prepaid = ticket
        # With a shared budget, a 429 pauses the budget for every caller: no private wait on top.
        async for attempt in self._policy(await self.aget_conn_params()).aretrying(
            spec, shared_pause=budget is not None
        ):
            with attempt:
                # Each attempt takes the settings as they are now: a re-read during an outage applies.
                params = await self.aget_conn_params()
                slot: float
                if prepaid is not None:
                    slot, prepaid = prepaid, None
                else:
                    slot = await budget.acquire() if budget is not None else 0.0
                try:
                    async with gate or contextlib.nullcontext():
                        response = await client.send(self._request(client, spec, params))
                except httpx.HTTPError as exc:
                    raise transport_error(exc, spec, self.segmind_conn_id) from None
                if budget is not None:
                    budget.answered(slot, response)
                return self._parsed(parse, response, spec)
        raise AssertionError("unreachable: the policy returns or raises")

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

    async def aget_status(
        self, request_id: str, status_url: str | None = None, *, ticket: float | None = None
    ) -> RequestState:
        """Async twin of :meth:`get_status`.

        :param ticket: a slot of the shared request budget already taken for this call (the poll
            scheduler takes it when it picks the request); None to queue for one.
        """
        params = await self.aget_conn_params()
        return await self._acall(status_spec(params.base_url, request_id, status_url), parse_state, ticket)

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
        """A request's status, or once it says it succeeded (COMPLETED) its result body, which holds the output.

        :param request_id: the Segmind request id.
        :param status_url: the ``status_url`` the submit returned; built from the id when omitted.
        :param response_url: the ``response_url`` the submit returned; built from the id when omitted.
        """
        state = self.get_status(request_id, status_url)
        if state.status.rule.meaning is Meaning.SUCCEEDED:
            return self.get_result(request_id, response_url)
        return state

    async def aget_state(
        self,
        request_id: str,
        status_url: str | None = None,
        response_url: str | None = None,
        *,
        ticket: float | None = None,
    ) -> RequestState:
        """Async twin of :meth:`get_state`; ``ticket`` is for the status call, as in :meth:`aget_status`."""
        state = await self.aget_status(request_id, status_url, ticket=ticket)
        if state.status.rule.meaning is Meaning.SUCCEEDED:
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
                    raise transport_error(exc, spec, self.segmind_conn_id) from None
                return self._parsed(parse_upload, response, spec)
        raise AssertionError("unreachable: tenacity reraises the last error")

    def test_connection(self) -> tuple[bool, str]:
        """Check the API key without spending credits: the status of a random, well-formed request id,
        read as :func:`~airflow_provider_aleph.hooks.connection.judge_key_probe` says (never "works"
        unless a wrong key was seen refused)."""

        def send(key: str) -> httpx.Response:
            try:
                return client.send(client.build_request(spec.method, spec.url, headers={"x-api-key": key}))
            except httpx.HTTPError as exc:
                raise transport_error(exc, spec, self.segmind_conn_id) from None

        try:
            params, client = self.get_conn_params(), self.get_conn()
            spec = status_spec(params.base_url, str(uuid.uuid4()))
            return judge_key_probe(send, spec, params)
        except SegmindError as err:
            return False, str(err)
        finally:
            self.close()
