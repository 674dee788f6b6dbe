"""The Segmind emulator driven over real loopback sockets with plain httpx."""

from __future__ import annotations

import asyncio
import struct
import uuid
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from airflow_provider_aleph.emulator import FAIL_MARKER, FAILURE_REASON, Emulator
from airflow_provider_aleph.emulator.config import DEFAULT_COST_PER_JOB, DEFAULT_CREDITS

if TYPE_CHECKING:
    from collections.abc import Iterator

    from tests.fakes import FakeClock


# Nothing here depends on the Airflow version: run once, on the newest Airflow leg only.
pytestmark = pytest.mark.airflow_independent
KEY = "test-key"
ALEPH = "runway-gen4-aleph"
LATENCY = 4.0
RETENTION = 60.0
OVERSIZED_BYTES = 17 * 1024 * 1024


@pytest.fixture
def emu(clock: FakeClock) -> Iterator[Emulator]:
    with Emulator(api_key=KEY, latency=LATENCY, retention=RETENTION, clock=clock) as emulator:
        yield emulator


@pytest.fixture
def client(emu: Emulator) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=emu.base_url, headers={"x-api-key": KEY}, timeout=10) as http:
        yield http


def aleph_body(emu: Emulator, **overrides: Any) -> dict[str, Any]:
    return {"prompt": "make it winter", "video": emu.sample_url(), **overrides}


def submit(client: httpx.Client, emu: Emulator, **overrides: Any) -> dict[str, Any]:
    response = client.post(f"/v2/{ALEPH}", json=aleph_body(emu, **overrides))
    assert response.status_code == 200, response.text
    return dict(response.json())


def mp4_boxes(data: bytes) -> list[str]:
    """Return the top-level box types of an MP4 file, checking that the sizes add up."""
    boxes, offset = [], 0
    while offset < len(data):
        size, kind = struct.unpack(">I4s", data[offset : offset + 8])
        assert size >= 8, f"bad box size {size} at {offset}"
        boxes.append(kind.decode("latin-1"))
        offset += size
    assert offset == len(data), "boxes overrun the file"
    return boxes


def assert_valid_mp4(data: bytes) -> None:
    boxes = mp4_boxes(data)
    assert boxes[0] == "ftyp"
    assert "moov" in boxes
    assert "mdat" in boxes


def test_submit_answers_queued_with_absolute_urls(client: httpx.Client, emu: Emulator) -> None:
    body = submit(client, emu)

    request_id = body["request_id"]
    assert uuid.UUID(request_id).version == 4
    assert body["status"] == "QUEUED"
    assert body["status_url"] == f"{emu.base_url}/v2/requests/{request_id}/status"
    assert body["response_url"] == f"{emu.base_url}/v2/requests/{request_id}"
    assert body["poll_url"] == body["status_url"]
    assert emu.jobs[request_id].payload == aleph_body(emu)

    # URLs follow the host the client used, so they work behind any name or port.
    with httpx.Client(base_url=f"http://localhost:{emu.port}", headers={"x-api-key": KEY}) as http:
        other = http.post("/v2/any-model", json={}).json()
    assert other["status_url"] == f"http://localhost:{emu.port}/v2/requests/{other['request_id']}/status"


def test_job_moves_from_queued_to_processing_to_completed(
    client: httpx.Client, emu: Emulator, clock: FakeClock
) -> None:
    body = submit(client, emu)
    status_url, response_url = body["status_url"], body["response_url"]

    queued = client.get(status_url)
    assert queued.status_code == 200
    assert queued.json() == {"request_id": body["request_id"], "status": "QUEUED", "metrics": {}}
    pending = client.get(response_url).json()
    assert (pending["status"], pending["output"]) == ("QUEUED", None)

    clock.advance(LATENCY / 4)
    processing = client.get(status_url).json()
    assert processing["status"] == "PROCESSING"
    assert processing["metrics"]["queue_time"] == pytest.approx(LATENCY / 4)
    assert client.get(response_url).json()["output"] is None

    clock.advance(LATENCY * 3 / 4 - 0.01)
    assert client.get(status_url).json()["status"] == "PROCESSING"

    clock.advance(0.01)
    completed = client.get(status_url)
    assert completed.status_code == 200
    assert completed.json()["status"] == "COMPLETED"

    result = client.get(response_url)
    assert result.status_code == 200
    assert result.json() == {
        "request_id": body["request_id"],
        "status": "COMPLETED",
        "output": f"{emu.base_url}/outputs/{body['request_id']}.mp4",
        "metrics": {
            "inference_time": LATENCY * 3 / 4,
            "queue_time": LATENCY / 4,
            "cost": DEFAULT_COST_PER_JOB,
            "remaining_credits": DEFAULT_CREDITS - DEFAULT_COST_PER_JOB,
        },
    }


