"""Object storage in and out with real local files: file:// inputs through resolve_input in each mode
(uploads go to the emulator over loopback), and copy_output with downloads scripted by respx to reach
cut and failing transfers. Real S3 is in tests/integration/test_storage_s3.py."""

from __future__ import annotations

import json
import logging
import tracemalloc
from typing import TYPE_CHECKING

import httpx
import pytest
import respx
from airflow.providers.common.compat.sdk import ObjectStoragePath

from airflow_provider_aleph.hooks.segmind import SegmindHook
from airflow_provider_aleph.inputs import InvalidParameter
from airflow_provider_aleph.operators.aleph import MAX_VIDEO_BYTES
from airflow_provider_aleph.storage import (
    INPUT_MODES,
    OutputCopyError,
    content_type_of,
    copy_output,
    display_url,
    is_object_storage,
    resolve_input,
    to_path,
)
from airflow_provider_aleph.storage.paths import conn_id_of, is_public_url, mask_url_secrets

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from airflow_provider_aleph.emulator import Emulator

log = logging.getLogger("test_storage")
OUTPUT_URL = "https://cdn.segmind.test/outputs/req-42/winter%20clip.mp4"
VIDEO = b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 40


def uploads(emu: Emulator) -> int:
    return int(emu.stats()["uploads"]["count"])


def files_in(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.iterdir())


@pytest.fixture
def hook(segmind_conn: Emulator) -> Iterator[SegmindHook]:
    made = SegmindHook()
    yield made
    made.close()


@pytest.fixture
def video(tmp_path: Path) -> Path:
    path = tmp_path / "in" / "clip.mp4"
    path.parent.mkdir()
    path.write_bytes(VIDEO)
    return path


# -- telling object storage apart ------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("s3://bucket/key.mp4", True),
        ("gs://bucket/key.mp4", True),
        ("file:///data/clip.mp4", True),
        ("abfs://container@account.dfs.core.windows.net/clip.mp4", True),
        (" S3://bucket/key ", True),
        ("https://example.com/clip.mp4", False),
        ("HTTP://example.com/clip.mp4", False),
        ("/data/clip.mp4", False),
        ("data:video/mp4;base64,AAAA", False),
        ("", False),
        (None, False),
        (42, False),
    ],
)
def test_is_object_storage(value: object, expected: bool) -> None:
    assert is_object_storage(value) is expected


def test_an_object_storage_path_is_object_storage_and_kept_as_it_is(tmp_path: Path) -> None:
    path = ObjectStoragePath(tmp_path.as_uri())
    assert is_object_storage(path)
    assert to_path(path) is path


def test_to_path_keeps_the_connection_named_in_the_uri() -> None:
    assert conn_id_of(to_path("file://named_conn@/tmp/clip.mp4")) == "named_conn"
    assert conn_id_of(to_path("file://named_conn@/tmp/clip.mp4", conn_id="other")) == "named_conn"
    assert conn_id_of(to_path("file:///tmp/clip.mp4", conn_id="fallback")) == "fallback"
    assert conn_id_of(to_path("file:///tmp/clip.mp4")) is None


def test_to_path_refuses_a_web_url() -> None:
    with pytest.raises(ValueError, match="not an object storage URI"):
        to_path("https://example.com/clip.mp4")


def test_display_url_hides_user_info_query_and_fragment() -> None:
    signed = "https://user:pw@bucket.s3.amazonaws.com/clip.mp4?X-Amz-Signature=abc123#frag"
    assert display_url(signed) == "https://bucket.s3.amazonaws.com/clip.mp4?..."
    assert display_url(OUTPUT_URL) == OUTPUT_URL


def test_signed_url_credentials_are_registered_with_the_secret_masker() -> None:
    try:
        from airflow.sdk._shared.secrets_masker import redact
    except ImportError:  # Airflow 3.0
        from airflow.sdk.execution_time.secrets_masker import redact

    signature = "0123456789abcdef" * 4
    token = "FwoGZXIvYXdzEBYaDH+token/with=chars"
    url = f"https://b.s3.amazonaws.com/k.mp4?X-Amz-Expires=60&X-Amz-Signature={signature}&X-Amz-Security-Token={token}"
    mask_url_secrets(url)
    shown = str(redact(f"fetching {url}"))
    assert signature not in shown
    assert "X-Amz-Expires=60" in shown


