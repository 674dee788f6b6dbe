"""The emulator's outputs are real videos: a generated output of any size a test asks for decodes, and
with ``edit_outputs`` a fetched video comes back visibly edited (tinted by its prompt, captioned, scaled up
to be legible). Over real loopback sockets; PyAV decodes what was downloaded."""

from __future__ import annotations

import base64
import io
import struct
import time
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from airflow_provider_aleph.emulator import Emulator
from airflow_provider_aleph.emulator.assets import min_video_output, output_bytes_iter, output_head, sample_bytes
from airflow_provider_aleph.emulator.edit import COLD, WARM, tint_for
from tests.support.videos import make_video, probe

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

pytestmark = pytest.mark.airflow_independent
KEY = "media-key"
MIB = 1024 * 1024


def _output(emulator: Emulator, payload: dict[str, Any]) -> bytes:
    with httpx.Client(base_url=emulator.base_url, headers={"x-api-key": KEY}, timeout=30) as http:
        body = http.post("/v2/runway-gen4-aleph", json=payload).json()
        deadline = time.monotonic() + 30
        while (status := http.get(body["status_url"]).json()["status"]) not in ("COMPLETED", "FAILED"):
            assert time.monotonic() < deadline, "the job never finished"
            time.sleep(0.05)
        assert status == "COMPLETED"
        return httpx.get(http.get(body["response_url"]).json()["output"], timeout=30).content


@pytest.fixture
def emu() -> Iterator[Emulator]:
    with Emulator(api_key=KEY, latency=0.2) as emulator:
        yield emulator


# Every output_size the suite configures (tests/integration, tests/dags), and the smallest video size.
@pytest.mark.parametrize("size", [min_video_output(), 2 * MIB + 5, 3 * MIB + 7, 3 * MIB + 17])
def test_generated_outputs_of_the_sizes_tests_use_decode(emu, size):
    emu.config(output_size=size)

    data = _output(emu, {"prompt": "make it winter", "video": emu.sample_url()})

    assert len(data) == size
    assert probe(io.BytesIO(data)) == probe(io.BytesIO(sample_bytes()))


@pytest.mark.parametrize("size", [200 * MIB, 5 * 1024 * MIB])
def test_a_large_generated_output_is_the_clip_then_one_free_box_to_the_exact_size(size):
    # 200 MiB (the streaming test) and past 4 GiB, where the box states a 64-bit size; read from the head.
    head = output_head(size)
    clip = sample_bytes()
    assert head.startswith(clip)
    box = head[len(clip) :]
    if size - len(clip) < 2**32:
        assert box == struct.pack(">I4s", size - len(clip), b"free")
    else:
        assert box == struct.pack(">I4sQ", 1, b"free", size - len(clip))
    first = next(output_bytes_iter("r1", size))
    assert first.startswith(head)
    assert probe(io.BytesIO(first)) == probe(io.BytesIO(clip)), "the clip decodes from the first chunk alone"


def test_an_output_size_too_small_for_a_video_is_the_bare_pattern():
    # The documented exception: below the clip plus a box header there is no room for a video.
    assert output_head(min_video_output() - 1) == b""
    assert output_head(len(sample_bytes())) == sample_bytes()


def _mean_colour(video: bytes) -> tuple[float, float, float]:
    import av

    with av.open(io.BytesIO(video)) as container:
        frame = next(container.decode(video=0)).to_image().convert("RGB")
    pixels = list(frame.resize((32, 18)).getdata())
    return tuple(sum(p[i] for p in pixels) / len(pixels) for i in range(3))  # type: ignore[return-value]


@pytest.mark.parametrize(("prompt", "tint"), [("make it winter", COLD), ("golden hour at the harbour", WARM)])
def test_edit_outputs_tints_and_captions_the_fetched_video(prompt, tint, tmp_path: Path):
    grey = make_video(tmp_path / "grey.mp4", seconds=1, size=(160, 90), grey=True)
    data_url = f"data:video/mp4;base64,{base64.b64encode(grey.read_bytes()).decode()}"
    assert tint_for(prompt) == tint
    with Emulator(api_key=KEY, latency=0.2, edit_outputs=True) as emulator:
        edited = _output(emulator, {"prompt": prompt, "video": data_url})
        assert emulator.stats()["edits"] == 1

    assert edited != grey.read_bytes()
    found = probe(io.BytesIO(edited))
    assert found["frames"] == probe(grey)["frames"]
    assert found["size"] == (480, 270), "a small input is scaled up so the caption can be read"
    red, _, blue = _mean_colour(edited)
    # A grey input: the tint alone decides which of red and blue wins.
    assert (blue > red + 20) if tint == COLD else (red > blue + 20)


def test_edit_outputs_leaves_a_file_that_is_not_a_video_as_it_was():
    junk = b"not a video at all" * 100
    data_url = f"data:video/mp4;base64,{base64.b64encode(junk).decode()}"
    with Emulator(api_key=KEY, latency=0.2, edit_outputs=True) as emulator:
        assert _output(emulator, {"prompt": "make it winter", "video": data_url}) == junk
