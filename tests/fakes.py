"""Small stand-ins shared by the tests."""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING, Any

from airflow_provider_aleph import shared

if TYPE_CHECKING:
    import pytest

    from airflow_provider_aleph.shared import SharedConnection


class FakeClock:
    """A monotonic clock that moves only when a test moves it.

    :param now: the starting time, in seconds.
    """

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        """Move the clock forward."""
        self.now += seconds


def open_shares(loop: asyncio.AbstractEventLoop | None = None) -> dict[str, SharedConnection]:
    """The shared connections open on ``loop`` (default: the running loop), by connection id.

    :param loop: the event loop to look at.
    """
    return dict(shared._SHARES.get(loop or asyncio.get_running_loop(), {}))


def set_segmind_conn(monkeypatch: pytest.MonkeyPatch, conn_id: str, key: str, host: str, **extra: Any) -> None:
    """Define connection ``conn_id`` of type segmind in the environment, as ``AIRFLOW_CONN_...`` JSON.

    :param monkeypatch: undoes it after the test.
    :param conn_id: the connection id.
    :param key: the API key (password).
    :param host: the base URL.
    :param extra: the connection's extra.
    """
    conn = {"conn_type": "segmind", "password": key, "host": host, "extra": extra}
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(conn))


class RecordingTI:
    """Stands in for the task instance: records XCom pushes, and gives them back to its own task."""

    task_id = "edit"
    map_index = -1

    def __init__(self) -> None:
        self.xcom: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.xcom[key] = value

    def xcom_pull(self, *, task_ids: str, key: str, map_indexes: int) -> Any:
        assert (task_ids, map_indexes) == (self.task_id, self.map_index)
        return self.xcom.get(key)
