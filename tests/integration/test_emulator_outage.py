"""An outage on demand and a key rotation in the emulator, over real loopback sockets.

Time is the emulator's injectable clock, moved by hand: an outage of minutes takes no wall time.
"""

from __future__ import annotations

import base64
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

    from tests.fakes import FakeClock

# Nothing here depends on the Airflow version: run once, on the newest Airflow leg only.
pytestmark = pytest.mark.airflow_independent

KEY = "outage-key"
OLD_KEY, NEW_KEY = "rotated-out-key", "rotated-in-key"
POOR_KEY = "key-without-credits"
MODEL = "flux-schnell"
UNAVAILABLE = "503 Service Unavailable"
UPLOAD = {"data_urls": [f"data:image/png;base64,{base64.b64encode(b'png bytes').decode()}"]}


@pytest.fixture
def emu(clock: FakeClock) -> Iterator[Emulator]:
    # No latency and no input to fetch: every job is COMPLETED as soon as it exists.
    with Emulator(api_key=KEY, latency=0.0, clock=clock, insufficient_credits_keys=[POOR_KEY]) as emulator:
        yield emulator


def client_for(emu: Emulator | str, key: str = KEY) -> httpx.Client:
    base_url = emu if isinstance(emu, str) else emu.base_url
    return httpx.Client(base_url=base_url, headers={"x-api-key": key}, timeout=10)


@pytest.fixture
def client(emu: Emulator) -> Iterator[httpx.Client]:
    with client_for(emu) as http:
        yield http


def submit(client: httpx.Client) -> str:
    answer = client.post(f"/v2/{MODEL}", json={"prompt": "a cat"})
    assert answer.status_code == 200, answer.text
    request_id: str = answer.json()["request_id"]
    return request_id


def api_codes(client: httpx.Client, request_id: str) -> list[int]:
    """Call every API route once (submit, status, result, upload) and return their HTTP codes."""
    answers = [
        client.post(f"/v2/{MODEL}", json={"prompt": "a dog"}),
        client.get(f"/v2/requests/{request_id}/status"),
        client.get(f"/v2/requests/{request_id}"),
        client.post("/upload-asset", json=UPLOAD),
    ]
    return [answer.status_code for answer in answers]


def assert_gateway_page(answer: httpx.Response) -> None:
    assert answer.status_code == 503
    assert answer.headers["content-type"].startswith("text/html")
    assert UNAVAILABLE in answer.text


# -- outage ------------------------------------------------------------------------------------------


def test_an_outage_answers_503_on_every_api_route_for_its_length(
    client: httpx.Client, emu: Emulator, clock: FakeClock
) -> None:
    request_id = submit(client)
    assert emu.stats()["outage_remaining"] == 0.0

    emu.config(outage_seconds=90)
    assert_gateway_page(client.get(f"/v2/requests/{request_id}/status"))
    assert api_codes(client, request_id) == [503] * 4
    assert emu.stats()["outage_remaining"] == 90.0
    clock.advance(89.5)
    assert api_codes(client, request_id) == [503] * 4, "still inside the 90 seconds"
    clock.advance(0.5)

    assert api_codes(client, request_id) == [200] * 4, "over once its time is up, with nothing to reset"
    stats = emu.stats()
    assert stats["outage_answers"] == 9
    assert stats["outage_remaining"] == 0.0
    assert stats["requests"] == {"submit": 4, "status": 4, "result": 3, "upload": 3}, "503s are counted as calls"


def test_admin_and_file_routes_are_spared(client: httpx.Client, emu: Emulator) -> None:
    request_id = submit(client)
    (asset_url,) = client.post("/upload-asset", json=UPLOAD).json()["file_urls"]
    emu.config(outage_seconds=60)

    assert client.get(f"/outputs/{request_id}.mp4").status_code == 200
    assert client.get(asset_url).content == b"png bytes"
    assert client.head(emu.sample_url()).status_code == 200
    assert client.get("/_emulator/config").json()["outage_seconds"] == 60
    assert client.get("/_emulator/stats").json()["outage_remaining"] == 60.0
    assert client.get(f"/v2/requests/{request_id}").status_code == 503, "while the API is down"
    assert emu.stats()["outage_answers"] == 1