@pytest.mark.parametrize(
    ("url", "public"),
    [
        ("https://bucket.s3.amazonaws.com/k", True),
        ("https://storage.googleapis.com/b/k", True),
        ("https://8.8.8.8/k", True),
        ("http://127.0.0.1:9000/b/k", False),
        ("http://localhost:9000/b/k", False),
        ("http://minio:9000/b/k", False),
        ("http://10.1.2.3/b/k", False),
        ("http://[::1]:9000/b/k", False),
        ("http://store.internal/b/k", False),
    ],
)
def test_presigned_urls_count_as_public_only_on_reachable_hosts(url: str, public: bool) -> None:
    assert is_public_url(url) is public


@pytest.mark.parametrize(
    ("info", "name", "expected"),
    [
        ({"ContentType": "video/quicktime"}, "clip.mp4", "video/quicktime"),
        ({"ContentType": "Video/MP4; codecs=avc1"}, "clip.bin", "video/mp4"),
        ({"ContentType": "binary/octet-stream"}, "clip.mp4", "video/mp4"),
        ({"contentType": "image/png"}, "ref", "image/png"),
        ({}, "ref.jpg", "image/jpeg"),
        ({}, "clip.unknownext", "application/octet-stream"),
        ({"ContentType": 'bad"type/x'}, "clip.webm", "video/webm"),
    ],
)
def test_content_type_from_metadata_then_extension(info: dict[str, str], name: str, expected: str) -> None:
    assert content_type_of(info, name) == expected


# -- inputs: file:// in each mode ---------------------------------------------------------------


def test_upload_mode_uploads_a_local_file_through_the_files_api(
    hook: SegmindHook, segmind_conn: Emulator, video: Path
) -> None:
    url = resolve_input("video", video.as_uri(), mode="upload", hook=hook, max_bytes=MAX_VIDEO_BYTES, log=log)
    assert url.startswith(hook.get_conn_params().upload_url)
    assert uploads(segmind_conn) == 1
    assert httpx.get(url).content == VIDEO


def test_auto_mode_uploads_what_cannot_be_presigned(
    hook: SegmindHook, segmind_conn: Emulator, video: Path, caplog
) -> None:
    caplog.set_level(logging.INFO, logger=log.name)
    url = resolve_input("video", ObjectStoragePath(video.as_uri()), mode="auto", hook=hook, max_bytes=None, log=log)
    assert httpx.get(url).content == VIDEO
    assert uploads(segmind_conn) == 1
    assert "cannot presign" in caplog.text
    assert video.as_uri() in caplog.text


def test_presign_mode_refuses_a_filesystem_that_cannot_sign(
    hook: SegmindHook, segmind_conn: Emulator, video: Path
) -> None:
    with pytest.raises(InvalidParameter) as caught:
        resolve_input("video", video.as_uri(), mode="presign", hook=hook, max_bytes=None, log=log)
    assert caught.value.parameter == "video"
    assert video.as_uri() in str(caught.value)
    assert "cannot presign" in str(caught.value)
    assert "input_mode='upload'" in str(caught.value)
    assert uploads(segmind_conn) == 0


@pytest.mark.parametrize("mode", INPUT_MODES)
def test_a_file_over_the_limit_is_refused_from_its_metadata_before_any_upload(
    mode: str, hook: SegmindHook, segmind_conn: Emulator, tmp_path: Path
) -> None:
    big = tmp_path / "big.mp4"
    with big.open("wb") as handle:
        handle.truncate(17 * 1024 * 1024)  # sparse: no 17 MiB written
    with pytest.raises(InvalidParameter) as caught:
        resolve_input("video", big.as_uri(), mode=mode, hook=hook, max_bytes=MAX_VIDEO_BYTES, log=log)
    message = str(caught.value)
    assert big.as_uri() in message
    assert "17.0 MiB" in message
    assert "at most 16 MiB" in message
    assert uploads(segmind_conn) == 0


