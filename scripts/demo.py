"""`make demo`: run the batch enrichment example once with `airflow dags test` over the three sample
videos shipped in the repo, and print each request id and where each edited video landed.

While the run goes on, it prints progress as it changes (jobs submitted, waiting, done), read from the
run's log as it is written: the same lines a task log shows, so it works against the real API too.

Uses the built-in Segmind emulator unless SEGMIND_API_KEY is set, in which case the real API is
called (three billed jobs; the local samples are uploaded through Segmind's files API). Everything
lives in .airflow-demo/ beside this repo; the edited videos land in .airflow-demo/edited/.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from airflow_provider_aleph.emulator.spawn import spawn

REPO = Path(__file__).resolve().parent.parent
HOME = REPO / ".airflow-demo"
DAG_ID = "example_aleph_batch_enrichment"
SAMPLES = REPO / "example_dags" / "sample_videos"
OUTPUT = HOME / "edited"


# The provider's own log lines that mark a job's progress (see the operator, the trigger and events.py).
SUBMITTED = re.compile(r"Submitted to Segmind model \S+: request_id=([\w-]+)")
STATE = re.compile(r"Segmind request ([\w-]+) is ([A-Z_]+) ")
COMPLETED = re.compile(r"Segmind request ([\w-]+) COMPLETED after")
COPIED = re.compile(r"Copied the output of Segmind request ([\w-]+) to (\S+)")
ENDED = re.compile(r"Segmind request ([\w-]+) ended with (\w+)")


@dataclass
class Progress:
    """What the run's log has said so far about each job, and the line to print when that changes.

    :param total: how many jobs the run makes.
    """

    total: int
    states: dict[str, str] = field(default_factory=dict)

    def read(self, line: str) -> str | None:
        """Take one log line; return a progress line when it changes a job's state, else None."""
        if found := SUBMITTED.search(line):
            rid, state = found.group(1), "submitted"
        elif found := COMPLETED.search(line):
            rid, state = found.group(1), "done"
        elif found := COPIED.search(line):
            rid, state = found.group(1), f"done, copied to {found.group(2).removeprefix('file://')}"
        elif found := ENDED.search(line):
            rid, state = found.group(1), f"ended: {found.group(2)}"
        elif (found := STATE.search(line)) and found.group(2) != "COMPLETED":  # the line after says done
            rid, state = found.group(1), f"waiting ({found.group(2)})"
        else:
            return None
        known = self.states.get(rid, "")
        # A late state line says nothing new about a job already seen done.
        if known == state or (known.startswith(("done", "ended")) and state.startswith("waiting")):
            return None
        self.states[rid] = state
        return f"request {rid}: {state}  [{self.summary()}]"

    def waiting(self) -> int:
        """How many submitted jobs have not ended yet."""
        return sum(not state.startswith(("done", "ended")) for state in self.states.values())

    def summary(self) -> str:
        """Counts of jobs: submitted (of the total), waiting, done."""
        waiting = self.waiting()
        return f"{len(self.states)} of {self.total} submitted, {waiting} waiting, {len(self.states) - waiting} done"


def follow(
    process: subprocess.Popen[bytes], log: Path, progress: Progress, period: float = 0.5, quiet: float = 10.0
) -> int:
    """Print ``progress`` from ``log`` as ``process`` writes it, until the process ends; its exit code.

    After ``quiet`` seconds without a change while jobs wait, it says so, so the run never looks stuck.
    """
    started, offset, pending = time.monotonic(), 0, ""
    said = started

    def drain() -> None:
        nonlocal offset, pending, said
        with log.open("rb") as handle:
            handle.seek(offset)
            chunk = handle.read()
        offset += len(chunk)
        *lines, pending = (pending + chunk.decode(errors="replace")).split("\n")
        for line in lines:
            if (change := progress.read(line)) is not None:
                said = time.monotonic()
                print(f"  [{said - started:5.1f}s] {change}", flush=True)

    while process.poll() is None:
        drain()
        if time.monotonic() - said >= quiet and progress.waiting():
            said = time.monotonic()
            print(f"  [{said - started:5.1f}s] still waiting: {progress.summary()}", flush=True)
        time.sleep(period)
    drain()
    return process.returncode


