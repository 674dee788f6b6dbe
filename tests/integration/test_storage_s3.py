"""Object storage against real S3 on loopback: moto's standalone server in a subprocess, reached by s3fs
through ObjectStoragePath and an Airflow connection of type aws; Segmind is the emulator."""

from __future__ import annotations

import logging
import time
from datetime import timedelta
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from airflow.providers.common.compat.sdk import ObjectStoragePath

from airflow_provider_aleph.hooks.segmind import SegmindHook
from airflow_provider_aleph.inputs import InvalidParameter
from airflow_provider_aleph.operators.aleph import MAX_VIDEO_BYTES, RunwayAlephOperator
from airflow_provider_aleph.storage import INPUT_MODES, OutputCopyError, copy_output, resolve_input
from tests.integration.storage_helpers import completed_output, configure, uploads

if TYPE_CHECKING:
    from collections.abc import Iterator

    from airflow_provider_aleph.emulator import Emulator
    from tests.conftest import S3Server

log = logging.getLogger("test_storage_s3")
VIDEO = b"\x00\x00\x00\x18ftypisom" + bytes(range(256)) * 300


@pytest.fixture
def hook(segmind_conn: Emulator) -> Iterator[SegmindHook]:
    made = SegmindHook()
    yield made
    made.close()


# -- inputs ----------------------------------------------------------------------------------------


def test_presigned_input_is_fetched_byte_for_byte_and_its_signature_is_never_logged(
    s3_server: S3Server, s3_bucket: str, hook: SegmindHook, segmind_conn: Emulator, caplog: pytest.LogCaptureFixture
) -> None:
    s3_server.put(s3_bucket, "in/clip.mp4", VIDEO, "video/mp4")
    caplog.set_level(logging.INFO)
    url = resolve_input(
        "video", s3_server.uri(s3_bucket, "in/clip.mp4"), mode="presign", hook=hook, max_bytes=MAX_VIDEO_BYTES, log=log
    )
    assert url.startswith(f"{s3_server.endpoint_url}/{s3_bucket}/in/clip.mp4?")
    query = parse_qs(urlsplit(url).query)
    # botocore presigns with SigV4 (X-Amz-Signature) or, for us-east-1 by default, SigV2 (Signature).
    (signature,) = query.get("X-Amz-Signature") or query["Signature"]
    fetched = httpx.get(url)
    assert fetched.status_code == 200
    assert fetched.content == VIDEO
    assert signature not in caplog.text
    assert f"presigned s3://{s3_server.conn_id}@{s3_bucket}/in/clip.mp4" in caplog.text
    # moto listens on loopback: the log says Segmind's servers may not reach it.
    assert "may not reach" in caplog.text
    assert uploads(segmind_conn) == 0


def test_a_job_reads_its_presigned_input_from_s3(
    s3_server: S3Server, s3_bucket: str, hook: SegmindHook, segmind_conn: Emulator
) -> None:
    s3_server.put(s3_bucket, "clip.mp4", VIDEO, "video/mp4")
    path = ObjectStoragePath(f"s3://{s3_bucket}/clip.mp4", conn_id=s3_server.conn_id)
    url = resolve_input("video", path, mode="presign", hook=hook, max_bytes=MAX_VIDEO_BYTES, log=log)
    output = completed_output(hook, {"prompt": "make it winter", "video": url})
    assert httpx.get(output).status_code == 200
    assert segmind_conn.stats()["fetches"] >= 1


def test_auto_mode_uploads_an_object_whose_presigned_url_would_be_private(
    s3_server: S3Server, s3_bucket: str, hook: SegmindHook, segmind_conn: Emulator, caplog: pytest.LogCaptureFixture
) -> None:
    s3_server.put(s3_bucket, "clip.bin", VIDEO, "video/quicktime")
    caplog.set_level(logging.INFO, logger=log.name)
    url = resolve_input("video", s3_server.uri(s3_bucket, "clip.bin"), mode="auto", hook=hook, max_bytes=None, log=log)
    assert url.startswith(segmind_conn.base_url)
    assert uploads(segmind_conn) == 1
    fetched = httpx.get(url)
    assert fetched.content == VIDEO
    assert "private host" in caplog.text
    assert "video/quicktime" in caplog.text


@pytest.mark.parametrize("mode", INPUT_MODES)
def test_a_wrong_bucket_is_refused_naming_the_uri_and_the_bucket(
    mode: str, s3_server: S3Server, hook: SegmindHook, segmind_conn: Emulator
) -> None:
    uri = s3_server.uri("aleph-no-such-bucket", "clip.mp4")
    with pytest.raises(InvalidParameter) as caught:
        resolve_input("video", uri, mode=mode, hook=hook, max_bytes=MAX_VIDEO_BYTES, log=log)
    assert uri in str(caught.value)
    assert "bucket 'aleph-no-such-bucket' does not exist" in str(caught.value)
    assert uploads(segmind_conn) == 0
    assert segmind_conn.submissions == 0


@pytest.mark.parametrize("mode", INPUT_MODES)
def test_a_missing_key_is_refused_naming_the_uri(
    mode: str, s3_server: S3Server, s3_bucket: str, hook: SegmindHook, segmind_conn: Emulator
) -> None:
    s3_server.put(s3_bucket, "other.mp4", VIDEO)
    uri = s3_server.uri(s3_bucket, "missing.mp4")
    with pytest.raises(InvalidParameter) as caught:
        resolve_input("video", uri, mode=mode, hook=hook, max_bytes=MAX_VIDEO_BYTES, log=log)
    assert f"{uri} does not exist" in str(caught.value)
    assert uploads(segmind_conn) == 0


