"""``fit_input=True`` through real dag.test() runs against the emulator: a long, large source is cut and
re-encoded in the worker and edited with one submission; an input within the limits is sent as it is;
a file that is not a video fails before anything is submitted; without the option, the refusal of an
oversized input says that fit_input would fit it."""

from __future__ import annotations

import tempfile
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.dags.helpers import failure_message, register_assets, says, state, xcom
from tests.support.videos import BIG_SECONDS, jpeg_size, make_video, probe

pytestmark = pytest.mark.dag

#: What a fitted Aleph input must stay under: Segmind says "16 MB"; the fit aims under 15 MB.
FITTED_LIMIT = 15 * 1000 * 1000


def _conf(video: Path, output: Path) -> dict[str, str]:
    return {
        "prompt": "make it winter",
        "video": video.as_uri(),
        "output_path": output.as_uri(),
        "if_output_exists": "reuse",
    }


def _sent_asset(emulator) -> Path:
    """The one input the emulator received, as its files API stored it."""
    [job] = emulator.jobs.values()
    url = job.payload["video"]
    assert url.startswith(f"{emulator.base_url}/assets/"), f"the input must have been uploaded, not {url}"
    return Path(emulator.storage_dir) / "assets" / Path(urlsplit(url).path).name


@pytest.fixture
def dags():
    import media_test_dags

    register_assets(media_test_dags.fit)
    return media_test_dags


def test_long_large_source_is_fitted_and_edited_with_one_submission(segmind_conn, dags, big_video, tmp_path):
    source = probe(big_video)
    assert source["seconds"] == BIG_SECONDS
    assert big_video.stat().st_size > 35 * 1024 * 1024, "the source is far over the 16 MB limit"
    output = tmp_path / "out" / "edited.mp4"
    leftovers = set(Path(tempfile.gettempdir()).glob("segmind-fit-*"))

    dag_run = dags.fit.test(run_conf=_conf(big_video, output))

    assert state(dag_run) == "success"
    assert segmind_conn.submissions == 1
    sent = _sent_asset(segmind_conn)
    assert sent.stat().st_size < FITTED_LIMIT
    fitted = probe(sent)
    assert fitted["codec"] == "h264"
    assert 4.9 <= fitted["seconds"] <= 5.0
    assert fitted["size"] == source["size"]
    # The emulator's output is its edit of what it received: a real video, copied to output_path.
    assert probe(output)["frames"] > 0
    assert xcom(dag_run, "return_value")["output_path"] == output.as_uri()
    # The fitted file's temporary folder is gone once it is uploaded.
    assert set(Path(tempfile.gettempdir()).glob("segmind-fit-*")) == leftovers


def test_fit_seconds_cuts_to_the_seconds_asked_and_previews_the_edit(segmind_conn, dags, big_video, tmp_path):
    output = tmp_path / "edited.mp4"

    dag_run = dags.fit_3s.test(run_conf=_conf(big_video, output))

    assert state(dag_run) == "success"
    assert segmind_conn.submissions == 1
    assert 2.9 <= probe(_sent_asset(segmind_conn))["seconds"] <= 3.0
    result = xcom(dag_run, "return_value")
    assert jpeg_size(Path(urlsplit(result["preview_path"]).path)) == probe(output)["size"]


def test_source_in_a_bucket_is_read_through_object_storage_and_fitted(
    segmind_conn, dags, big_video, s3_server, s3_bucket, tmp_path
):
    s3_server.put(s3_bucket, "raw/long.mp4", big_video.read_bytes(), content_type="video/mp4")
    conf = _conf(big_video, tmp_path / "edited.mp4") | {"video": s3_server.uri(s3_bucket, "raw/long.mp4")}

    dag_run = dags.fit.test(run_conf=conf)

    assert state(dag_run) == "success"
    assert segmind_conn.submissions == 1
    sent = _sent_asset(segmind_conn)
    assert sent.stat().st_size < FITTED_LIMIT
    assert 4.9 <= probe(sent)["seconds"] <= 5.0


def test_input_within_the_limits_is_sent_unchanged(segmind_conn, dags, tmp_path):
    clip = make_video(tmp_path / "short.mp4", seconds=2, size=(160, 90))

    dag_run = dags.fit.test(run_conf=_conf(clip, tmp_path / "edited.mp4"))

    assert state(dag_run) == "success"
    assert segmind_conn.submissions == 1
    assert _sent_asset(segmind_conn).read_bytes() == clip.read_bytes(), "not re-encoded: the same bytes"


