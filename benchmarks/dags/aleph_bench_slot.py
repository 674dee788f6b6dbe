"""Benchmark DAG: the same Aleph jobs through our deferrable operator and through the official SDK.

Configured by ``$ALEPH_BENCH_SLOT`` (JSON, set by ``benchmarks/slot_time.py`` for every Airflow
component): ``{"jobs": 2, "cells": [{"name": "30s", "ours_conn": ID, "ours_video": URL,
"sdk_conn": ID, "sdk_video": URL}]}``.
For each cell it maps ``jobs`` tasks of each kind:

- ``ours_<name>``: ``RunwayAlephOperator`` with its defaults (deferrable, 10 s polls);
- ``sdk_<name>``: a ``PythonOperator`` doing what a user does without this provider: Segmind's own
  client, ``submit_async(...).wait()`` with its defaults (1 s polls), holding the worker slot.

and ``jobs`` tasks ``airflow_floor`` that do nothing: what one run of any task costs on a worker here.
"""

from __future__ import annotations

import json
import os
from datetime import datetime
from typing import Any

from airflow.providers.common.compat.sdk import BaseHook
from airflow.providers.standard.operators.python import PythonOperator
from airflow.sdk import DAG

from airflow_provider_aleph.operators.aleph import RunwayAlephOperator

CONFIG: dict[str, Any] = json.loads(os.environ.get("ALEPH_BENCH_SLOT", '{"jobs": 1, "cells": []}'))


def edit_with_segmind_sdk(prompt: str, video: str, conn_id: str) -> dict[str, Any]:
    """Submit one Aleph job with Segmind's Python client and block until it ends.

    :param prompt: the edit.
    :param video: the input video's URL.
    :param conn_id: the Airflow connection holding the API key and base URL.
    """
    import segmind

    conn = BaseHook.get_connection(conn_id)
    client = segmind.SegmindClient(api_key=conn.password, base_url=f"{conn.host}/v1")
    job = client.submit_async("runway-gen4-aleph", prompt=prompt, video=video)
    result = job.wait()
    return {"request_id": job.request_id, "status": result.get("status"), "output": result.get("output")}


def do_nothing(index: int) -> None:
    """The floor: a task whose slot time is Airflow's own cost of running a task.

    :param index: the map index, unused.
    """


with DAG(
    dag_id="aleph_bench_slot",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_tasks=64,
    tags=["benchmark"],
):
    PythonOperator.partial(task_id="airflow_floor", python_callable=do_nothing).expand(
        op_args=[[index] for index in range(CONFIG["jobs"])]
    )
    for cell in CONFIG["cells"]:
        prompts = [f"make it winter #{index}" for index in range(CONFIG["jobs"])]
        RunwayAlephOperator.partial(
            task_id=f"ours_{cell['name']}",
            video=cell["ours_video"],
            segmind_conn_id=cell["ours_conn"],
        ).expand(prompt=prompts)
        PythonOperator.partial(
            task_id=f"sdk_{cell['name']}",
            python_callable=edit_with_segmind_sdk,
            op_kwargs={"video": cell["sdk_video"], "conn_id": cell["sdk_conn"]},
        ).expand(op_args=[[prompt] for prompt in prompts])
