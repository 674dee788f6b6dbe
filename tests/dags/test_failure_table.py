"""design.md's failure table, row by row, through real sockets: real dag.test() runs against the emulator.

Each test asserts the task's outcome, how many tries it took (the DAGs allow two Airflow retries, so
``try_number == 1`` shows a row that is never retried), what the failure message names, and the
emulator's count of paid submissions.

Rows covered elsewhere, not repeated here:

- FAILED (HTTP 422, safety blocks): ``test_aleph_dags.py::test_failed_request_fails_once_without_airflow_retry``;
- the full matrix of invalid parameters: ``test_aleph_dags.py::test_invalid_parameter_fails_before_any_submission``
  (one representative below);
- deadline passed: ``test_reattach.py::test_deadline_passed_then_retry_uses_the_same_request``;
- triggerer restart: ``tests/integration/test_trigger_restart.py``.

403 (insufficient permissions) has no row here: the emulator answers 403 only on its loopback-only admin
routes, never on the API, so there is no real 403 to send through the operator. The hook maps 401 and 403
to the same error class (``SegmindAuthError``), whose 401 path is shown below.
"""

from __future__ import annotations

import functools
import json
import threading
import time
from typing import TYPE_CHECKING, Any

import pytest
from airflow.providers.common.compat.sdk import AirflowFailException
from airflow.version import version as airflow_version
from packaging.version import Version

from airflow_provider_aleph.emulator import Emulator
from airflow_provider_aleph.emulator.faults import FaultInjector
from airflow_provider_aleph.events import task_failure
from airflow_provider_aleph.exceptions import SegmindNotAcceptable
from airflow_provider_aleph.hooks.segmind import SegmindHook
from tests.dags.helpers import failure_message as _failure
from tests.dags.helpers import says as _says
from tests.dags.helpers import state, task_instances, xcom

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

pytestmark = pytest.mark.dag

REATTACH = Version(airflow_version) >= Version("3.3.0")
ALEPH = "runway-gen4-aleph"
DEFAULT_CONN = "segmind_default"
WRONG_KEY = "fake-wrong-key-for-failure-table-0000"
BROKE_KEY = "fake-broke-key-for-failure-table-1111"


def _connect(monkeypatch: pytest.MonkeyPatch, conn_id: str, emu: Emulator, key: str, **extra: Any) -> None:
    """Point connection ``conn_id`` at ``emu`` with ``key``; the budget is high so polling is never slowed."""
    connection = {
        "conn_type": "segmind",
        "password": key,
        "host": emu.base_url,
        "extra": {"max_requests_per_minute": 6000, **extra},
    }
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(connection))


def _run(dag_name: str, emu: Emulator) -> Any:
    import failure_test_dags

    return getattr(failure_test_dags, dag_name).test(run_conf={"video": emu.sample_url()})


def _only_try(dag_run: Any) -> int:
    (ti,) = task_instances(dag_run)
    return int(ti.try_number)


# -- seeded faults ------------------------------------------------------------------------------------
#
# The emulator draws its injected faults from a seeded source, one draw per API call in arrival order.
# The calls of one task are sequential, so a seed fixes which of them fail: these helpers pick the seed.


def _draws(seed: int, error_rate: float, submits: int, count: int) -> list[str | None]:
    """The faults the emulator would inject into its first ``count`` API calls (the first ``submits`` are POSTs)."""
    injector = FaultInjector(seed)
    return [injector.draw(error_rate, submit=index < submits) for index in range(count)]


def _longest_run(draws: list[str | None]) -> int:
    best = run = 0
    for fault in draws:
        run = run + 1 if fault else 0
        best = max(best, run)
    return best


def _first_seed(wanted: Callable[[int], bool]) -> int:
    return next(seed for seed in range(1_000_000) if wanted(seed))


FLAKY_RATE = 0.3


