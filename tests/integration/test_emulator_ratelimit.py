"""The emulated account rate limit: a sliding window of API calls per key."""

from __future__ import annotations

import base64
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import httpx
import pytest

from airflow_provider_aleph.emulator import Emulator

if TYPE_CHECKING:
    from collections.abc import Iterator

    from tests.fakes import FakeClock


# Nothing here depends on the Airflow version: run once, on the newest Airflow leg only.
pytestmark = pytest.mark.airflow_independent
KEY = "limit-key"
OTHER_KEY = "limit-other-key"
ALEPH = "runway-gen4-aleph"
WINDOW = 10.0


@pytest.fixture
def emu(clock: FakeClock) -> Iterator[Emulator]:
    # The second key is a valid one (out of credits for submits, fine for polling): the limit is per key.
    with Emulator(
        api_key=KEY, latency=0.0, clock=clock, rpm_limit=3, rate_window=WINDOW, insufficient_credits_keys=[OTHER_KEY]
    ) as emulator:
        yield emulator


def client_for(emu: Emulator, key: str) -> httpx.Client:
    return httpx.Client(base_url=emu.base_url, headers={"x-api-key": key}, timeout=10)


def test_limit_counts_every_api_call_per_key_and_answers_429(emu: Emulator, clock: FakeClock) -> None:
    with client_for(emu, KEY) as http, client_for(emu, OTHER_KEY) as other:
        body = http.post("/v2/flux-schnell", json={"prompt": "p"}).json()
        clock.advance(0.5)
        assert http.get(body["status_url"]).status_code == 200
        assert http.get(body["response_url"]).status_code == 200

        # The fourth call within the window, whatever its route, is refused.
        for call in (lambda: http.get(body["status_url"]), lambda: http.post("/v2/flux-schnell", json={"prompt": "p"})):
            limited = call()
            assert limited.status_code == 429
            assert "rate limit" in limited.json()["error"]
            # The oldest call leaves the window 9.5 s from now: whole seconds, rounded up.
            assert limited.headers["retry-after"] == "10"
            reset_at = datetime.fromisoformat(limited.headers["x-rate-limit-reset-at-utc"].replace("Z", "+00:00"))
            assert reset_at.tzinfo is not None
            assert 8.0 < (reset_at - datetime.now(UTC)).total_seconds() <= 9.5
        assert emu.submissions == 1, "a 429 never creates a job"

        # Another key has its own window.
        assert other.get(body["status_url"]).status_code == 200

        # Files are not API calls: never limited.
        for _ in range(5):
            assert http.get(f"/outputs/{body['request_id']}.mp4").status_code == 200
        assert httpx.get(emu.sample_url()).status_code == 200

    stats = emu.stats()
    assert stats["rate_limited"] == 2
    assert stats["requests"]["status"] == 3
    assert stats["requests"]["submit"] == 2


def test_window_slides_and_frees_calls_as_they_age(emu: Emulator, clock: FakeClock) -> None:
    with client_for(emu, KEY) as http:
        for _ in range(3):
            assert http.get("/v2/requests/nope/status").status_code == 404
            clock.advance(1.0)
        assert http.get("/v2/requests/nope/status").status_code == 429
        clock.advance(WINDOW - 3.0)  # the first call is now exactly one window old
        assert http.get("/v2/requests/nope/status").status_code == 404
        assert http.get("/v2/requests/nope/status").status_code == 429
        clock.advance(1.0)
        assert http.get("/v2/requests/nope/status").status_code == 404
    assert emu.stats()["rate_limited"] == 2


def test_limit_resets_after_a_real_scaled_window() -> None:
    # A scaled-down account: 5 calls per second on the real clock, waiting as long as the 429 says.
    with (
        Emulator(api_key=KEY, latency=0.0, rpm_limit=5, rate_window=1.0) as emulator,
        client_for(emulator, KEY) as http,
    ):
        codes = [http.get("/v2/requests/nope").status_code for _ in range(6)]
        assert codes == [404] * 5 + [429]
        limited = http.get("/v2/requests/nope")
        assert limited.headers["retry-after"] == "1"
        time.sleep(float(limited.headers["retry-after"]))
        assert http.get("/v2/requests/nope").status_code == 404
        assert emulator.stats()["rate_limited"] == 2


