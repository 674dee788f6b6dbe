"""Never pay twice across runs, through real dag.test() runs: a second run of the same DAG reuses the output
its first run copied (zero submissions, the first request id), anything changed submits again, and an
output_path that cannot be written fails before any submission. On local files and on moto's S3 server."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.dags.helpers import failure_message, register_assets, says, state, xcom

pytestmark = pytest.mark.dag

SAMPLE = Path(__file__).resolve().parents[2] / "example_dags" / "sample_videos"


def _video(folder: Path, data: bytes | None = None) -> Path:
    video = folder / "clip.mp4"
    video.write_bytes(data if data is not None else next(iter(sorted(SAMPLE.glob("*.mp4")))).read_bytes())
    return video


def _conf(video: str, output_path: str, **more: str) -> dict[str, str]:
    return {"prompt": "make it winter", "video": video, "output_path": output_path, "if_output_exists": "reuse"} | more


def _asset_events(dag_run) -> list[dict]:
    from airflow.models.asset import AssetEvent
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        rows = session.scalars(
            select(AssetEvent).where(
                AssetEvent.source_dag_id == dag_run.dag_id, AssetEvent.source_run_id == dag_run.run_id
            )
        ).all()
        return [dict(row.extra or {}) for row in rows]


def _run(dag, conf: dict[str, str]):
    return dag.test(run_conf=conf)


@pytest.fixture
def reuse_dag():
    import reuse_test_dags

    register_assets(reuse_test_dags.aleph)
    return reuse_test_dags.aleph


def test_second_run_reuses_the_first_output_without_submitting(segmind_conn, reuse_dag, tmp_path):
    video = _video(tmp_path)
    target = tmp_path / "out" / "edited.mp4"
    conf = _conf(video.as_uri(), target.as_uri())

    first = _run(reuse_dag, conf)
    assert state(first) == "success"
    assert segmind_conn.submissions == 1
    first_result = xcom(first, "return_value")
    assert len(_asset_events(first)) == 1
    record = json.loads((tmp_path / "out" / "edited.mp4.segmind.json").read_text())
    assert record["request_id"] == first_result["request_id"]
    assert record["model"] == "runway-gen4-aleph"
    assert record["fingerprint"]
    copied = target.read_bytes()

    second = _run(reuse_dag, conf)

    assert state(second) == "success"
    assert segmind_conn.submissions == 1, "the second run must not pay again"
    assert xcom(second, "request_id") == first_result["request_id"]
    assert xcom(second, "return_value") == first_result
    assert _asset_events(second) == [], "nothing new was made"
    assert target.read_bytes() == copied


def test_reuse_also_holds_when_the_first_run_waited_in_the_worker(segmind_conn, tmp_path):
    import reuse_test_dags

    video = _video(tmp_path)
    conf = _conf(video.as_uri(), (tmp_path / "edited.mp4").as_uri())
    first = _run(reuse_test_dags.aleph_in_worker, conf)
    second = _run(reuse_test_dags.aleph_in_worker, conf)

    assert state(first) == state(second) == "success"
    assert segmind_conn.submissions == 1
    assert xcom(second, "request_id") == xcom(first, "request_id")


@pytest.mark.parametrize("change", ["prompt", "input content", "overwrite", "record replaced", "output replaced"])
def test_anything_changed_submits_once_more_and_replaces_the_output(change, segmind_conn, reuse_dag, tmp_path):
    video = _video(tmp_path)
    target = tmp_path / "edited.mp4"
    conf = _conf(video.as_uri(), target.as_uri())
    first = _run(reuse_dag, conf)
    assert state(first) == "success"
    if change == "prompt":
        conf["prompt"] = "make it summer"
    elif change == "input content":
        video.write_bytes(video.read_bytes()[:-1000])
        os.utime(video, (1_000_000_000, 1_000_000_000))  # a new modification time, whatever the clock does
    elif change == "overwrite":
        conf["if_output_exists"] = "overwrite"
    elif change == "record replaced":
        (tmp_path / "edited.mp4.segmind.json").write_text("{not json")
    else:
        target.write_bytes(b"something else entirely")

    second = _run(reuse_dag, conf)

    assert state(second) == "success"
    assert segmind_conn.submissions == 2
    assert xcom(second, "request_id") != xcom(first, "request_id")
    record = json.loads((tmp_path / "edited.mp4.segmind.json").read_text())
    assert record["request_id"] == xcom(second, "request_id")
    assert len(_asset_events(second)) == 1
    assert target.read_bytes() == video.read_bytes(), "the emulator's edit returns its input"


def test_fail_mode_refuses_an_existing_output_before_submitting(segmind_conn, reuse_dag, tmp_path, capfd):
    video = _video(tmp_path)
    target = tmp_path / "edited.mp4"
    target.write_bytes(b"an earlier result")

    dag_run = _run(reuse_dag, _conf(video.as_uri(), target.as_uri(), if_output_exists="fail"))

    assert state(dag_run) == "failed"
    assert segmind_conn.submissions == 0
    failure = failure_message(capfd)
    assert failure.startswith("Invalid parameter 'output_path'")
    assert says(failure, f"{target.as_uri()} already exists and if_output_exists is 'fail'")
    assert target.read_bytes() == b"an earlier result"


def test_a_rendered_bad_if_output_exists_fails_naming_it(segmind_conn, reuse_dag, tmp_path, capfd):
    video = _video(tmp_path)
    dag_run = _run(reuse_dag, _conf(video.as_uri(), (tmp_path / "e.mp4").as_uri(), if_output_exists="skip"))

    assert state(dag_run) == "failed"
    assert segmind_conn.submissions == 0
    failure = failure_message(capfd)
    assert says(failure, "Invalid parameter 'if_output_exists': must be one of reuse, overwrite, fail; got 'skip'")


def test_an_input_without_identity_is_edited_again(segmind_conn, reuse_dag, tmp_path, capfd):
    # The emulator's sample answers HEAD with a size only: no ETag, no Last-Modified.
    conf = _conf(segmind_conn.sample_url(), (tmp_path / "edited.mp4").as_uri())
    first = _run(reuse_dag, conf)
    second = _run(reuse_dag, conf)

    assert state(first) == state(second) == "success"
    assert segmind_conn.submissions == 2
    out, err = capfd.readouterr()
    assert "an input gives no identity" in out + err


def test_a_folder_output_path_always_submits(segmind_conn, reuse_dag, tmp_path):
    video = _video(tmp_path)
    conf = _conf(video.as_uri(), (tmp_path / "out").as_uri() + "/")
    first = _run(reuse_dag, conf)
    second = _run(reuse_dag, conf)

    assert state(first) == state(second) == "success"
    assert segmind_conn.submissions == 2
    landed = Path(xcom(second, "return_value")["output_path"].removeprefix("file://"))
    assert json.loads(Path(f"{landed}.segmind.json").read_text())["request_id"] == xcom(second, "request_id")


def test_the_generic_operator_reuses_too(segmind_conn, tmp_path):
    import reuse_test_dags

    conf = {"prompt": "a snowy street", "output_path": (tmp_path / "street.png").as_uri()}
    first = _run(reuse_test_dags.generic, conf)
    second = _run(reuse_test_dags.generic, conf)

    assert state(first) == state(second) == "success"
    assert segmind_conn.submissions == 1
    assert xcom(second, "return_value") == xcom(first, "return_value")


# -- an output_path that cannot be written is found out before any submission ---------------------------


def test_a_file_where_the_output_folder_should_be_fails_before_submitting(segmind_conn, reuse_dag, tmp_path, capfd):
    video = _video(tmp_path)
    (tmp_path / "taken").write_text("a file, not a folder")
    target = (tmp_path / "taken" / "edited.mp4").as_uri()

    dag_run = _run(reuse_dag, _conf(video.as_uri(), target))

    assert state(dag_run) == "failed"
    assert segmind_conn.submissions == 0
    assert segmind_conn.stats()["uploads"]["count"] == 0
    failure = failure_message(capfd)
    assert says(failure, f"Invalid parameter 'output_path': {target} cannot be written")


def test_an_unwritable_local_folder_fails_before_submitting(segmind_conn, tmp_path, capfd):
    import reuse_test_dags

    video = _video(tmp_path)
    target = "file:///proc/edited/clip.mp4"

    dag_run = _run(reuse_test_dags.unwritable_root, {"video": video.as_uri(), "output_path": target})

    assert state(dag_run) == "failed"
    assert segmind_conn.submissions == 0
    failure = failure_message(capfd)
    assert says(failure, f"Invalid parameter 'output_path': {target} cannot be written")
    assert says(failure, "nothing was submitted")


# -- the same on a real S3 server (moto) ----------------------------------------------------------------


def test_second_run_on_s3_reuses_and_a_change_submits(segmind_conn, reuse_dag, s3_server, s3_bucket):
    data = next(iter(sorted(SAMPLE.glob("*.mp4")))).read_bytes()
    s3_server.put(s3_bucket, "raw/clip.mp4", data, content_type="video/mp4")
    conf = _conf(s3_server.uri(s3_bucket, "raw/clip.mp4"), s3_server.uri(s3_bucket, "edited/clip.mp4"))

    first = _run(reuse_dag, conf)
    second = _run(reuse_dag, conf)

    assert state(first) == state(second) == "success"
    assert segmind_conn.submissions == 1
    assert xcom(second, "request_id") == xcom(first, "request_id")
    assert xcom(second, "return_value") == xcom(first, "return_value")
    assert _asset_events(second) == []
    record = s3_server.get(s3_bucket, "edited/clip.mp4.segmind.json").decode()
    assert json.loads(record)["request_id"] == xcom(first, "request_id")
    assert "Signature" not in record
    assert "Credential" not in record
    assert s3_server.keys(s3_bucket) == ["edited/clip.mp4", "edited/clip.mp4.segmind.json", "raw/clip.mp4"]

    changed = _run(reuse_dag, conf | {"prompt": "make it summer"})
    assert state(changed) == "success"
    assert segmind_conn.submissions == 2

    s3_server.put(s3_bucket, "raw/clip.mp4", data[:-1000], content_type="video/mp4")
    rewritten = _run(reuse_dag, conf | {"prompt": "make it summer"})
    assert state(rewritten) == "success"
    assert segmind_conn.submissions == 3, "an input overwritten with new content is edited again"
    assert s3_server.get(s3_bucket, "edited/clip.mp4") == data[:-1000]


def test_a_missing_bucket_fails_before_submitting(segmind_conn, reuse_dag, s3_server, s3_bucket, capfd):
    s3_server.put(s3_bucket, "raw/clip.mp4", b"x" * 4096, content_type="video/mp4")
    target = s3_server.uri("aleph-no-such-bucket", "edited/clip.mp4")

    dag_run = _run(reuse_dag, _conf(s3_server.uri(s3_bucket, "raw/clip.mp4"), target))

    assert state(dag_run) == "failed"
    assert segmind_conn.submissions == 0
    assert segmind_conn.stats()["uploads"]["count"] == 0
    failure = failure_message(capfd)
    assert says(failure, "Invalid parameter 'output_path'")
    assert says(failure, "bucket 'aleph-no-such-bucket' does not exist")
    assert "aleph-no-such-bucket/edited/clip.mp4" in failure.replace("\n", "")