@pytest.mark.parametrize("mode", INPUT_MODES)
def test_a_missing_file_is_refused_naming_its_uri(
    mode: str, hook: SegmindHook, segmind_conn: Emulator, tmp_path: Path
) -> None:
    missing = (tmp_path / "nope" / "clip.mp4").as_uri()
    with pytest.raises(InvalidParameter) as caught:
        resolve_input("reference_image", missing, mode=mode, hook=hook, max_bytes=None, log=log)
    assert caught.value.parameter == "reference_image"
    assert f"{missing} does not exist" in str(caught.value)
    assert uploads(segmind_conn) == 0


def test_a_directory_and_an_empty_file_are_refused(hook: SegmindHook, segmind_conn: Emulator, tmp_path: Path) -> None:
    with pytest.raises(InvalidParameter, match="is a directory"):
        resolve_input("video", tmp_path.as_uri(), mode="upload", hook=hook, max_bytes=None, log=log)
    empty = tmp_path / "empty.mp4"
    empty.touch()
    with pytest.raises(InvalidParameter, match="is empty"):
        resolve_input("video", empty.as_uri(), mode="upload", hook=hook, max_bytes=None, log=log)
    assert uploads(segmind_conn) == 0


def test_an_unknown_mode_names_input_mode_and_what_is_allowed(
    hook: SegmindHook, segmind_conn: Emulator, video: Path
) -> None:
    with pytest.raises(InvalidParameter) as caught:
        resolve_input("video", video.as_uri(), mode="copy", hook=hook, max_bytes=None, log=log)
    assert caught.value.parameter == "input_mode"
    assert "auto, presign, upload" in str(caught.value)
    assert video.as_uri() in str(caught.value)


def test_an_unknown_scheme_is_refused_naming_the_uri(hook: SegmindHook, segmind_conn: Emulator) -> None:
    with pytest.raises(InvalidParameter) as caught:
        resolve_input("video", "nosuchfs://bucket/clip.mp4", mode="auto", hook=hook, max_bytes=None, log=log)
    assert "nosuchfs://bucket/clip.mp4" in str(caught.value)


# -- outputs: copy_output with scripted downloads ----------------------------------------------------


def full_answer() -> httpx.Response:
    return httpx.Response(200, content=VIDEO, headers={"content-type": "video/mp4"})


