"""What a real StatsD listener receives from real DAG runs with Airflow's StatsD metrics on, and the log line.

Airflow builds its metrics client once per process from ``[metrics]``, so the runs happen in a child
process whose environment turns StatsD on and points it at a UDP socket this test listens on.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

# Airflow's StatsD logger sends through this client; without it Airflow would quietly send nothing.
import statsd  # noqa: F401

from airflow_provider_aleph.emulator.config import DEFAULT_COST_PER_JOB, DEFAULT_CREDITS

pytestmark = pytest.mark.dag

REPO = Path(__file__).resolve().parents[2]
# The child runs the deferrable Aleph DAG once per prompt and prints each run's state and return value.
CHILD = """
import json, sys
sys.path.insert(0, sys.argv[1])
import aleph_test_dags
from tests.dags.helpers import state, xcom
for prompt in json.loads(sys.argv[3]):
    run = aleph_test_dags.deferrable.test(run_conf={"video": sys.argv[2], "prompt": prompt})
    print("RUN", json.dumps({"state": state(run), "result": xcom(run, "return_value")}), flush=True)
"""


class Listener:
    """A StatsD server's receiving end: a UDP socket on loopback that keeps every datagram it gets."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port: int = self.sock.getsockname()[1]
        self.lines: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._receive, daemon=True)
        self._thread.start()

    def _receive(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(65535)
            except TimeoutError:
                continue
            # A client may batch several metrics into one datagram, one per line.
            self.lines.extend(data.decode().splitlines())

    def close(self) -> list[str]:
        """Stop listening and take what is still queued on the socket; every line received, in order."""
        self._stop.set()
        self._thread.join()
        self.sock.setblocking(False)
        while True:
            try:
                self.lines.extend(self.sock.recv(65535).decode().splitlines())
            except BlockingIOError:
                break
        self.sock.close()
        return self.lines


def ours(lines: list[str]) -> list[tuple[str, dict[str, str], float, str]]:
    """The provider's metrics among what was received: (name without prefix, tags, value, type)."""
    found = []
    for line in lines:
        head, _, rest = line.partition(":")
        name, *tags = head.split(",")
        if not name.startswith("airflow.segmind."):
            continue
        value, _, kind = rest.partition("|")
        found.append((name.removeprefix("airflow."), dict(tag.split("=", 1) for tag in tags), float(value), kind))
    return found


def messages(output: str, start: str) -> set[str]:
    """The distinct log messages in ``output`` that begin with ``start`` (the log prefix cut off)."""
    return {line[line.index(start) :] for line in output.splitlines() if start in line}


def run_with_statsd(segmind_conn, prompts: list[str], port: int) -> tuple[list[dict], str]:
    env = os.environ | {
        "AIRFLOW__METRICS__STATSD_ON": "True",
        "AIRFLOW__METRICS__STATSD_HOST": "127.0.0.1",
        "AIRFLOW__METRICS__STATSD_PORT": str(port),
        "AIRFLOW__METRICS__STATSD_PREFIX": "airflow",
        # Plain StatsD has no tags; with this on, Airflow appends them InfluxDB-style: name,model=...
        "AIRFLOW__METRICS__STATSD_INFLUXDB_ENABLED": "True",
    }
    video = f"{segmind_conn.base_url}/samples/sample.mp4"
    finished = subprocess.run(
        [sys.executable, "-c", CHILD, str(REPO / "tests" / "dag_files"), video, json.dumps(prompts)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert finished.returncode == 0, finished.stderr[-3000:]
    runs = [json.loads(line[4:]) for line in finished.stdout.splitlines() if line.startswith("RUN ")]
    return runs, finished.stdout + finished.stderr


def test_a_real_run_sends_counters_duration_and_cost_to_statsd_and_logs_one_line_per_job(segmind_conn):
    listener = Listener()
    try:
        runs, output = run_with_statsd(
            segmind_conn, ["make it winter", "make it [emulator:fail] winter"], listener.port
        )
    finally:
        received = ours(listener.close())

    assert [run["state"] for run in runs] == ["success", "failed"]
    done, failed = segmind_conn.jobs.values()
    assert runs[0]["result"]["request_id"] == done.request_id
    assert runs[0]["result"]["cost"] == DEFAULT_COST_PER_JOB

    aleph = {"model": "runway-gen4-aleph"}
    counters = [(name, tags, value) for name, tags, value, kind in received if kind == "c"]
    assert sorted(counters) == sorted(
        [
            ("segmind.jobs.submitted", aleph, 1.0),
            ("segmind.jobs.submitted", aleph, 1.0),
            ("segmind.jobs.completed", aleph, 1.0),
            ("segmind.jobs.failed", aleph, 1.0),
            # Only the COMPLETED job reports a cost: a FAILED body carries none.
            ("segmind.job.cost", aleph, DEFAULT_COST_PER_JOB),
        ]
    )
    timers = [(name, tags, value) for name, tags, value, kind in received if kind == "ms"]
    assert [(name, tags) for name, tags, _ in timers] == [("segmind.job.duration", aleph)] * 2
    # In milliseconds, about the emulator's latency: the clock starts when the submit's answer arrives, a
    # moment after the emulator started the job's, so a job may read a little shorter than the latency.
    assert all(value >= segmind_conn.config.latency * 1000 / 2 for _, _, value in timers), timers

    # One line per job in the task log: total time, the API's times, cost and the credits left.
    # (Airflow 3.0's dag.test() prints each log record twice, to stdout and stderr: count distinct messages.)
    (line,) = messages(output, f"Segmind request {done.request_id} COMPLETED")
    queued, inference = done.started_at - done.submitted_at, done.finished_at - done.started_at
    left = DEFAULT_CREDITS - DEFAULT_COST_PER_JOB
    assert re.search(
        rf"COMPLETED after [\d.]+ s \(queued {queued:.1f} s, inference {inference:.1f} s\); "
        rf"cost {DEFAULT_COST_PER_JOB!r}, remaining credits {left!r}; output: http",
        line,
    ), line
    (line,) = messages(output, f"Segmind request {failed.request_id} FAILED after")
    assert "no cost reported" in line
