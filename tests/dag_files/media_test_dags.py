"""DAGs for the media options (``preview``, ``fit_input``), run with dag.test() against the emulator."""

from __future__ import annotations

import tempfile
from datetime import datetime

from airflow.sdk import DAG, Asset, task

from airflow_provider_aleph.operators.aleph import RunwayAlephOperator

START = datetime(2026, 1, 1)
#: Local files the tests use live under the temporary folder; DAG code allows it, as a DAG author would.
ROOTS = [tempfile.gettempdir()]
#: The asset the edit task updates: its event carries the preview paths.
EDITED = Asset("media_test_edited_video")
PARAMS = {"prompt": "make it winter", "video": "", "output_path": "", "if_output_exists": "reuse"}

with DAG("media_preview", schedule=None, start_date=START, params=PARAMS) as preview:
    RunwayAlephOperator(
        task_id="edit",
        prompt="{{ params.prompt }}",
        video="{{ params.video }}",
        output_path="{{ params.output_path }}",
        if_output_exists="{{ params.if_output_exists }}",
        preview=True,
        outlets=[EDITED],
        local_roots=ROOTS,
        poll_interval=0.1,
    )

with DAG("media_fit", schedule=None, start_date=START, params=PARAMS) as fit:
    RunwayAlephOperator(
        task_id="edit",
        prompt="{{ params.prompt }}",
        video="{{ params.video }}",
        output_path="{{ params.output_path }}",
        if_output_exists="{{ params.if_output_exists }}",
        fit_input=True,
        # Local inputs are uploaded either way; the fitted one must be, whatever this says.
        input_mode="auto",
        outlets=[EDITED],
        local_roots=ROOTS,
        poll_interval=0.1,
    )

with DAG("media_fit_3s", schedule=None, start_date=START, params=PARAMS) as fit_3s:
    RunwayAlephOperator(
        task_id="edit",
        prompt="{{ params.prompt }}",
        video="{{ params.video }}",
        output_path="{{ params.output_path }}",
        fit_input=True,
        fit_seconds=3,
        preview=True,
        local_roots=ROOTS,
        poll_interval=0.1,
    )

with DAG("media_no_fit", schedule=None, start_date=START, params=PARAMS) as no_fit:
    RunwayAlephOperator(
        task_id="edit",
        prompt="{{ params.prompt }}",
        video="{{ params.video }}",
        output_path="{{ params.output_path }}",
        local_roots=ROOTS,
        poll_interval=0.1,
    )

with DAG("media_decorated", schedule=None, start_date=START, params={"video": "", "output_dir": ""}) as decorated:
    # The decorator passes the operator's parameters through: fit the input, preview the output.
    @task.runway_aleph(
        video="{{ params.video }}",
        output_path="{{ params.output_dir }}/",
        fit_input=True,
        preview=True,
        local_roots=ROOTS,
        poll_interval=0.1,
    )
    def edit_decorated() -> str:
        return "make it winter"

    edit_decorated.override(task_id="edit")()

with DAG("media_fit_url", schedule=None, start_date=START, params=PARAMS) as fit_url:
    RunwayAlephOperator(
        task_id="edit",
        prompt="{{ params.prompt }}",
        video="{{ params.video }}",
        output_path="{{ params.output_path }}",
        fit_input=True,
        # The test serves its videos over loopback HTTP: a host the DAG author allows, as for a private CDN.
        allowed_hosts=["127.0.0.1"],
        local_roots=ROOTS,
        poll_interval=0.1,
    )