def airflow_env(conn: dict[str, object]) -> dict[str, str]:
    env = os.environ.copy()
    env.update(
        {
            "AIRFLOW_HOME": str(HOME),
            "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "example_dags"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{HOME / 'airflow.db'}",
            "AIRFLOW_CONN_SEGMIND_DEFAULT": json.dumps(conn),
            # The batch example writes local results only under folders listed here (or its defaults).
            "ALEPH_LOCAL_ROOTS": str(OUTPUT),
        }
    )
    return env


def start_emulator() -> tuple[subprocess.Popen[bytes], str]:
    try:
        # --edit-outputs: with the [media] extra (in the dev locks), each output is visibly "edited".
        return spawn(["--port", "0", "--latency", "4", "--api-key", "demo-key", "--edit-outputs"])
    except RuntimeError as err:
        sys.exit(f"the Segmind emulator did not start: {err}")


def read_results(run_env: dict[str, str]) -> list[dict[str, object]]:
    """The return values of the run's mapped edit tasks, in map order."""
    code = (
        "import json\n"
        "from airflow.models.xcom import XComModel\n"
        "from airflow.utils.session import create_session\n"
        "from sqlalchemy import select\n"
        "with create_session() as s:\n"
        f"    rows = s.scalars(select(XComModel).where(XComModel.dag_id == {DAG_ID!r}, XComModel.task_id == 'edit',"
        " XComModel.key == 'return_value').order_by(XComModel.map_index)).all()\n"
        "    print(json.dumps([XComModel.deserialize_value(row) for row in rows]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], env=run_env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1]) or []


def main() -> int:
    shutil.rmtree(HOME, ignore_errors=True)
    HOME.mkdir()
    emulator = None
    conf: dict[str, object] = {"input_prefix": SAMPLES.as_uri() + "/", "output_prefix": OUTPUT.as_uri() + "/"}
    if os.environ.get("SEGMIND_API_KEY"):
        print("SEGMIND_API_KEY is set: using the real Segmind API (three jobs, billed).")
        conn: dict[str, object] = {"conn_type": "segmind", "host": "https://api.segmind.com"}
    else:
        emulator, base_url = start_emulator()
        print(f"No SEGMIND_API_KEY: using the built-in emulator at {base_url}")
        conn = {
            "conn_type": "segmind",
            "host": base_url,
            "password": "demo-key",
            "extra": {"upload_url": base_url, "max_requests_per_minute": 600},
        }
    env = airflow_env(conn)
    log = HOME / "dags-test.log"
    try:
        print("Preparing Airflow's database in .airflow-demo/ ...")
        subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], env=env, check=True, capture_output=True)
        print(f"Running `airflow dags test {DAG_ID}` (log: {log.relative_to(REPO)}) ...")
        with log.open("w") as out:
            cmd = [sys.executable, "-m", "airflow", "dags", "test", DAG_ID, "-c", json.dumps(conf)]
            process = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)
            code = follow(process, log, Progress(total=len(list(SAMPLES.glob("*.mp4")))))
        results = read_results(env)
    finally:
        if emulator is not None:
            emulator.terminate()
            emulator.wait(timeout=10)
    inputs = sorted(SAMPLES.glob("*.mp4"))
    done = [r for r in results if isinstance(r, dict) and r.get("status") == "COMPLETED" and r.get("output_path")]
    if code != 0 or len(done) != len(inputs):
        print("".join(log.read_text().splitlines(keepends=True)[-40:]))
        print(f"The demo run failed (exit {code}, {len(done)} of {len(inputs)} videos edited); the log is in {log}")
        return 1
    print()
    print(f"Edited {len(done)} videos from {SAMPLES.relative_to(REPO)}/:")
    for result in done:
        landed = Path(str(result["output_path"]).removeprefix("file://"))
        print(f"  request {result['request_id']} -> {landed.relative_to(REPO)} ({landed.stat().st_size} bytes)")
    print(f"Output folder: {OUTPUT.relative_to(REPO)}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
