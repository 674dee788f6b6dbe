"""The emulator's files API, generated large outputs and cut downloads, over real loopback sockets."""

from __future__ import annotations

import base64
import hashlib
import os
import subprocess
import sys
import time
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from airflow_provider_aleph.emulator import Emulator, expected_output_sha256, output_bytes_iter

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path


# Nothing here depends on the Airflow version: run once, on the newest Airflow leg only.
pytestmark = pytest.mark.airflow_independent
KEY = "files-key"
ALEPH = "runway-gen4-aleph"
MIB = 1024 * 1024


@pytest.fixture
def emu() -> Iterator[Emulator]:
    with Emulator(api_key=KEY, latency=0.3) as emulator:
        yield emulator


@pytest.fixture
def client(emu: Emulator) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=emu.base_url, headers={"x-api-key": KEY}, timeout=30) as http:
        yield http


def data_url(media_type: str, data: bytes) -> str:
    return f"data:{media_type};base64,{base64.b64encode(data).decode()}"


def wait_done(client: httpx.Client, status_url: str) -> dict[str, Any]:
    deadline = time.monotonic() + 20
    while True:
        body = dict(client.get(status_url).json())
        if body["status"] in ("COMPLETED", "FAILED"):
            return body
        assert time.monotonic() < deadline, "the job never finished"
        time.sleep(0.05)


def completed_output(client: httpx.Client, payload: dict[str, Any], model: str = ALEPH) -> tuple[str, str]:
    body = client.post(f"/v2/{model}", json=payload).json()
    assert wait_done(client, body["status_url"])["status"] == "COMPLETED"
    return body["request_id"], client.get(body["response_url"]).json()["output"]


# -- files API ------------------------------------------------------------------------------------


def test_upload_round_trip_serves_the_same_bytes(client: httpx.Client, emu: Emulator) -> None:
    video, image = os.urandom(200_000), os.urandom(3_000)
    answer = client.post(
        "/upload-asset", json={"data_urls": [data_url("video/mp4", video), data_url("image/png", image)]}
    )
    assert answer.status_code == 200
    urls = answer.json()["file_urls"]
    assert [url.rsplit(".", 1)[1] for url in urls] == ["mp4", "png"]
    assert all(url.startswith(f"{emu.base_url}/assets/") for url in urls)

    for url, data, media_type in ((urls[0], video, "video/mp4"), (urls[1], image, "image/png")):
        served = httpx.get(url)  # public: no key
        assert served.status_code == 200
        assert served.content == data
        assert served.headers["content-type"] == media_type
        assert served.headers["content-length"] == str(len(data))
        head = httpx.head(url)
        assert (head.status_code, head.headers["content-length"], head.content) == (200, str(len(data)), b"")

    stats = emu.stats()
    assert stats["uploads"] == {"count": 2, "urls": urls}
    assert emu.submissions == 0, "uploads are not paid submissions"
    assert httpx.get(f"{emu.base_url}/assets/{'0' * 32}.mp4").status_code == 404


def test_uploaded_asset_used_as_the_video_becomes_the_output(client: httpx.Client, emu: Emulator) -> None:
    video = os.urandom(50_000)
    (asset_url,) = client.post("/upload-asset", json={"data_urls": [data_url("video/mp4", video)]}).json()["file_urls"]
    request_id, output_url = completed_output(client, {"prompt": "make it winter", "video": asset_url})

    assert emu.jobs[request_id].payload["video"] in emu.stats()["uploads"]["urls"]
    assert httpx.get(output_url).content == video
    assert emu.expected_output_sha256(request_id) == hashlib.sha256(video).hexdigest()


def test_upload_answer_key_can_be_urls(client: httpx.Client, emu: Emulator) -> None:
    emu.config(upload_answer_key="urls")
    answer = client.post("/upload-asset", json={"data_urls": [data_url("image/jpeg", b"jpeg bytes")]}).json()
    assert list(answer) == ["urls"]
    assert httpx.get(answer["urls"][0]).content == b"jpeg bytes"


@pytest.mark.parametrize("headers", [{}, {"x-api-key": "wrong"}], ids=["missing", "wrong"])
def test_upload_without_the_key_answers_401(emu: Emulator, headers: dict[str, str]) -> None:
    answer = httpx.post(
        f"{emu.base_url}/upload-asset", json={"data_urls": [data_url("video/mp4", b"x")]}, headers=headers
    )
    assert answer.status_code == 401
    assert emu.stats()["uploads"]["count"] == 0


MALFORMED = [
    pytest.param({"data_urls": ["https://example.com/a.mp4"]}, "data_urls[0]", id="not-a-data-url"),
    pytest.param({"data_urls": ["data:video/mp4,rawbytes"]}, "data_urls[0]", id="not-base64"),
    pytest.param(
        {"data_urls": [data_url("video/mp4", b"ok"), "data:video/mp4;base64,@@"]}, "data_urls[1]", id="bad-b64"
    ),
    pytest.param({"data_urls": ["data:;base64,AAAA"]}, "data_urls[0]", id="no-mime"),
    pytest.param({"data_urls": ["data:video/mp4;base64,"]}, "data_urls[0]", id="empty"),
    pytest.param({"data_urls": [7]}, "data_urls[0]", id="not-a-string"),
    pytest.param({"data_urls": []}, "data_urls", id="empty-list"),
    pytest.param({"files": ["x"]}, "data_urls", id="wrong-field"),
]


@pytest.mark.parametrize(("body", "named"), MALFORMED)
def test_malformed_upload_answers_400_and_stores_nothing(
    client: httpx.Client, emu: Emulator, body: dict[str, Any], named: str
) -> None:
    answer = client.post("/upload-asset", json=body)
    assert answer.status_code == 400
    assert named in answer.json()["error"]
    assert emu.stats()["uploads"]["count"] == 0
    assert emu.storage_dir is not None
    assert not any(emu.storage_dir.rglob("*.*")), "a rejected batch stores none of its files"


