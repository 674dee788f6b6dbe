"""``wait_for_completion=False`` against the emulator over loopback: the operator submits and returns at
once, and a new try of the same task instance (Airflow 3.3's task_state_store) returns the request the
first try submitted instead of paying for another."""

from __future__ import annotations

from typing import Any

from airflow_provider_aleph.operators.aleph import RunwayAlephOperator
from tests.integration.test_reattach_emulator import DictStore


class PushingTI:
    """The task instance's XCom push, recorded."""

    def __init__(self) -> None:
        self.xcom: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.xcom[key] = value


def test_a_retry_of_a_task_that_does_not_wait_returns_the_same_running_request(segmind_conn) -> None:
    segmind_conn.config.latency = 60.0  # still running when the second try asks
    store = DictStore()
    operator = RunwayAlephOperator(
        task_id="edit", prompt="make it winter", video=segmind_conn.sample_url(), wait_for_completion=False
    )

    first_ti, second_ti = PushingTI(), PushingTI()
    first = operator.execute({"ti": first_ti, "task_state_store": store})
    second = operator.execute({"ti": second_ti, "task_state_store": store})

    (request_id,) = segmind_conn.jobs
    assert segmind_conn.submissions == 1, "the second try must not submit again"
    assert first["request_id"] == second["request_id"] == request_id
    assert first["status"] == "QUEUED"
    assert second["status"] in ("QUEUED", "PROCESSING")
    assert second["output_path"] is None
    assert first_ti.xcom["request_id"] == second_ti.xcom["request_id"] == request_id
