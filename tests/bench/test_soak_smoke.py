"""The soak script at a small size, run as a user runs it: every paid job ends with an output or a failure naming
it, none is paid twice. Also its accounting (``tests.support.ledger``), fed made-up views, must catch a lost or
doubled job. Nothing here is timed."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.ledger import Outcome, Plan, account, plan_jobs

# Nothing here depends on the Airflow version: run once, on the newest Airflow leg only.
pytestmark = pytest.mark.airflow_independent

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(300)
def test_sixty_jobs_with_faults_lose_nothing_and_pay_nothing_twice(tmp_path: Path) -> None:
    numbers = tmp_path / "soak.json"
    # The script makes its own Airflow home: none of this session's settings leak in.
    env = {key: value for key, value in os.environ.items() if not key.startswith("AIRFLOW")}
    command = [sys.executable, "-m", "benchmarks.soak", "--jobs", "60", "--fault-rate", "0.1", "--fail-rate", "0.1"]
    command += ["--json", str(numbers)]

    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=280, check=False)

    assert done.returncode == 0, f"{done.stdout[-6000:]}\n{done.stderr[-4000:]}"
    assert re.search(r"^lost = 0$", done.stdout, re.MULTILINE), done.stdout
    assert re.search(r"^duplicated = 0$", done.stdout, re.MULTILINE), done.stdout
    result = json.loads(numbers.read_text())
    assert result["lost"] == 0
    assert result["duplicated"] == 0
    assert result["unsafe_retries"] == 0
    assert result["inconsistencies"] == []
    outcomes = result["outcomes"]
    assert sum(outcomes.values()) == 60
    assert outcomes["completed"] > 0
    assert outcomes["refused"] == 1, "the invalid parameter is refused before any submit"
    assert outcomes.get("unknown", 0) >= 1, "lost submit answers are reported as outcome unknown"
    emulator = result["emulator"]
    # Every [emulator:fail] prompt ends FAILED, naming its request, unless its submit's answer was lost or
    # its connection dropped (which job meets those depends on thread timing): then it is "unknown".
    planned = sum(plan.fail for plan in plan_jobs(60, fail_rate=0.1, lost_answer_rate=0.02, invalid_rate=0.01))
    ruined = emulator["lost_answers"] + emulator["faults"].get("drop", 0)
    assert outcomes["failed"] >= max(1, planned - ruined), (planned, ruined)
    assert sum(emulator["faults"].values()) > 0, "faults were injected"
    assert emulator["lost_answers"] >= 1
    assert emulator["submissions"] == outcomes["completed"] + outcomes["failed"] + emulator["lost_answers"]


def test_the_plan_spreads_each_incident_over_the_run() -> None:
    plans = plan_jobs(100, fail_rate=0.03, lost_answer_rate=0.02, invalid_rate=0.01)

    assert [p.index for p in plans] == list(range(100))
    assert sum(p.fail for p in plans) == 3
    assert sum(p.lose_answer for p in plans) == 2
    assert sum(p.invalid for p in plans) == 1
    assert not any(p.invalid and p.lose_answer for p in plans)


STATS = {"request_ids": ["r0", "r1"], "submissions": 2}


def test_accounting_passes_when_every_paid_job_is_accounted_for() -> None:
    outcomes = {
        0: Outcome("completed", "r0", output_url="http://x.test/r0.mp4"),
        1: Outcome("unknown", message="The outcome of POST ... is unknown (HTTP 504 ...)"),
        2: Outcome("refused", message="Invalid parameter 'aspect_ratio': ..."),
    }
    stats = {"request_ids": ["r0", "r-lost"], "submissions": 2}

    result = account([Plan(0), Plan(1), Plan(2)], outcomes, {0: 1, 1: 1}, stats)

    assert result.ok
    assert (result.lost, result.duplicated, result.unsafe_retries) == (0, 0, 0)
    assert result.paid_unknown == 1


def test_accounting_catches_a_failure_that_does_not_name_its_request() -> None:
    outcomes = {0: Outcome("completed", "r0", output_url="u"), 1: Outcome("failed", "r1", message="it broke")}

    result = account([Plan(0), Plan(1)], outcomes, {0: 1, 1: 1}, STATS)

    assert result.lost == 1
    assert not result.ok


def test_accounting_catches_a_job_paid_twice_and_an_unsafe_retry() -> None:
    outcomes = {
        0: Outcome("completed", "r0", output_url="u"),
        1: Outcome("submit_failed", message="Segmind had a server error", airflow_retry=True),
    }

    result = account([Plan(0), Plan(1)], outcomes, {0: 2, 1: 1}, {"request_ids": ["r0", "a", "b"], "submissions": 3})

    assert result.duplicated == 1
    assert result.lost == 2, "the second job of logical job 0, and the one logical job 1 reported as not created"
    assert result.unsafe_retries == 1
    assert not result.ok


def test_accounting_catches_views_that_disagree() -> None:
    outcomes = {0: Outcome("completed", "r9", output_url="u"), 1: Outcome("completed", "r1", output_url="u")}

    result = account([Plan(0), Plan(1)], outcomes, {0: 1}, STATS)

    assert any("r9" in problem for problem in result.inconsistencies)
    assert any("job 1" in problem for problem in result.inconsistencies)
    assert any("video fetches" in problem for problem in result.inconsistencies)
    assert not result.ok
