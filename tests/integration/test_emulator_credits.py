"""The emulator's cost fields and account balance: each accepted submit debits it; an empty one answers 406."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import httpx
import pytest

from airflow_provider_aleph.emulator import FAIL_MARKER, Emulator
from airflow_provider_aleph.emulator.app import INSUFFICIENT_CREDITS

if TYPE_CHECKING:
    from collections.abc import Iterator

    from tests.fakes import FakeClock

# Nothing here depends on the Airflow version: run once, on the newest Airflow leg only.
pytestmark = pytest.mark.airflow_independent

KEY = "credits-key"
ALEPH = "runway-gen4-aleph"
LATENCY = 2.0
COST = 0.75


@pytest.fixture
def emu(clock: FakeClock) -> Iterator[Emulator]:
    # Two jobs' worth: the third submit finds the account empty.
    with Emulator(api_key=KEY, latency=LATENCY, clock=clock, cost_per_job=COST, credits=2 * COST) as emulator:
        yield emulator


@pytest.fixture
def client(emu: Emulator) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=emu.base_url, headers={"x-api-key": KEY}, timeout=10) as http:
        yield http


def post(client: httpx.Client, emu: Emulator, prompt: str = "make it winter") -> httpx.Response:
    return client.post(f"/v2/{ALEPH}", json={"prompt": prompt, "video": emu.sample_url()})


def balance(emu: Emulator) -> float:
    settings: dict[str, Any] = httpx.get(f"{emu.base_url}/_emulator/config").json()
    return float(settings["credits"])


def test_each_completed_result_reports_its_cost_and_the_balance_left(
    client: httpx.Client, emu: Emulator, clock: FakeClock
) -> None:
    first, second = post(client, emu).json(), post(client, emu).json()
    assert balance(emu) == 0.0

    clock.advance(LATENCY)
    reported = [client.get(job["response_url"]).json()["metrics"] for job in (first, second)]
    assert [(m["cost"], m["remaining_credits"]) for m in reported] == [(COST, COST), (COST, 0.0)]
    # The status answer of a finished job carries the same metrics as its result.
    assert client.get(second["status_url"]).json()["metrics"] == reported[1]


def test_an_empty_account_answers_406_and_creates_nothing(client: httpx.Client, emu: Emulator) -> None:
    post(client, emu)
    post(client, emu)

    refused = post(client, emu)

    assert refused.status_code == 406
    assert refused.json() == {"error": INSUFFICIENT_CREDITS}
    stats = emu.stats()
    assert stats["submissions"] == 2
    assert stats["insufficient_credits"] == 1
    assert balance(emu) == 0.0


def test_a_balance_that_cannot_cover_a_job_answers_406(client: httpx.Client, emu: Emulator) -> None:
    emu.config(credits=COST / 2)

    assert post(client, emu).status_code == 406
    assert emu.submissions == 0
    assert balance(emu) == COST / 2, "a refused submit is not debited"


def test_a_refill_through_the_settings_lets_submits_through_again(client: httpx.Client, emu: Emulator) -> None:
    emu.config(credits=0)
    assert post(client, emu).status_code == 406

    answer = httpx.post(f"{emu.base_url}/_emulator/config", json={"credits": 5})
    assert answer.status_code == 200

    assert post(client, emu).status_code == 200
    assert balance(emu) == 5 - COST


def test_a_failed_job_is_paid_for_and_its_422_body_carries_times_but_no_cost(
    client: httpx.Client, emu: Emulator, clock: FakeClock
) -> None:
    failing = post(client, emu, prompt=f"make it winter {FAIL_MARKER}").json()
    assert balance(emu) == COST, "every accepted submit is debited, a job that fails later included"

    clock.advance(LATENCY)
    for url in (failing["status_url"], failing["response_url"]):
        answer = client.get(url)
        assert answer.status_code == 422
        assert set(answer.json()["metrics"]) == {"queue_time", "inference_time"}


def test_refused_inputs_are_never_debited(client: httpx.Client, emu: Emulator) -> None:
    bad = client.post(f"/v2/{ALEPH}", json={"prompt": "", "video": emu.sample_url()})
    not_json = client.post(f"/v2/{ALEPH}", content=b"{}", headers={"content-type": "text/plain"})

    assert (bad.status_code, not_json.status_code) == (400, 406)
    assert balance(emu) == 2 * COST
    assert emu.submissions == 0


def test_the_cost_of_new_jobs_follows_the_setting(client: httpx.Client, emu: Emulator, clock: FakeClock) -> None:
    emu.config(cost_per_job=0.5)
    job = post(client, emu).json()

    clock.advance(LATENCY)
    assert client.get(job["response_url"]).json()["metrics"]["cost"] == 0.5
    assert balance(emu) == 2 * COST - 0.5


@pytest.mark.parametrize("changes", [{"credits": -1}, {"cost_per_job": -0.1}, {"credits": "lots"}])
def test_negative_or_non_numeric_amounts_are_refused(emu: Emulator, changes: dict[str, Any]) -> None:
    answer = httpx.post(f"{emu.base_url}/_emulator/config", json=changes)
    assert answer.status_code == 400
    assert next(iter(changes)) in answer.json()["error"]
    assert balance(emu) == 2 * COST
