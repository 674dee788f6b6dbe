"""DAGs for the Airflow conventions: submit without waiting, then a sensor; a templated connection id."""

from __future__ import annotations

import tempfile
from datetime import datetime

from airflow.sdk import DAG

from airflow_provider_aleph.operators.aleph import RunwayAlephOperator
from airflow_provider_aleph.sensors.segmind import SegmindRequestSensor

START = datetime(2026, 1, 1)
#: Local files the tests use live under the temporary folder; DAG code allows it, as a DAG author would.
ROOTS = [tempfile.gettempdir()]
PARAMS = {"video": "", "output_path": "", "conn_id": "segmind_default"}

# The pair: the operator submits and returns at once; the sensor waits and copies the output.
with DAG("conventions_submit_then_sense", schedule=None, start_date=START, params=PARAMS) as submit_then_sense:
    submit = RunwayAlephOperator(
        task_id="edit",
        prompt="make it winter",
        video="{{ params.video }}",
        segmind_conn_id="{{ params.conn_id }}",
        wait_for_completion=False,
        local_roots=ROOTS,
    )
    wait = SegmindRequestSensor(
        task_id="wait",
        request_id="{{ ti.xcom_pull(task_ids='edit', key='request_id') }}",
        segmind_conn_id="{{ params.conn_id }}",
        output_path="{{ params.output_path }}",
        local_roots=ROOTS,
        poll_interval=0.1,
        timeout=120,
    )
    submit >> wait

# A templated output_path cannot be refused at parse time: it is refused once rendered, before any submit.
with DAG("conventions_no_wait_with_output", schedule=None, start_date=START, params=PARAMS) as no_wait_with_output:
    RunwayAlephOperator(
        task_id="edit",
        prompt="make it winter",
        video="{{ params.video }}",
        output_path="{{ params.output_path }}",
        wait_for_completion=False,
        local_roots=ROOTS,
    )
