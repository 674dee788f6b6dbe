"""DAGs for reattach on retry: a deadline shorter than the job, an output copy that fails, and a try lost
while its submit is in flight."""

from __future__ import annotations

import tempfile
from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import DAG

from airflow_provider_aleph.operators.aleph import RunwayAlephOperator

START = datetime(2026, 1, 1)
RETRY_ONCE = {"retries": 1, "retry_delay": timedelta(0)}
#: Local files the tests use live under the temporary folder; DAG code allows it, as a DAG author would.
ROOTS = [tempfile.gettempdir()]

# The operator gives up waiting after 2 s; the tests make the emulator's jobs take 3 s.
with DAG(
    "aleph_deadline_retry", schedule=None, start_date=START, params={"video": ""}, default_args=RETRY_ONCE
) as deadline_retry:
    RunwayAlephOperator(
        task_id="edit", prompt="make it winter", video="{{ params.video }}", timeout=2, poll_interval=0.2
    )

with DAG(
    "aleph_deadline_retry_in_worker", schedule=None, start_date=START, params={"video": ""}, default_args=RETRY_ONCE
) as deadline_retry_in_worker:
    RunwayAlephOperator(
        task_id="edit",
        prompt="make it winter",
        video="{{ params.video }}",
        timeout=2,
        poll_interval=0.2,
        deferrable=False,
    )

with DAG(
    "aleph_copy_retry",
    schedule=None,
    start_date=START,
    params={"video": "", "output_path": ""},
    default_args=RETRY_ONCE,
) as copy_retry:
    RunwayAlephOperator(
        task_id="edit",
        prompt="make it winter",
        video="{{ params.video }}",
        output_path="{{ params.output_path }}",
        local_roots=ROOTS,
        poll_interval=0.1,
    )


class WorkerLost(RuntimeError):
    """Stands for a worker that died: raised where a SIGKILL would stop the try."""


class LostAfterPost(RunwayAlephOperator):
    """The submit reaches Segmind, and the try ends before the request id is recorded (the submit window)."""

    def _submit(self, payload: dict[str, Any], store: Any = None) -> Any:
        super()._submit(payload, store)
        raise WorkerLost("the worker was lost after the POST left, before its answer was recorded")


with DAG(
    "aleph_submit_window", schedule=None, start_date=START, params={"video": ""}, default_args=RETRY_ONCE
) as submit_window:
    LostAfterPost(task_id="edit", prompt="make it winter", video="{{ params.video }}", poll_interval=0.1)