# -- generated outputs ------------------------------------------------------------------------------


def test_generated_output_has_the_configured_size_and_differs_per_request(client: httpx.Client, emu: Emulator) -> None:
    emu.config(output_size=3 * MIB + 17)
    first_id, first_url = completed_output(client, {"prompt": "a", "video": emu.sample_url()})
    second_id, second_url = completed_output(client, {"prompt": "b"}, model="flux-schnell")

    first, second = httpx.get(first_url), httpx.get(second_url)
    assert first.headers["content-length"] == str(3 * MIB + 17)
    assert len(first.content) == len(second.content) == 3 * MIB + 17
    assert first.content != second.content
    assert httpx.get(first_url).content == first.content, "an output is the same on every download"
    assert b"".join(output_bytes_iter(first_id, 3 * MIB + 17)) == first.content
    assert emu.expected_output_sha256(second_id) == hashlib.sha256(second.content).hexdigest()
    assert expected_output_sha256(first_id, 3 * MIB + 17) == hashlib.sha256(first.content).hexdigest()
    head = httpx.head(first_url)
    assert (head.headers["content-length"], head.content) == (str(3 * MIB + 17), b"")


def test_output_size_applies_to_jobs_submitted_after_it_is_set(client: httpx.Client, emu: Emulator) -> None:
    before = client.post("/v2/m", json={}).json()
    emu.config(output_size=1000)
    after = client.post("/v2/m", json={}).json()
    wait_done(client, after["status_url"])
    wait_done(client, before["status_url"])
    assert len(httpx.get(f"{emu.base_url}/outputs/{after['request_id']}.mp4").content) == 1000
    assert (
        httpx.get(f"{emu.base_url}/outputs/{before['request_id']}.mp4").content == httpx.get(emu.sample_url()).content
    )


def test_generated_200_mb_output_streams_without_growing_the_emulator(tmp_path: Path) -> None:
    size = 200 * MIB
    ready = tmp_path / "url"
    command = [sys.executable, "-m", "airflow_provider_aleph.emulator", "--port", "0", "--latency", "0"]
    command += ["--api-key", KEY, "--output-size", str(size), "--ready-file", str(ready)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while not ready.exists():
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "the emulator never became ready"
            time.sleep(0.05)
        base = ready.read_text().strip()
        with httpx.Client(base_url=base, headers={"x-api-key": KEY}, timeout=60) as http:
            request_id, output_url = completed_output(http, {"prompt": "p", "video": f"{base}/samples/sample.mp4"})
            # Warm every code path first, so only the big stream is measured.
            with http.stream("GET", output_url) as warm:
                next(warm.iter_raw(MIB))
            baseline = _reset_peak_rss(process.pid)

            digest, received = hashlib.sha256(), 0
            with http.stream("GET", output_url) as stream:
                assert stream.headers["content-length"] == str(size)
                for chunk in stream.iter_raw(MIB):
                    digest.update(chunk)
                    received += len(chunk)
            peak = _peak_rss(process.pid)
    finally:
        process.terminate()
        process.communicate(timeout=15)

    assert received == size
    assert digest.hexdigest() == expected_output_sha256(request_id, size)
    assert peak - baseline < 8 * MIB, f"the emulator grew by {(peak - baseline) / MIB:.1f} MiB streaming {size} bytes"


def _status_kib(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) * 1024
    raise AssertionError(f"{field} missing from /proc/{pid}/status")


def _reset_peak_rss(pid: int) -> int:
    """Reset the process's peak RSS (Linux clear_refs) and return its current RSS."""
    with open(f"/proc/{pid}/clear_refs", "w", encoding="ascii") as clear:
        clear.write("5")
    return _status_kib(pid, "VmRSS")


def _peak_rss(pid: int) -> int:
    return _status_kib(pid, "VmHWM")


# -- cut downloads --------------------------------------------------------------------------------------


def drain(stream: httpx.Response, received: list[int]) -> None:
    for chunk in stream.iter_raw():
        received.append(len(chunk))


def test_cut_download_ends_early_for_the_client(client: httpx.Client, emu: Emulator) -> None:
    emu.config(output_size=2 * MIB)
    _, output_url = completed_output(client, {"prompt": "p", "video": emu.sample_url()})
    emu.config(cut_outputs=2, cut_after_bytes=100_000)

    for _ in range(2):
        received: list[int] = []
        with httpx.stream("GET", output_url) as stream:
            assert stream.headers["content-length"] == str(2 * MIB), "full headers, short body"
            with pytest.raises(httpx.RemoteProtocolError, match=r"without sending complete message body"):
                drain(stream, received)
        assert sum(received) == 100_000
    assert httpx.head(output_url).status_code == 200, "HEAD requests are never cut"
    whole = httpx.get(output_url)
    assert len(whole.content) == 2 * MIB, "the third download is whole again"
    assert emu.stats()["cut_outputs"] == 2
    assert emu.config.cut_outputs == 0


def test_cut_of_a_small_output_still_withholds_its_last_byte(client: httpx.Client, emu: Emulator) -> None:
    _, output_url = completed_output(client, {"prompt": "p", "video": emu.sample_url()})
    sample = httpx.get(emu.sample_url()).content
    httpx.post(f"{emu.base_url}/_emulator/config", json={"cut_outputs": 1, "cut_after_bytes": 10 * MIB})
    with pytest.raises(httpx.RemoteProtocolError):
        httpx.get(output_url)
    assert httpx.get(output_url).content == sample
