"""The hook's HTTP clients: how they are configured, and what a network error on a call becomes."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import httpx

from airflow_provider_aleph import __version__
from airflow_provider_aleph.exceptions import SegmindError, SegmindSubmitOutcomeUnknown, SegmindTransportError
from airflow_provider_aleph.protocol import USER_AGENT, Kind

if TYPE_CHECKING:
    from airflow_provider_aleph.hooks.connection import ConnectionParams
    from airflow_provider_aleph.protocol import RequestSpec


def client_kwargs(params: ConnectionParams, max_connections: int | None = None) -> dict[str, Any]:
    """Keyword arguments for an ``httpx.Client`` or ``httpx.AsyncClient`` of the connection ``params``
    describe. The key is not among them: it travels per request, so a client may fetch third-party URLs.

    :param params: the connection's settings.
    :param max_connections: cap on open connections (httpx's default pool when None).
    """
    kwargs: dict[str, Any] = {
        "timeout": httpx.Timeout(params.timeout, connect=min(params.timeout, 10.0)),
        "headers": {"User-Agent": f"{USER_AGENT}/{__version__}", "Accept": "application/json"},
        "follow_redirects": False,
    }
    if max_connections is not None:
        kwargs["limits"] = httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)
    return kwargs


def transport_error(exc: httpx.HTTPError, spec: RequestSpec, conn_id: str) -> SegmindError:
    """The error a network failure of ``spec`` raises.

    A submit whose request may have reached Segmind (anything but a connection that never opened) has an
    unknown outcome: it may have created a paid job, so it is never retried blindly.

    :param exc: what httpx raised.
    :param spec: the call that failed.
    :param conn_id: the Airflow connection id, named in the error.
    """
    never_sent = isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout)
    if spec.kind is Kind.SUBMIT and not never_sent:
        return SegmindSubmitOutcomeUnknown.after(spec.describe(), f"{type(exc).__name__}", conn_id)
    return SegmindTransportError(
        f"Network error on {spec.describe()}: {type(exc).__name__}: {exc}",
        sent=not never_sent,
        request_id=spec.request_id,
        conn_id=conn_id,
    )
