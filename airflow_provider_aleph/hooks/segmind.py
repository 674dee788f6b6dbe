"""SegmindHook: the one place that speaks HTTP to Segmind, with sync and async twins."""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import httpx
from airflow.providers.common.compat.sdk import BaseHook, mask_secret

from airflow_provider_aleph import __version__
from airflow_provider_aleph.exceptions import (
    SegmindAuthError,
    SegmindConfigError,
    SegmindError,
    SegmindRequestExpired,
    SegmindSubmitOutcomeUnknown,
    SegmindTransportError,
)
from airflow_provider_aleph.protocol import (
    DEFAULT_BASE_URL,
    DEFAULT_UPLOAD_URL,
    USER_AGENT,
    Kind,
    RequestSpec,
    RequestState,
    SubmitResponse,
    normalize_base_url,
    parse_state,
    parse_submit,
    result_spec,
    status_spec,
    submit_spec,
)
from airflow_provider_aleph.retry import RetryPolicy

if TYPE_CHECKING:
    from collections.abc import Callable

T = TypeVar("T")

API_KEY_ENV = "SEGMIND_API_KEY"
DEFAULT_TIMEOUT = 30.0


@dataclass(frozen=True)
class ConnectionParams:
    """What the hook needs from an Airflow connection; ``repr`` never shows the key.

    :param base_url: API base URL with scheme, e.g. ``https://api.segmind.com``.
    :param upload_url: files API base URL.
    :param timeout: seconds allowed per HTTP call.
    :param api_key: the Segmind API key.
    """

    base_url: str
    upload_url: str
    timeout: float
    api_key: str = field(repr=False)


class SegmindHook(BaseHook):
    """Talk to Segmind's v2 async API through an Airflow connection of type ``segmind``.

    The connection's password is the API key (``SEGMIND_API_KEY`` from the environment when it is
    empty), its host the API base URL; extra may set ``upload_url`` and ``timeout``.

    :param segmind_conn_id: the Airflow connection id.
    :param retry_policy: how transient failures (429, 5xx, network) are retried.
    """

    conn_name_attr = "segmind_conn_id"
    default_conn_name = "segmind_default"
    conn_type = "segmind"
    hook_name = "Segmind"

    def __init__(self, segmind_conn_id: str = default_conn_name, *, retry_policy: RetryPolicy | None = None) -> None:
        super().__init__()
        self.segmind_conn_id = segmind_conn_id
        self.retry_policy = retry_policy or RetryPolicy()
        self._params: ConnectionParams | None = None
        self._client: httpx.Client | None = None
        self._aclient: httpx.AsyncClient | None = None

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

    def _params_from(self, conn: Any, extra: dict[str, Any]) -> ConnectionParams:
        api_key = (conn.password or os.environ.get(API_KEY_ENV) or "").strip()
        if not api_key:
            raise SegmindConfigError(
                f"Connection {self.segmind_conn_id!r} has no API key: set its password, "
                f"or {API_KEY_ENV} in the environment",
                conn_id=self.segmind_conn_id,
            )
        if not conn.password:
            # Airflow masks a connection's password itself; a key from the environment it does not know.
            mask_secret(api_key)
        host = conn.host or DEFAULT_BASE_URL
        if "://" not in host and conn.port:
            host = f"{host}:{conn.port}"
        raw_timeout = extra.get("timeout")
        try:
            timeout = DEFAULT_TIMEOUT if raw_timeout in (None, "") else float(raw_timeout)
            if not timeout > 0:
                raise ValueError(raw_timeout)
        except (TypeError, ValueError):
            raise SegmindConfigError(
                f"Connection {self.segmind_conn_id!r}: extra 'timeout' must be a positive number of seconds, "
                f"got {extra.get('timeout')!r}",
                conn_id=self.segmind_conn_id,
            ) from None
        return ConnectionParams(
            base_url=normalize_base_url(host),
            upload_url=normalize_base_url(str(extra.get("upload_url") or DEFAULT_UPLOAD_URL)),
            timeout=timeout,
            api_key=api_key,
        )

    def get_conn_params(self) -> ConnectionParams:
        """Read the connection once (blocking); later calls reuse it."""
        if self._params is None:
            conn = self.get_connection(self.segmind_conn_id)
            self._params = self._params_from(conn, conn.extra_dejson)
        return self._params

    async def aget_conn_params(self) -> ConnectionParams:
        """Read the connection once without blocking the event loop; later calls reuse it."""
        if self._params is None:
            from airflow.providers.common.compat.connection import (
                get_async_connection,
                get_async_extra_dejson,
            )

            conn = await get_async_connection(self.segmind_conn_id, hook=self)
            self._params = self._params_from(conn, await get_async_extra_dejson(conn))
        return self._params

    @staticmethod
    def _client_kwargs(params: ConnectionParams) -> dict[str, Any]:
        return {
            "timeout": httpx.Timeout(params.timeout, connect=min(params.timeout, 10.0)),
            "headers": {"User-Agent": f"{USER_AGENT}/{__version__}", "Accept": "application/json"},
            # The key travels per request, so a client may fetch third-party URLs safely.
            "follow_redirects": False,
        }

    def get_conn(self) -> httpx.Client:
        """The hook's blocking HTTP client, created on first use."""
        if self._client is None:
            self._client = httpx.Client(**self._client_kwargs(self.get_conn_params()))
        return self._client

    async def aget_conn(self) -> httpx.AsyncClient:
        """The hook's async HTTP client, created on first use; close it with :meth:`aclose`."""
        if self._aclient is None:
            self._aclient = httpx.AsyncClient(**self._client_kwargs(await self.aget_conn_params()))
        return self._aclient

    def close(self) -> None:
        """Close the blocking client."""
        if self._client is not None:
            self._client.close()
            self._client = None

    async def aclose(self) -> None:
        """Close the async client."""
        if self._aclient is not None:
            await self._aclient.aclose()
            self._aclient = None

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

    def _call(self, spec: RequestSpec, parse: Callable[[httpx.Response, RequestSpec], T]) -> T:
        client, params = self.get_conn(), self.get_conn_params()
        for attempt in self.retry_policy.retrying(spec):
            with attempt:
                try:
                    response = client.send(self._request(client, spec, params))
                except httpx.HTTPError as exc:
                    raise self._transport_error(exc, spec) from None
                return self._parsed(parse, response, spec)
        raise AssertionError("unreachable: tenacity reraises the last error")

    async def _acall(self, spec: RequestSpec, parse: Callable[[httpx.Response, RequestSpec], T]) -> T:
        client, params = await self.aget_conn(), await self.aget_conn_params()
        async for attempt in self.retry_policy.aretrying(spec):
            with attempt:
                try:
                    response = await client.send(self._request(client, spec, params))
                except httpx.HTTPError as exc:
                    raise self._transport_error(exc, spec) from None
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
