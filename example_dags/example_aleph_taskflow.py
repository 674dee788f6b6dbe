"""Edit several videos with ``@task.runway_aleph``: one mapped task per video, each returning its result.

Trigger it with a config such as ``{"videos": ["https://.../a.mp4", "s3://bucket/b.mp4"], "season": "autumn"}``.
The connection ``segmind_default`` holds the API key (see the README).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from airflow.sdk import DAG, Param, task

SAMPLE_VIDEO = (
    "https://segmind-resources.s3.amazonaws.com/input/"
    "c08771b9-b671-4c12-9ea7-af4048b9d194-894a8bdf-6064-40ea-a78d-06c1abff262b.mp4"
)

#: http(s) URLs and object storage URIs; not file://, which would name a file on the worker.
VIDEO_PATTERN = r"^(https?|s3|s3a|gs|gcs|abfs|abfss|az|adl|oss|r2)://\S+$"

with DAG(
    dag_id="example_aleph_taskflow",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["segmind", "aleph", "example"],
    params={
        "videos": Param(
            [SAMPLE_VIDEO],
            type="array",
            items={"type": "string", "pattern": VIDEO_PATTERN},
            minItems=1,
            description="http(s) URLs or object storage URIs of videos of at most 16 MiB each",
        ),
        "season": Param("winter", type="string", minLength=1),
    },
) as dag:

    @task
    def videos(params: dict[str, Any] | None = None) -> list[str]:
        assert params is not None
        return list(params["videos"])

    # The function says what to edit; where outputs go and what the worker may touch stay here, in DAG code.
    @task.runway_aleph(aspect_ratio="16:9")
    def edit(video: str, season: str) -> dict[str, Any]:
        return {"video": video, "prompt": f"make it {season}"}

    edit.partial(season="{{ params.season }}").expand(video=videos())