def test_a_submit_during_an_outage_creates_nothing_and_comes_before_any_other_check(emu: Emulator) -> None:
    emu.config(outage_seconds=30, error_rate=1.0, lose_submit_answers=1)
    with client_for(emu) as client:
        assert_gateway_page(client.post(f"/v2/{MODEL}", json={"prompt": "a cat"}))
    with client_for(emu, key="wrong-key") as stranger:
        assert_gateway_page(stranger.post(f"/v2/{MODEL}", json={"prompt": "a cat"}))
        assert_gateway_page(stranger.get("/v2/requests/00000000-0000-4000-8000-000000000000/status"))

    assert (emu.submissions, dict(emu.jobs)) == (0, {})
    stats = emu.stats()
    assert (stats["faults"], stats["lost_answers"]) == ({}, 0), "no fault is drawn and no answer lost"
    assert emu.config.lose_submit_answers == 1


def test_an_outage_leaves_the_seeded_faults_where_they_were(clock: FakeClock) -> None:
    unknown = "/v2/requests/00000000-0000-4000-8000-000000000000/status"

    def code(client: httpx.Client) -> int:
        try:
            return client.get(unknown).status_code
        except httpx.RemoteProtocolError:
            return 0  # an injected dropped connection

    def codes_after_outage(outage_calls: int) -> list[int]:
        emulator = Emulator(api_key=KEY, latency=0.0, seed=7, error_rate=0.5, clock=clock)
        with emulator, client_for(emulator) as client:
            emulator.config(outage_seconds=10)
            assert [code(client) for _ in range(outage_calls)] == [503] * outage_calls
            emulator.config(outage_seconds=0)
            return [code(client) for _ in range(30)]

    assert codes_after_outage(5) == codes_after_outage(0), "no fault is drawn for a call the outage answers"


def test_setting_zero_ends_it_and_setting_it_again_restarts_it(
    client: httpx.Client, emu: Emulator, clock: FakeClock
) -> None:
    request_id = submit(client)
    emu.config(outage_seconds=90)
    clock.advance(60)
    emu.config(outage_seconds=90)
    assert emu.stats()["outage_remaining"] == 90.0, "counted from the second setting, not the first"
    clock.advance(89)
    assert client.get(f"/v2/requests/{request_id}").status_code == 503

    emu.config(outage_seconds=0)
    assert api_codes(client, request_id) == [200] * 4
    assert emu.stats()["outage_remaining"] == 0.0


def test_other_settings_leave_an_outage_under_way_alone(client: httpx.Client, emu: Emulator, clock: FakeClock) -> None:
    emu.config(outage_seconds=30)
    clock.advance(20)
    emu.config(error_rate=0.0, interim_polls=2)
    emu.config.garbled_answers = 0
    changed = httpx.post(f"{emu.base_url}/_emulator/config", json={"latency": 0.0})
    assert changed.status_code == 200
    assert emu.stats()["outage_remaining"] == 10.0
    clock.advance(10)
    assert client.post(f"/v2/{MODEL}", json={"prompt": "a cat"}).status_code == 200


def test_the_outage_over_the_config_route_and_by_assignment(
    client: httpx.Client, emu: Emulator, clock: FakeClock
) -> None:
    request_id = submit(client)
    changed = httpx.post(f"{emu.base_url}/_emulator/config", json={"outage_seconds": 45.5})
    assert (changed.status_code, changed.json()["outage_seconds"]) == (200, 45.5)
    assert client.get(f"/v2/requests/{request_id}/status").status_code == 503
    clock.advance(45.5)
    assert client.get(f"/v2/requests/{request_id}/status").status_code == 200

    emu.config.outage_seconds = 10
    assert client.get(f"/v2/requests/{request_id}/status").status_code == 503
    httpx.post(f"{emu.base_url}/_emulator/config", json={"outage_seconds": 0})
    assert client.get(f"/v2/requests/{request_id}/status").status_code == 200


