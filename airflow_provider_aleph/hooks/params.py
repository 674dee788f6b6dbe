"""Reading a Segmind connection: the settings the hook needs, checked before anything is sent."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from airflow.providers.common.compat.sdk import mask_secret

from airflow_provider_aleph.budget import (
    DEFAULT_MAX_CONSECUTIVE_FAILURES,
    DEFAULT_MAX_REQUESTS_PER_MINUTE,
    read_max_consecutive_failures,
    read_max_requests_per_minute,
)
from airflow_provider_aleph.exceptions import SegmindConfigError
from airflow_provider_aleph.protocol import DEFAULT_BASE_URL, DEFAULT_UPLOAD_URL, normalize_base_url

API_KEY_ENV = "SEGMIND_API_KEY"
DEFAULT_TIMEOUT = 30.0


@dataclass(frozen=True)
class ConnectionParams:
    """What the hook needs from an Airflow connection; ``repr`` never shows the key.

    :param base_url: API base URL with scheme, e.g. ``https://api.segmind.com``.
    :param upload_url: files API base URL.
    :param timeout: seconds allowed per HTTP call.
    :param api_key: the Segmind API key.
    :param max_requests_per_minute: API calls per minute that the triggers of this connection in one
        triggerer process may make together (extra ``max_requests_per_minute``).
    :param max_consecutive_failures: failed attempts in a row (429, 5xx, network) before a call
        fails (extra ``max_consecutive_failures``); an answered call starts the count again.
    """

    base_url: str
    upload_url: str
    timeout: float
    api_key: str = field(repr=False)
    max_requests_per_minute: float = DEFAULT_MAX_REQUESTS_PER_MINUTE
    max_consecutive_failures: int = DEFAULT_MAX_CONSECUTIVE_FAILURES


def _read_timeout(extra: dict[str, Any], conn_id: str) -> float:
    raw = extra.get("timeout")
    try:
        timeout = DEFAULT_TIMEOUT if raw in (None, "") else float(raw)
        if not timeout > 0:
            raise ValueError(raw)
    except (TypeError, ValueError):
        raise SegmindConfigError(
            f"Connection {conn_id!r}: extra 'timeout' must be a positive number of seconds, got {raw!r}",
            conn_id=conn_id,
        ) from None
    return timeout


def read_connection_params(conn: Any, extra: dict[str, Any], conn_id: str) -> ConnectionParams:
    """Check and read a connection of type ``segmind``.

    :param conn: the Airflow connection (password = API key, host = API base URL).
    :param extra: its extra, as a dict.
    :param conn_id: its id, named in errors.
    :raises SegmindConfigError: no API key, or an extra with a value that is not allowed.
    """
    api_key = (conn.password or os.environ.get(API_KEY_ENV) or "").strip()
    if not api_key:
        raise SegmindConfigError(
            f"Connection {conn_id!r} has no API key: set its password, or {API_KEY_ENV} in the environment",
            conn_id=conn_id,
        )
    if not conn.password:
        # Airflow masks a connection's password itself; a key from the environment it does not know.
        mask_secret(api_key)
    host = conn.host or DEFAULT_BASE_URL
    if "://" not in host and conn.port:
        host = f"{host}:{conn.port}"
    return ConnectionParams(
        base_url=normalize_base_url(host),
        upload_url=normalize_base_url(str(extra.get("upload_url") or DEFAULT_UPLOAD_URL)),
        timeout=_read_timeout(extra, conn_id),
        api_key=api_key,
        max_requests_per_minute=read_max_requests_per_minute(extra, conn_id),
        max_consecutive_failures=read_max_consecutive_failures(extra, conn_id),
    )
