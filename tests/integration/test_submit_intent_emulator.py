"""The submit window against the emulator over loopback: an intent stored before the POST keeps a try that
was lost mid-submit from paying twice, and a refused submit leaves nothing behind that blocks a retry."""

from __future__ import annotations

from typing import Any

import pytest
from airflow.providers.common.compat.sdk import AirflowException, AirflowFailException

from airflow_provider_aleph.operators.aleph import RunwayAlephOperator
from airflow_provider_aleph.reattach import STATE_KEY, StoredRequest, SubmitIntent
from tests.integration.test_reattach_emulator import DictStore


class WorkerLost(RuntimeError):
    """Stands for a worker that died right after the POST left."""


class LostAfterPost(RunwayAlephOperator):
    """Its first submit reaches Segmind, then the try ends before the answer is recorded."""

    lose_next = True

    def _submit(self, payload: dict[str, Any], store: Any = None) -> Any:
        submitted = super()._submit(payload, store)
        if self.lose_next:
            self.lose_next = False
            raise WorkerLost("lost after the POST")
        return submitted


class TryTI:
    """A task instance's XCom pushes and ``max_tries`` (Airflow raises it when the task is cleared)."""

    def __init__(self, max_tries: int = 1) -> None:
        self.max_tries = max_tries
        self.xcom: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.xcom[key] = value


class FailingStore(DictStore):
    """A task_state_store whose writes fail."""

    def set(self, key: str, value: Any) -> None:
        raise ConnectionError("the API server did not answer")


def _operator(segmind_conn, cls: type[RunwayAlephOperator] = RunwayAlephOperator, **kwargs: Any) -> Any:
    kwargs.setdefault("prompt", "make it winter")
    return cls(task_id="edit", video=segmind_conn.sample_url(), wait_for_completion=False, **kwargs)


def test_a_retry_after_a_try_lost_in_the_submit_window_fails_without_submitting(segmind_conn) -> None:
    store = DictStore()
    operator = _operator(segmind_conn, LostAfterPost)

    with pytest.raises(WorkerLost):
        operator.execute({"ti": TryTI(), "task_state_store": store})
    intent = SubmitIntent.from_json(store.get(STATE_KEY))
    assert intent is not None, "the intent stays: nothing recorded a request id"
    assert segmind_conn.submissions == 1

    with pytest.raises(AirflowFailException) as failed:
        operator.execute({"ti": TryTI(), "task_state_store": store})
    assert segmind_conn.submissions == 1, "the retry must not pay for a second job"
    message = str(failed.value)
    assert f"began at {intent.attempted_at}" in message
    assert "Check the Segmind dashboard's request history" in message
    assert "clear the task to submit again if no job exists" in message
    assert "with other parameters" not in message

    # A plain retry again (max_tries unchanged) still refuses.
    with pytest.raises(AirflowFailException):
        operator.execute({"ti": TryTI(), "task_state_store": store})
    assert segmind_conn.submissions == 1


def test_a_clear_after_the_failure_lets_the_task_submit_again(segmind_conn) -> None:
    store = DictStore()
    operator = _operator(segmind_conn, LostAfterPost)
    with pytest.raises(WorkerLost):
        operator.execute({"ti": TryTI(max_tries=1), "task_state_store": store})
    with pytest.raises(AirflowFailException):
        operator.execute({"ti": TryTI(max_tries=1), "task_state_store": store})

    # Clearing a task instance sets max_tries to try_number + retries: here 2 + 1.
    cleared = TryTI(max_tries=3)
    result = operator.execute({"ti": cleared, "task_state_store": store})

    assert segmind_conn.submissions == 2, "the user cleared the task after checking: it submits again"
    stored = StoredRequest.from_json(store.get(STATE_KEY))
    assert stored is not None
    assert stored.request_id == result["request_id"] == cleared.xcom["request_id"]


def test_a_clear_before_the_failure_was_shown_does_not_submit(segmind_conn) -> None:
    store = DictStore()
    operator = _operator(segmind_conn, LostAfterPost)
    with pytest.raises(WorkerLost):
        operator.execute({"ti": TryTI(max_tries=1), "task_state_store": store})

    # Cleared while up for retry, before any try said the outcome was unknown: still refused once.
    with pytest.raises(AirflowFailException):
        operator.execute({"ti": TryTI(max_tries=3), "task_state_store": store})
    assert segmind_conn.submissions == 1


def test_a_retry_with_other_parameters_fails_too_and_says_so(segmind_conn) -> None:
    store = DictStore()
    with pytest.raises(WorkerLost):
        _operator(segmind_conn, LostAfterPost).execute({"ti": TryTI(), "task_state_store": store})

    with pytest.raises(AirflowFailException, match="with other parameters than this try's"):
        _operator(segmind_conn, prompt="make it summer").execute({"ti": TryTI(), "task_state_store": store})
    assert segmind_conn.submissions == 1


def test_a_refused_submit_removes_the_intent_so_a_retry_submits(segmind_conn) -> None:
    store = DictStore()
    operator = _operator(segmind_conn)
    segmind_conn.config.credits = 0.0  # every submit answers 406

    with pytest.raises(AirflowFailException, match="HTTP 406"):
        operator.execute({"ti": TryTI(), "task_state_store": store})
    assert store.get(STATE_KEY) is None, "a 406 created nothing: no intent may block the next try"
    assert segmind_conn.submissions == 0

    segmind_conn.config.credits = 100.0
    ti = TryTI()
    result = operator.execute({"ti": ti, "task_state_store": store})
    assert segmind_conn.submissions == 1
    stored = StoredRequest.from_json(store.get(STATE_KEY))
    assert stored is not None
    assert stored.request_id == result["request_id"] == ti.xcom["request_id"]


def test_a_submit_whose_answer_was_lost_keeps_the_intent(segmind_conn) -> None:
    store = DictStore()
    segmind_conn.config.lose_submit_answers = 1
    segmind_conn.config.lose_submit_mode = "504"

    with pytest.raises(AirflowFailException, match="is unknown"):
        _operator(segmind_conn).execute({"ti": TryTI(), "task_state_store": store})
    assert SubmitIntent.from_json(store.get(STATE_KEY)) is not None, "a job may exist: a retry must not pay again"
    assert segmind_conn.submissions == 1


def test_no_submit_when_the_intent_cannot_be_stored(segmind_conn) -> None:
    with pytest.raises(AirflowException, match="nothing was submitted") as failed:
        _operator(segmind_conn).execute({"ti": TryTI(), "task_state_store": FailingStore()})
    assert not isinstance(failed.value, AirflowFailException), "nothing was spent: Airflow may retry"
    assert segmind_conn.submissions == 0
