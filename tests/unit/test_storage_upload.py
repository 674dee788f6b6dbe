"""Uploads to Segmind's files API: the streamed data-URL body, the answer's parsing, and the hook's
retries and errors with a faked transport (respx). The same path over a real socket is in
tests/integration/test_storage_emulator.py."""

from __future__ import annotations

import base64
import io
import json
import tracemalloc
from typing import TYPE_CHECKING

import httpx
import pytest
import respx
from hypothesis import given, settings
from hypothesis import strategies as st

from airflow_provider_aleph.exceptions import (
    SegmindAuthError,
    SegmindError,
    SegmindNotFound,
    SegmindProtocolError,
    SegmindTransportError,
)
from airflow_provider_aleph.hooks.segmind import SegmindHook
from airflow_provider_aleph.protocol import Kind, UploadBody, parse_upload, upload_spec
from airflow_provider_aleph.retry import RetryPolicy

if TYPE_CHECKING:
    from pathlib import Path

CONN_ID = "segmind_upload_unit"
KEY = "fake-UPLOAD-not-a-real-key-do-not-leak"
UPLOAD_BASE = "https://files.segmind.test"
UPLOAD_URL = f"{UPLOAD_BASE}/upload-asset"
ASSET = "https://assets.segmind.test/u/abc/clip.mp4"
# Reads give up once failures have lasted outage_tolerance; submits and uploads after max_attempts.
FAST = RetryPolicy(max_attempts=3, outage_tolerance=0.05, base_delay=0.001, max_delay=0.01)


class ShortReads(io.BytesIO):
    """A file object that returns at most ``step`` bytes per read, as network streams may."""

    def __init__(self, data: bytes, step: int) -> None:
        super().__init__(data)
        self.step = step

    def read(self, size: int | None = -1) -> bytes:
        limit = self.step if size is None or size < 0 else min(size, self.step)
        return super().read(limit)


def decode_body(body: bytes) -> tuple[str, bytes]:
    """The media type and file bytes of an upload body."""
    (data_url,) = json.loads(body)["data_urls"]
    head, _, encoded = data_url.partition(",")
    assert head.startswith("data:")
    assert head.endswith(";base64")
    return head[5:-7], base64.b64decode(encoded, validate=True)


# -- the body --------------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(data=st.binary(max_size=200), piece=st.sampled_from([3, 6, 9, 30]), step=st.integers(1, 40))
def test_body_is_the_file_as_a_data_url_whatever_the_read_sizes(data: bytes, piece: int, step: int) -> None:
    body = UploadBody("video/mp4", len(data))
    sent = b"".join(body.pieces(ShortReads(data, step), piece_bytes=piece))
    assert len(sent) == body.length
    assert decode_body(sent) == ("video/mp4", data)


@pytest.mark.parametrize("size", [0, 1, 2, 3, 4, 786431, 786432, 786433, 2 * 786432 + 1])
def test_body_length_is_exact_around_piece_boundaries(size: int) -> None:
    data = bytes(range(256)) * (size // 256) + bytes(size % 256)
    body = UploadBody("image/png", size)
    pieces = list(body.pieces(io.BytesIO(data)))
    sent = b"".join(pieces)
    assert len(sent) == body.length
    assert decode_body(sent) == ("image/png", data)
    # Every base64 piece but the last is whole 4-character groups: they join without padding.
    assert all(b"=" not in piece for piece in pieces[1:-2])


@pytest.mark.parametrize(("declared", "actual"), [(10, 9), (10, 11)])
def test_a_file_that_changed_size_fails_the_body(declared: int, actual: int) -> None:
    body = UploadBody("video/mp4", declared)
    with pytest.raises(SegmindError, match=f"expected {declared} bytes"):
        b"".join(body.pieces(io.BytesIO(b"x" * actual)))


@pytest.mark.parametrize("bad", ["", "video", "video/mp4; codecs=x", 'video/mp4"]}', "text/ plain"])
def test_a_content_type_that_is_not_a_media_type_is_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="content_type"):
        UploadBody(bad, 1)


@pytest.mark.parametrize("bad", [-1, 1.5, True, "3"])
def test_a_size_that_is_not_a_byte_count_is_refused(bad: object) -> None:
    with pytest.raises(ValueError, match="size"):
        UploadBody("video/mp4", bad)  # type: ignore[arg-type]


def test_encoding_a_large_file_keeps_memory_bounded(tmp_path: Path) -> None:
    big = tmp_path / "big.mp4"
    with big.open("wb") as handle:
        handle.truncate(12 * 1024 * 1024)
    body = UploadBody("video/mp4", big.stat().st_size)
    tracemalloc.start()
    try:
        with big.open("rb") as stream:
            total = sum(len(piece) for piece in body.pieces(stream))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert total == body.length
    # The encoded body is 16 MiB; a few pieces of 1 MiB at a time may be alive, never the file.
    assert peak < 6 * 1024 * 1024