@functools.cache
def _flaky_seed() -> int:
    """A seed whose submit is refused once with a 429 (created nothing, retried by the hook), whose first poll
    meets a 5xx page then a dropped connection, and whose later calls never fail 4 times in a row (budget 6)."""

    def wanted(seed: int) -> bool:
        draws = _draws(seed, FLAKY_RATE, submits=2, count=300)
        return (
            str(draws[0]).startswith("429")
            and draws[1] is None
            and str(draws[2]).startswith("5")
            and draws[3] == "drop"
            and _longest_run(draws[2:]) <= 3
        )

    return _first_seed(wanted)


@pytest.fixture
def seeded(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Emulator]]:
    """Start an emulator with a given seed and settings, behind the default connection (and more ids)."""
    started: list[Emulator] = []

    def start(seed: int, conn_ids: tuple[str, ...] = (DEFAULT_CONN,), extra: dict[str, Any] | None = None, **settings):
        emu = Emulator(api_key="fake-failure-table-key-2222", seed=seed, **settings).start()
        started.append(emu)
        for conn_id in conn_ids:
            _connect(monkeypatch, conn_id, emu, emu.api_key, **(extra or {}))
        return emu

    yield start
    for emu in started:
        emu.stop()


# -- before anything is spent ---------------------------------------------------------------------------


def test_invalid_parameter_fails_before_any_submit(segmind_conn: Emulator, capfd) -> None:
    dag_run = _run("invalid_parameter", segmind_conn)

    assert state(dag_run) == "failed"
    assert _only_try(dag_run) == 1
    assert segmind_conn.submissions == 0
    assert segmind_conn.stats()["requests"].get("submit", 0) == 0, "nothing may reach the API"
    failure = _failure(capfd)
    assert _says(failure, "Invalid parameter 'aspect_ratio'")
    assert _says(failure, "nothing was submitted")


# -- refused by the API: fail at once, no Airflow retry, the API's detail and the connection id ----------


def test_400_fails_once_with_the_api_detail_and_the_connection(segmind_conn: Emulator, capfd) -> None:
    dag_run = _run("bad_request", segmind_conn)

    assert state(dag_run) == "failed"
    assert _only_try(dag_run) == 1
    assert segmind_conn.submissions == 0
    assert segmind_conn.stats()["requests"]["submit"] == 1, "a 400 is not retried in the hook either"
    failure = _failure(capfd)
    assert _says(failure, "Segmind refused the parameters")
    assert _says(failure, "Invalid parameter 'video'"), "the API's own detail"
    assert _says(failure, "HTTP 400")
    assert _says(failure, f"conn_id={DEFAULT_CONN}")


def test_401_fails_once_naming_the_connection(segmind_conn: Emulator, monkeypatch, capfd) -> None:
    from failure_test_dags import WRONG_KEY_CONN

    _connect(monkeypatch, WRONG_KEY_CONN, segmind_conn, WRONG_KEY)
    dag_run = _run("wrong_key", segmind_conn)

    assert state(dag_run) == "failed"
    assert _only_try(dag_run) == 1
    assert segmind_conn.submissions == 0
    assert segmind_conn.stats()["requests"]["submit"] == 1
    failure = _failure(capfd)
    assert _says(failure, "rejected the API key")
    assert _says(failure, "HTTP 401")
    assert _says(failure, f"conn_id={WRONG_KEY_CONN}")
    assert not _says(failure, WRONG_KEY)


def test_406_out_of_credits_fails_once_saying_so(segmind_conn: Emulator, monkeypatch, capfd) -> None:
    from failure_test_dags import NO_CREDITS_CONN

    segmind_conn.config(insufficient_credits_keys=[BROKE_KEY])
    _connect(monkeypatch, NO_CREDITS_CONN, segmind_conn, BROKE_KEY)
    dag_run = _run("no_credits", segmind_conn)

    assert state(dag_run) == "failed"
    assert _only_try(dag_run) == 1
    assert segmind_conn.submissions == 0
    assert segmind_conn.stats()["insufficient_credits"] == 1
    failure = _failure(capfd)
    assert _says(failure, "not enough credits")
    assert _says(failure, "HTTP 406")
    assert _says(failure, f"conn_id={NO_CREDITS_CONN}")
    assert not _says(failure, "content type")


