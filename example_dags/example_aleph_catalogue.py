"""A consumer of edited videos: every new ``aleph_edited_videos`` event adds one line to a catalogue.

``example_aleph_event_driven`` and ``example_aleph_batch_enrichment`` declare each video they edit as an
event of the ``aleph_edited_videos`` asset; the event's extra says where the copy landed
(``output_path``), which job made it (``request_id``), Segmind's own URL of the output (``output_url``,
valid about an hour) and what it cost (``cost``, None when the API sent none). This DAG is scheduled on
that asset and appends one JSON line per edited video to a catalogue file in object storage: the shape
to follow to publish or index results (a search index, a CMS, a table).

``max_active_runs=1`` keeps two runs from rewriting the file at once (object storage has no append); a
request id already in the catalogue is not written again, so a cleared or retried run adds nothing twice.
By default the catalogue is ``/tmp/aleph-edited/catalogue.jsonl``. In production point it at a bucket with
the Airflow Variable ``aleph_catalogue`` (JSON, read when the task runs)::

    {"catalogue_path": "s3://my-bucket/edited/catalogue.jsonl", "storage_conn_id": "aws_default"}

The file and the connection are the DAG author's choice, never a run's config: a person who may trigger
a run may not be one who may choose where a worker writes.
"""

from __future__ import annotations

import json
import logging
import os
from datetime import datetime
from typing import Any

from airflow.sdk import DAG, Asset, ObjectStoragePath, Variable, task

from airflow_provider_aleph.access import local_roots_param, require_under_roots

EDITED_VIDEOS = Asset("aleph_edited_videos")
DEFAULT_CATALOGUE = "/tmp/aleph-edited/catalogue.jsonl"
#: The Airflow Variable naming the catalogue file and its connection (JSON), read when the task runs.
SETTINGS_VARIABLE = "aleph_catalogue"
#: Local folders the catalogue may be written under (a deployment adds its own in ALEPH_LOCAL_ROOTS).
LOCAL_ROOTS = ["/tmp/aleph-edited", *filter(None, os.environ.get("ALEPH_LOCAL_ROOTS", "").split(os.pathsep))]
log = logging.getLogger(__name__)


def catalogue_records(events: list[Any]) -> list[dict[str, Any]]:
    """One catalogue record per asset event that names an edited video, in event order.

    :param events: the asset events (``triggering_asset_events[asset]``); events without ``request_id``
        and ``output_path`` in their extra (made by hand, say) are skipped with a log line.
    """
    records = []
    for event in events:
        extra = dict(event.extra or {})
        if not extra.get("request_id") or not extra.get("output_path"):
            log.info("Skipped an asset event without request_id and output_path: %s", sorted(extra))
            continue
        source = event.source_dag_id and f"{event.source_dag_id}/{event.source_run_id}/{event.source_task_id}"
        records.append(
            {
                "request_id": extra["request_id"],
                "output_path": extra["output_path"],
                "output_url": extra.get("output_url"),
                "cost": extra.get("cost"),
                "edited_at": event.timestamp.isoformat() if event.timestamp else None,
                "source": source or None,
                "source_map_index": event.source_map_index,
            }
        )
    return records


def catalogue_file() -> ObjectStoragePath:
    """The catalogue the Variable names (a local file only under :data:`LOCAL_ROOTS`), or the default."""
    settings = Variable.get(SETTINGS_VARIABLE, default=None, deserialize_json=True) or {}
    if not isinstance(settings, dict):
        raise ValueError(f"Variable {SETTINGS_VARIABLE} must be a JSON object, got {type(settings).__name__}")
    path = settings.get("catalogue_path") or f"file://{DEFAULT_CATALOGUE}"
    if not isinstance(path, str) or path.endswith("/"):
        raise ValueError(f"Variable {SETTINGS_VARIABLE}: catalogue_path must be a file path or URI; got {path!r}")
    catalogue = ObjectStoragePath(path, conn_id=settings.get("storage_conn_id") or None)
    require_under_roots("catalogue_path", catalogue, local_roots_param(LOCAL_ROOTS))
    return catalogue


with DAG(
    dag_id="example_aleph_catalogue",
    schedule=[EDITED_VIDEOS],
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    tags=["segmind", "aleph", "example", "object-storage"],
) as dag:

    @task
    def append_to_catalogue(triggering_asset_events: Any = None) -> list[str]:
        """Append a line for each edited video of the triggering events; return the request ids added."""
        catalogue = catalogue_file()
        records = catalogue_records(list((triggering_asset_events or {}).get(EDITED_VIDEOS, [])))
        existing = catalogue.read_text() if catalogue.exists() else ""
        known = {json.loads(line)["request_id"] for line in existing.splitlines() if line.strip()}
        new = []
        for record in records:
            if record["request_id"] in known:
                log.info("Request %s is already in the catalogue", record["request_id"])
                continue
            known.add(record["request_id"])
            new.append(record)
        if new:
            catalogue.parent.mkdir(parents=True, exist_ok=True)
            lines = "".join(json.dumps(record, sort_keys=True) + "\n" for record in new)
            catalogue.write_text(existing + lines)
        log.info("Added %d record(s) to %s", len(new), catalogue)
        return [record["request_id"] for record in new]

    append_to_catalogue()
