"""Injected faults, lost submit answers, credits and content type, over real loopback sockets."""

from __future__ import annotations

import json
from collections import Counter
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from airflow_provider_aleph.emulator import Emulator

if TYPE_CHECKING:
    from collections.abc import Iterator


# Nothing here depends on the Airflow version: run once, on the newest Airflow leg only.
pytestmark = pytest.mark.airflow_independent
KEY = "faults-key"
BROKE_KEY = "broke-key-0123456789"
ALEPH = "runway-gen4-aleph"
ALL_KINDS = {"429_retry_after", "429_reset_at", "500", "502", "503", "504", "drop"}
SUBMIT_KINDS = {"429_retry_after", "429_reset_at", "drop"}


@pytest.fixture
def emu() -> Iterator[Emulator]:
    with Emulator(api_key=KEY, latency=0.3, insufficient_credits_keys=[BROKE_KEY]) as emulator:
        yield emulator


@pytest.fixture
def client(emu: Emulator) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=emu.base_url, headers={"x-api-key": KEY}, timeout=10) as http:
        yield http


def classify(send: Any) -> str:
    """Send one request and name what the client saw, as the fault kinds are named."""
    try:
        response = send()
    except httpx.RemoteProtocolError:
        return "drop"
    if response.status_code == 429:
        assert response.json()["error"]
        has_retry_after = "retry-after" in response.headers
        has_reset_at = "x-rate-limit-reset-at-utc" in response.headers
        assert has_retry_after != has_reset_at, "each 429 kind carries exactly one of the two hints"
        if has_retry_after:
            assert response.headers["retry-after"] == "1"
            return "429_retry_after"
        return "429_reset_at"
    if response.status_code >= 500:
        assert response.headers["content-type"].startswith("text/html")
        assert response.text.lstrip().startswith("<!DOCTYPE html>")
        assert str(response.status_code) in response.text
        return str(response.status_code)
    return f"answer {response.status_code}"


def test_every_fault_kind_is_injected_and_counted(client: httpx.Client, emu: Emulator) -> None:
    emu.config(error_rate=1.0)
    unknown = "/v2/requests/00000000-0000-4000-8000-000000000000"
    seen = Counter(classify(lambda n=n: client.get(f"{unknown}/status" if n % 2 else unknown)) for n in range(140))

    assert set(seen) == ALL_KINDS
    stats = emu.stats()
    assert stats["faults"] == dict(seen)
    assert stats["requests"] == {"status": 70, "result": 70}


def test_faults_hit_a_share_of_requests_and_spare_the_rest(client: httpx.Client, emu: Emulator) -> None:
    emu.config(error_rate=0.25)
    seen = Counter(classify(lambda: client.get("/v2/requests/nope/status")) for _ in range(200))
    faults = sum(count for kind, count in seen.items() if kind in ALL_KINDS)
    assert seen["answer 404"] == 200 - faults
    assert 0 < faults < 200
    assert sum(emu.stats()["faults"].values()) == faults


def test_faults_are_reproducible_with_the_seed() -> None:
    def sequence(seed: int) -> list[str]:
        with (
            Emulator(api_key=KEY, error_rate=0.5, seed=seed) as emulator,
            httpx.Client(base_url=emulator.base_url, headers={"x-api-key": KEY}) as http,
        ):
            return [classify(lambda: http.get("/v2/requests/nope")) for _ in range(40)]

    first = sequence(11)
    assert first == sequence(11)
    assert first != sequence(12)


def test_an_injected_submit_fault_never_creates_a_job(client: httpx.Client, emu: Emulator) -> None:
    emu.config(error_rate=1.0)
    payload = {"prompt": "make it winter", "video": emu.sample_url()}
    seen = Counter(classify(lambda: client.post(f"/v2/{ALEPH}", json=payload)) for _ in range(60))

    assert set(seen) == SUBMIT_KINDS, "only faults that happen before anything is stored"
    assert emu.submissions == 0
    assert not emu.jobs
    emu.config(error_rate=0.0)
    assert client.post(f"/v2/{ALEPH}", json=payload).status_code == 200
    assert emu.submissions == 1


def test_faults_do_not_touch_files_samples_or_uploads(client: httpx.Client, emu: Emulator) -> None:
    emu.config(error_rate=1.0)
    for _ in range(20):
        assert httpx.get(emu.sample_url()).status_code == 200
    upload = client.post("/upload-asset", json={"data_urls": ["data:image/png;base64,iVBORw0KGgo="]})
    assert upload.status_code == 200
    assert httpx.get(upload.json()["file_urls"][0]).status_code == 200
    assert emu.stats()["faults"] == {}


# -- lost submit answers --------------------------------------------------------------------------


def test_lost_answers_alternate_between_a_gateway_page_and_a_drop(client: httpx.Client, emu: Emulator) -> None:
    emu.config(lose_submit_answers=3)
    payload = {"prompt": "make it winter", "video": emu.sample_url()}
    seen = [classify(lambda: client.post(f"/v2/{ALEPH}", json=payload)) for _ in range(4)]

    assert seen == ["504", "drop", "504", "answer 200"]
    assert emu.submissions == 4, "every lost answer still created a paid job"
    assert emu.stats()["lost_answers"] == 3
    assert emu.stats()["faults"] == {}
    assert emu.config.lose_submit_answers == 0