# -- the answer ------------------------------------------------------------------------------


def answer(status: int, **kwargs: object) -> httpx.Response:
    return httpx.Response(status, request=httpx.Request("POST", UPLOAD_URL), **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("key", ["file_urls", "urls"])
def test_answer_url_is_read_from_either_key(key: str) -> None:
    assert parse_upload(answer(200, json={key: [ASSET]}), upload_spec(UPLOAD_BASE)) == ASSET


def test_answer_without_a_url_is_a_protocol_error_listing_its_keys() -> None:
    with pytest.raises(SegmindProtocolError, match=r"without a file URL \(keys: \['ok'\]\)"):
        parse_upload(answer(200, json={"ok": True}), upload_spec(UPLOAD_BASE))


def test_answer_404_points_at_the_upload_url_setting() -> None:
    with pytest.raises(SegmindNotFound, match="upload_url"):
        parse_upload(answer(404, json={"error": "Not Found"}), upload_spec(UPLOAD_BASE))


def test_upload_spec_posts_to_upload_asset() -> None:
    spec = upload_spec(UPLOAD_BASE)
    assert (spec.kind, spec.method, spec.url) == (Kind.UPLOAD, "POST", UPLOAD_URL)


# -- the hook, with a faked transport ----------------------------------------------------------


@pytest.fixture(autouse=True)
def upload_conn(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        f"AIRFLOW_CONN_{CONN_ID.upper()}",
        json.dumps(
            {
                "conn_type": "segmind",
                "password": KEY,
                "host": "https://api.segmind.test",
                "extra": {"upload_url": UPLOAD_BASE},
            }
        ),
    )


def upload(data: bytes, opened: list[int] | None = None, content_type: str = "video/mp4") -> str:
    def source() -> io.BytesIO:
        if opened is not None:
            opened.append(1)
        return io.BytesIO(data)

    hook = SegmindHook(CONN_ID, retry_policy=FAST)
    try:
        return hook.upload_asset(source, content_type=content_type, size=len(data))
    finally:
        hook.close()


@respx.mock
def test_hook_posts_the_body_with_key_and_content_length() -> None:
    route = respx.post(UPLOAD_URL).mock(return_value=httpx.Response(200, json={"file_urls": [ASSET]}))
    assert upload(b"\x00\x01video bytes\xff") == ASSET
    sent = route.calls.last.request
    assert sent.headers["x-api-key"] == KEY
    assert sent.headers["content-type"] == "application/json"
    assert "transfer-encoding" not in sent.headers
    assert int(sent.headers["content-length"]) == len(sent.content)
    assert decode_body(sent.content) == ("video/mp4", b"\x00\x01video bytes\xff")


@respx.mock
def test_hook_retries_a_5xx_with_a_fresh_file_object() -> None:
    route = respx.post(UPLOAD_URL).mock(
        side_effect=[httpx.Response(503, json={"error": "busy"}), httpx.Response(200, json={"urls": [ASSET]})]
    )
    opened: list[int] = []
    assert upload(b"abcdef", opened) == ASSET
    assert route.call_count == 2
    assert len(opened) == 2
    assert decode_body(route.calls.last.request.content)[1] == b"abcdef"


@respx.mock
def test_hook_retries_a_network_error_then_gives_up_with_a_transport_error() -> None:
    route = respx.post(UPLOAD_URL).mock(side_effect=httpx.ReadError("connection reset"))
    with pytest.raises(SegmindTransportError) as caught:
        upload(b"abc")
    assert route.call_count == FAST.max_attempts
    assert "upload-asset" in str(caught.value)


@respx.mock
def test_hook_401_is_an_auth_error_naming_the_connection_not_the_key() -> None:
    route = respx.post(UPLOAD_URL).mock(return_value=httpx.Response(401, json={"error": "Unauthorized"}))
    with pytest.raises(SegmindAuthError) as caught:
        upload(b"abc")
    assert route.call_count == 1
    assert caught.value.conn_id == CONN_ID
    assert CONN_ID in str(caught.value)
    assert KEY not in str(caught.value)
    assert KEY not in repr(caught.value)


@respx.mock
def test_hook_does_not_retry_a_file_that_cannot_be_opened() -> None:
    route = respx.post(UPLOAD_URL).mock(return_value=httpx.Response(200, json={"file_urls": [ASSET]}))
    opened: list[int] = []

    def source() -> io.BytesIO:
        opened.append(1)
        raise PermissionError("denied")

    hook = SegmindHook(CONN_ID, retry_policy=FAST)
    with pytest.raises(PermissionError):
        hook.upload_asset(source, content_type="video/mp4", size=3)
    assert len(opened) == 1
    assert route.call_count == 0
