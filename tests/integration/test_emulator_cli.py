"""The emulator's command line: serving until SIGTERM, and every flag reaching its setting."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from typing import TYPE_CHECKING

import httpx
import pytest

from airflow_provider_aleph.emulator.spawn import spawn

if TYPE_CHECKING:
    from pathlib import Path


# Nothing here depends on the Airflow version: run once, on the newest Airflow leg only.
pytestmark = pytest.mark.airflow_independent

KEY = "cli-key"
ALEPH = "runway-gen4-aleph"


def test_cli_serves_until_sigterm(tmp_path: Path) -> None:
    ready = tmp_path / "emulator.url"
    env = {**os.environ, "SEGMIND_EMULATOR_API_KEY": "cli-secret"}
    command = [sys.executable, "-m", "airflow_provider_aleph.emulator", "--port", "0", "--latency", "0"]
    command += ["--ready-file", str(ready), "--retired-model", "old"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.monotonic() + 20
        while not ready.exists():
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "the CLI never wrote its ready file"
            time.sleep(0.05)
        base_url = ready.read_text().strip()
        assert base_url.startswith("http://127.0.0.1:")

        headers = {"x-api-key": "cli-secret"}
        video = f"{base_url}/samples/sample.mp4"
        body = httpx.post(f"{base_url}/v2/{ALEPH}", json={"prompt": "p", "video": video}, headers=headers)
        assert body.status_code == 200
        assert httpx.get(body.json()["status_url"], headers=headers).json()["status"] == "COMPLETED"
        missing = httpx.post(f"{base_url}/v2/{ALEPH}", json={"prompt": "p", "video": f"{base_url}/x"}, headers=headers)
        failed = httpx.get(missing.json()["status_url"], headers=headers)
        assert (failed.status_code, failed.json()["error"]) == (422, "could not fetch video: HTTP 404")
        assert httpx.post(f"{base_url}/v2/old", json={}, headers=headers).status_code == 410

        process.send_signal(signal.SIGTERM)
        stdout, _ = process.communicate(timeout=15)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0
    assert stdout.strip() == f"Segmind emulator listening on {base_url}"
    assert "cli-secret" not in stdout


def test_cli_flags_reach_the_settings(tmp_path: Path) -> None:
    ready = tmp_path / "url"
    command = [sys.executable, "-m", "airflow_provider_aleph.emulator", "--port", "0", "--ready-file", str(ready)]
    command += ["--api-key", KEY, "--latency", "0", "--error-rate", "0.25", "--seed", "5", "--rpm-limit", "50"]
    command += ["--rate-window", "2", "--insufficient-credits-key", "k1", "--insufficient-credits-key", "k2"]
    command += ["--output-size", "4096", "--cut-outputs", "1", "--cut-after-bytes", "100", "--no-fetch-inputs"]
    command += ["--fetch-timeout", "3", "--upload-answer-key", "urls", "--lose-submit-answers", "2"]
    command += ["--lose-submit-mode", "drop", "--cost-per-job", "1.25", "--credits", "10"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 20
        while not ready.exists():
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "the emulator never became ready"
            time.sleep(0.05)
        settings = httpx.get(f"{ready.read_text().strip()}/_emulator/config").json()
        process.send_signal(signal.SIGTERM)
        stdout, _ = process.communicate(timeout=15)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0
    assert settings == settings | {
        "error_rate": 0.25,
        "rpm_limit": 50,
        "rate_window": 2.0,
        "insufficient_credits_keys": 2,
        "output_size": 4096,
        "cut_outputs": 1,
        "cut_after_bytes": 100,
        "fetch_inputs": False,
        "fetch_timeout": 3.0,
        "upload_answer_key": "urls",
        "lose_submit_answers": 2,
        "lose_submit_mode": "drop",
        "cost_per_job": 1.25,
        "credits": 10.0,
    }
    assert "k1" not in stdout


def test_cli_rejects_a_bad_setting_naming_it() -> None:
    command = [sys.executable, "-m", "airflow_provider_aleph.emulator", "--port", "0", "--error-rate", "2"]
    finished = subprocess.run(command, capture_output=True, text=True, timeout=30)
    assert finished.returncode == 2
    assert "error_rate must be between 0 and 1.0" in finished.stderr


def test_spawn_returns_a_serving_process_and_its_address(tmp_path: Path) -> None:
    log = tmp_path / "emulator.log"
    process, base_url = spawn(["--port", "0", "--latency", "1"], log_path=log)
    try:
        assert base_url.startswith("http://127.0.0.1:")
        assert httpx.get(f"{base_url}/_emulator/stats").json()["submissions"] == 0
        assert process.poll() is None
    finally:
        process.terminate()
        process.wait(10)


def test_spawn_of_a_command_that_exits_raises_with_the_end_of_its_log(tmp_path: Path) -> None:
    log = tmp_path / "emulator.log"
    with pytest.raises(RuntimeError, match="unrecognized arguments: --no-such-flag") as raised:
        spawn(["--no-such-flag"], log_path=log)
    assert str(log) in str(raised.value)