def test_reset_clears_the_count_but_not_the_outage(client: httpx.Client, emu: Emulator, clock: FakeClock) -> None:
    emu.config(outage_seconds=30)
    assert client.post(f"/v2/{MODEL}", json={"prompt": "a cat"}).status_code == 503
    emu.reset()
    assert emu.stats()["outage_answers"] == 0
    assert emu.stats()["outage_remaining"] == 30.0
    assert client.post(f"/v2/{MODEL}", json={"prompt": "a cat"}).status_code == 503
    assert emu.stats()["outage_answers"] == 1


def test_the_keyword_starts_an_outage_when_the_emulator_starts(clock: FakeClock) -> None:
    emulator = Emulator(api_key=KEY, latency=0.0, clock=clock, outage_seconds=30)
    clock.advance(100)
    with emulator, client_for(emulator) as client:
        assert emulator.stats()["outage_remaining"] == 30.0, "counted from start(), not from construction"
        assert client.post(f"/v2/{MODEL}", json={"prompt": "a cat"}).status_code == 503
        clock.advance(30)
        submit(client)
        assert emulator.stats()["outage_answers"] == 1


# -- key rotation --------------------------------------------------------------------------------------


def test_a_key_rotation_retires_the_old_key_on_every_route(emu: Emulator) -> None:
    emu.config(api_keys=[OLD_KEY])
    with client_for(emu, OLD_KEY) as old, client_for(emu, NEW_KEY) as new, client_for(emu) as own:
        request_id = submit(old)
        assert new.get(f"/v2/requests/{request_id}").status_code == 401
        assert own.get(f"/v2/requests/{request_id}").status_code == 401, "the setting replaces the own key"

        emu.config(api_keys=[OLD_KEY, NEW_KEY])
        assert api_codes(old, request_id) == [200] * 4
        assert api_codes(new, request_id) == [200] * 4, "both keys during the overlap"

        emu.config(api_keys=[NEW_KEY])
        assert api_codes(old, request_id) == [401] * 4, "the old key is refused, its own job's reads included"
        assert new.get(f"/v2/requests/{request_id}/status").json()["status"] == "COMPLETED"
        assert new.get(f"/v2/requests/{request_id}").status_code == 200, "jobs are not tied to a key"

        emu.config(api_keys=[])
        assert api_codes(own, request_id) == [200] * 4, "an empty list means the emulator's own key again"
        assert new.get(f"/v2/requests/{request_id}").status_code == 401


def test_keys_without_credits_keep_working_through_a_rotation(emu: Emulator) -> None:
    emu.config(api_keys=[NEW_KEY])
    with client_for(emu, NEW_KEY) as new, client_for(emu, POOR_KEY) as poor:
        request_id = submit(new)
        assert poor.post(f"/v2/{MODEL}", json={"prompt": "a cat"}).status_code == 406
        assert poor.get(f"/v2/requests/{request_id}/status").status_code == 200
    assert emu.stats()["insufficient_credits"] == 1


def test_rotated_keys_stay_secret(emu: Emulator) -> None:
    changed = httpx.post(f"{emu.base_url}/_emulator/config", json={"api_keys": [OLD_KEY, NEW_KEY]})
    assert changed.status_code == 200
    assert changed.json()["api_keys"] == 2
    assert changed.json()["insufficient_credits_keys"] == 1
    for shown in (changed.text, repr(emu.config), repr(emu), str(emu.config.as_dict())):
        assert OLD_KEY not in shown
        assert NEW_KEY not in shown
        assert POOR_KEY not in shown
    assert emu.config.api_keys == (OLD_KEY, NEW_KEY)
    with client_for(emu, NEW_KEY) as new:
        submit(new)


