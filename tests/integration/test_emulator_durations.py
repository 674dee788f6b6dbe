"""Job durations drawn from a lognormal (``latency_sigma``), over real loopback sockets and a test clock."""

from __future__ import annotations

import math
import random
import statistics
import subprocess
import sys
import time
from typing import TYPE_CHECKING

import httpx
import pytest

from airflow_provider_aleph.emulator import Emulator, EmulatorConfig
from tests.integration.conftest import emulator_process

if TYPE_CHECKING:
    from pathlib import Path

    from tests.fakes import FakeClock

# Nothing here depends on the Airflow version: run once, on the newest Airflow leg only.
pytestmark = pytest.mark.airflow_independent

KEY = "durations-key"
MODEL = "flux-schnell"
MEDIAN = 169.0
SIGMA = 0.3


def client_for(emu: Emulator) -> httpx.Client:
    return httpx.Client(base_url=emu.base_url, headers={"x-api-key": KEY}, timeout=10)


def submit_many(emu: Emulator, count: int, prompt: str = "a cat") -> list[str]:
    """Submit ``count`` jobs over HTTP and return their request ids, in submit order."""
    with client_for(emu) as http:
        answers = [http.post(f"/v2/{MODEL}", json={"prompt": prompt}) for _ in range(count)]
    assert all(answer.status_code == 200 for answer in answers)
    return [answer.json()["request_id"] for answer in answers]


def durations(emu: Emulator, request_ids: list[str]) -> list[float]:
    """Each job's seconds from submit to its terminal state, from the in-process job records."""
    jobs = emu.jobs
    return [jobs[rid].finished_at - jobs[rid].submitted_at for rid in request_ids]


def drawn(seed: int, count: int, clock: FakeClock, **settings: float) -> tuple[list[float], list[bool]]:
    """Durations and failures of ``count`` jobs submitted to a fresh emulator with this seed."""
    with Emulator(api_key=KEY, latency=MEDIAN, seed=seed, clock=clock, **settings) as emu:  # type: ignore[arg-type]
        ids = submit_many(emu, count)
        return durations(emu, ids), [emu.jobs[rid].failed for rid in ids]


def test_sigma_zero_keeps_the_exact_latency(clock: FakeClock) -> None:
    with Emulator(api_key=KEY, latency=MEDIAN, clock=clock) as emu:
        assert emu.config.latency_sigma == 0.0
        ids = submit_many(emu, 50)
        jobs = emu.jobs
    assert {job.finished_at - job.submitted_at for job in jobs.values()} == {MEDIAN}
    assert {jobs[rid].started_at - jobs[rid].submitted_at for rid in ids} == {MEDIAN / 4}


def test_lognormal_durations_have_the_median_latency_and_sigma(clock: FakeClock) -> None:
    times, _ = drawn(seed=11, count=400, clock=clock, latency_sigma=SIGMA)
    logs = [math.log(seconds) for seconds in times]
    assert abs(statistics.median(times) / MEDIAN - 1) < 0.05
    assert abs(statistics.stdev(logs) / SIGMA - 1) < 0.15
    # Lognormal, not just spread: the mean of the log is the log of the median.
    assert abs(statistics.fmean(logs) - math.log(MEDIAN)) < 0.05
    assert len(set(times)) == len(times)


def test_polls_follow_each_job_drawn_duration(clock: FakeClock) -> None:
    with Emulator(api_key=KEY, latency=MEDIAN, latency_sigma=SIGMA, seed=2, clock=clock) as emu:
        ids = submit_many(emu, 5)
        (duration, *_) = durations(emu, ids)
        assert len(set(durations(emu, ids))) == 5
        job = emu.jobs[ids[0]]
        # The first quarter of the job's own duration is QUEUED.
        assert job.started_at - job.submitted_at == pytest.approx(duration / 4)
        status_url = f"/v2/requests/{ids[0]}/status"
        seen = {}
        with client_for(emu) as http:
            # Just before and at each boundary of this job's own timeline.
            for label, at in (("queued", job.started_at - 0.01), ("processing", job.started_at)):
                clock.now = at
                seen[label] = http.get(status_url).json()["status"]
            clock.now = job.finished_at - 0.01
            seen["last"] = http.get(status_url).json()["status"]
            clock.now = job.finished_at
            done = http.get(status_url).json()
    assert seen == {"queued": "QUEUED", "processing": "PROCESSING", "last": "PROCESSING"}
    assert done["status"] == "COMPLETED"
    # The metrics are what they were: queue and inference time, which add up to the drawn duration.
    assert set(done["metrics"]) == {"queue_time", "inference_time", "cost", "remaining_credits"}
    assert done["metrics"]["queue_time"] + done["metrics"]["inference_time"] == pytest.approx(duration, abs=0.002)


