"""An Aleph edit that waits in the worker (``deferrable=False``), for the worker-kill test."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

from airflow.sdk import DAG

from airflow_provider_aleph.operators.aleph import RunwayAlephOperator

SAMPLES = Path(__file__).resolve().parents[3] / "example_dags" / "sample_videos"
SAMPLE = (SAMPLES / "harbour.mp4").as_uri()

with DAG(dag_id="e2e_aleph_worker_wait", schedule=None, start_date=datetime(2026, 1, 1), catchup=False):
    RunwayAlephOperator(
        task_id="edit",
        video=SAMPLE,
        local_roots=[SAMPLES],
        prompt="make it winter",
        deferrable=False,
        poll_interval=2,
        retries=1,
        retry_delay=timedelta(seconds=1),
    )
