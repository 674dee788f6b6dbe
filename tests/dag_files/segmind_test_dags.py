"""DAGs for the generic operator and the request sensor, run with dag.test() against the emulator."""

from __future__ import annotations

import tempfile
from datetime import datetime

from airflow.sdk import DAG

from airflow_provider_aleph.operators.segmind import SegmindSubmitOperator
from airflow_provider_aleph.sensors.segmind import SegmindRequestSensor

START = datetime(2026, 1, 1)
#: Local files the tests use live under the temporary folder; DAG code allows it, as a DAG author would.
ROOTS = [tempfile.gettempdir()]

with DAG("segmind_generic", schedule=None, start_date=START, params={"prompt": "a snowy street"}) as generic:
    SegmindSubmitOperator(
        task_id="edit",
        model="flux-schnell",
        payload={"prompt": "{{ params.prompt }}", "steps": 4},
        poll_interval=0.1,
    )

with DAG("segmind_sensor_deferred", schedule=None, start_date=START, params={"request_id": ""}) as sensor_deferred:
    SegmindRequestSensor(task_id="edit", request_id="{{ params.request_id }}", poll_interval=0.1, timeout=60)

with DAG("segmind_sensor_poke", schedule=None, start_date=START, params={"request_id": ""}) as sensor_poke:
    SegmindRequestSensor(
        task_id="edit", request_id="{{ params.request_id }}", deferrable=False, poll_interval=0.1, timeout=60
    )

with DAG(
    "segmind_sensor_copy", schedule=None, start_date=START, params={"request_id": "", "output_path": ""}
) as sensor_copy:
    SegmindRequestSensor(
        task_id="edit",
        request_id="{{ params.request_id }}",
        output_path="{{ params.output_path }}",
        local_roots=ROOTS,
        poll_interval=0.1,
        timeout=60,
    )

with DAG(
    "segmind_sensor_copy_reschedule",
    schedule=None,
    start_date=START,
    params={"request_id": "", "output_path": ""},
) as sensor_copy_reschedule:
    SegmindRequestSensor(
        task_id="edit",
        request_id="{{ params.request_id }}",
        output_path="{{ params.output_path }}",
        local_roots=ROOTS,
        deferrable=False,
        mode="reschedule",
        poll_interval=0.1,
        timeout=60,
    )

# A local file in the payload of any model is uploaded to the files API; its URL is what is sent.
with DAG(
    "segmind_generic_file_input",
    schedule=None,
    start_date=START,
    params={"image": "", "output_path": ""},
) as generic_file_input:
    SegmindSubmitOperator(
        task_id="edit",
        model="flux-kontext",
        payload={"prompt": "make it winter", "image": "{{ params.image }}"},
        output_path="{{ params.output_path }}",
        local_roots=ROOTS,
        poll_interval=0.1,
    )
