"""Object storage in and out, through real dag.test() runs: local files uploaded to the files API,
results streamed into an output folder, oversized and missing objects refused before any submission."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.dags.helpers import register_assets, state, task_instances, xcom
from tests.support.examples import load_example

pytestmark = pytest.mark.dag

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / "example_dags" / "sample_videos"


def _batch_conf(input_prefix: str, output_prefix: str, **more: str) -> dict[str, str]:
    conf = {
        "input_prefix": input_prefix,
        "output_prefix": output_prefix,
        "storage_conn_id": "",
        "prompt": "make it winter",
        "input_mode": "auto",
    }
    return conf | more


def _asset_events(dag_id: str) -> list[dict]:
    from airflow.models.asset import AssetEvent
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        rows = session.scalars(select(AssetEvent).where(AssetEvent.source_dag_id == dag_id)).all()
        return [dict(row.extra or {}) for row in rows]


def test_batch_example_edits_every_local_video_into_the_output_folder(segmind_conn, tmp_path):
    example = load_example("example_aleph_batch_enrichment")
    register_assets(example.dag)
    out = tmp_path / "edited"

    dag_run = example.dag.test(run_conf=_batch_conf(SAMPLES.as_uri() + "/", out.as_uri() + "/"))

    assert state(dag_run) == "success"
    inputs = sorted(SAMPLES.glob("*.mp4"))
    assert len(inputs) == 3
    assert segmind_conn.submissions == 3
    # file:// cannot be presigned: each video went through the files API, never as a local path.
    sent = sorted(job.payload["video"] for job in segmind_conn.jobs.values())
    assert all(url.startswith(f"{segmind_conn.base_url}/assets/") for url in sent), sent
    results = [xcom(dag_run, "return_value", map_index=i) for i in range(3)]
    for source, result in zip(inputs, results, strict=True):
        landed = out / f"{source.stem}-edited.mp4"
        assert result["output_path"] == landed.as_uri()
        served = httpx.get(result["output_url"]).content
        assert landed.read_bytes() == served, "the copy must be byte-identical to what the API served"
        assert served == source.read_bytes(), "the emulator's 'edit' returns the uploaded input"
    edited = sorted(f"{p.stem}-edited.mp4" for p in inputs)
    # Each output has its record beside it (what made it, for a later run to reuse), and nothing else is left.
    assert sorted(p.name for p in out.iterdir()) == sorted([*edited, *(f"{name}.segmind.json" for name in edited)])
    # map_index_template: the UI names each mapped task after its input's file name.
    assert [ti.rendered_map_index for ti in task_instances(dag_run)] == [p.name for p in inputs]
    events = _asset_events("example_aleph_batch_enrichment")
    assert sorted(e["output_path"] for e in events) == sorted(r["output_path"] for r in results)
    # Each event says what its job cost, as the emulator reported it.
    assert [e["cost"] for e in events] == [segmind_conn.config.cost_per_job] * 3


def test_oversized_object_is_refused_from_its_metadata_before_any_upload(segmind_conn, tmp_path):
    import aleph_test_dags

    big = tmp_path / "big.mp4"
    with big.open("wb") as handle:
        handle.truncate(17 * 1024 * 1024)  # sparse: the size is in the metadata, nothing is read
    conf = {"prompt": "make it winter", "video": big.as_uri(), "aspect_ratio": None}
    dag_run = aleph_test_dags.parameters.test(
        run_conf=conf | {"reference_image": None, "seed": None, "input_mode": "upload"}
    )

    assert state(dag_run) == "failed"
    (ti,) = task_instances(dag_run)
    assert ti.try_number == 1
    assert segmind_conn.submissions == 0
    assert segmind_conn.stats()["uploads"]["count"] == 0


@pytest.mark.parametrize("mode", ["auto", "upload", "presign"])
def test_missing_object_fails_naming_the_uri(mode, segmind_conn, tmp_path, capfd):
    import aleph_test_dags

    missing = (tmp_path / "nowhere" / "clip.mp4").as_uri()
    conf = {"prompt": "make it winter", "video": missing, "aspect_ratio": None, "reference_image": None}
    dag_run = aleph_test_dags.parameters.test(run_conf=conf | {"seed": None, "input_mode": mode})

    assert state(dag_run) == "failed"
    assert segmind_conn.submissions == 0
    out, err = capfd.readouterr()
    assert "Invalid parameter 'video'" in out + err
    assert missing.removeprefix("file://") in out + err


@pytest.mark.parametrize("mode", ["presign", "upload"])
def test_batch_example_from_bucket_to_bucket_on_a_real_s3_server(mode, segmind_conn, s3_server, s3_bucket):
    example = load_example("example_aleph_batch_enrichment")
    register_assets(example.dag)
    inputs = {p.name: p.read_bytes() for p in sorted(SAMPLES.glob("*.mp4"))}
    for name, data in inputs.items():
        s3_server.put(s3_bucket, f"raw/{name}", data, content_type="video/mp4")
    conf = _batch_conf(
        f"s3://{s3_bucket}/raw/", f"s3://{s3_bucket}/edited/", storage_conn_id=s3_server.conn_id, input_mode=mode
    )

    dag_run = example.dag.test(run_conf=conf)

    assert state(dag_run) == "success"
    assert segmind_conn.submissions == 3
    assert [ti.rendered_map_index for ti in task_instances(dag_run)] == sorted(inputs)
    sent = sorted(job.payload["video"] for job in segmind_conn.jobs.values())
    if mode == "presign":
        # The emulator fetched each object itself, from the S3 server, through a presigned URL.
        assert all(url.startswith(f"{s3_server.endpoint_url}/{s3_bucket}/raw/") for url in sent), sent
        assert all("Signature=" in url for url in sent), "the URL sent must be presigned"
        assert segmind_conn.stats()["uploads"]["count"] == 0
    else:
        assert all(url.startswith(f"{segmind_conn.base_url}/assets/") for url in sent), sent
    for name, data in inputs.items():
        edited = s3_server.get(s3_bucket, f"edited/{Path(name).stem}-edited.mp4")
        assert edited == data, "the output copied back must be byte-identical to what the emulator served"
    results = [xcom(dag_run, "return_value", map_index=i) for i in range(3)]
    for result in results:
        assert result["output_path"].startswith("s3://")
        assert httpx.get(result["output_url"]).content == s3_server.get(
            s3_bucket, result["output_path"].split(f"{s3_bucket}/", 1)[1]
        )
