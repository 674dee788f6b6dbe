"""Parameter validators: good values pass, bad ones fail with a message naming the parameter."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import respx

from airflow_provider_aleph.inputs import (
    ASPECT_RATIOS,
    MAX_VIDEO_BYTES,
    InvalidParameter,
    remote_size,
    require_aspect_ratio,
    require_input,
    require_prompt,
    require_seed,
    require_video_size,
)


def assert_names(err: InvalidParameter, parameter: str) -> None:
    assert err.parameter == parameter
    assert f"'{parameter}'" in str(err)


# -- prompt --------------------------------------------------------------------------------------


@pytest.mark.parametrize("prompt", ["make it winter", " x ", "é"])
def test_prompt_accepts_non_empty_text(prompt: str) -> None:
    assert require_prompt(prompt) == prompt


@pytest.mark.parametrize("prompt", ["", "   ", "\n\t", None, 3, ["make it winter"]])
def test_prompt_rejects_empty_or_non_text(prompt: Any) -> None:
    with pytest.raises(InvalidParameter) as caught:
        require_prompt(prompt)
    assert_names(caught.value, "prompt")


# -- aspect_ratio --------------------------------------------------------------------------------


@pytest.mark.parametrize("ratio", ["16:9", "9:16", "4:3", "3:4", "1:1", "21:9"])
def test_aspect_ratio_accepts_each_supported_value(ratio: str) -> None:
    assert require_aspect_ratio(ratio) == ratio


def test_aspect_ratio_accepts_none() -> None:
    assert require_aspect_ratio(None) is None


def test_supported_aspect_ratios_are_the_six_documented() -> None:
    assert set(ASPECT_RATIOS) == {"16:9", "9:16", "4:3", "3:4", "1:1", "21:9"}


@pytest.mark.parametrize("ratio", ["2:1", "16/9", "16:9 ", "", 1.77, ["16:9"]])
def test_aspect_ratio_rejects_other_values_and_lists_the_allowed_ones(ratio: Any) -> None:
    with pytest.raises(InvalidParameter) as caught:
        require_aspect_ratio(ratio)
    assert_names(caught.value, "aspect_ratio")
    for allowed in ("16:9", "9:16", "4:3", "3:4", "1:1", "21:9"):
        assert allowed in str(caught.value)


# -- seed ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seed", "expected"),
    [
        (42, 42),
        (0, 0),
        ("42", 42),
        (" 7 ", 7),
        ("-3", -3),
        (None, None),
        (2**63 - 1, 2**63 - 1),
        (str(-(2**63)), -(2**63)),
    ],
)
def test_seed_accepts_integers_and_digit_strings(seed: Any, expected: int | None) -> None:
    result = require_seed(seed)
    assert result == expected
    assert type(result) is type(expected)


@pytest.mark.parametrize(
    "seed",
    ["forty-two", 4.5, 4.0, True, False, "4-2", "--4", "4-", "4.5", [4], 2**63, -(2**63) - 1, "9" * 5000],
)
def test_seed_rejects_non_integers(seed: Any) -> None:
    with pytest.raises(InvalidParameter) as caught:
        require_seed(seed)
    assert_names(caught.value, "seed")


def test_seed_rejects_unicode_digits_with_a_message_naming_seed() -> None:
    with pytest.raises(InvalidParameter) as caught:
        require_seed("²")
    assert_names(caught.value, "seed")


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
