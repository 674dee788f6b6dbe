"""DAGs of ``@task.runway_aleph`` that the decorator tests run with dag.test(); inputs come in as run conf."""

from __future__ import annotations

import tempfile
from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import DAG, task

START = datetime(2026, 1, 1)
#: Local files the tests use live under the temporary folder; DAG code allows it, as a DAG author would.
FAST = {"poll_interval": 0.1, "local_roots": [tempfile.gettempdir()]}

with DAG("decorator_plain", schedule=None, start_date=START, params={"video": ""}) as plain:

    @task.runway_aleph(video="{{ params.video }}", **FAST)
    def edit() -> str:
        return "make it winter"

    edit()

with DAG(
    "decorator_templated",
    schedule=None,
    start_date=START,
    params={"video": "", "season": "autumn", "seed": 7, "output_dir": ""},
) as templated:

    @task.runway_aleph(
        video="{{ params.video }}", seed="{{ params.seed }}", output_path="{{ params.output_dir }}/", **FAST
    )
    def edit_season(season: str) -> dict[str, Any]:
        return {"prompt": f"make it {season}", "aspect_ratio": "9:16"}

    edit_season.override(task_id="edit")(season="{{ params.season }}")

with DAG("decorator_mapped", schedule=None, start_date=START, params={"videos": [], "output_dir": ""}) as mapped:

    @task
    def videos(params: dict[str, Any] | None = None) -> list[str]:
        assert params is not None
        return list(params["videos"])

    @task.runway_aleph(prompt="make it winter", output_path="{{ params.output_dir }}/", **FAST)
    def edit_one(video: str) -> dict[str, Any]:
        return {"video": video, "seed": 11}

    edit_one.override(task_id="edit").expand(video=videos())

# What the function returns comes from the run's conf here: the decorator must refuse what it may not set.
with DAG(
    "decorator_returned",
    schedule=None,
    start_date=START,
    params={"returned": None},
    default_args={"retries": 2, "retry_delay": timedelta(0)},
) as returned:

    @task.runway_aleph(**FAST)
    def edit_from_conf(params: dict[str, Any] | None = None) -> Any:
        assert params is not None
        return params["returned"]

    edit_from_conf.override(task_id="edit")()
