"""Event-driven enrichment: a video lands under a bucket prefix, and a run edits it with Runway Gen4 Aleph.

The route is Airflow's own: the bucket sends S3 ``ObjectCreated`` notifications of the watched prefix to
an SQS queue; the ``aleph_incoming_videos`` asset watches that queue with common-messaging's
``MessageQueueTrigger`` (on the triggerer, no worker slot held), and every batch of messages becomes an
asset event that schedules this DAG. Airflow may fold several events into one run and one message may
carry several S3 records: the run edits every record of every triggering event once (one mapped task
each), skips (with a log line) objects that are not videos or not under the watched prefix, and declares
each result as an event of ``aleph_edited_videos``, which ``example_aleph_catalogue`` is scheduled on.

Configure it with the Airflow Variable ``aleph_event_ingest`` (JSON; an ``AIRFLOW_VAR_ALEPH_EVENT_INGEST``
environment variable works too), read when the DAG is parsed::

    {"queue_url": "https://sqs.eu-west-1.amazonaws.com/123456789012/aleph-incoming",
     "aws_conn_id": "aws_default", "region_name": "eu-west-1", "wait_seconds": 20,
     "buckets": ["my-bucket"], "watched_prefix": "incoming/", "output_prefix": "s3://my-bucket/edited/"}

Where videos are read from and results written to is the DAG author's choice, made here and in that
Variable, never in a run's config: a person who may trigger a run may not be one who may choose which
buckets and connections a worker uses. The run's only param is the prompt. With ``buckets`` set, a
record naming another bucket is skipped with a log line (anyone who may send to the queue could name one).

Without ``queue_url`` the asset has no watcher: nothing polls a queue that does not exist, and the DAG
runs only when something else records an event of the asset. Results never land under the watched
prefix (the run fails before any credit is spent if ``output_prefix`` points there), so an edited video
cannot trigger another edit. Outputs are named after their input, and ``if_output_exists="reuse"`` (the
default) makes a redelivered message cost nothing: the output it would make already exists.

Needs ``apache-airflow-providers-common-messaging`` and ``apache-airflow-providers-amazon`` (s3fs extra).
"""

from __future__ import annotations

import json
import logging
import os
import re
from datetime import datetime
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import unquote_plus, urlsplit

from airflow.providers.common.compat.sdk import AirflowFailException
from airflow.sdk import DAG, Asset, AssetWatcher, Param, Variable, task

from airflow_provider_aleph.operators.aleph import RunwayAlephOperator

#: The Airflow Variable holding this DAG's queue and prefixes (JSON), read at parse time.
SETTINGS_VARIABLE = "aleph_event_ingest"
VIDEO_SUFFIXES = (".mp4", ".mov", ".webm")
DEFAULT_WATCHED_PREFIX = "incoming/"
#: Where results land when ``output_prefix`` is not set: this folder of the bucket the video came from.
DEFAULT_OUTPUT_FOLDER = "aleph-edited/"
#: Local folders a run may write results to (a deployment adds its own in ALEPH_LOCAL_ROOTS).
LOCAL_ROOTS = ["/tmp/aleph-edited", *filter(None, os.environ.get("ALEPH_LOCAL_ROOTS", "").split(os.pathsep))]
MAX_CONCURRENT_JOBS = 8
EDITED_VIDEOS = Asset("aleph_edited_videos")
log = logging.getLogger(__name__)


def _settings() -> dict[str, Any]:
    try:
        value = Variable.get(SETTINGS_VARIABLE, default=None)
    except ImportError:
        # Airflow 3.0 reads Variables at parse time only inside a dag-processor; a DagBag built in a plain
        # process (a test, `python dag.py`) has no way to ask, so it sees the environment variable only.
        value = os.environ.get(f"AIRFLOW_VAR_{SETTINGS_VARIABLE.upper()}")
    if not value:
        return {}
    settings = json.loads(value) if isinstance(value, str) else value
    if not isinstance(settings, dict):
        raise ValueError(f"Variable {SETTINGS_VARIABLE} must be a JSON object, got {type(settings).__name__}")
    return settings


def _watchers(settings: dict[str, Any]) -> list[AssetWatcher]:
    """The queue watcher, or none when no queue is configured."""
    queue_url = settings.get("queue_url")
    if not queue_url:
        return []
    try:
        from airflow.providers.common.messaging.triggers.msg_queue import MessageQueueTrigger
    except ImportError as err:
        raise ImportError(
            f"Variable {SETTINGS_VARIABLE} names a queue: install apache-airflow-providers-common-messaging "
            "and apache-airflow-providers-amazon to watch it"
        ) from err
    extra = {key: settings[key] for key in ("region_name",) if settings.get(key)}
    if settings.get("wait_seconds") is not None:
        extra["waiter_delay"] = int(settings["wait_seconds"])  # pause between two receives
    # scheme="sqs" names the Amazon provider's SQS trigger, so any queue URL works (a queue URL given as
    # ``queue=`` must look like an AWS one). Received messages are deleted: each becomes one asset event.
    trigger = MessageQueueTrigger(
        scheme="sqs",
        sqs_queue=queue_url,
        aws_conn_id=settings.get("aws_conn_id", "aws_default"),
        max_messages=10,
        **extra,
    )
    return [AssetWatcher(name="aleph_incoming_videos_queue", trigger=trigger)]


