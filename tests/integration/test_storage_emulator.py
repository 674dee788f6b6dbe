"""Object storage in and out over real loopback sockets: local files uploaded to the emulator's files API
and used by a job, outputs streamed into local files, cut downloads retried in place."""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING

import httpx
import pytest
from airflow.providers.common.compat.sdk import ObjectStoragePath

from airflow_provider_aleph.exceptions import SegmindAuthError
from airflow_provider_aleph.hooks.segmind import SegmindHook
from airflow_provider_aleph.operators.aleph import MAX_VIDEO_BYTES
from airflow_provider_aleph.storage import OutputCopyError, copy_output, resolve_input
from tests.integration.storage_helpers import completed_output, configure, uploads

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from airflow_provider_aleph.emulator import Emulator

log = logging.getLogger("test_storage_emulator")
VIDEO = b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 1000


@pytest.fixture
def hook(segmind_conn: Emulator) -> Iterator[SegmindHook]:
    made = SegmindHook()
    yield made
    made.close()


@pytest.fixture
def video(tmp_path: Path) -> Path:
    path = tmp_path / "clip.mp4"
    path.write_bytes(VIDEO)
    return path


# -- inputs ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("answer_key", ["file_urls", "urls"])
def test_a_local_file_is_uploaded_and_served_back_byte_for_byte(
    answer_key: str, hook: SegmindHook, segmind_conn: Emulator, video: Path
) -> None:
    configure(segmind_conn, upload_answer_key=answer_key)
    url = resolve_input("video", ObjectStoragePath(video.as_uri()), mode="upload", hook=hook, max_bytes=None, log=log)
    assert url.startswith(f"{segmind_conn.base_url}/assets/")
    assert segmind_conn.stats()["uploads"] == {"count": 1, "urls": [url]}
    served = httpx.get(url)
    assert served.content == VIDEO
    assert served.headers["content-type"].startswith("video/mp4")


def test_the_content_type_comes_from_the_extension_when_the_store_has_none(
    hook: SegmindHook, segmind_conn: Emulator, tmp_path: Path
) -> None:
    image = tmp_path / "style.png"
    image.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    url = resolve_input("reference_image", image.as_uri(), mode="auto", hook=hook, max_bytes=None, log=log)
    assert httpx.get(url).headers["content-type"].startswith("image/png")


def test_a_job_runs_on_an_uploaded_input(hook: SegmindHook, segmind_conn: Emulator, video: Path) -> None:
    url = resolve_input("video", video.as_uri(), mode="auto", hook=hook, max_bytes=MAX_VIDEO_BYTES, log=log)
    output = completed_output(hook, {"prompt": "make it winter", "video": url})
    assert httpx.get(output).status_code == 200
    assert segmind_conn.stats()["fetches"] >= 1
    assert segmind_conn.stats()["fetch_failures"]["count"] == 0


def test_a_wrong_key_fails_the_upload_naming_the_connection(
    segmind_conn: Emulator, video: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_SEGMIND_WRONG_KEY",
        json.dumps(
            {
                "conn_type": "segmind",
                "password": "fake-wrong-key-not-real",
                "host": segmind_conn.base_url,
                "extra": {"upload_url": segmind_conn.base_url},
            }
        ),
    )
    hook = SegmindHook("segmind_wrong_key")
    with pytest.raises(SegmindAuthError) as caught:
        resolve_input("video", video.as_uri(), mode="upload", hook=hook, max_bytes=None, log=log)
    hook.close()
    assert "segmind_wrong_key" in str(caught.value)
    assert "fake-wrong-key-not-real" not in str(caught.value)
    assert uploads(segmind_conn) == 0


# -- outputs ---------------------------------------------------------------------------------------


def test_an_output_is_copied_to_a_local_file_byte_for_byte(
    hook: SegmindHook, segmind_conn: Emulator, tmp_path: Path
) -> None:
    configure(segmind_conn, output_size=2 * 1024 * 1024 + 5)
    output = completed_output(hook, {"prompt": "make it winter", "video": segmind_conn.sample_url()})
    target = tmp_path / "out" / "winter.mp4"
    written = copy_output(output, target.as_uri(), log=log, chunk_size=64 * 1024)
    assert str(written) == target.as_uri()
    assert target.read_bytes() == httpx.get(output).content
    assert target.stat().st_size == 2 * 1024 * 1024 + 5
    assert sorted(p.name for p in target.parent.iterdir()) == ["winter.mp4"]


def test_a_cut_download_is_retried_in_place_without_a_new_job(
    hook: SegmindHook, segmind_conn: Emulator, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    output = completed_output(hook, {"prompt": "make it winter", "video": segmind_conn.sample_url()})
    configure(segmind_conn, cut_outputs=2, cut_after_bytes=500)
    caplog.set_level(logging.WARNING, logger=log.name)
    copy_output(output, f"{tmp_path.as_uri()}/", log=log, backoff=0.01)
    name = output.rsplit("/", 1)[-1]
    assert (tmp_path / name).read_bytes() == httpx.get(output).content
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]
    assert segmind_conn.stats()["cut_outputs"] == 2
    assert segmind_conn.submissions == 1
    assert caplog.text.count("Copy attempt") == 2


def test_a_download_cut_on_every_attempt_leaves_no_file(
    hook: SegmindHook, segmind_conn: Emulator, tmp_path: Path
) -> None:
    output = completed_output(hook, {"prompt": "make it winter", "video": segmind_conn.sample_url()})
    configure(segmind_conn, cut_outputs=2, cut_after_bytes=500)
    target = tmp_path / "winter.mp4"
    with pytest.raises(OutputCopyError) as caught:
        copy_output(output, target.as_uri(), log=log, attempts=2, backoff=0.01)
    assert caught.value.retryable
    assert output in str(caught.value)
    assert target.as_uri() in str(caught.value)
    assert list(tmp_path.iterdir()) == []
