"""The pipeline examples through real dag.test() runs that consume asset events, as scheduled runs do: the
catalogue consumer appends one line per edited video, and the event-driven enrichment edits every video
record of every triggering event once (inputs and outputs on moto's S3 server, jobs on the emulator)."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import quote_plus

import pytest

from tests.dags.asset_events import consuming
from tests.dags.helpers import failure_message, register_assets, says, state, task_instances, xcom
from tests.support.examples import EXAMPLES, load_example

pytestmark = pytest.mark.dag

SAMPLES = sorted((EXAMPLES / "sample_videos").glob("*.mp4"))


# -- the consumer ----------------------------------------------------------------------------------


def _edited(request_id: str, cost: float | None = 0.5) -> dict:
    return {
        "output_path": f"s3://bucket/edited/{request_id}.mp4",
        "request_id": request_id,
        "output_url": f"https://outputs.example.com/{request_id}.mp4",
        "cost": cost,
    }


def _logged(capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture) -> str:
    """What the run logged, wherever Airflow's version sent it (the output or Python's logging)."""
    out, err = capfd.readouterr()
    return out + err + caplog.text


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture
def catalogue_dag():
    example = load_example("example_aleph_catalogue")
    register_assets(example.dag)
    return example.dag


def _catalogue_run(dag, extras: list[dict], catalogue: Path, monkeypatch: pytest.MonkeyPatch, **conf: str):
    source = {"source_dag_id": "example_aleph_event_driven", "source_run_id": "r1", "source_task_id": "edit"}
    monkeypatch.setenv("AIRFLOW_VAR_ALEPH_CATALOGUE", json.dumps({"catalogue_path": catalogue.as_uri()}))
    with consuming(dag.dag_id, "aleph_edited_videos", extras, **source):
        return dag.test(run_conf=conf)


def test_the_consumer_appends_one_line_per_edited_video_of_its_triggering_events(catalogue_dag, tmp_path, monkeypatch):
    catalogue = tmp_path / "catalogue" / "videos.jsonl"

    dag_run = _catalogue_run(catalogue_dag, [_edited("req-a"), _edited("req-b", cost=None)], catalogue, monkeypatch)

    assert state(dag_run) == "success"
    lines = _lines(catalogue)
    assert [line["request_id"] for line in lines] == ["req-a", "req-b"]
    assert lines[0] | {"edited_at": None} == {
        "request_id": "req-a",
        "output_path": "s3://bucket/edited/req-a.mp4",
        "output_url": "https://outputs.example.com/req-a.mp4",
        "cost": 0.5,
        "edited_at": None,
        "source": "example_aleph_event_driven/r1/edit",
        "source_map_index": -1,
    }
    assert lines[0]["edited_at"]
    assert lines[1]["cost"] is None
    assert xcom(dag_run, "return_value", task_id="append_to_catalogue") == ["req-a", "req-b"]


def test_a_later_run_appends_and_never_repeats_a_request_id(catalogue_dag, tmp_path, capfd, caplog, monkeypatch):
    catalogue = tmp_path / "videos.jsonl"
    _catalogue_run(catalogue_dag, [_edited("req-a")], catalogue, monkeypatch)

    events = [_edited("req-a"), {"note": "made by hand"}, _edited("req-c")]
    dag_run = _catalogue_run(catalogue_dag, events, catalogue, monkeypatch)

    assert state(dag_run) == "success"
    assert [line["request_id"] for line in _lines(catalogue)] == ["req-a", "req-c"]
    logged = _logged(capfd, caplog)
    assert "Request req-a is already in the catalogue" in logged
    assert "Skipped an asset event without request_id and output_path" in logged


def test_the_consumer_writes_no_local_file_outside_its_roots(catalogue_dag, capfd, caplog, monkeypatch):
    dag_run = _catalogue_run(catalogue_dag, [_edited("req-a")], Path("/etc/aleph-catalogue.jsonl"), monkeypatch)

    assert state(dag_run) == "failed"
    assert not Path("/etc/aleph-catalogue.jsonl").exists()
    logged = _logged(capfd, caplog)
    assert "catalogue_path" in logged


def test_a_runs_config_does_not_choose_where_the_catalogue_is_written(catalogue_dag, tmp_path, monkeypatch):
    catalogue, elsewhere = tmp_path / "videos.jsonl", tmp_path / "elsewhere.jsonl"
    conf = {"catalogue_path": elsewhere.as_uri(), "storage_conn_id": "someone_elses_bucket"}

    dag_run = _catalogue_run(catalogue_dag, [_edited("req-a")], catalogue, monkeypatch, **conf)

    assert state(dag_run) == "success"
    assert [line["request_id"] for line in _lines(catalogue)] == ["req-a"]
    assert not elsewhere.exists()


# -- the event-driven enrichment -------------------------------------------------------------------


def _notification(bucket: str, *keys: str) -> dict:
    """One SQS message as the watcher's trigger delivers it: its body is S3's event notification."""
    records = [
        {
            "eventVersion": "2.1",
            "eventSource": "aws:s3",
            "awsRegion": "us-east-1",
            "eventName": "ObjectCreated:Put",
            "s3": {
                "s3SchemaVersion": "1.0",
                "configurationId": "aleph-incoming",
                "bucket": {"name": bucket, "arn": f"arn:aws:s3:::{bucket}"},
                "object": {"key": quote_plus(key), "size": 1},
            },
        }
        for key in keys
    ]
    return {"MessageId": f"m-{keys[0]}", "Body": json.dumps({"Records": records})}


def _batch(*messages: dict) -> dict:
    """An asset event's extra, as Airflow records a watcher trigger's event."""
    return {"from_trigger": True, "payload": {"status": "success", "message_batch": list(messages)}}


def _load_ingest(monkeypatch: pytest.MonkeyPatch, s3_server, **settings: object):
    """The event-driven example as parsed with these settings in its Variable (no queue: no watcher)."""
    settings = {"watched_prefix": "incoming/", "storage_conn_id": s3_server.conn_id} | settings
    monkeypatch.setenv("AIRFLOW_VAR_ALEPH_EVENT_INGEST", json.dumps(settings))
    example = load_example("example_aleph_event_driven")
    register_assets(example.dag)
    return example.dag


@pytest.fixture
def ingest_dag(monkeypatch, s3_server):
    return _load_ingest(monkeypatch, s3_server)


def _ingest_run(dag, extras: list[dict], **conf: str):
    with consuming(dag.dag_id, "aleph_incoming_videos", extras):
        return dag.test(run_conf={"prompt": "make it winter"} | conf)


def test_every_video_record_of_every_event_is_edited_once(
    segmind_conn, s3_server, s3_bucket, ingest_dag, capfd, caplog
):
    names = ["a+clip.mp4", "b.mp4", "nested/c.mp4"]
    for name, sample in zip(names, SAMPLES, strict=True):
        s3_server.put(s3_bucket, f"incoming/{name}", sample.read_bytes(), content_type="video/mp4")
    s3_server.put(s3_bucket, "incoming/notes.txt", b"not a video", content_type="text/plain")
    test_event = {"MessageId": "t", "Body": json.dumps({"Service": "Amazon S3", "Event": "s3:TestEvent"})}
    extras = [
        _batch(_notification(s3_bucket, "incoming/a+clip.mp4", "incoming/notes.txt"), test_event),
        _batch(_notification(s3_bucket, "incoming/b.mp4"), _notification(s3_bucket, "incoming/nested/c.mp4")),
        _batch(_notification(s3_bucket, "incoming/b.mp4"), _notification(s3_bucket, "elsewhere/d.mp4")),
    ]

    dag_run = _ingest_run(ingest_dag, extras)

    assert state(dag_run) == "success"
    assert segmind_conn.submissions == 3, "three videos, each once (b.mp4 came twice)"
    assert [ti.rendered_map_index for ti in task_instances(dag_run)] == ["a+clip.mp4", "b.mp4", "c.mp4"]
    keys = s3_server.keys(s3_bucket)
    edited = [key for key in keys if key.endswith(".mp4") and not key.startswith("incoming/")]
    assert edited == ["aleph-edited/a+clip-edited.mp4", "aleph-edited/b-edited.mp4", "aleph-edited/nested/c-edited.mp4"]
    assert [key for key in keys if key.startswith("incoming/")] == [f"incoming/{n}" for n in [*names, "notes.txt"]]
    results = [xcom(dag_run, "return_value", map_index=n) for n in range(3)]
    assert {r["request_id"] for r in results} == {job.request_id for job in segmind_conn.jobs.values()}
    logged = _logged(capfd, caplog)
    assert f"Skipped s3://{s3_bucket}/incoming/notes.txt: not a video" in logged
    assert f"Skipped s3://{s3_bucket}/elsewhere/d.mp4: not under the watched prefix" in logged


def test_a_redelivered_message_pays_nothing(segmind_conn, s3_server, s3_bucket, ingest_dag):
    s3_server.put(s3_bucket, "incoming/a.mp4", SAMPLES[0].read_bytes(), content_type="video/mp4")
    message = _notification(s3_bucket, "incoming/a.mp4")
    first = _ingest_run(ingest_dag, [_batch(message)])
    assert state(first) == "success"
    assert segmind_conn.submissions == 1

    again = _ingest_run(ingest_dag, [_batch(message)])

    assert state(again) == "success"
    assert segmind_conn.submissions == 1, "the output exists, made from the same input: reused"
    assert (
        xcom(again, "return_value", map_index=0)["request_id"] == xcom(first, "return_value", map_index=0)["request_id"]
    )


def test_an_output_prefix_under_the_watched_prefix_is_refused_before_anything_is_spent(
    segmind_conn, s3_server, s3_bucket, monkeypatch, capfd
):
    s3_server.put(s3_bucket, "incoming/a.mp4", SAMPLES[0].read_bytes(), content_type="video/mp4")
    loop = s3_server.uri(s3_bucket, "incoming/edited/")
    dag = _load_ingest(monkeypatch, s3_server, output_prefix=loop)

    dag_run = _ingest_run(dag, [_batch(_notification(s3_bucket, "incoming/a.mp4"))])

    assert state(dag_run) == "failed"
    assert segmind_conn.submissions == 0
    assert s3_server.keys(s3_bucket) == ["incoming/a.mp4"]
    assert says(failure_message(capfd), f"output_prefix {loop} is under the watched prefix 'incoming/'")


def test_a_runs_config_does_not_choose_buckets_prefixes_or_connections(segmind_conn, s3_server, s3_bucket, ingest_dag):
    s3_server.put(s3_bucket, "incoming/a.mp4", SAMPLES[0].read_bytes(), content_type="video/mp4")
    conf = {"output_prefix": s3_server.uri(s3_bucket, "stolen/"), "watched_prefix": "", "storage_conn_id": "other"}

    dag_run = _ingest_run(ingest_dag, [_batch(_notification(s3_bucket, "incoming/a.mp4"))], **conf)

    assert state(dag_run) == "success"
    assert s3_server.keys(s3_bucket) == [
        "aleph-edited/a-edited.mp4",
        "aleph-edited/a-edited.mp4.segmind.json",
        "incoming/a.mp4",
    ]


def test_records_of_a_bucket_the_settings_do_not_name_are_skipped(
    segmind_conn, s3_server, s3_bucket, monkeypatch, capfd, caplog
):
    s3_server.put(s3_bucket, "incoming/a.mp4", SAMPLES[0].read_bytes(), content_type="video/mp4")
    dag = _load_ingest(monkeypatch, s3_server, buckets=["the-only-bucket"])

    dag_run = _ingest_run(dag, [_batch(_notification(s3_bucket, "incoming/a.mp4"))])

    assert state(dag_run) == "success"
    assert segmind_conn.submissions == 0
    assert f"Skipped s3://{s3_bucket}/incoming/a.mp4: not in the buckets the-only-bucket" in _logged(capfd, caplog)


def test_a_watched_prefix_without_its_slash_is_refused_when_the_dag_is_parsed(monkeypatch, s3_server):
    with pytest.raises(ValueError, match=r"watched_prefix must be a key prefix ending in /; got 'incoming'"):
        _load_ingest(monkeypatch, s3_server, watched_prefix="incoming")


# -- the watcher -----------------------------------------------------------------------------------


def test_without_a_queue_the_incoming_asset_has_no_watcher(monkeypatch):
    monkeypatch.delenv("AIRFLOW_VAR_ALEPH_EVENT_INGEST", raising=False)

    example = load_example("example_aleph_event_driven")

    assert example.INCOMING_VIDEOS.watchers == []
    assert example.WATCHED_PREFIX == "incoming/"


def test_a_configured_queue_is_watched_by_the_message_queue_trigger_over_sqs(monkeypatch):
    queue = "http://127.0.0.1:5000/123456789012/aleph-incoming"
    settings = {"queue_url": queue, "aws_conn_id": "aleph_aws", "wait_seconds": 2, "watched_prefix": "raw/"}
    monkeypatch.setenv("AIRFLOW_VAR_ALEPH_EVENT_INGEST", json.dumps(settings))

    example = load_example("example_aleph_event_driven")

    (watcher,) = example.INCOMING_VIDEOS.watchers
    classpath, kwargs = watcher.trigger.serialize()
    assert classpath == "airflow.providers.amazon.aws.triggers.sqs.SqsSensorTrigger"
    assert kwargs["sqs_queue"] == queue
    assert kwargs["aws_conn_id"] == "aleph_aws"
    assert kwargs["waiter_delay"] == 2
    assert example.WATCHED_PREFIX == "raw/"
