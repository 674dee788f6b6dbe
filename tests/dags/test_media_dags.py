"""The media options through real dag.test() runs against the emulator: previews beside a copied output
(``preview=True``), in the result and in the asset event."""

from __future__ import annotations

import sys

import pytest

from tests.dags.helpers import failure_message, register_assets, says, state, xcom
from tests.support.videos import jpeg_size, make_video, probe

pytestmark = pytest.mark.dag


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


@pytest.fixture
def preview_dag():
    import media_test_dags

    register_assets(media_test_dags.preview)
    return media_test_dags.preview


def _conf(video: str, output_path: str, **more: str) -> dict[str, str]:
    return {"prompt": "make it winter", "video": video, "output_path": output_path, "if_output_exists": "reuse"} | more


def test_preview_writes_poster_and_contact_sheet_beside_the_output(segmind_conn, preview_dag, tmp_path):
    video = make_video(tmp_path / "clip.mp4", seconds=2, size=(160, 90))
    target = tmp_path / "out" / "edited.mp4"

    dag_run = preview_dag.test(run_conf=_conf(video.as_uri(), target.as_uri()))

    assert state(dag_run) == "success"
    assert segmind_conn.submissions == 1
    result = xcom(dag_run, "return_value")
    poster, sheet = tmp_path / "out" / "edited.poster.jpg", tmp_path / "out" / "edited.sheet.jpg"
    assert result["preview_path"] == poster.as_uri()
    assert result["contact_sheet_path"] == sheet.as_uri()
    assert result["output_path"] == target.as_uri()
    output = probe(target)
    # The poster is one frame at the video's own size; the sheet a grid of 3 x 2 frames with 4 px gaps.
    assert jpeg_size(poster) == output["size"]
    width, height = output["size"]
    assert jpeg_size(sheet) == (3 * (width + 4) + 4, 2 * (height + 4) + 4)
    [extra] = _asset_events(dag_run)
    assert extra["preview_path"] == result["preview_path"]
    assert extra["contact_sheet_path"] == result["contact_sheet_path"]
    assert extra["output_path"] == result["output_path"]


def test_reused_output_gets_its_missing_previews_without_submitting(segmind_conn, preview_dag, tmp_path):
    video = make_video(tmp_path / "clip.mp4", seconds=2, size=(160, 90))
    target = tmp_path / "out" / "edited.mp4"
    conf = _conf(video.as_uri(), target.as_uri())
    first = preview_dag.test(run_conf=conf)
    assert state(first) == "success"
    poster, sheet = tmp_path / "out" / "edited.poster.jpg", tmp_path / "out" / "edited.sheet.jpg"
    poster.unlink()
    sheet.write_bytes(b"kept: a present sheet is reused, not rewritten")

    second = preview_dag.test(run_conf=conf)

    assert state(second) == "success"
    assert segmind_conn.submissions == 1, "the reused output must not be paid for again"
    result = xcom(second, "return_value")
    assert result["preview_path"] == poster.as_uri()
    assert result["contact_sheet_path"] == sheet.as_uri()
    assert jpeg_size(poster) == (160, 90)
    assert sheet.read_bytes().startswith(b"kept:")


def test_preview_without_output_path_fails_before_any_submit(segmind_conn, preview_dag, tmp_path, capfd):
    video = make_video(tmp_path / "clip.mp4", seconds=1)

    dag_run = preview_dag.test(run_conf=_conf(video.as_uri(), ""))

    assert state(dag_run) == "failed"
    assert segmind_conn.submissions == 0
    message = failure_message(capfd)
    assert says(message, "Invalid parameter 'preview'")
    assert says(message, "needs output_path")


def test_preview_without_output_path_is_refused_when_the_dag_is_parsed():
    from airflow_provider_aleph.exceptions import InvalidParameter
    from airflow_provider_aleph.operators.aleph import RunwayAlephOperator

    with pytest.raises(InvalidParameter, match=r"'preview'.*needs output_path"):
        RunwayAlephOperator(task_id="edit", prompt="make it winter", video="s3://bucket/clip.mp4", preview=True)


def test_preview_without_the_media_extra_fails_before_any_submit(
    segmind_conn, preview_dag, tmp_path, capfd, monkeypatch
):
    video = make_video(tmp_path / "clip.mp4", seconds=1)
    # As on a worker without the extra: importing PyAV fails (dag.test() runs the task in this process).
    monkeypatch.setitem(sys.modules, "av", None)

    dag_run = preview_dag.test(run_conf=_conf(video.as_uri(), (tmp_path / "edited.mp4").as_uri()))

    assert state(dag_run) == "failed"
    assert segmind_conn.submissions == 0
    message = failure_message(capfd)
    assert says(message, "Invalid parameter 'preview'")
    assert says(message, "pip install airflow-provider-aleph[media]")


def test_previews_are_written_beside_an_output_in_a_bucket(segmind_conn, preview_dag, s3_server, s3_bucket, tmp_path):
    video = make_video(tmp_path / "clip.mp4", seconds=2, size=(160, 90))
    output = s3_server.uri(s3_bucket, "edited/clip.mp4")

    dag_run = preview_dag.test(run_conf=_conf(video.as_uri(), output))

    assert state(dag_run) == "success"
    result = xcom(dag_run, "return_value")
    assert sorted(s3_server.keys(s3_bucket)) == [
        "edited/clip.mp4",
        "edited/clip.mp4.segmind.json",
        "edited/clip.poster.jpg",
        "edited/clip.sheet.jpg",
    ]
    assert result["preview_path"].endswith(f"{s3_bucket}/edited/clip.poster.jpg")
    assert result["contact_sheet_path"].endswith(f"{s3_bucket}/edited/clip.sheet.jpg")
    poster = tmp_path / "poster.jpg"
    poster.write_bytes(s3_server.get(s3_bucket, "edited/clip.poster.jpg"))
    assert jpeg_size(poster) == (160, 90)
    [extra] = _asset_events(dag_run)
    assert extra["preview_path"] == result["preview_path"]


def test_an_output_that_is_not_a_video_fails_its_previews_naming_the_request(
    segmind_conn, preview_dag, tmp_path, capfd
):
    # Below the size that can hold a video, the emulator's generated output is a bare byte pattern.
    segmind_conn.config(output_size=1000)
    video = make_video(tmp_path / "clip.mp4", seconds=1)
    target = tmp_path / "edited.mp4"

    dag_run = preview_dag.test(run_conf=_conf(video.as_uri(), target.as_uri()))

    assert state(dag_run) == "failed"
    assert segmind_conn.submissions == 1
    assert target.stat().st_size == 1000, "the output itself is copied"
    [job] = segmind_conn.jobs.values()
    message = failure_message(capfd)
    assert says(message, "is not a video that can be decoded for its previews")
    assert says(message, f"request_id={job.request_id}")
