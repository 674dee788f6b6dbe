"""DAGs for the failure table (design.md): one DAG per row, each allowed two Airflow retries.

Every DAG has ``retries=2``: a row that must not be retried by Airflow shows it as ``try_number == 1``.
The video URL comes in as run conf; connections are set by the tests in the environment.
"""

from __future__ import annotations

import tempfile
from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import DAG

from airflow_provider_aleph.operators.aleph import RunwayAlephOperator
from airflow_provider_aleph.operators.segmind import SegmindSubmitOperator

START = datetime(2026, 1, 1)
RETRIES = {"retries": 2, "retry_delay": timedelta(0)}
#: Local files the tests use live under the temporary folder; DAG code allows it, as a DAG author would.
FAST = {"poll_interval": 0.1, "local_roots": [tempfile.gettempdir()]}
VIDEO = {"video": ""}

#: Connections the tests define: a key the emulator refuses, a key without credits, a small failure budget.
WRONG_KEY_CONN = "segmind_failure_wrong_key"
NO_CREDITS_CONN = "segmind_failure_no_credits"
SMALL_BUDGET_CONN = "segmind_failure_small_budget"


def _dag(dag_id: str) -> DAG:
    return DAG(dag_id, schedule=None, start_date=START, params=dict(VIDEO), default_args=RETRIES)


def _aleph(**kwargs: Any) -> RunwayAlephOperator:
    arguments: dict[str, Any] = {"task_id": "edit", "prompt": "make it winter", "video": "{{ params.video }}"}
    return RunwayAlephOperator(**(arguments | FAST | kwargs))


with _dag("failure_invalid_parameter") as invalid_parameter:
    _aleph(aspect_ratio="2:1")

# The generic operator does not know Aleph's parameters: the API itself refuses the video (400).
with _dag("failure_bad_request") as bad_request:
    SegmindSubmitOperator(
        task_id="edit", model="runway-gen4-aleph", payload={"prompt": "make it winter", "video": "not-a-url"}, **FAST
    )

with _dag("failure_wrong_key") as wrong_key:
    _aleph(segmind_conn_id=WRONG_KEY_CONN)

with _dag("failure_no_credits") as no_credits:
    _aleph(segmind_conn_id=NO_CREDITS_CONN)

# Rows where only the API's behaviour differs (retired model, flaky polls, expiry, lost answer) share these two.
with _dag("failure_plain") as plain:
    _aleph()

with _dag("failure_plain_in_worker") as plain_in_worker:
    _aleph(deferrable=False)

with _dag("failure_past_budget") as past_budget:
    _aleph(segmind_conn_id=SMALL_BUDGET_CONN)

with _dag("failure_past_budget_in_worker") as past_budget_in_worker:
    _aleph(segmind_conn_id=SMALL_BUDGET_CONN, deferrable=False)
