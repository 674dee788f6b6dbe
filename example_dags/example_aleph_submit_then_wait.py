"""Submit in one task, wait in another: ``wait_for_completion=False`` with a ``SegmindRequestSensor``.

The operator submits the job, pushes XCom ``request_id`` and succeeds at once with ``status`` ``QUEUED``;
the sensor waits for that request (in the triggerer, holding no worker slot) and copies the edited
video into ``output_path``. Split this way, tasks can run between the submit and the wait, and a sensor
that fails (a deadline, a copy) is retried without ever submitting again: a sensor never submits.

Trigger it with a config such as ``{"video": "https://.../clip.mp4", "output_path": "s3://bucket/out/"}``.
"""

from __future__ import annotations

import os
from datetime import datetime

from airflow.sdk import DAG, Param

from airflow_provider_aleph.operators.aleph import RunwayAlephOperator
from airflow_provider_aleph.sensors.segmind import SegmindRequestSensor

SAMPLE_VIDEO = (
    "https://segmind-resources.s3.amazonaws.com/input/"
    "c08771b9-b671-4c12-9ea7-af4048b9d194-894a8bdf-6064-40ea-a78d-06c1abff262b.mp4"
)
DEFAULT_OUTPUT = "/tmp/aleph-edited"
#: The local folders the sensor may write to: DAG code, not a run's config (see the batch example).
LOCAL_ROOTS = [DEFAULT_OUTPUT, *filter(None, os.environ.get("ALEPH_LOCAL_ROOTS", "").split(os.pathsep))]

with DAG(
    dag_id="example_aleph_submit_then_wait",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["segmind", "aleph", "example"],
    params={
        "video": Param(
            SAMPLE_VIDEO,
            type="string",
            pattern=r"^(https?|s3|gs)://\S+$",
            description="http(s) URL or bucket URI of a video of at most 16 MiB",
        ),
        "output_path": Param(
            f"file://{DEFAULT_OUTPUT}/",
            type="string",
            pattern=r"^[A-Za-z][A-Za-z0-9+.-]*://\S+$",
            description="where the edited video lands (a folder when it ends in /)",
        ),
    },
) as dag:
    submit = RunwayAlephOperator(
        task_id="submit",
        prompt="make it winter",
        video="{{ params.video }}",
        wait_for_completion=False,  # output_path belongs to the sensor then
    )
    wait = SegmindRequestSensor(
        task_id="wait",
        request_id="{{ ti.xcom_pull(task_ids='submit', key='request_id') }}",
        output_path="{{ params.output_path }}",
        local_roots=LOCAL_ROOTS,
        require_output_url=True,
        timeout=3600,
    )
    submit >> wait