def test_a_file_that_is_not_a_video_fails_before_any_submit(segmind_conn, dags, tmp_path, capfd):
    fake = tmp_path / "clip.mp4"
    fake.write_bytes(b"this is a text file with a video's name\n" * 1000)

    dag_run = dags.fit.test(run_conf=_conf(fake, tmp_path / "edited.mp4"))

    assert state(dag_run) == "failed"
    assert segmind_conn.submissions == 0
    assert segmind_conn.stats()["uploads"]["count"] == 0
    message = failure_message(capfd)
    assert says(message, "Invalid parameter 'video'")
    assert says(message, "is not a video that can be decoded")


def test_without_fit_input_an_oversized_input_is_refused_naming_the_option(
    segmind_conn, dags, big_video, tmp_path, capfd
):
    dag_run = dags.no_fit.test(run_conf=_conf(big_video, tmp_path / "edited.mp4"))

    assert state(dag_run) == "failed"
    assert segmind_conn.submissions == 0
    message = failure_message(capfd)
    assert says(message, "Invalid parameter 'video'")
    assert says(message, "fit_input=True")


@pytest.mark.parametrize(
    ("kwargs", "parameter", "phrase"),
    [
        ({"fit_input": True, "fit_seconds": 0}, "fit_seconds", "from 0.5 to 60"),
        ({"fit_input": True, "fit_seconds": 61}, "fit_seconds", "from 0.5 to 60"),
        ({"fit_input": True, "fit_seconds": "5"}, "fit_seconds", "from 0.5 to 60"),
        ({"fit_seconds": 3}, "fit_seconds", "has no effect without fit_input=True"),
        ({"fit_input": "yes"}, "fit_input", "must be True or False"),
    ],
)
def test_fit_parameters_are_checked_when_the_dag_is_parsed(kwargs, parameter, phrase):
    from airflow_provider_aleph.exceptions import InvalidParameter
    from airflow_provider_aleph.operators.aleph import RunwayAlephOperator

    with pytest.raises(InvalidParameter) as caught:
        RunwayAlephOperator(task_id="edit", prompt="make it winter", video="s3://bucket/clip.mp4", **kwargs)
    assert caught.value.parameter == parameter
    assert phrase in str(caught.value)


def test_fit_input_needs_a_declared_video_field():
    from airflow_provider_aleph.exceptions import InvalidParameter
    from airflow_provider_aleph.operators.segmind import SegmindSubmitOperator

    with pytest.raises(InvalidParameter, match="declares no video input"):
        SegmindSubmitOperator(task_id="gen", model="flux-schnell", payload={"prompt": "x"}, fit_input=True)


def test_the_decorator_fits_the_input_and_previews_the_output_in_a_folder(segmind_conn, dags, big_video, tmp_path):
    folder = tmp_path / "edited"

    dag_run = dags.decorated.test(run_conf={"video": big_video.as_uri(), "output_dir": folder.as_uri()})

    assert state(dag_run) == "success"
    assert segmind_conn.submissions == 1
    assert _sent_asset(segmind_conn).stat().st_size < FITTED_LIMIT
    result = xcom(dag_run, "return_value")
    output = Path(urlsplit(result["output_path"]).path)
    assert output.parent == folder
    poster = Path(urlsplit(result["preview_path"]).path)
    assert poster == folder / f"{output.stem}.poster.jpg"
    assert jpeg_size(poster) == probe(output)["size"]
    assert Path(urlsplit(result["contact_sheet_path"]).path) == folder / f"{output.stem}.sheet.jpg"


@pytest.fixture
def http_folder(tmp_path):
    """A real HTTP server on loopback serving a folder (HEAD and GET, with Content-Length)."""
    import functools
    import threading
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    folder = tmp_path / "served"
    folder.mkdir()
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(folder))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield folder, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_a_long_large_http_input_is_downloaded_fitted_and_uploaded(
    segmind_conn, dags, big_video, http_folder, tmp_path
):
    folder, base = http_folder
    (folder / "long.mp4").write_bytes(big_video.read_bytes())
    conf = _conf(big_video, tmp_path / "edited.mp4") | {"video": f"{base}/long.mp4"}

    dag_run = dags.fit_url.test(run_conf=conf)

    assert state(dag_run) == "success"
    assert segmind_conn.submissions == 1
    sent = _sent_asset(segmind_conn)
    assert sent.stat().st_size < FITTED_LIMIT
    assert 4.9 <= probe(sent)["seconds"] <= 5.0


def test_an_http_input_within_the_limits_is_sent_as_its_url(segmind_conn, dags, http_folder, tmp_path):
    folder, base = http_folder
    make_video(folder / "short.mp4", seconds=2)
    conf = _conf(folder / "short.mp4", tmp_path / "edited.mp4") | {"video": f"{base}/short.mp4"}

    dag_run = dags.fit_url.test(run_conf=conf)

    assert state(dag_run) == "success"
    [job] = segmind_conn.jobs.values()
    assert job.payload["video"] == f"{base}/short.mp4"
    assert segmind_conn.stats()["uploads"]["count"] == 0
