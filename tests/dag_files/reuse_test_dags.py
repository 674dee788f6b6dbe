"""DAGs for if_output_exists and the output record, run twice with dag.test() against the emulator."""

from __future__ import annotations

import tempfile
from datetime import datetime

from airflow.sdk import DAG, Asset

from airflow_provider_aleph.operators.aleph import RunwayAlephOperator
from airflow_provider_aleph.operators.segmind import SegmindSubmitOperator

START = datetime(2026, 1, 1)
#: Local files the tests use live under the temporary folder; DAG code allows it, as a DAG author would.
ROOTS = [tempfile.gettempdir()]
#: The asset the edit task updates: a reused output must add no event to it.
EDITED = Asset("reuse_test_edited_video")
PARAMS = {"prompt": "make it winter", "video": "", "output_path": "", "if_output_exists": "reuse"}

with DAG("reuse_aleph", schedule=None, start_date=START, params=PARAMS) as aleph:
    RunwayAlephOperator(
        task_id="edit",
        prompt="{{ params.prompt }}",
        video="{{ params.video }}",
        output_path="{{ params.output_path }}",
        if_output_exists="{{ params.if_output_exists }}",
        outlets=[EDITED],
        local_roots=ROOTS,
        poll_interval=0.1,
    )

with DAG("reuse_aleph_in_worker", schedule=None, start_date=START, params=PARAMS) as aleph_in_worker:
    RunwayAlephOperator(
        task_id="edit",
        prompt="{{ params.prompt }}",
        video="{{ params.video }}",
        output_path="{{ params.output_path }}",
        if_output_exists="{{ params.if_output_exists }}",
        deferrable=False,
        local_roots=ROOTS,
        poll_interval=0.1,
    )

# A DAG author who allowed /proc as a local root: the folder exists, yet nothing can be written there.
with DAG(
    "reuse_unwritable_root", schedule=None, start_date=START, params={"video": "", "output_path": ""}
) as unwritable_root:
    RunwayAlephOperator(
        task_id="edit",
        prompt="make it winter",
        video="{{ params.video }}",
        output_path="{{ params.output_path }}",
        local_roots=[*ROOTS, "/proc"],
        poll_interval=0.1,
    )

with DAG(
    "reuse_generic", schedule=None, start_date=START, params={"prompt": "a snowy street", "output_path": ""}
) as generic:
    SegmindSubmitOperator(
        task_id="edit",
        model="flux-schnell",
        payload={"prompt": "{{ params.prompt }}", "steps": 4},
        output_path="{{ params.output_path }}",
        local_roots=ROOTS,
        poll_interval=0.1,
    )