def test_output_is_a_public_mp4_with_head_support(client: httpx.Client, emu: Emulator, clock: FakeClock) -> None:
    body = submit(client, emu)
    output_url = f"{emu.base_url}/outputs/{body['request_id']}.mp4"
    assert httpx.get(output_url).status_code == 404, "no output before the job completes"

    clock.advance(LATENCY)
    output_url = client.get(body["response_url"]).json()["output"]
    download = httpx.get(output_url)  # no key: outputs are public
    assert download.status_code == 200
    assert download.headers["content-type"] == "video/mp4"
    assert int(download.headers["content-length"]) == len(download.content) > 1000
    assert_valid_mp4(download.content)

    head = httpx.head(output_url)
    assert head.status_code == 200
    assert head.headers["content-type"] == "video/mp4"
    assert int(head.headers["content-length"]) == len(download.content)
    assert head.content == b""

    clock.advance(RETENTION * 10)
    assert client.get(body["status_url"]).status_code == 404
    assert httpx.get(output_url).status_code == 200, "outputs outlive the request record"
    assert httpx.get(f"{emu.base_url}/outputs/{uuid.uuid4()}.mp4").status_code == 404
    assert httpx.head(f"{emu.base_url}/outputs/{uuid.uuid4()}.mp4").status_code == 404


def assert_failed(client: httpx.Client, body: dict[str, Any]) -> None:
    for url in (body["status_url"], body["response_url"]):
        response = client.get(url)
        assert response.status_code == 422
        failed = response.json()
        assert failed["status"] == "FAILED"
        assert failed["error"] == FAILURE_REASON
        assert failed["request_id"] == body["request_id"]
        assert "metrics" in failed


def test_marker_in_prompt_fails_the_job(client: httpx.Client, emu: Emulator, clock: FakeClock) -> None:
    failing = submit(client, emu, prompt=f"make it winter {FAIL_MARKER}")
    passing = submit(client, emu)

    assert client.get(failing["status_url"]).json()["status"] == "QUEUED"
    clock.advance(LATENCY)
    assert_failed(client, failing)
    assert client.get(passing["status_url"]).json()["status"] == "COMPLETED"
    assert httpx.get(f"{emu.base_url}/outputs/{failing['request_id']}.mp4").status_code == 404


def test_fail_rate_is_seeded() -> None:
    def fates(seed: int) -> list[bool]:
        with Emulator(api_key=KEY, fail_rate=0.5, seed=seed) as emulator, httpx.Client() as http:
            for _ in range(20):
                http.post(f"{emulator.base_url}/v2/m", json={}, headers={"x-api-key": KEY})
            return [job.failed for job in emulator.jobs.values()]

    first = fates(7)
    assert first == fates(7)
    assert 0 < sum(first) < 20


def test_unknown_and_expired_ids_answer_404(client: httpx.Client, emu: Emulator, clock: FakeClock) -> None:
    unknown = uuid.uuid4()
    for path in (f"/v2/requests/{unknown}/status", f"/v2/requests/{unknown}"):
        response = client.get(path)
        assert response.status_code == 404
        assert response.json() == {"error": "Request not found or expired"}

    body = submit(client, emu)
    clock.advance(LATENCY + RETENTION)
    assert client.get(body["status_url"]).status_code == 200
    assert client.get(body["response_url"]).status_code == 200
    clock.advance(0.01)
    assert client.get(body["status_url"]).status_code == 404
    assert client.get(body["response_url"]).status_code == 404