def test_the_keyword_sets_the_accepted_keys() -> None:
    with Emulator(api_key=KEY, latency=0.0, api_keys=[NEW_KEY]) as emulator:
        with client_for(emulator, NEW_KEY) as new:
            submit(new)
        with client_for(emulator) as own:
            assert own.post(f"/v2/{MODEL}", json={"prompt": "a cat"}).status_code == 401


# -- validation ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("setting", "value", "message"),
    [
        ("outage_seconds", -1, "outage_seconds must be at least 0"),
        ("outage_seconds", "90", "outage_seconds must be a finite number"),
        ("outage_seconds", float("inf"), "outage_seconds must be a finite number"),
        ("outage_seconds", True, "outage_seconds must be a finite number"),
        ("outage_seconds", None, "outage_seconds must be a finite number"),
        ("api_keys", "a-key", "api_keys must be a list of API keys"),
        ("api_keys", ["a-key", ""], "api_keys must contain only non-empty strings"),
        ("api_keys", ["a-key", 3], "api_keys must contain only non-empty strings"),
        ("api_keys", None, "api_keys must be a list of API keys"),
    ],
)
def test_bad_values_are_refused_naming_the_setting(setting: str, value: object, message: str, emu: Emulator) -> None:
    changes: dict[str, Any] = {setting: value}
    with pytest.raises(ValueError, match=message):
        EmulatorConfig(**changes)
    with pytest.raises(ValueError, match=message):
        emu.config(**changes)
    if value != float("inf"):  # not JSON
        refused = httpx.post(f"{emu.base_url}/_emulator/config", json={setting: value, "latency": 9.0})
        assert refused.status_code == 400
        assert message in refused.json()["error"]
    assert (emu.config.latency, emu.config.outage_seconds, emu.config.api_keys) == (0.0, 0.0, ()), "nothing changed"
    assert emu.stats()["outage_remaining"] == 0.0, "no outage started"


def test_the_defaults_change_nothing() -> None:
    config = EmulatorConfig()
    assert (config.outage_seconds, config.api_keys) == (0.0, ())
    assert config.as_dict() | {"outage_seconds": 0.0, "api_keys": 0} == config.as_dict()


# -- command line ----------------------------------------------------------------------------------------


def test_cli_flag_starts_an_outage_and_the_settings_work_over_http(tmp_path: Path) -> None:
    flags = ["--port", "0", "--api-key", KEY, "--latency", "0", "--outage-seconds", "600"]
    with emulator_process(flags, tmp_path / "emulator.log") as base_url, client_for(base_url) as http:
        settings = http.get("/_emulator/config").json()
        down = http.post(f"/v2/{MODEL}", json={"prompt": "a cat"})
        during = http.get("/_emulator/stats").json()
        http.post("/_emulator/config", json={"outage_seconds": 0, "api_keys": [NEW_KEY]})
        refused = http.post(f"/v2/{MODEL}", json={"prompt": "a cat"}).status_code
        with client_for(base_url, NEW_KEY) as new:
            request_id = submit(new)
        after = http.get("/_emulator/stats").json()
    assert settings | {"outage_seconds": 600.0, "api_keys": 0} == settings
    assert_gateway_page(down)
    assert (during["outage_answers"], during["submissions"]) == (1, 0)
    assert 590 < during["outage_remaining"] <= 600, "counted from start-up"
    assert refused == 401, "the outage is over and the flag's key is rotated out"
    assert after["request_ids"] == [request_id]
    assert after["outage_remaining"] == 0.0


def test_cli_default_is_no_outage() -> None:
    from airflow_provider_aleph.emulator.__main__ import build_parser

    assert build_parser().parse_args([]).outage_seconds == 0.0


def test_cli_rejects_a_negative_outage_naming_it() -> None:
    command = [sys.executable, "-m", "airflow_provider_aleph.emulator", "--port", "0", "--outage-seconds", "-5"]
    finished = subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)
    assert finished.returncode == 2
    assert "outage_seconds must be at least 0" in finished.stderr
