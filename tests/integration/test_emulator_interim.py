"""An undocumented interim status and garbled answers from the emulator, over real loopback sockets."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from airflow_provider_aleph.emulator import Emulator, EmulatorConfig
from tests.integration.conftest import emulator_process

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

# Nothing here depends on the Airflow version: run once, on the newest Airflow leg only.
pytestmark = pytest.mark.airflow_independent

KEY = "interim-key"
MODEL = "flux-schnell"


@pytest.fixture
def emu() -> Iterator[Emulator]:
    # No latency and no input to fetch: every job is COMPLETED (or FAILED) as soon as it exists.
    with Emulator(api_key=KEY, latency=0.0) as emulator:
        yield emulator


@pytest.fixture
def client(emu: Emulator) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=emu.base_url, headers={"x-api-key": KEY}, timeout=10) as http:
        yield http


def submit(client: httpx.Client, prompt: str = "a cat") -> str:
    answer = client.post(f"/v2/{MODEL}", json={"prompt": prompt})
    assert answer.status_code == 200
    request_id: str = answer.json()["request_id"]
    return request_id


def poll(client: httpx.Client, request_id: str) -> tuple[int, dict[str, Any]]:
    answer = client.get(f"/v2/requests/{request_id}/status")
    return answer.status_code, answer.json()


def read(answer: httpx.Response) -> str:
    """Name the body of a 200 answer: ``html``, ``no_status`` or the status it carries."""
    assert answer.status_code == 200
    if answer.headers["content-type"].startswith("text/html"):
        assert answer.text.lstrip().startswith("<!DOCTYPE html>")
        with pytest.raises(json.JSONDecodeError):
            json.loads(answer.text)
        return "html"
    body = answer.json()
    assert isinstance(body, dict)
    return str(body["status"]) if "status" in body else "no_status"


# -- interim status -----------------------------------------------------------------------------------


def test_each_job_answers_the_interim_status_for_exactly_n_polls(client: httpx.Client, emu: Emulator) -> None:
    emu.config(interim_status="STARTING", interim_polls=3)
    first, second = submit(client), submit(client)

    seen_first = [poll(client, first) for _ in range(3)]
    assert seen_first == [(200, {"request_id": first, "status": "STARTING", "metrics": {}})] * 3
    code, body = poll(client, first)
    assert (code, body["status"]) == (200, "COMPLETED"), "after N polls, the job's real state"
    assert poll(client, first)[1]["status"] == "COMPLETED"

    # The count is per job: the second job, untouched so far, still has its own three.
    assert [poll(client, second)[1]["status"] for _ in range(4)] == ["STARTING"] * 3 + ["COMPLETED"]
    assert emu.stats()["interim_answers"] == 6
    assert emu.stats()["requests"]["status"] == 9


def test_a_failed_job_still_answers_the_interim_status_first(client: httpx.Client, emu: Emulator) -> None:
    emu.config(interim_status="STARTING", interim_polls=2)
    request_id = submit(client, prompt="a cat [emulator:fail]")

    assert [poll(client, request_id) for _ in range(2)] == [
        (200, {"request_id": request_id, "status": "STARTING", "metrics": {}})
    ] * 2
    code, body = poll(client, request_id)
    assert (code, body["status"]) == (422, "FAILED")
    assert body["error"]


def test_the_interim_status_leaves_the_result_route_and_unset_jobs_alone(client: httpx.Client, emu: Emulator) -> None:
    request_id = submit(client)
    assert poll(client, request_id)[1]["status"] == "COMPLETED", "off by default"

    emu.config(interim_status="STARTING", interim_polls=1)
    result = client.get(f"/v2/requests/{request_id}")
    assert (result.status_code, result.json()["status"]) == (200, "COMPLETED"), "only status polls are held back"
    assert poll(client, request_id)[1]["status"] == "STARTING", "counted from when the setting is on"
    assert poll(client, request_id)[1]["status"] == "COMPLETED"
    assert client.get("/v2/requests/00000000-0000-4000-8000-000000000000/status").status_code == 404

    emu.config(interim_status=None)
    assert poll(client, submit(client))[1]["status"] == "COMPLETED"
    assert emu.stats()["interim_answers"] == 1


def test_reset_restarts_the_interim_count(client: httpx.Client, emu: Emulator) -> None:
    emu.config(interim_status="WARMING_UP", interim_polls=1)
    request_id = submit(client)
    assert [poll(client, request_id)[1]["status"] for _ in range(2)] == ["WARMING_UP", "COMPLETED"]

    emu.reset()
    assert emu.stats()["interim_answers"] == 0
    assert poll(client, submit(client))[1]["status"] == "WARMING_UP"


def test_the_interim_status_over_the_config_route(client: httpx.Client, emu: Emulator) -> None:
    changed = httpx.post(f"{emu.base_url}/_emulator/config", json={"interim_status": "STARTING", "interim_polls": 1})
    assert changed.status_code == 200
    assert changed.json() | {"interim_status": "STARTING", "interim_polls": 1} == changed.json()
    request_id = submit(client)
    assert [poll(client, request_id)[1]["status"] for _ in range(2)] == ["STARTING", "COMPLETED"]


# -- garbled answers ----------------------------------------------------------------------------------


def test_garbled_answers_alternate_count_down_and_leave_the_job_alone(client: httpx.Client, emu: Emulator) -> None:
    request_id = submit(client)
    before = dict(emu.jobs)
    emu.config(garbled_answers=5)
    status_url, result_url = f"/v2/requests/{request_id}/status", f"/v2/requests/{request_id}"

    seen = [read(client.get(url)) for url in (status_url, result_url, status_url, result_url, status_url)]
    assert seen == ["html", "no_status", "html", "no_status", "html"]
    assert emu.config.garbled_answers == 0
    assert emu.stats()["garbled_answers"] == 5
    assert dict(emu.jobs) == before, "a garbled answer changes nothing on the server"

    assert read(client.get(status_url)) == "COMPLETED"
    assert read(client.get(result_url)) == "COMPLETED"
    assert client.get(result_url).json()["output"].endswith(f"/outputs/{request_id}.mp4")
    assert emu.stats()["garbled_answers"] == 5


def test_a_garbled_json_answer_names_the_request_but_no_status(client: httpx.Client, emu: Emulator) -> None:
    request_id = submit(client)
    emu.config(garbled_answers=2)
    assert read(client.get(f"/v2/requests/{request_id}")) == "html"
    answer = client.get(f"/v2/requests/{request_id}")
    assert answer.headers["content-type"].startswith("application/json")
    assert answer.json()["request_id"] == request_id
    assert "status" not in answer.json()


def test_garbled_answers_spare_unknown_ids_and_the_interim_count(client: httpx.Client, emu: Emulator) -> None:
    request_id = submit(client)
    emu.config(garbled_answers=2, interim_status="STARTING", interim_polls=1)

    assert client.get("/v2/requests/00000000-0000-4000-8000-000000000000/status").status_code == 404
    assert emu.config.garbled_answers == 2, "only answers about a job are garbled"
    statuses = [read(client.get(f"/v2/requests/{request_id}/status")) for _ in range(4)]
    assert statuses == ["html", "no_status", "STARTING", "COMPLETED"]
    stats = emu.stats()
    assert (stats["garbled_answers"], stats["interim_answers"]) == (2, 1)


def test_a_garbled_answer_replaces_a_failed_jobs_422(client: httpx.Client, emu: Emulator) -> None:
    request_id = submit(client, prompt="a cat [emulator:fail]")
    emu.config(garbled_answers=1)
    assert read(client.get(f"/v2/requests/{request_id}/status")) == "html"
    assert client.get(f"/v2/requests/{request_id}/status").status_code == 422


def test_reset_restarts_the_alternation(client: httpx.Client, emu: Emulator) -> None:
    emu.config(garbled_answers=1)
    assert read(client.get(f"/v2/requests/{submit(client)}")) == "html"
    emu.reset()
    emu.config(garbled_answers=1)
    assert read(client.get(f"/v2/requests/{submit(client)}")) == "html"


# -- validation ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("setting", "value", "message"),
    [
        ("interim_status", "", "interim_status must be a non-empty string or null"),
        ("interim_status", "  ", "interim_status must be a non-empty string or null"),
        ("interim_status", 3, "interim_status must be a non-empty string or null"),
        ("interim_status", "COMPLETED", "interim_status must not be a terminal status"),
        ("interim_status", "FAILED", "interim_status must not be a terminal status"),
        ("interim_polls", 0, "interim_polls must be a positive integer"),
        ("interim_polls", -2, "interim_polls must be a positive integer"),
        ("interim_polls", 1.5, "interim_polls must be a positive integer"),
        ("interim_polls", True, "interim_polls must be a positive integer"),
        ("interim_polls", None, "interim_polls must be a positive integer"),
        ("garbled_answers", -1, "garbled_answers must be an integer at least 0"),
        ("garbled_answers", "2", "garbled_answers must be an integer at least 0"),
        ("garbled_answers", False, "garbled_answers must be an integer at least 0"),
    ],
)
def test_bad_values_are_refused_naming_the_setting(setting: str, value: object, message: str, emu: Emulator) -> None:
    with pytest.raises(ValueError, match=message):
        EmulatorConfig(**{setting: value})
    with pytest.raises(ValueError, match=message):
        emu.config(**{setting: value})
    refused = httpx.post(f"{emu.base_url}/_emulator/config", json={setting: value, "latency": 9.0})
    assert refused.status_code == 400
    assert message in refused.json()["error"]
    assert (emu.config.latency, emu.config.interim_status) == (0.0, None), "nothing changed"
    assert (emu.config.interim_polls, emu.config.garbled_answers) == (3, 0)


def test_the_defaults_change_nothing() -> None:
    config = EmulatorConfig()
    assert (config.interim_status, config.interim_polls, config.garbled_answers) == (None, 3, 0)
    assert config.as_dict() | {"interim_status": None, "interim_polls": 3, "garbled_answers": 0} == config.as_dict()


# -- command line ----------------------------------------------------------------------------------------


def test_cli_flags_reach_the_settings_and_the_answers(tmp_path: Path) -> None:
    flags = ["--api-key", KEY, "--latency", "0", "--interim-status", "STARTING", "--interim-polls", "2"]
    with (
        emulator_process([*flags, "--garbled-answers", "2"], tmp_path / "emulator.log") as base_url,
        httpx.Client(base_url=base_url, headers={"x-api-key": KEY}, timeout=10) as http,
    ):
        settings = http.get("/_emulator/config").json()
        request_id = submit(http)
        seen = [read(http.get(f"/v2/requests/{request_id}/status")) for _ in range(5)]
        stats = http.get("/_emulator/stats").json()
    assert settings | {"interim_status": "STARTING", "interim_polls": 2, "garbled_answers": 2} == settings
    assert seen == ["html", "no_status", "STARTING", "STARTING", "COMPLETED"]
    assert (stats["garbled_answers"], stats["interim_answers"]) == (2, 2)


def test_cli_defaults_leave_both_off() -> None:
    from airflow_provider_aleph.emulator.__main__ import build_parser

    args = build_parser().parse_args([])
    assert (args.interim_status, args.interim_polls, args.garbled_answers) == (None, 3, 0)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--interim-status", "COMPLETED"], "interim_status must not be a terminal status"),
        (["--interim-status", "STARTING", "--interim-polls", "0"], "interim_polls must be a positive integer"),
        (["--garbled-answers", "-1"], "garbled_answers must be an integer at least 0"),
    ],
)
def test_cli_rejects_bad_values_naming_them(flags: list[str], message: str) -> None:
    command = [sys.executable, "-m", "airflow_provider_aleph.emulator", "--port", "0", *flags]
    finished = subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)
    assert finished.returncode == 2
    assert message in finished.stderr