@pytest.mark.parametrize("headers", [{}, {"x-api-key": "wrong"}], ids=["missing", "wrong"])
def test_bad_key_answers_401(emu: Emulator, headers: dict[str, str]) -> None:
    with httpx.Client(base_url=emu.base_url, headers=headers) as http:
        calls = [
            http.post(f"/v2/{ALEPH}", json=aleph_body(emu)),
            http.get(f"/v2/requests/{uuid.uuid4()}/status"),
            http.get(f"/v2/requests/{uuid.uuid4()}"),
        ]
    for response in calls:
        assert response.status_code == 401
        assert response.json() == {"error": "Unauthorized: missing or invalid x-api-key"}
    assert emu.submissions == 0


INVALID_ALEPH_FIELDS = [
    *[("prompt", {"prompt": bad}) for bad in (None, "", "   ", 42)],
    *[("video", {"video": bad}) for bad in (None, 7, "not a uri")],
    *[("aspect_ratio", {"aspect_ratio": bad}) for bad in ("2:1", 1.77)],
    *[("seed", {"seed": bad}) for bad in ("42", True, 4.5)],
    ("reference_image", {"reference_image": 3}),
]


@pytest.mark.parametrize(("field", "changes"), INVALID_ALEPH_FIELDS)
def test_invalid_aleph_field_answers_400(
    client: httpx.Client, emu: Emulator, field: str, changes: dict[str, Any]
) -> None:
    body = {key: value for key, value in aleph_body(emu, **changes).items() if value is not None}
    response = client.post(f"/v2/{ALEPH}", json=body)
    assert response.status_code == 400
    assert f"'{field}'" in response.json()["error"]
    assert emu.submissions == 0


def test_valid_optional_aleph_fields_are_accepted(client: httpx.Client, emu: Emulator) -> None:
    for ratio in ("16:9", "9:16", "4:3", "3:4", "1:1", "21:9"):
        submit(client, emu, aspect_ratio=ratio, seed=3, reference_image="https://example.com/a.png")
    submit(client, emu, video="data:video/mp4;base64,AAAA", aspect_ratio=None, seed=None)
    assert emu.submissions == 7


@pytest.mark.parametrize("content", [b"{not json", b"[1, 2]", b'"text"', b"\xff\xfe"])
def test_non_object_body_answers_400(client: httpx.Client, emu: Emulator, content: bytes) -> None:
    for model in (ALEPH, "other-model"):
        response = client.post(f"/v2/{model}", content=content, headers={"content-type": "application/json"})
        assert response.status_code == 400
        assert "JSON object" in response.json()["error"]
    assert emu.submissions == 0


def test_retired_model_answers_410(client: httpx.Client, emu: Emulator) -> None:
    emu.config.retired_models = ("old-model",)
    response = client.post("/v2/old-model", json={"prompt": "x"})
    assert response.status_code == 410
    assert "old-model" in response.json()["error"]
    assert client.post("/v2/new-model", json={"prompt": "x"}).status_code == 200
    assert emu.submissions == 1


def test_other_models_accept_any_object(client: httpx.Client, emu: Emulator, clock: FakeClock) -> None:
    body = client.post("/v2/flux-schnell", json={"anything": [1, {"nested": True}]}).json()
    assert body["status"] == "QUEUED"
    assert client.post("/v2/some-llm", json={}).status_code == 200
    clock.advance(LATENCY)
    assert client.get(body["response_url"]).json()["status"] == "COMPLETED"
    assert emu.jobs[body["request_id"]].model == "flux-schnell"


def test_submissions_count_only_accepted_jobs(client: httpx.Client, emu: Emulator) -> None:
    ids = [submit(client, emu)["request_id"] for _ in range(2)]
    ids.append(client.post("/v2/other", json={}).json()["request_id"])
    client.post(f"/v2/{ALEPH}", json={"prompt": ""})
    client.post(f"/v2/{ALEPH}", json=aleph_body(emu), headers={"x-api-key": "wrong"})

    assert emu.submissions == 3
    stats = client.get("/_emulator/stats").json()
    assert (stats["submissions"], stats["by_model"], stats["request_ids"]) == (3, {ALEPH: 2, "other": 1}, ids)
    assert stats["requests"]["submit"] == 5
    # The emulator fetches each job's input video in the background, counted among the requests
    # ("sample"), so the two readings may differ there and only there.
    assert {**emu.stats(), "requests": None} == {**stats, "requests": None}


