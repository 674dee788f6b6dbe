"""Smoke run of ``benchmarks/`` at tiny sizes: the same scripts as ``make bench`` must still run end to end
and write a well-formed results table. Nothing here looks at how fast anything was."""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
#: The markers around the generated block of ``benchmarks/README.md``, as a reader of the file sees them.
START = "<!-- bench:results:start -->"
END = "<!-- bench:results:end -->"
HEADINGS = {
    "slot": ("### 1. Worker-slot seconds per job", "### 4. API calls per completed job"),
    "scale": ("### 2. Triggerer scale",),
    "copy": ("### 3. Output copy",),
    "polling": ("### 5. Polling under the account's budget",),
}
#: The polling measurement's figures, written next to the README.
POLLING_PLOTS = ("polling-lag.png", "polling-steady-requests.png", "polling-two-processes.png")
POLLING_SIDES = {"adaptive", "fixed", "sdk"}
NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")
# The benchmarks start a real Airflow deployment and run on the newest Airflow only (`make bench`).
pytestmark = pytest.mark.e2e


def markdown_tables(text: str) -> list[list[list[str]]]:
    """Every pipe table in ``text``, as rows of cells (header first, separator dropped)."""
    tables: list[list[list[str]]] = []
    current: list[list[str]] = []
    for line in [*text.splitlines(), ""]:
        if line.startswith("|"):
            cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
            if not all(set(cell) <= {"-"} for cell in cells):
                current.append(cells)
        elif current:
            tables.append(current)
            current = []
    return tables


def numbers_in(cell: str) -> list[float]:
    return [float(match.replace(",", "")) for match in NUMBER.findall(cell)]


@pytest.mark.timeout(1200)
def test_smoke_run_writes_a_well_formed_results_table(tmp_path: Path) -> None:
    measurements = ["slot", "scale"] + (["copy"] if shutil.which("curl") else []) + ["polling"]
    readme, results_json = tmp_path / "README.md", tmp_path / "results.json"
    original = (REPO / "benchmarks" / "README.md").read_text()
    assert (original.count(START), original.count(END)) == (1, 1), "the README's generated block is marked"
    readme.write_text(original)
    # The benchmarks start their own Airflow homes: none of this test session's settings leak in.
    env = {key: value for key, value in os.environ.items() if not key.startswith("AIRFLOW")}
    command = [sys.executable, "-m", "benchmarks.run", "--smoke", "--only", ",".join(measurements)]
    command += ["--readme", str(readme), "--json", str(results_json), "--workdir", str(tmp_path / "work")]

    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=1100, check=False)

    assert done.returncode == 0, f"{done.stdout[-6000:]}\n{done.stderr[-4000:]}"
    text = readme.read_text()
    assert text.count(START) == 1
    assert text.count(END) == 1
    assert text.split(START)[0] == original.split(START)[0], "the hand-written part of the README changed"
    block = text.split(START)[1].split(END)[0]
    assert "Not measured" not in block
    assert "python -m benchmarks.run --smoke" in block
    for name in measurements:
        for heading in HEADINGS[name]:
            assert heading in block
    results = json.loads(results_json.read_text())
    # Older HTTP providers (the one beside Airflow 3.0) have no HttpEventTrigger: no anchor, no ratio.
    no_anchor = bool(results.get("scale", {}).get("anchor_missing"))
    tables = markdown_tables(block)
    assert tables, block
    for table in tables:
        header, *rows = table
        assert rows, f"table without rows: {header}"
        for row in rows:
            assert len(row) == len(header), f"{row} does not match {header}"
            for title, cell in zip(header, row, strict=True):
                assert cell, f"empty cell under {title!r} in {row}"
                assert cell != "n/a" or (no_anchor and "anchor" in title), f"no value under {title!r} in {row}"
            assert all(math.isfinite(value) for cell in row for value in numbers_in(cell))

    assert results["meta"]["mode"] == "smoke"
    assert results["meta"]["machine"]["cores"] >= 1
    slot_rows = results["slot"]["rows"]
    assert {row["side"] for row in slot_rows} == {"ours", "sdk"}
    for row in slot_rows:
        assert row["states"] == {"success": row["jobs"]}
        assert row["slot_seconds_mean"] > 0
        assert row["api_calls_per_job"] >= 3  # a submit, at least one status poll, the result or last status
    ours_slot = next(row for row in slot_rows if row["side"] == "ours")
    assert ours_slot["running_intervals_per_job"] == 2  # submit then defer; resume then finish
    for row in results["scale"]["rows"]:
        assert row["succeeded"] == row["triggers"], row
        assert row["polls"] >= row["triggers"]
    profile = results["scale"]["profile"]
    assert profile["polls"] >= profile["triggers"]
    assert sum(profile["areas"].values()) == pytest.approx(1.0)
    assert "our package (airflow_provider_aleph)" in profile["areas"]
    assert "Where a poll's CPU time goes" in block
    if "copy" in measurements:
        for row in results["copy"]:
            assert all(run["bytes"] == row["size"] for run in row["our_runs"] + row["curl_runs"])
    check_polling(results["polling"], block, tmp_path)


def check_polling(polling: dict[str, Any], block: str, folder: Path) -> None:
    """The polling measurement's results, tables and figures are all there (not how fast anything was)."""
    for name in POLLING_PLOTS:
        figure = folder / name
        assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", f"{name} is not a PNG"
        assert f"]({name})" in block, f"{name} is not shown in the README"
    assert polling["plots"] == {"lag": POLLING_PLOTS[0], "steady": POLLING_PLOTS[1], "two": POLLING_PLOTS[2]}
    scale = polling["case"]["scale"]
    assert f"run {scale:g}\N{MULTIPLICATION SIGN} faster than real time" in block
    assert {row["side"] for row in polling["steady"]} == POLLING_SIDES
    for row in polling["steady"]:
        assert row["tasks"] >= 1
        assert row["calls_total"] >= row["tasks"]  # every task made at least its submit
        assert row["completed"] <= row["tasks"]
    sizes = polling["case"]["batch_sizes"]
    assert sorted((row["jobs"], row["side"]) for row in polling["batch"]) == sorted(
        (size, side) for size in sizes for side in POLLING_SIDES
    )
    for row in polling["batch"]:
        assert len(row["floor_lags"]) == row["jobs"]
        assert row["calls_per_job"] >= 1  # the submit
        if row["side"] != "sdk":
            # Ours waits for every job of a batch to its end (the SDK's waits may end in a 429).
            assert row["completed"] == row["jobs"], row
            assert len(row["lags"]) == row["jobs"]
    two = polling["two"]
    assert len(two["processes"]) == 2
    assert two["calls_after_skip"] >= 1
    # Tables of the section: the steady pool and its targets, the batches and theirs, the two processes.
    section = block.split("### 5. Polling under the account's budget", 1)[1]
    assert len(markdown_tables(section)) == 5
