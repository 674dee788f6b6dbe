"""Batch enrichment: edit every video under an input prefix with Runway Gen4 Aleph, land each result
under an output prefix.

By default the prefixes are local folders: the three sample clips shipped beside this file go in, and
the edited videos come out in ``/tmp/aleph-edited/``. For buckets, trigger it with a config such as::

    {"input_prefix": "s3://my-bucket/raw/", "output_prefix": "s3://my-bucket/edited/",
     "storage_conn_id": "aws_default"}

Inputs in a bucket are presigned when the filesystem can sign URLs (S3, GCS) and uploaded to
Segmind's files API otherwise (``input_mode``). Each result is copied into the output prefix right
after its job completes, well inside Segmind's one-hour retention, and recorded as an event of the
``aleph_edited_videos`` asset, so downstream DAGs can be scheduled on newly edited videos. In the UI,
each mapped task is named after its input's file name (``map_index_template``), not its index.
"""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path, PurePosixPath

from airflow.sdk import DAG, Asset, ObjectStoragePath, Param, task

from airflow_provider_aleph.access import local_roots_param, require_under_roots
from airflow_provider_aleph.operators.aleph import RunwayAlephOperator

SAMPLE_DIR = Path(__file__).resolve().parent / "sample_videos"
SAMPLES = SAMPLE_DIR.as_uri() + "/"
DEFAULT_OUTPUT = "/tmp/aleph-edited"
#: The local folders this DAG may read videos from and write results to. It is DAG code, not a run's
#: config: a run that names another local folder is refused before anything is read or spent. Besides
#: the samples and the default output folder, a deployment may list its own in ALEPH_LOCAL_ROOTS
#: (separated by ``os.pathsep``), which only whoever deploys Airflow can set.
LOCAL_ROOTS = [SAMPLE_DIR, DEFAULT_OUTPUT, *filter(None, os.environ.get("ALEPH_LOCAL_ROOTS", "").split(os.pathsep))]
#: What the prefixes may be: a folder or bucket URI (schemes of object storage, or file:// under LOCAL_ROOTS).
PREFIX_PATTERN = r"^[A-Za-z][A-Za-z0-9+.-]*://\S+/$"
VIDEO_SUFFIXES = (".mp4", ".mov", ".webm")
#: At most this many Aleph jobs of this DAG at once (Airflow 3.3+ counts deferred tasks here; for an
#: account-wide cap across DAGs use a pool created with --include-deferred, see the README).
MAX_CONCURRENT_JOBS = 8
EDITED_VIDEOS = Asset("aleph_edited_videos")


def _with_conn(uri: str, conn_id: str | None) -> ObjectStoragePath:
    return ObjectStoragePath(uri, conn_id=conn_id or None)


with DAG(
    dag_id="example_aleph_batch_enrichment",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["segmind", "aleph", "example", "object-storage"],
    params={
        "input_prefix": Param(
            SAMPLES,
            type="string",
            pattern=PREFIX_PATTERN,
            description="folder or bucket prefix holding the videos, ending in /",
        ),
        "output_prefix": Param(
            f"file://{DEFAULT_OUTPUT}/",
            type="string",
            pattern=PREFIX_PATTERN,
            description="where results land, ending in /",
        ),
        "storage_conn_id": Param("", type="string", description="connection of the bucket (empty: local/default)"),
        "prompt": Param("make it winter", type="string", minLength=1),
        "input_mode": Param("auto", enum=["auto", "presign", "upload"]),
    },
) as dag:

    @task
    def list_videos(**context) -> list[dict[str, str]]:
        """One entry per video under the input prefix: where to read it and where its result goes.

        The URIs carry the connection id (``s3://conn_id@bucket/key``), so the operator reads and
        writes through the same connection.
        """
        params = context["params"]
        conn_id = params["storage_conn_id"]
        source = _with_conn(params["input_prefix"], conn_id)
        target = _with_conn(params["output_prefix"], conn_id)
        # The prefixes come from the run's config: list a local folder only under the DAG's roots.
        require_under_roots("input_prefix", source, local_roots_param(LOCAL_ROOTS))
        videos = sorted(p for p in source.iterdir() if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES)
        if not videos:
            raise ValueError(f"no videos ({', '.join(VIDEO_SUFFIXES)}) under input_prefix {params['input_prefix']}")
        return [
            {"video": str(video), "output_path": str(target / f"{PurePosixPath(video.name).stem}-edited.mp4")}
            for video in videos
        ]

    RunwayAlephOperator.partial(
        task_id="edit",
        prompt="{{ params.prompt }}",
        input_mode="{{ params.input_mode }}",
        max_active_tis_per_dag=MAX_CONCURRENT_JOBS,
        outlets=[EDITED_VIDEOS],
        local_roots=LOCAL_ROOTS,
        # Readable names for the mapped tasks in the UI: the input's file name instead of 0, 1, 2...
        map_index_template="{{ task.video.rsplit('/', 1)[-1] }}",
    ).expand_kwargs(list_videos())