def cut_answer() -> httpx.Response:
    # Declares the whole file but sends a third of it, as a dropped connection would.
    return httpx.Response(200, content=VIDEO[: len(VIDEO) // 3], headers={"content-length": str(len(VIDEO))})


@respx.mock
def test_a_cut_download_is_retried_in_place_and_leaves_no_partial_file(tmp_path: Path, caplog) -> None:
    route = respx.get(OUTPUT_URL).mock(side_effect=[cut_answer(), cut_answer(), full_answer()])
    target = tmp_path / "out" / "edited.mp4"
    caplog.set_level(logging.WARNING, logger=log.name)
    written = copy_output(OUTPUT_URL, target.as_uri(), log=log, backoff=0.001)
    assert route.call_count == 3
    assert str(written) == target.as_uri()
    assert target.read_bytes() == VIDEO
    assert files_in(target.parent) == ["edited.mp4"]
    assert "was cut" in caplog.text


@respx.mock
def test_a_download_cut_on_every_attempt_fails_without_a_file_under_the_final_name(tmp_path: Path) -> None:
    route = respx.get(OUTPUT_URL).mock(side_effect=lambda request: cut_answer())
    target = tmp_path / "edited.mp4"
    with pytest.raises(OutputCopyError) as caught:
        copy_output(OUTPUT_URL, target.as_uri(), log=log, attempts=3, backoff=0.001)
    assert route.call_count == 3
    assert caught.value.retryable
    assert OUTPUT_URL in str(caught.value)
    assert target.as_uri() in str(caught.value)
    assert files_in(tmp_path) == []


@respx.mock
def test_a_network_error_mid_download_is_retried(tmp_path: Path) -> None:
    route = respx.get(OUTPUT_URL).mock(side_effect=[httpx.ReadError("reset by peer"), full_answer()])
    target = tmp_path / "edited.mp4"
    copy_output(OUTPUT_URL, target.as_uri(), log=log, backoff=0.001)
    assert route.call_count == 2
    assert target.read_bytes() == VIDEO


@pytest.mark.parametrize(("code", "tries"), [(404, 1), (403, 1), (503, 2)])
@respx.mock
def test_http_errors_are_retried_only_when_temporary(code: int, tries: int, tmp_path: Path) -> None:
    route = respx.get(OUTPUT_URL).mock(return_value=httpx.Response(code))
    with pytest.raises(OutputCopyError) as caught:
        copy_output(OUTPUT_URL, (tmp_path / "edited.mp4").as_uri(), log=log, attempts=2, backoff=0.001)
    assert route.call_count == tries
    assert caught.value.status_code == code
    assert caught.value.retryable is (code == 503)
    assert files_in(tmp_path) == []


@pytest.mark.parametrize("as_object", [False, True])
@respx.mock
def test_a_directory_output_path_receives_the_urls_file_name(tmp_path: Path, as_object: bool) -> None:
    respx.get(OUTPUT_URL).mock(return_value=full_answer())
    folder = tmp_path / "results"
    folder.mkdir()
    given: str | ObjectStoragePath = ObjectStoragePath(folder.as_uri()) if as_object else folder.as_uri()
    written = copy_output(OUTPUT_URL, given, log=log)
    assert (folder / "winter clip.mp4").read_bytes() == VIDEO
    assert written.name == "winter clip.mp4"


@respx.mock
def test_a_trailing_slash_makes_a_new_directory_and_a_bare_path_is_local(tmp_path: Path) -> None:
    respx.get(OUTPUT_URL).mock(return_value=full_answer())
    copy_output(OUTPUT_URL, f"{tmp_path.as_uri()}/new/dir/", log=log)
    assert (tmp_path / "new" / "dir" / "winter clip.mp4").read_bytes() == VIDEO
    copy_output(OUTPUT_URL, f"{tmp_path}/plain.mp4", log=log)
    assert (tmp_path / "plain.mp4").read_bytes() == VIDEO


def test_bad_urls_and_paths_are_refused_before_any_download(tmp_path: Path) -> None:
    with pytest.raises(OutputCopyError, match="not an http"):
        copy_output("ftp://example.com/x.mp4", (tmp_path / "x.mp4").as_uri(), log=log)
    with pytest.raises(OutputCopyError, match=r"output_path relative/x\.mp4"):
        copy_output(OUTPUT_URL, "relative/x.mp4", log=log)
    assert files_in(tmp_path) == []


@respx.mock
def test_copy_streams_in_bounded_memory(tmp_path: Path) -> None:
    size = 24 * 1024 * 1024
    block = bytes(256 * 1024)

    def body() -> Iterator[bytes]:
        for _ in range(size // len(block)):
            yield block

    respx.get(OUTPUT_URL).mock(
        side_effect=lambda request: httpx.Response(200, content=body(), headers={"content-length": str(size)})
    )
    tracemalloc.start()
    try:
        copy_output(OUTPUT_URL, (tmp_path / "big.mp4").as_uri(), log=log)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert (tmp_path / "big.mp4").stat().st_size == size
    assert peak < 8 * 1024 * 1024


def test_output_copy_error_is_a_retryable_segmind_error() -> None:
    from airflow_provider_aleph.exceptions import SegmindError

    error = OutputCopyError("boom", url=OUTPUT_URL, path="file:///x")
    assert isinstance(error, SegmindError)
    assert error.retryable
    assert json.dumps({"url": error.url, "path": error.path})
