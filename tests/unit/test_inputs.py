"""Declared file inputs: what a file field accepts, and the worker's checks of an http(s) input
(faked transport here; real sockets in tests/integration)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import respx

from airflow_provider_aleph.inputs import FileInput, InvalidParameter, check_url_input, remote_size, require_file
from airflow_provider_aleph.operators.aleph import MAX_VIDEO_BYTES, RunwayAlephOperator

VIDEO = next(spec for spec in RunwayAlephOperator.file_inputs if spec.name == "video")


def require_input(parameter: str, value: Any, *, required: bool) -> Any:
    return require_file(FileInput(parameter, required=required), value)


def require_video_size(url: str) -> int | None:
    return check_url_input(VIDEO, url)


def assert_names(err: InvalidParameter, parameter: str) -> None:
    assert err.parameter == parameter
    assert f"'{parameter}'" in str(err)


# -- video / reference_image ------------------------------------------------------------------------


@pytest.mark.parametrize("parameter", ["video", "reference_image"])
@pytest.mark.parametrize(
    "url", ["https://cdn.example.com/in.mp4", "http://127.0.0.1:8765/samples/sample.mp4", "HTTPS://Example.com/a?b=c"]
)
def test_http_url_accepts_http_and_https(parameter: str, url: str) -> None:
    assert require_input(parameter, url, required=True) == url


def test_http_url_strips_surrounding_spaces() -> None:
    assert require_input("video", "  https://cdn.example.com/in.mp4 ", required=True) == (
        "https://cdn.example.com/in.mp4"
    )


def test_optional_url_accepts_none_and_required_one_does_not() -> None:
    assert require_input("reference_image", None, required=False) is None
    with pytest.raises(InvalidParameter) as caught:
        require_input("video", None, required=True)
    assert_names(caught.value, "video")


@pytest.mark.parametrize("parameter", ["video", "reference_image"])
@pytest.mark.parametrize("uri", ["s3://bucket/in.mp4", "gs://bucket/in.mp4", "file:///tmp/in.mp4", "abfs://c/in.mp4"])
def test_object_storage_uris_are_kept_for_presign_or_upload(parameter: str, uri: str) -> None:
    assert require_input(parameter, f" {uri} ", required=True) == uri


def test_object_storage_path_is_kept_as_is() -> None:
    from airflow.providers.common.compat.sdk import ObjectStoragePath

    path = ObjectStoragePath("file:///tmp/in.mp4")
    assert require_input("video", path, required=True) is path


@pytest.mark.parametrize("parameter", ["video", "reference_image"])
@pytest.mark.parametrize("url", ["", "   ", "not a url", "https://", "example.com/in.mp4", 42])
def test_http_url_rejects_values_that_are_not_urls(parameter: str, url: Any) -> None:
    with pytest.raises(InvalidParameter) as caught:
        require_input(parameter, url, required=True)
    assert_names(caught.value, parameter)
    assert "http(s) URL" in str(caught.value)
    assert "object storage URI" in str(caught.value)


# -- remote_size (faked transport; real sockets in tests/integration) --------------------------------

URL = "https://cdn.example.com/in.mp4"


@respx.mock
def test_remote_size_reads_content_length_of_a_head() -> None:
    route = respx.head(URL).mock(return_value=httpx.Response(200, headers={"content-length": "12345"}))
    assert remote_size("video", URL) == 12345
    assert "x-api-key" not in route.calls.last.request.headers


@pytest.mark.parametrize("refusal", [403, 405, 501])
@respx.mock
def test_remote_size_falls_back_to_a_ranged_get_when_head_is_refused(refusal: int) -> None:
    respx.head(URL).mock(return_value=httpx.Response(refusal))
    ranged = respx.get(URL).mock(
        return_value=httpx.Response(206, headers={"content-range": "bytes 0-0/20000000"}, content=b"\x00")
    )
    assert remote_size("video", URL) == 20_000_000
    assert ranged.calls.last.request.headers["range"] == "bytes=0-0"


@respx.mock
def test_remote_size_is_none_when_the_server_does_not_say() -> None:
    respx.head(URL).mock(return_value=httpx.Response(200))
    assert require_video_size(URL) is None


@respx.mock
def test_remote_size_rejects_a_redirect_naming_the_parameter() -> None:
    respx.head(URL).mock(return_value=httpx.Response(302, headers={"location": "https://elsewhere/in.mp4"}))
    with pytest.raises(InvalidParameter) as caught:
        remote_size("reference_image", URL)
    assert_names(caught.value, "reference_image")
    assert "redirect" in str(caught.value)


@respx.mock
def test_remote_size_rejects_a_missing_input() -> None:
    respx.head(URL).mock(return_value=httpx.Response(404))
    with pytest.raises(InvalidParameter) as caught:
        require_video_size(URL)
    assert_names(caught.value, "video")
    assert "404" in str(caught.value)


@pytest.mark.parametrize(("size", "ok"), [(MAX_VIDEO_BYTES, True), (MAX_VIDEO_BYTES + 1, False)])
@respx.mock
def test_video_size_limit_is_16_mib(size: int, ok: bool) -> None:
    respx.head(URL).mock(return_value=httpx.Response(200, headers={"content-length": str(size)}))
    if ok:
        assert require_video_size(URL) == size
    else:
        with pytest.raises(InvalidParameter) as caught:
            require_video_size(URL)
        assert_names(caught.value, "video")
        assert "16 MiB" in str(caught.value)


@respx.mock
def test_remote_file_identity_prefers_the_etag_and_is_none_without_etag_or_date() -> None:
    from airflow_provider_aleph.inputs import remote_file

    stamp = "Wed, 01 Jan 2026 00:00:00 GMT"
    respx.head(URL).respond(200, headers={"content-length": "7", "etag": '"abc"', "last-modified": stamp})
    assert remote_file("video", URL).identity == {"size": 7, "tag": "abc"}
    respx.head(URL).respond(200, headers={"content-length": "7", "last-modified": stamp})
    assert remote_file("video", URL).identity == {"size": 7, "mtime": stamp}
    respx.head(URL).respond(200, headers={"content-length": "7"})
    assert remote_file("video", URL).identity is None
