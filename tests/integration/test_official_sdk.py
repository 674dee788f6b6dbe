"""Segmind's official Python SDK, unmodified, against the emulator."""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING

import httpx
import pytest
import segmind

from airflow_provider_aleph.emulator import FAIL_MARKER, FAILURE_REASON, Emulator

if TYPE_CHECKING:
    from collections.abc import Iterator

KEY = "sdk-key"
ALEPH = "runway-gen4-aleph"


@pytest.fixture
def emu() -> Iterator[Emulator]:
    with Emulator(api_key=KEY, latency=0.3, retention=3600.0) as emulator:
        yield emulator


@pytest.fixture
def sdk(emu: Emulator) -> Iterator[segmind.SegmindClient]:
    client = segmind.SegmindClient(api_key=KEY, base_url=f"{emu.base_url}/v1")
    yield client
    client._client.close()


def top_level_boxes(data: bytes) -> list[bytes]:
    boxes, offset = [], 0
    while offset + 8 <= len(data):
        size, kind = struct.unpack(">I4s", data[offset : offset + 8])
        assert size >= 8
        boxes.append(kind)
        offset += size
    assert offset == len(data)
    return boxes


def test_submit_and_wait_completes_with_a_downloadable_video(emu: Emulator, sdk: segmind.SegmindClient) -> None:
    job = sdk.submit_async(ALEPH, prompt="make it winter", video=emu.sample_url())
    assert job.submit_response["status"] == "QUEUED"

    result = job.wait(timeout=30, interval=0.1)

    assert result["status"] == "COMPLETED"
    assert result["request_id"] == job.request_id
    video = httpx.get(result["output"])
    assert video.status_code == 200
    assert video.headers["content-type"] == "video/mp4"
    boxes = top_level_boxes(video.content)
    assert boxes[0] == b"ftyp"
    assert b"moov" in boxes
    assert b"mdat" in boxes
    assert emu.submissions == 1
    assert emu.jobs[job.request_id].payload == {"prompt": "make it winter", "video": emu.sample_url()}


def test_failed_request_raises_inference_failed(emu: Emulator, sdk: segmind.SegmindClient) -> None:
    job = sdk.submit_async(ALEPH, prompt=f"make it winter {FAIL_MARKER}", video=emu.sample_url())

    with pytest.raises(segmind.InferenceFailed) as caught:
        job.wait(timeout=30, interval=0.1)

    assert caught.value.detail == FAILURE_REASON
    assert caught.value.status_body["status"] == "FAILED"
    assert job.result()["error"] == FAILURE_REASON
    assert emu.submissions == 1


def test_rejected_submit_raises_with_detail_and_is_not_counted(emu: Emulator, sdk: segmind.SegmindClient) -> None:
    with pytest.raises(segmind.SegmindError) as caught:
        sdk.submit_async(ALEPH, prompt="make it winter", video=emu.sample_url(), seed="1")
    assert caught.value.status == 400
    assert caught.value.detail is not None
    assert "'seed'" in caught.value.detail

    wrong_key = segmind.SegmindClient(api_key="wrong", base_url=f"{emu.base_url}/v1")
    with pytest.raises(segmind.SegmindError) as unauthorized:
        wrong_key.submit_async(ALEPH, prompt="make it winter", video=emu.sample_url())
    assert unauthorized.value.status == 401
    assert emu.submissions == 0


def test_every_submission_is_counted(emu: Emulator, sdk: segmind.SegmindClient) -> None:
    jobs = [sdk.submit_async(ALEPH, prompt=f"take {n}", video=emu.sample_url()) for n in range(3)]
    jobs.append(sdk.submit_async("flux-schnell", prompt="a cat"))
    for job in jobs:
        assert job.wait(timeout=30, interval=0.1)["status"] == "COMPLETED"
    assert emu.submissions == 4
    assert emu.stats()["by_model"] == {ALEPH: 3, "flux-schnell": 1}
