"""DAGs the DAG-level tests run with dag.test(); inputs come in as run conf (the emulator's URLs)."""

from __future__ import annotations

import tempfile
from datetime import datetime, timedelta

from airflow.sdk import DAG, task

from airflow_provider_aleph.operators.aleph import RunwayAlephOperator

START = datetime(2026, 1, 1)
#: Local files the tests use live under the temporary folder; DAG code allows it, as a DAG author would.
FAST = {"poll_interval": 0.1, "local_roots": [tempfile.gettempdir()]}

with DAG(
    "aleph_deferrable", schedule=None, start_date=START, params={"video": "", "prompt": "make it winter"}
) as deferrable:
    RunwayAlephOperator(task_id="edit", prompt="{{ params.prompt }}", video="{{ params.video }}", **FAST)

with DAG("aleph_in_worker", schedule=None, start_date=START, params={"video": ""}) as in_worker:
    RunwayAlephOperator(task_id="edit", prompt="make it winter", video="{{ params.video }}", deferrable=False, **FAST)

with DAG(
    "aleph_failing_with_retries",
    schedule=None,
    start_date=START,
    params={"video": ""},
    default_args={"retries": 2, "retry_delay": timedelta(0)},
) as failing_with_retries:
    RunwayAlephOperator(task_id="edit", prompt="make it [emulator:fail] winter", video="{{ params.video }}", **FAST)

with DAG(
    "aleph_failing_in_worker",
    schedule=None,
    start_date=START,
    params={"video": ""},
    default_args={"retries": 2, "retry_delay": timedelta(0)},
) as failing_in_worker:
    RunwayAlephOperator(task_id="edit", prompt="[emulator:fail]", video="{{ params.video }}", deferrable=False, **FAST)

# Native rendering keeps None, ints and lists as they are, so each parameter can be set bad by conf.
with DAG(
    "aleph_parameters",
    schedule=None,
    start_date=START,
    render_template_as_native_obj=True,
    default_args={"retries": 2, "retry_delay": timedelta(0)},
    params={
        "prompt": "make it winter",
        "video": "",
        "aspect_ratio": None,
        "reference_image": None,
        "seed": None,
        "input_mode": "auto",
    },
) as parameters:
    RunwayAlephOperator(
        task_id="edit",
        prompt="{{ params.prompt }}",
        video="{{ params.video }}",
        aspect_ratio="{{ params.aspect_ratio }}",
        reference_image="{{ params.reference_image }}",
        seed="{{ params.seed }}",
        input_mode="{{ params.input_mode }}",
        **FAST,
    )

# String rendering: the seed arrives as a string of digits and is coerced to an int.
with DAG(
    "aleph_templated", schedule=None, start_date=START, params={"video": "", "season": "winter", "seed": 7}
) as templated:
    RunwayAlephOperator(
        task_id="edit",
        prompt="make it {{ params.season }}",
        video="{{ params.video }}",
        seed="{{ params.seed }}",
        aspect_ratio="9:16",
        **FAST,
    )

with DAG("aleph_expand", schedule=None, start_date=START, params={"videos": []}) as expand:

    @task
    def list_videos(**context) -> list[str]:
        return list(context["params"]["videos"])

    RunwayAlephOperator.partial(task_id="edit", prompt="make it winter", **FAST).expand(video=list_videos())

# A literal list: each mapped video is itself a template, rendered per mapped task instance.
with DAG("aleph_expand_literal", schedule=None, start_date=START, params={"base": ""}) as expand_literal:
    RunwayAlephOperator.partial(task_id="edit", prompt="make it winter", **FAST).expand(
        video=[f"{{{{ params.base }}}}/samples/sample.mp4?clip={n}" for n in range(3)]
    )

# No local_roots: the default, under which a run's params cannot make the worker read a local file.
with DAG("aleph_no_roots", schedule=None, start_date=START, params={"video": ""}) as no_roots:
    RunwayAlephOperator(task_id="edit", prompt="make it winter", video="{{ params.video }}", poll_interval=0.1)
