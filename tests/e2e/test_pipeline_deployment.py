"""The pipeline examples in a real deployment: S3 notifications reach an SQS queue (both moto's standalone
server on loopback), the asset watcher's trigger on the triggerer receives them, the event-driven DAG edits
the videos and the catalogue DAG, scheduled on the edited-videos asset, records them."""

from __future__ import annotations

import json
import signal
import time
import uuid
from typing import TYPE_CHECKING, Any

import boto3
import pytest

from tests.conftest import S3_ACCESS_KEY_ID, S3_REGION, S3_SECRET_ACCESS_KEY
from tests.e2e.batch import wait_until
from tests.e2e.conftest import REPO

if TYPE_CHECKING:
    from tests.conftest import S3Server
    from tests.e2e.conftest import EmulatorProcess
    from tests.support.deployment import AirflowDeployment

pytestmark = pytest.mark.e2e

INGEST_DAG = "example_aleph_event_driven"
CATALOGUE_DAG = "example_aleph_catalogue"
CATALOGUE = "/tmp/aleph-edited/catalogue.jsonl"
SAMPLES = sorted((REPO / "example_dags" / "sample_videos").glob("*.mp4"))
CONN_ID = "aleph_pipeline_aws"
ACCOUNT = "123456789012"  # moto's default account
#: Seconds one receive of the SQS trigger waits for messages (its ``wait_time_seconds``, left at its default).
RECEIVE_WAIT = 1


@pytest.fixture
def watched_queue(deployment: AirflowDeployment, s3_server: S3Server):
    """A bucket whose ``incoming/`` prefix notifies a new SQS queue, and the example configured to watch
    it (connection and Variable set through the REST API); both removed afterwards."""
    sqs = boto3.client(
        "sqs",
        endpoint_url=s3_server.endpoint_url,
        aws_access_key_id=S3_ACCESS_KEY_ID,
        aws_secret_access_key=S3_SECRET_ACCESS_KEY,
        region_name=S3_REGION,
    )
    name = f"aleph-incoming-{uuid.uuid4().hex[:8]}"
    queue_url = sqs.create_queue(QueueName=name)["QueueUrl"]
    bucket = s3_server.create_bucket()
    s3_server.client.put_bucket_notification_configuration(
        Bucket=bucket,
        NotificationConfiguration={
            "QueueConfigurations": [
                {
                    "QueueArn": f"arn:aws:sqs:{S3_REGION}:{ACCOUNT}:{name}",
                    "Events": ["s3:ObjectCreated:*"],
                    "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": "incoming/"}]}},
                }
            ]
        },
    )
    extra = {"endpoint_url": s3_server.endpoint_url, "region_name": S3_REGION}
    connection = {"connection_id": CONN_ID, "conn_type": "aws", "login": S3_ACCESS_KEY_ID}
    connection |= {"password": S3_SECRET_ACCESS_KEY, "extra": json.dumps(extra)}
    deployment.api("POST", "/connections", json=connection)
    # The loopback queue is named explicitly (scheme "sqs"), and receives follow one another 1 s apart.
    settings = {"queue_url": queue_url, "aws_conn_id": CONN_ID, "region_name": S3_REGION, "wait_seconds": 1}
    deployment.api("POST", "/variables", json={"key": "aleph_event_ingest", "value": json.dumps(settings)})
    try:
        yield bucket, sqs, queue_url
    finally:
        deployment.api("DELETE", "/variables/aleph_event_ingest")
        deployment.api("DELETE", f"/connections/{CONN_ID}")


def _runs(deployment: AirflowDeployment, dag_id: str) -> list[dict[str, Any]]:
    return list(deployment.api("GET", f"/dags/{dag_id}/dagRuns", params={"limit": 100})["dag_runs"])


