"""Measurement 3: copying a job's output to a ``file://`` path, ours against ``curl -o``.

The emulator (its own process) serves a generated output of the given size for one completed job.
In the same run, on the same URL and into the same folder, ``curl -o`` and our
:func:`~airflow_provider_aleph.storage.copy_output` (in a fresh process each time,
:mod:`benchmarks.copy_worker`) download it, alternating which goes first. Throughput is bytes over
the transfer's own time (curl's ``time_total``; the ``copy_output`` call alone), best of the
rounds for each; memory is the copying process's peak RSS minus its RSS just before the call.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx

from benchmarks.emulator_proc import EmulatorProcess

API_KEY = "bench-copy-key-0123456789"
MIB = 1024 * 1024
REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class CopyCase:
    """One output size.

    :param size: bytes of the output.
    :param rounds: downloads by each side (alternating which goes first).
    """

    size: int
    rounds: int


FULL_CASES = (CopyCase(200 * MIB, 3), CopyCase(1024 * MIB, 2))
SMOKE_CASES = (CopyCase(8 * MIB, 1),)


def completed_output_url(emulator: EmulatorProcess, timeout: float = 60) -> str:
    """Submit one job, wait for it to complete, and return its output URL.

    :param emulator: the running emulator.
    :param timeout: seconds allowed.
    """
    headers = {"x-api-key": API_KEY}
    with httpx.Client(base_url=emulator.base_url, headers=headers, timeout=30) as client:
        video = f"{emulator.base_url}/samples/sample.mp4"
        submitted = client.post("/v2/runway-gen4-aleph", json={"prompt": "make it winter", "video": video})
        submitted.raise_for_status()
        job = submitted.json()
        deadline = time.monotonic() + timeout
        while client.get(job["status_url"]).json().get("status") != "COMPLETED":
            if time.monotonic() > deadline:
                raise RuntimeError(f"job {job['request_id']} did not complete within {timeout:.0f}s")
            time.sleep(0.1)
        output: str = client.get(job["response_url"]).json()["output"]
        return output


def curl_copy(url: str, target: Path) -> dict[str, float]:
    """Download ``url`` with ``curl -o``; return its own transfer time, size and CPU seconds.

    :param url: the output URL.
    :param target: the file to write.
    """
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    written = subprocess.run(
        ["curl", "-sS", "--fail", "-o", str(target), "-w", "%{time_total} %{size_download}", url],
        capture_output=True,
        text=True,
        check=True,
        timeout=900,
    )
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    seconds, size = written.stdout.split()
    return {"seconds": float(seconds), "bytes": float(size), "cpu_seconds": cpu}


def our_copy(url: str, target: Path, workdir: Path, python: str) -> dict[str, Any]:
    """Copy ``url`` with ``copy_output`` in a fresh process; return its report.

    :param url: the output URL.
    :param target: the file to write.
    :param workdir: where the report goes.
    :param python: the interpreter.
    """
    report_path = workdir / "copy-report.json"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    env.setdefault("AIRFLOW_HOME", str(workdir / "airflow-home"))
    done = subprocess.run(
        [python, "-m", "benchmarks.copy_worker", "--url", url, "--dest", target.as_uri(), "--out", str(report_path)],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"copy_worker failed ({done.returncode}):\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}")
    report: dict[str, Any] = json.loads(report_path.read_text())
    return report


def measure(case: CopyCase, workdir: Path, python: str = sys.executable) -> dict[str, Any]:
    """Both sides at one size; the row of the results table.

    :param case: the size and rounds.
    :param workdir: where the copies land (removed after each).
    :param python: the interpreter of our copying process and of the emulator.
    """
    target = workdir / "copies"
    target.mkdir(parents=True, exist_ok=True)
    curl_runs: list[dict[str, float]] = []
    our_runs: list[dict[str, Any]] = []
    options = {"output_size": case.size, "fetch_inputs": False}
    with EmulatorProcess(latency=0.2, api_key=API_KEY, options=options, python=python) as emulator:
        url = completed_output_url(emulator)
        emulator_cpu_before = emulator.cpu_seconds()
        for round_index in range(case.rounds):
            order = ("curl", "ours") if round_index % 2 == 0 else ("ours", "curl")
            for side in order:
                path = target / f"{side}-{round_index}.bin"
                if side == "curl":
                    curl_runs.append(curl_copy(url, path))
                else:
                    our_runs.append(our_copy(url, path, workdir, python))
                if path.stat().st_size != case.size:
                    raise RuntimeError(f"{side} wrote {path.stat().st_size} bytes, not {case.size}")
                path.unlink()
        emulator_cpu = emulator.cpu_seconds() - emulator_cpu_before
    shutil.rmtree(target, ignore_errors=True)
    curl_best = max(case.size / run["seconds"] for run in curl_runs)
    ours_best = max(case.size / run["seconds"] for run in our_runs)
    transfer_seconds = sum(run["seconds"] for run in curl_runs) + sum(run["seconds"] for run in our_runs)
    return {
        **asdict(case),
        "curl_mib_s": curl_best / MIB,
        "ours_mib_s": ours_best / MIB,
        "ratio": ours_best / curl_best,
        "ours_peak_rss_growth_mib": max(run["peak_rss"] - run["baseline_rss"] for run in our_runs) / MIB,
        "ours_cpu_seconds_per_gib": min(run["cpu_seconds"] / (case.size / 1024**3) for run in our_runs),
        "curl_cpu_seconds_per_gib": min(run["cpu_seconds"] / (case.size / 1024**3) for run in curl_runs),
        "ours_setup_seconds": max(run["setup_seconds"] for run in our_runs),
        "peak_reset": all(run["peak_reset"] for run in our_runs),
        "emulator_cpu_seconds": emulator_cpu,
        "emulator_core_share": emulator_cpu / transfer_seconds if transfer_seconds else None,
        "curl_runs": curl_runs,
        "our_runs": our_runs,
    }


def run_all(cases: tuple[CopyCase, ...], workdir: Path, log: Any = print) -> list[dict[str, Any]]:
    """Every size in turn.

    :param cases: the sizes.
    :param workdir: where the copies land.
    :param log: prints progress.
    """
    if shutil.which("curl") is None:
        raise RuntimeError("curl is not installed: the output copy measurement compares against curl -o")
    rows = []
    for case in cases:
        row = measure(case, workdir)
        log(f"  copy {case.size // MIB} MiB: ours {row['ours_mib_s']:.0f} MiB/s, curl {row['curl_mib_s']:.0f} MiB/s")
        rows.append(row)
    return rows