def _text(settings: dict[str, Any], name: str, default: str, pattern: str, allowed: str) -> str:
    """A string setting, checked when the DAG is parsed."""
    value = settings.get(name, default)
    if not isinstance(value, str) or not re.fullmatch(pattern, value):
        raise ValueError(f"Variable {SETTINGS_VARIABLE}: {name} must be {allowed}; got {value!r}")
    return value


SETTINGS = _settings()
INCOMING_VIDEOS = Asset("aleph_incoming_videos", watchers=_watchers(SETTINGS))
WATCHED_PREFIX = _text(SETTINGS, "watched_prefix", DEFAULT_WATCHED_PREFIX, r"\S+/", "a key prefix ending in /")
#: Empty: results go to DEFAULT_OUTPUT_FOLDER of the bucket the video came from.
OUTPUT_PREFIX = _text(SETTINGS, "output_prefix", "", r"|[A-Za-z][A-Za-z0-9+.-]*://\S+/", "a URI ending in /")
STORAGE_CONN_ID = _text(
    SETTINGS, "storage_conn_id", SETTINGS.get("aws_conn_id", "aws_default"), r"[\w.-]*", "a connection id"
)
#: The buckets whose records are edited; empty: whichever the queue's notifications name.
BUCKETS = frozenset(SETTINGS.get("buckets") or ())


def s3_records(extra: dict[str, Any]) -> list[tuple[str, str]]:
    """(bucket, key) of every S3 ``ObjectCreated`` record in one asset event of the queue watcher.

    The event's extra holds the trigger's payload: a batch of SQS messages, each body an S3 notification
    with a list of records. Test messages (``s3:TestEvent``) and other events carry no such record.

    :param extra: the asset event's ``extra``.
    """
    found = []
    for message in (extra.get("payload") or {}).get("message_batch") or []:
        try:
            body = json.loads(message.get("Body") or "{}")
        except ValueError:
            continue
        for record in body.get("Records") or [] if isinstance(body, dict) else []:
            if not str(record.get("eventName", "")).startswith("ObjectCreated"):
                continue
            s3 = record.get("s3") or {}
            # S3 sends keys URL-encoded, a space as "+".
            found.append((s3["bucket"]["name"], unquote_plus(s3["object"]["key"])))
    return found


def watches(location: str, bucket: str, watched: str) -> bool:
    """Whether an object storage URI lies under the watched prefix of ``bucket``.

    :param location: a URI such as ``s3://conn_id@bucket/key`` (the connection id is ignored).
    :param bucket: the bucket whose notifications schedule this DAG.
    :param watched: the key prefix they are sent for.
    """
    parts = urlsplit(location)
    if parts.scheme not in ("s3", "s3a"):
        return False
    return parts.netloc.rpartition("@")[2] == bucket and parts.path.lstrip("/").startswith(watched)


with DAG(
    dag_id="example_aleph_event_driven",
    schedule=[INCOMING_VIDEOS],
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["segmind", "aleph", "example", "object-storage", "event-driven"],
    params={"prompt": Param("make it winter", type="string", minLength=1)},
) as dag:

    @task
    def videos_from_events(triggering_asset_events: Any = None) -> list[dict[str, str]]:
        """One entry per video record of the triggering events, each once: where to read it, where its
        result goes. Refuses an output prefix under the watched one before anything is spent."""
        watched, conn = WATCHED_PREFIX, STORAGE_CONN_ID
        edits: dict[str, dict[str, str]] = {}
        for event in (triggering_asset_events or {}).get(INCOMING_VIDEOS, []):
            for bucket, key in s3_records(dict(event.extra or {})):
                if BUCKETS and bucket not in BUCKETS:
                    log.info("Skipped s3://%s/%s: not in the buckets %s", bucket, key, ", ".join(sorted(BUCKETS)))
                    continue
                if not key.startswith(watched):
                    log.info("Skipped s3://%s/%s: not under the watched prefix %r", bucket, key, watched)
                    continue
                if PurePosixPath(key).suffix.lower() not in VIDEO_SUFFIXES:
                    log.info("Skipped s3://%s/%s: not a video (%s)", bucket, key, ", ".join(VIDEO_SUFFIXES))
                    continue
                output_prefix = OUTPUT_PREFIX or f"s3://{conn}@{bucket}/{DEFAULT_OUTPUT_FOLDER}"
                if watches(output_prefix, bucket, watched):
                    raise AirflowFailException(
                        f"output_prefix {output_prefix} is under the watched prefix {watched!r} of bucket {bucket}: "
                        "each result would start another edit; choose a prefix outside it"
                    )
                relative = PurePosixPath(key[len(watched) :])
                video = f"s3://{conn}@{bucket}/{key}" if conn else f"s3://{bucket}/{key}"
                edits.setdefault(
                    video,
                    {"video": video, "output_path": f"{output_prefix}{relative.with_suffix('')}-edited.mp4"},
                )
        if not edits:
            log.info("No video among the triggering events: nothing to edit")
        return list(edits.values())

    RunwayAlephOperator.partial(
        task_id="edit",
        prompt="{{ params.prompt }}",
        if_output_exists="reuse",  # a redelivered message finds its output made and pays nothing
        max_active_tis_per_dag=MAX_CONCURRENT_JOBS,
        outlets=[EDITED_VIDEOS],
        local_roots=LOCAL_ROOTS,
        map_index_template="{{ task.video.rsplit('/', 1)[-1] }}",
    ).expand_kwargs(videos_from_events())
