"""A paid job outlasts the API's bad minutes, in real dag.test() runs against the emulator over loopback:
an outage longer than the old six-attempt budget (503s, then refused connections) and a key rotated while
the job waits, each ending in success with one submission."""

from __future__ import annotations

import json
import os
import threading
import time
from typing import TYPE_CHECKING, Any

import pytest

from airflow_provider_aleph.emulator import Emulator
from tests.dags.helpers import state, task_instances, xcom
from tests.support.proxy import RefusingProxy

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

pytestmark = pytest.mark.dag

OLD_KEY = "fake-rotation-old-key-3333"
NEW_KEY = "fake-rotation-new-key-4444"
CONN_VAR = "AIRFLOW_CONN_SEGMIND_DEFAULT"


def _connect(host: str, key: str, upload_url: str) -> str:
    return json.dumps(
        {
            "conn_type": "segmind",
            "password": key,
            "host": host,
            "extra": {"upload_url": upload_url, "max_requests_per_minute": 6000},
        }
    )


@pytest.fixture
def emu(monkeypatch: pytest.MonkeyPatch) -> Iterator[Emulator]:
    # Each job takes 3 s, so it is still running while the API is down; polls back off 0.1 s apart,
    # so an outage of a few seconds is dozens of failed polls, far past the old budget of six.
    monkeypatch.setattr("airflow_provider_aleph.retry.RetryPolicy.wait_seconds", lambda self, error, attempt: 0.1)
    with Emulator(api_key=OLD_KEY, latency=3.0) as emulator:
        monkeypatch.setenv(CONN_VAR, _connect(emulator.base_url, OLD_KEY, emulator.base_url))
        yield emulator


def after_submit(emulator: Emulator, action: Callable[[], Any], *, polled: bool = False) -> threading.Thread:
    """Do ``action`` the moment the job exists (or, with ``polled``, once its status has been asked for:
    the submit's answer is back), from another thread, while dag.test() waits on it."""

    def ready() -> bool:
        return emulator.stats()["requests"].get("status", 0) > 0 if polled else emulator.submissions > 0

    def watch() -> None:
        deadline = time.monotonic() + 60
        while not ready() and time.monotonic() < deadline:
            time.sleep(0.005)
        action()

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    return watcher


def _succeeded_once(dag_run: Any, emulator: Emulator, submissions: int = 1) -> None:
    assert state(dag_run) == "success"
    (ti,) = task_instances(dag_run)
    assert ti.try_number == 1, "ridden out inside the wait, not by an Airflow retry"
    assert emulator.submissions == submissions
    assert xcom(dag_run, "return_value")["request_id"] == xcom(dag_run, "request_id")


@pytest.mark.parametrize("dag_name", ["deferrable", "in_worker"])
def test_an_outage_of_503s_longer_than_the_old_budget_ends_in_success(dag_name: str, emu: Emulator) -> None:
    import aleph_test_dags

    watcher = after_submit(emu, lambda: emu.config(outage_seconds=4.0))
    dag_run = getattr(aleph_test_dags, dag_name).test(run_conf={"video": emu.sample_url()})
    watcher.join(5)

    _succeeded_once(dag_run, emu)
    assert emu.stats()["outage_answers"] > 6, "more failed polls in a row than the old budget allowed"


@pytest.mark.parametrize("dag_name", ["deferrable", "in_worker"])
def test_refused_connections_longer_than_the_old_budget_end_in_success(
    dag_name: str, emu: Emulator, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import aleph_test_dags

    with RefusingProxy(emu.base_url) as proxy:
        monkeypatch.setenv(CONN_VAR, _connect(proxy.base_url, OLD_KEY, emu.base_url))
        # Refused once the submit's answer is back: cutting the submit itself is the "outcome unknown" row.
        watcher = after_submit(emu, lambda: proxy.refuse_for(4.0), polled=True)
        dag_run = getattr(aleph_test_dags, dag_name).test(run_conf={"video": emu.sample_url()})
        watcher.join(5)

    _succeeded_once(dag_run, emu)
    retries = [record.getMessage() for record in caplog.records if record.name == "airflow_provider_aleph.retry"]
    refused = [message for message in retries if "ConnectError" in message]
    assert len(refused) > 6, "more refused polls in a row than the old budget allowed"


@pytest.mark.parametrize("dag_name", ["deferrable", "in_worker"])
def test_a_key_rotated_while_the_job_waits_is_picked_up(dag_name: str, emu: Emulator) -> None:
    import aleph_test_dags

    def rotate() -> None:
        # The connection gets the new key, and the old one is revoked at once.
        emu.config(api_keys=[OLD_KEY, NEW_KEY])
        os.environ[CONN_VAR] = _connect(emu.base_url, NEW_KEY, emu.base_url)
        emu.config(api_keys=[NEW_KEY])

    watcher = after_submit(emu, rotate)
    dag_run = getattr(aleph_test_dags, dag_name).test(run_conf={"video": emu.sample_url()})
    watcher.join(5)
    _succeeded_once(dag_run, emu)
    assert emu.stats()["requests"].get("status", 0) >= 2

    # A job started afterwards uses the new key from the start.
    later = getattr(aleph_test_dags, dag_name).test(run_conf={"video": emu.sample_url()})
    _succeeded_once(later, emu, submissions=2)