@pytest.mark.parametrize("mode", ["504", "drop"])
def test_lost_answer_mode_can_be_fixed(client: httpx.Client, emu: Emulator, mode: str) -> None:
    httpx.post(f"{emu.base_url}/_emulator/config", json={"lose_submit_answers": 2, "lose_submit_mode": mode})
    seen = [classify(lambda: client.post("/v2/flux-schnell", json={"prompt": "p"})) for _ in range(2)]
    assert seen == [mode, mode]
    assert emu.submissions == 2
    assert [job.payload for job in emu.jobs.values()] == [{"prompt": "p"}, {"prompt": "p"}]


@pytest.mark.parametrize("mode", ["504", "drop"])
def test_the_hook_never_resubmits_after_a_lost_answer(segmind_conn: Emulator, mode: str) -> None:
    from airflow_provider_aleph.exceptions import SegmindError
    from airflow_provider_aleph.hooks.segmind import SegmindHook

    segmind_conn.config(lose_submit_answers=1, lose_submit_mode=mode)
    with pytest.raises(SegmindError):
        SegmindHook().submit(ALEPH, {"prompt": "make it winter", "video": segmind_conn.sample_url()})
    assert segmind_conn.submissions == 1, "exactly one paid job: the client must not POST again"
    assert segmind_conn.stats()["requests"]["submit"] == 1


# -- credits and content type -----------------------------------------------------------------------


def test_key_without_credits_gets_406_on_submit_but_may_poll(emu: Emulator) -> None:
    with httpx.Client(base_url=emu.base_url, headers={"x-api-key": BROKE_KEY}) as broke:
        refused = broke.post(f"/v2/{ALEPH}", json={"prompt": "make it winter", "video": emu.sample_url()})
        assert refused.status_code == 406
        assert "credits" in refused.json()["error"].lower()
        assert broke.get("/v2/requests/nope/status").status_code == 404, "a valid key for polling"
    assert emu.submissions == 0
    assert emu.stats()["insufficient_credits"] == 1
    assert BROKE_KEY not in repr(emu.config)
    assert BROKE_KEY not in httpx.get(f"{emu.base_url}/_emulator/config").text


def test_the_hook_reports_missing_credits(emulator: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow_provider_aleph.exceptions import SegmindNotAcceptable
    from airflow_provider_aleph.hooks.segmind import SegmindHook

    emulator.config(insufficient_credits_keys=[BROKE_KEY])
    connection = {"conn_type": "segmind", "password": BROKE_KEY, "host": emulator.base_url}
    monkeypatch.setenv("AIRFLOW_CONN_SEGMIND_DEFAULT", json.dumps(connection))
    with pytest.raises(SegmindNotAcceptable) as caught:
        SegmindHook().submit(ALEPH, {"prompt": "make it winter", "video": emulator.sample_url()})
    assert caught.value.insufficient_credits
    assert BROKE_KEY not in str(caught.value)
    assert emulator.submissions == 0


@pytest.mark.parametrize(
    "headers",
    [{"content-type": "text/plain"}, {"content-type": "application/x-www-form-urlencoded"}, {}],
    ids=["text", "form", "none"],
)
def test_submit_that_is_not_json_gets_406_about_the_content_type(
    client: httpx.Client, emu: Emulator, headers: dict[str, str]
) -> None:
    # httpx adds no Content-Type to raw content: the "none" case sends none at all.
    refused = client.post("/v2/flux-schnell", content=b'{"prompt": "p"}', headers=headers)
    assert refused.status_code == 406
    detail = refused.json()["error"]
    assert "Content-Type" in detail
    assert "credit" not in detail.lower()
    assert emu.submissions == 0
    ok = client.post("/v2/flux-schnell", content=b'{"prompt": "p"}', headers={"content-type": "application/json"})
    assert ok.status_code == 200


# -- run-time settings ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "changes",
    [
        {"error_rate": 1.5},
        {"rpm_limit": 0},
        {"rate_window": 0},
        {"output_size": -1},
        {"cut_outputs": 1.5},
        {"lose_submit_answers": True},
        {"lose_submit_mode": "sometimes"},
        {"upload_answer_key": "links"},
        {"insufficient_credits_keys": "one-key"},
        {"fetch_inputs": "yes"},
        {"fetch_timeout": 0},
    ],
)
def test_bad_settings_are_refused_naming_them(emu: Emulator, changes: dict[str, Any]) -> None:
    before = emu.config.as_dict()
    answer = httpx.post(f"{emu.base_url}/_emulator/config", json=changes)
    assert answer.status_code == 400
    assert next(iter(changes)) in answer.json()["error"]
    with pytest.raises(ValueError, match=next(iter(changes))):
        emu.config(**changes)
    assert emu.config.as_dict() == before


def test_reset_clears_counters_and_restarts_the_draws(client: httpx.Client, emu: Emulator) -> None:
    emu.config(error_rate=0.5)
    first = [classify(lambda: client.get("/v2/requests/nope")) for _ in range(20)]
    emu.reset()
    stats = emu.stats()
    assert (stats["faults"], stats["requests"], stats["uploads"]["count"]) == ({}, {}, 0)
    assert [classify(lambda: client.get("/v2/requests/nope")) for _ in range(20)] == first