def test_the_jobs_route_lists_each_accepted_payload_in_submit_order(client: httpx.Client, emu: Emulator) -> None:
    first = submit(client, emu)["request_id"]
    second = client.post("/v2/other", json={"seed": 7}).json()["request_id"]
    client.post(f"/v2/{ALEPH}", json={"prompt": ""})  # refused: not a job

    jobs = httpx.get(f"{emu.base_url}/_emulator/jobs").json()  # admin routes need no key
    assert [job["request_id"] for job in jobs] == [first, second]
    assert jobs[0] == {"request_id": first, "model": ALEPH, "payload": emu.jobs[first].payload}
    assert jobs[1]["payload"] == {"seed": 7}


def test_concurrent_submissions_are_all_counted(emu: Emulator) -> None:
    async def burst() -> list[str]:
        async with httpx.AsyncClient(base_url=emu.base_url, headers={"x-api-key": KEY}) as http:
            responses = await asyncio.gather(*(http.post("/v2/m", json={"i": i}) for i in range(100)))
        return [response.json()["request_id"] for response in responses]

    ids = asyncio.run(burst())
    assert len(set(ids)) == 100
    assert emu.submissions == 100
    assert set(emu.jobs) == set(ids)


def test_admin_reset_forgets_jobs(client: httpx.Client, emu: Emulator) -> None:
    body = submit(client, emu)
    response = httpx.post(f"{emu.base_url}/_emulator/reset")  # admin routes need no key
    assert response.status_code == 200
    assert emu.submissions == 0
    stats = httpx.get(f"{emu.base_url}/_emulator/stats").json()
    assert (stats["submissions"], stats["by_model"], stats["request_ids"]) == (0, {}, [])
    assert "submit" not in stats["requests"]
    assert client.get(body["status_url"]).status_code == 404
    emu.reset()
    assert not emu.jobs


def test_admin_config_applies_to_new_jobs(client: httpx.Client, emu: Emulator, clock: FakeClock) -> None:
    old = submit(client, emu)
    response = httpx.post(f"{emu.base_url}/_emulator/config", json={"latency": 0, "fail_rate": 1.0, "retention": 5})
    assert response.status_code == 200
    assert response.json()["latency"] == 0
    assert (emu.config.latency, emu.config.fail_rate, emu.config.retention) == (0, 1.0, 5)

    new = submit(client, emu)
    assert_failed(client, new)  # fail_rate 1.0 fails every new job
    assert client.get(old["status_url"]).json()["status"] == "QUEUED"
    clock.advance(5.01)
    assert client.get(new["status_url"]).status_code == 404


@pytest.mark.parametrize(
    "changes", [{"latency": -1}, {"fail_rate": 2}, {"retention": "long"}, {"speed": 1}, [1], {"latency": True}]
)
def test_admin_config_rejects_bad_values(emu: Emulator, changes: Any) -> None:
    response = httpx.post(f"{emu.base_url}/_emulator/config", json=changes)
    assert response.status_code == 400
    assert response.json()["error"]
    assert (emu.config.latency, emu.config.fail_rate, emu.config.retention) == (LATENCY, 0.0, RETENTION)


def test_samples(emu: Emulator) -> None:
    sample = httpx.get(emu.sample_url())
    assert sample.status_code == 200
    assert sample.headers["content-type"] == "video/mp4"
    assert_valid_mp4(sample.content)

    head = httpx.head(emu.sample_url("oversized.mp4"))
    assert head.status_code == 200
    assert head.headers["content-type"] == "video/mp4"
    assert int(head.headers["content-length"]) == OVERSIZED_BYTES > 16 * 1024 * 1024

    received, first = 0, b""
    with httpx.stream("GET", emu.sample_url("oversized.mp4")) as stream:
        assert int(stream.headers["content-length"]) == OVERSIZED_BYTES
        for chunk in stream.iter_bytes():
            first = first or chunk
            received += len(chunk)
    assert received == OVERSIZED_BYTES
    assert first[:8] == sample.content[:8]

    assert httpx.get(emu.sample_url("nope.mp4")).status_code == 404
    assert httpx.head(emu.sample_url("nope.mp4")).status_code == 404