def test_limit_can_be_set_and_lifted_at_run_time(clock: FakeClock) -> None:
    with Emulator(api_key=KEY, clock=clock) as emulator, client_for(emulator, KEY) as http:
        assert all(http.get("/v2/requests/nope").status_code == 404 for _ in range(10))
        httpx.post(f"{emulator.base_url}/_emulator/config", json={"rpm_limit": 2, "rate_window": 60})
        assert [http.get("/v2/requests/nope").status_code for _ in range(3)] == [404, 404, 429]
        emulator.config(rpm_limit=None)
        assert http.get("/v2/requests/nope").status_code == 404


def test_submits_share_the_window_with_polls_and_a_refused_submit_creates_nothing(
    emu: Emulator, clock: FakeClock
) -> None:
    with client_for(emu, KEY) as http:
        # Two polls and one submit use up the window of 3 calls.
        assert http.get("/v2/requests/nope/status").status_code == 404
        assert http.get("/v2/requests/nope").status_code == 404
        assert http.post(f"/v2/{ALEPH}", json={"prompt": "p", "video": emu.sample_url()}).status_code == 200
        assert emu.submissions == 1

        refused = http.post(f"/v2/{ALEPH}", json={"prompt": "p", "video": emu.sample_url()})
        assert refused.status_code == 429
        assert "rate limit" in refused.json()["error"]
        assert refused.headers["retry-after"] == "10"
        assert emu.submissions == 1, "a submit over the limit creates no job"
        assert len(emu.jobs) == 1

        # Once the first poll has aged out of the window, a submit goes through again.
        clock.advance(WINDOW)
        assert http.post(f"/v2/{ALEPH}", json={"prompt": "p", "video": emu.sample_url()}).status_code == 200
        assert emu.submissions == 2

    stats = emu.stats()
    assert stats["rate_limited"] == 1
    assert stats["requests"]["submit"] == 3


def test_uploads_count_against_the_limit_and_a_refused_one_stores_nothing(emu: Emulator, clock: FakeClock) -> None:
    upload = {"data_urls": [f"data:image/png;base64,{base64.b64encode(b'png bytes').decode()}"]}
    with client_for(emu, KEY) as http:
        assert http.post("/upload-asset", json=upload).status_code == 200
        assert http.get("/v2/requests/nope/status").status_code == 404
        assert http.get("/v2/requests/nope/status").status_code == 404

        # The upload took a place in the window: both an upload and a submit are now refused.
        refused = http.post("/upload-asset", json=upload)
        assert refused.status_code == 429
        assert "rate limit" in refused.json()["error"]
        assert refused.headers["retry-after"] == "10"
        assert http.post("/v2/flux-schnell", json={"prompt": "p"}).status_code == 429
        assert emu.stats()["uploads"]["count"] == 1, "an upload over the limit stores nothing"
        assert emu.submissions == 0

        clock.advance(WINDOW)
        assert http.post("/upload-asset", json=upload).status_code == 200

    stats = emu.stats()
    assert stats["uploads"]["count"] == 2
    assert stats["rate_limited"] == 2


def test_upload_without_a_key_is_refused_before_the_limit(emu: Emulator) -> None:
    # A 401 uses up no one's window: the key's three calls are still all there.
    upload = {"data_urls": [f"data:image/png;base64,{base64.b64encode(b'png').decode()}"]}
    assert httpx.post(f"{emu.base_url}/upload-asset", json=upload).status_code == 401
    with client_for(emu, KEY) as http:
        assert [http.post("/upload-asset", json=upload).status_code for _ in range(4)] == [200, 200, 200, 429]