def test_an_account_spent_to_zero_fails_the_next_task_once_before_it_pays(segmind_conn: Emulator, capfd) -> None:
    # Credits for one job: the first run spends them all, the second is refused at its submit.
    segmind_conn.config(credits=segmind_conn.config.cost_per_job)
    first = _run("plain", segmind_conn)
    assert state(first) == "success"
    assert xcom(first, "return_value")["metrics"]["remaining_credits"] == 0

    second = _run("plain", segmind_conn)

    assert state(second) == "failed"
    assert _only_try(second) == 1
    assert segmind_conn.submissions == 1
    assert segmind_conn.stats()["insufficient_credits"] == 1
    failure = _failure(capfd)
    assert _says(failure, "not enough credits")
    assert _says(failure, "HTTP 406")
    assert _says(failure, f"conn_id={DEFAULT_CONN}")


def test_406_wrong_content_type_is_told_apart_from_credits(segmind_conn: Emulator) -> None:
    # The operator always sends JSON, so this row is shown at the hook: a client-wide Content-Type (as a
    # proxy or a misconfigured client would set) wins over the JSON body's own, and the API refuses it.
    hook = SegmindHook()
    try:
        hook.get_conn().headers["Content-Type"] = "text/plain"
        with pytest.raises(SegmindNotAcceptable) as caught:
            hook.submit(ALEPH, {"prompt": "make it winter", "video": segmind_conn.sample_url()})
    finally:
        hook.close()

    error = caught.value
    assert error.insufficient_credits is False
    assert error.status_code == 406
    assert "content type" in str(error)
    assert "Content-Type" in str(error), "the API's detail"
    assert "credits" not in str(error)
    assert f"conn_id={DEFAULT_CONN}" in str(error)
    assert isinstance(task_failure(error, retry_safe=True), AirflowFailException), "no Airflow retry"
    assert segmind_conn.submissions == 0


def test_410_retired_model_fails_once(segmind_conn: Emulator, capfd) -> None:
    segmind_conn.config(retired_models=[ALEPH])
    dag_run = _run("plain", segmind_conn)

    assert state(dag_run) == "failed"
    assert _only_try(dag_run) == 1
    assert segmind_conn.submissions == 0
    failure = _failure(capfd)
    assert _says(failure, "retired")
    assert _says(failure, "HTTP 410")
    assert _says(failure, f"conn_id={DEFAULT_CONN}")


# -- transient faults: retried in place, one paid job ---------------------------------------------------


@pytest.mark.parametrize("dag_name", ["plain", "plain_in_worker"])
def test_429_5xx_and_dropped_connections_are_retried_in_place(dag_name: str, seeded) -> None:
    seed = _flaky_seed()
    emu = seeded(seed, latency=1.5, error_rate=FLAKY_RATE)
    dag_run = _run(dag_name, emu)

    assert state(dag_run) == "success"
    assert _only_try(dag_run) == 1, "transient faults are absorbed inside the hook and trigger"
    assert emu.submissions == 1
    (request_id,) = emu.jobs
    assert xcom(dag_run, "return_value")["request_id"] == request_id
    stats = emu.stats()
    assert stats["requests"]["submit"] == 2, "the 429 on submit created nothing and was retried once"
    first = _draws(seed, FLAKY_RATE, submits=2, count=4)
    assert {first[0], first[2], first[3]} <= set(stats["faults"]), "a 429, a 5xx page and a drop were all met"


#: The small-budget connection's outage tolerance, and an outage a little longer: try 1 gives up during it,
#: and the retry's reattach (which rides out up to the tolerance itself) finds the API back.
TOLERANCE = 1.5
OUTAGE = 2.5


