"""DAGs for reattach on retry: a deadline shorter than the job, and an output copy that fails."""

from __future__ import annotations

import tempfile
from datetime import datetime, timedelta

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