def test_same_seed_draws_the_same_durations(clock: FakeClock) -> None:
    first, _ = drawn(seed=5, count=30, clock=clock, latency_sigma=SIGMA)
    again, _ = drawn(seed=5, count=30, clock=clock, latency_sigma=SIGMA)
    other, _ = drawn(seed=6, count=30, clock=clock, latency_sigma=SIGMA)
    assert first == again
    assert first != other


def test_reset_restarts_the_duration_draws(clock: FakeClock) -> None:
    with Emulator(api_key=KEY, latency=MEDIAN, latency_sigma=SIGMA, seed=5, clock=clock) as emu:
        before = durations(emu, submit_many(emu, 10))
        emu.reset()
        after = durations(emu, submit_many(emu, 10))
    assert before == after


def test_sigma_leaves_the_failure_draws_unchanged(clock: FakeClock) -> None:
    fixed_times, fixed_failures = drawn(seed=3, count=200, clock=clock, fail_rate=0.4)
    spread_times, spread_failures = drawn(seed=3, count=200, clock=clock, fail_rate=0.4, latency_sigma=SIGMA)
    assert spread_failures == fixed_failures
    # ... and are the very sequence they were before durations were drawn: the seed's first draws.
    failure_draws = random.Random(3)
    assert fixed_failures == [failure_draws.random() < 0.4 for _ in range(200)]
    assert 40 < sum(fixed_failures) < 120
    assert set(fixed_times) == {MEDIAN}
    assert len(set(spread_times)) == 200


def test_sigma_set_at_run_time_applies_to_new_jobs_only(clock: FakeClock) -> None:
    with Emulator(api_key=KEY, latency=MEDIAN, clock=clock) as emu:
        (old,) = submit_many(emu, 1)
        answer = httpx.post(f"{emu.base_url}/_emulator/config", json={"latency_sigma": SIGMA})
        assert answer.json()["latency_sigma"] == SIGMA
        new = durations(emu, submit_many(emu, 3))
        assert durations(emu, [old]) == [MEDIAN]
    # A job's duration depends on the seed and its place in the sequence, not on when latency_sigma was set.
    from_the_start, _ = drawn(seed=0, count=4, clock=clock, latency_sigma=SIGMA)
    assert new == pytest.approx(from_the_start[1:])
    assert all(seconds != MEDIAN for seconds in new)


@pytest.mark.parametrize("value", [-0.1, -1, 5.5, math.inf, math.nan, True, "0.3", None])
def test_bad_sigma_is_refused_naming_it(value: object, clock: FakeClock) -> None:
    with pytest.raises(ValueError, match="latency_sigma"):
        EmulatorConfig(latency_sigma=value)  # type: ignore[arg-type]
    with Emulator(api_key=KEY, latency=MEDIAN, latency_sigma=0.2, clock=clock) as emu:
        with pytest.raises(ValueError, match="latency_sigma"):
            emu.config(latency_sigma=value)
        if not isinstance(value, float) or math.isfinite(value):  # JSON has no inf or nan
            answer = httpx.post(f"{emu.base_url}/_emulator/config", json={"latency_sigma": value})
            assert answer.status_code == 400
            assert "latency_sigma" in answer.json()["error"]
        assert emu.config.latency_sigma == 0.2


def test_cli_flag_draws_the_same_durations_as_the_keyword(tmp_path: Path, clock: FakeClock) -> None:
    latency, sigma, seed = 0.2, 0.3, 9
    flags = ["--api-key", KEY, "--latency", str(latency), "--latency-sigma", str(sigma), "--seed", str(seed)]
    with (
        emulator_process(flags, tmp_path / "emulator.log") as base_url,
        httpx.Client(base_url=base_url, headers={"x-api-key": KEY}, timeout=10) as http,
    ):
        assert http.get("/_emulator/config").json()["latency_sigma"] == sigma
        status_urls = [http.post(f"/v2/{MODEL}", json={"prompt": "p"}).json()["status_url"] for _ in range(4)]
        served = []
        deadline = time.monotonic() + 20
        for url in status_urls:
            while (body := http.get(url).json())["status"] != "COMPLETED":
                assert time.monotonic() < deadline, body
                time.sleep(0.05)
            served.append(body["metrics"]["queue_time"] + body["metrics"]["inference_time"])
    with Emulator(api_key=KEY, latency=latency, latency_sigma=sigma, seed=seed, clock=clock) as emu:
        expected = durations(emu, submit_many(emu, 4))
    assert served == pytest.approx(expected, abs=0.002)
    assert len(set(expected)) == 4


def test_cli_default_sigma_is_zero() -> None:
    from airflow_provider_aleph.emulator.__main__ import build_parser

    assert build_parser().parse_args([]).latency_sigma == 0.0


def test_cli_rejects_a_negative_sigma_naming_it() -> None:
    command = [sys.executable, "-m", "airflow_provider_aleph.emulator", "--port", "0", "--latency-sigma", "-0.5"]
    finished = subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)
    assert finished.returncode == 2
    assert "latency_sigma must be between 0 and 5.0" in finished.stderr