@pytest.mark.parametrize("mode", INPUT_MODES)
def test_a_too_big_object_is_refused_from_its_metadata(
    mode: str, s3_server: S3Server, s3_bucket: str, hook: SegmindHook, segmind_conn: Emulator
) -> None:
    s3_server.put(s3_bucket, "big.mp4", bytes(MAX_VIDEO_BYTES + 1), "video/mp4")
    uri = s3_server.uri(s3_bucket, "big.mp4")
    with pytest.raises(InvalidParameter) as caught:
        resolve_input("video", uri, mode=mode, hook=hook, max_bytes=MAX_VIDEO_BYTES, log=log)
    assert uri in str(caught.value)
    assert f"({MAX_VIDEO_BYTES + 1} bytes)" in str(caught.value)
    assert uploads(segmind_conn) == 0


# -- outputs ---------------------------------------------------------------------------------------


def test_an_output_is_copied_to_s3_byte_for_byte(
    s3_server: S3Server, s3_bucket: str, hook: SegmindHook, segmind_conn: Emulator
) -> None:
    configure(segmind_conn, output_size=3 * 1024 * 1024 + 7)
    output = completed_output(hook, {"prompt": "make it winter", "video": segmind_conn.sample_url()})
    expected = httpx.get(output).content
    written = copy_output(output, s3_server.uri(s3_bucket, "edited/winter.mp4"), log=log, chunk_size=256 * 1024)
    assert str(written) == s3_server.uri(s3_bucket, "edited/winter.mp4")
    assert s3_server.keys(s3_bucket) == ["edited/winter.mp4"]
    assert s3_server.get(s3_bucket, "edited/winter.mp4") == expected


def test_an_output_copied_into_an_s3_prefix_keeps_its_file_name(
    s3_server: S3Server, s3_bucket: str, hook: SegmindHook, segmind_conn: Emulator
) -> None:
    output = completed_output(hook, {"prompt": "make it winter", "video": segmind_conn.sample_url()})
    written = copy_output(output, s3_server.uri(s3_bucket, "results/"), log=log)
    name = urlsplit(output).path.rsplit("/", 1)[-1]
    assert s3_server.keys(s3_bucket) == [f"results/{name}"]
    assert written.name == name
    assert s3_server.get(s3_bucket, f"results/{name}") == httpx.get(output).content


def test_a_cut_download_is_retried_in_place_into_s3(
    s3_server: S3Server, s3_bucket: str, hook: SegmindHook, segmind_conn: Emulator
) -> None:
    output = completed_output(hook, {"prompt": "make it winter", "video": segmind_conn.sample_url()})
    configure(segmind_conn, cut_outputs=1, cut_after_bytes=1000)
    copy_output(output, s3_server.uri(s3_bucket, "winter.mp4"), log=log, backoff=0.01)
    assert segmind_conn.stats()["cut_outputs"] == 1
    assert s3_server.keys(s3_bucket) == ["winter.mp4"]
    assert s3_server.get(s3_bucket, "winter.mp4") == httpx.get(output).content
    assert segmind_conn.submissions == 1


def test_a_download_cut_on_every_attempt_leaves_no_object_under_the_final_key(
    s3_server: S3Server, s3_bucket: str, hook: SegmindHook, segmind_conn: Emulator
) -> None:
    output = completed_output(hook, {"prompt": "make it winter", "video": segmind_conn.sample_url()})
    configure(segmind_conn, cut_outputs=3, cut_after_bytes=1000)
    with pytest.raises(OutputCopyError) as caught:
        copy_output(output, s3_server.uri(s3_bucket, "winter.mp4"), log=log, attempts=3, backoff=0.01)
    assert caught.value.retryable
    assert s3_server.uri(s3_bucket, "winter.mp4") in str(caught.value)
    assert s3_server.keys(s3_bucket) == []


def test_copying_into_a_missing_bucket_fails_at_once_naming_the_path(
    s3_server: S3Server, hook: SegmindHook, segmind_conn: Emulator
) -> None:
    output = completed_output(hook, {"prompt": "make it winter", "video": segmind_conn.sample_url()})
    target = s3_server.uri("aleph-no-such-output-bucket", "winter.mp4")
    with pytest.raises(OutputCopyError) as caught:
        copy_output(output, target, log=log, attempts=3, backoff=0.01)
    assert not caught.value.retryable
    assert target in str(caught.value)
    assert segmind_conn.stats()["requests"].get("output", 0) == 1


@pytest.mark.parametrize("given", [600, timedelta(minutes=10)])
def test_presign_expiration_sets_how_long_the_presigned_url_lives(
    s3_server: S3Server, s3_bucket: str, segmind_conn: Emulator, given: float | timedelta
) -> None:
    s3_server.put(s3_bucket, "in/short.mp4", VIDEO, "video/mp4")
    path = ObjectStoragePath(f"s3://{s3_bucket}/in/short.mp4", conn_id=s3_server.conn_id)
    task = RunwayAlephOperator(
        task_id="edit", prompt="make it winter", video=path, input_mode="presign", presign_expiration=given
    )
    signed_at = time.time()
    url = task.deliver_inputs(task.inspect_inputs(task.build_payload()))["video"]
    query = parse_qs(urlsplit(url).query)
    if "X-Amz-Expires" in query:  # SigV4 says the lifetime itself
        assert query["X-Amz-Expires"] == ["600"]
    else:  # SigV2 says when it ends
        (ends,) = query["Expires"]
        assert signed_at + 600 - 5 <= int(ends) <= time.time() + 600 + 5
    assert httpx.get(url).content == VIDEO
    assert uploads(segmind_conn) == 0
