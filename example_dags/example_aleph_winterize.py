"""Make a video wintry with Runway Gen4 Aleph: one video URL in, the edited video's URL out in XCom.

Trigger it with a config to edit another clip, e.g. ``{"video": "https://.../clip.mp4"}``.
The connection ``segmind_default`` holds the API key (see the README).
"""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import DAG, Param

from airflow_provider_aleph.operators.aleph import RunwayAlephOperator

SAMPLE_VIDEO = (
    "https://segmind-resources.s3.amazonaws.com/input/"
    "c08771b9-b671-4c12-9ea7-af4048b9d194-894a8bdf-6064-40ea-a78d-06c1abff262b.mp4"
)

#: http(s) URLs and object storage URIs; not file://, which would name a file on the worker.
VIDEO_PATTERN = r"^(https?|s3|s3a|gs|gcs|abfs|abfss|az|adl|oss|r2)://\S+$"

with DAG(
    dag_id="example_aleph_winterize",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["segmind", "aleph", "example"],
    params={
        # A run's params are user input: only web and bucket URIs, never a file on the worker.
        "video": Param(
            SAMPLE_VIDEO,
            type="string",
            pattern=VIDEO_PATTERN,
            description="http(s) URL or object storage URI (s3://, gs://...) of a video of at most 16 MiB",
        ),
        "prompt": Param("make it winter", type="string", minLength=1),
        "seed": Param(42, type="integer"),
    },
) as dag:
    # Deferrable by default: while Aleph works (minutes), the task waits in the triggerer and
    # frees its worker slot. XCom "request_id" appears as soon as Segmind accepts the job.
    winterize = RunwayAlephOperator(
        task_id="winterize",
        prompt="{{ params.prompt }}",
        video="{{ params.video }}",
        aspect_ratio="16:9",
        seed="{{ params.seed }}",
    )