def test_uploaded_videos_are_edited_once_each_and_catalogued_across_a_triggerer_kill(
    deployment: AirflowDeployment, e2e_emulator: EmulatorProcess, s3_server: S3Server, watched_queue
):
    bucket, sqs, queue_url = watched_queue
    deployment.wait_for_dag(INGEST_DAG)
    deployment.wait_for_dag(CATALOGUE_DAG)
    e2e_emulator.reset()

    s3_server.put(bucket, "incoming/first.mp4", SAMPLES[0].read_bytes(), content_type="video/mp4")
    s3_server.put(bucket, "incoming/second.mp4", SAMPLES[1].read_bytes(), content_type="video/mp4")
    s3_server.put(bucket, "incoming/readme.txt", b"not a video", content_type="text/plain")

    def edited() -> list[str]:
        return [key for key in s3_server.keys(bucket) if key.startswith("aleph-edited/") and key.endswith(".mp4")]

    # The dag-processor re-parses the example with the Variable set, the triggerer starts the watcher,
    # which receives the notifications that waited in the queue meanwhile.
    wait_until(lambda: len(edited()) == 2, 420, "two edited videos", deployment)
    assert edited() == ["aleph-edited/first-edited.mp4", "aleph-edited/second-edited.mp4"]

    def ingest_runs_done() -> bool:
        runs = _runs(deployment, INGEST_DAG)
        return bool(runs) and all(run["state"] in ("success", "failed") for run in runs)

    wait_until(ingest_runs_done, 120, "the event-driven runs to end", deployment)
    assert {run["state"] for run in _runs(deployment, INGEST_DAG)} == {"success"}
    assert e2e_emulator.stats()["submissions"] == 2
    assert not [key for key in s3_server.keys(bucket) if key.startswith("incoming/") and "edited" in key]

    # A triggerer killed while a message waits in the queue, not yet received: the next one receives it.
    assert deployment.kill("triggerer") == -signal.SIGKILL
    try:
        # A receive the dead triggerer left open still runs on the server for up to RECEIVE_WAIT and
        # would take a message put now (SQS then shows it again after the visibility timeout, 30 s): the
        # kill case here is the other one, a message that arrives while no triggerer is receiving.
        time.sleep(RECEIVE_WAIT + 2)
        s3_server.put(bucket, "incoming/third.mp4", SAMPLES[2].read_bytes(), content_type="video/mp4")

        def waiting() -> bool:
            attributes = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["ApproximateNumberOfMessages"])
            return attributes["Attributes"]["ApproximateNumberOfMessages"] == "1"

        wait_until(waiting, 60, "the notification to wait in the queue", deployment)
    finally:
        deployment.start_component("triggerer")

    wait_until(lambda: len(edited()) == 3, 300, "the third edited video", deployment)
    wait_until(ingest_runs_done, 120, "the event-driven runs to end", deployment)
    assert e2e_emulator.stats()["submissions"] == 3, "nothing lost, nothing paid twice"

    # Checked last: on SQLite, Airflow may queue an edit's asset event just after the consumer's run was made
    # from an earlier one; such an event is consumed by the next run, which the third edit brings about.
    request_ids = {
        json.loads(s3_server.get(bucket, f"{key}.segmind.json"))["request_id"]
        for key in ["aleph-edited/first-edited.mp4", "aleph-edited/second-edited.mp4", "aleph-edited/third-edited.mp4"]
    }

    def catalogued() -> list[dict[str, Any]]:
        return [record for record in _catalogued() if f"@{bucket}/" in record["output_path"]]

    records = wait_until(lambda: len(catalogued()) == 3 and catalogued(), 180, "three catalogue records", deployment)
    assert sorted(record["request_id"] for record in records) == sorted(request_ids)
    names = {record["output_path"].rsplit("/", 1)[-1] for record in records}
    assert names == {"first-edited.mp4", "second-edited.mp4", "third-edited.mp4"}


def _catalogued() -> list[dict[str, Any]]:
    try:
        with open(CATALOGUE) as lines:
            return [json.loads(line) for line in lines if line.strip()]
    except FileNotFoundError:
        return []