def outage_after_submit(emu: Emulator, seconds: float) -> threading.Thread:
    """Start an outage of the emulator's API the moment the job is created (a submit is never hit)."""

    def watch() -> None:
        deadline = time.monotonic() + 60
        while emu.submissions == 0 and time.monotonic() < deadline:
            time.sleep(0.005)
        emu.config(outage_seconds=seconds)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    return watcher


@pytest.mark.parametrize("dag_name", ["past_budget", "past_budget_in_worker"])
def test_an_outage_past_the_tolerance_fails_naming_the_request_and_a_retry_reattaches(
    dag_name: str, seeded, capfd, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Changed on purpose (issue 12): polls give up when failures have lasted the connection's
    # outage_tolerance (here 1.5 s), not after max_consecutive_failures attempts.
    from failure_test_dags import SMALL_BUDGET_CONN

    monkeypatch.setattr("airflow_provider_aleph.retry.RetryPolicy.wait_seconds", lambda self, error, attempt: 0.1)
    emu = seeded(0, conn_ids=(SMALL_BUDGET_CONN,), extra={"outage_tolerance": TOLERANCE}, latency=6.0)
    outage_after_submit(emu, OUTAGE)
    dag_run = _run(dag_name, emu)

    assert emu.submissions == 1, "neither the hook nor an Airflow retry may pay for a second job"
    assert emu.stats()["outage_answers"] > 1
    (request_id,) = emu.jobs
    assert xcom(dag_run, "request_id") == request_id
    failure = _failure(capfd)
    assert _says(failure, f"request_id={request_id}")
    assert _says(failure, f"conn_id={SMALL_BUDGET_CONN}")
    assert _says(failure, "last answer: HTTP 503")
    assert _says(failure, "outage_tolerance")
    if REATTACH:
        assert state(dag_run) == "success"
        assert _only_try(dag_run) == 2
        assert _says(failure, "an Airflow retry of this task reattaches to it")
        assert xcom(dag_run, "return_value")["request_id"] == request_id
    else:
        assert state(dag_run) == "failed"
        assert _only_try(dag_run) == 1, "without task_state_store a retry would pay again: no Airflow retry"


# -- after the submit: expiry and lost answers ----------------------------------------------------------


@pytest.mark.parametrize("dag_name", ["plain", "plain_in_worker"])
def test_404_on_a_known_request_fails_once_saying_it_expired(dag_name: str, segmind_conn: Emulator, capfd) -> None:
    segmind_conn.config(retention=0.0)  # the record is gone the moment the job ends
    dag_run = _run(dag_name, segmind_conn)

    assert state(dag_run) == "failed"
    assert _only_try(dag_run) == 1, "an expired request cannot be waited on again"
    assert segmind_conn.submissions == 1
    (request_id,) = segmind_conn.jobs
    failure = _failure(capfd)
    assert _says(failure, f"Segmind has no request '{request_id}': it is unknown or expired")
    assert _says(failure, "1 hour")
    assert _says(failure, f"conn_id={DEFAULT_CONN}")


@pytest.mark.parametrize("mode", ["504", "drop"])
def test_lost_submit_answer_fails_once_and_never_resubmits(mode: str, segmind_conn: Emulator, capfd) -> None:
    segmind_conn.config(lose_submit_answers=1, lose_submit_mode=mode)
    dag_run = _run("plain", segmind_conn)

    assert state(dag_run) == "failed"
    assert _only_try(dag_run) == 1, "retries were allowed, yet a retry could pay for a second job"
    assert segmind_conn.submissions == 1, "the job was created (and billed) once"
    stats = segmind_conn.stats()
    assert stats["lost_answers"] == 1
    assert stats["requests"]["submit"] == 1, "no second POST"
    assert xcom(dag_run, "request_id") is None, "the request id never reached us"
    failure = _failure(capfd)
    assert _says(failure, "is unknown")
    assert _says(failure, "Check the Segmind dashboard")
    assert _says(failure, "clear the task to submit again if no job exists")
    assert _says(failure, f"conn_id={DEFAULT_CONN}")
