"""`make demo`: run the example DAG once with `airflow dags test` and print the request id and output URL.

Uses the built-in Segmind emulator unless SEGMIND_API_KEY is set, in which case the real API is
called (and billed). Everything lives in .airflow-demo/ beside this repo.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
HOME = REPO / ".airflow-demo"
DAG_ID = "example_aleph_winterize"


def airflow_env(conn: dict[str, str]) -> dict[str, str]:
    env = os.environ.copy()
    env.update(
        {
            "AIRFLOW_HOME": str(HOME),
            "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "example_dags"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{HOME / 'airflow.db'}",
            "AIRFLOW_CONN_SEGMIND_DEFAULT": json.dumps(conn),
        }
    )
    return env


def start_emulator() -> tuple[subprocess.Popen[bytes], str]:
    ready = Path(tempfile.mkdtemp()) / "ready"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "airflow_provider_aleph.emulator",
            "--port",
            "0",
            "--latency",
            "4",
            "--api-key",
            "demo-key",
            "--ready-file",
            str(ready),
        ],
    )
    for _ in range(200):
        if ready.exists():
            return proc, ready.read_text().strip()
        if proc.poll() is not None:
            sys.exit("the Segmind emulator did not start")
        time.sleep(0.05)
    proc.kill()
    sys.exit("the Segmind emulator did not start within 10 s")


def read_result(run_env: dict[str, str]) -> dict[str, object]:
    code = (
        "import json\n"
        "from airflow.models.xcom import XComModel\n"
        "from airflow.utils.session import create_session\n"
        "from sqlalchemy import select\n"
        "with create_session() as s:\n"
        f"    row = s.scalars(select(XComModel).where(XComModel.dag_id == {DAG_ID!r}, XComModel.key == 'return_value')"
        ".order_by(XComModel.timestamp.desc())).first()\n"
        "    print(json.dumps(XComModel.deserialize_value(row) if row else None))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], env=run_env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1]) or {}


def save_output(url: str) -> Path | None:
    """Keep a copy of the output: the emulator's files go away with it, the API's after a few days."""
    if not url:
        return None
    import httpx

    target = HOME / "winterized.mp4"
    with httpx.stream("GET", url, timeout=60) as response, target.open("wb") as out:
        if response.status_code != 200:
            return None
        for chunk in response.iter_bytes():
            out.write(chunk)
    return target


def main() -> int:
    shutil.rmtree(HOME, ignore_errors=True)
    HOME.mkdir()
    emulator = None
    if os.environ.get("SEGMIND_API_KEY"):
        print("SEGMIND_API_KEY is set: using the real Segmind API (this job is billed).")
        conf: dict[str, object] = {}
        conn = {"conn_type": "segmind", "host": "https://api.segmind.com"}
    else:
        emulator, base_url = start_emulator()
        print(f"No SEGMIND_API_KEY: using the built-in emulator at {base_url}")
        conf = {"video": f"{base_url}/samples/sample.mp4"}
        conn = {"conn_type": "segmind", "host": base_url, "password": "demo-key"}
    env = airflow_env(conn)
    log = HOME / "dags-test.log"
    try:
        print("Preparing Airflow's database in .airflow-demo/ ...")
        subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], env=env, check=True, capture_output=True)
        print(f"Running `airflow dags test {DAG_ID}` (log: {log.relative_to(REPO)}) ...")
        with log.open("w") as out:
            cmd = [sys.executable, "-m", "airflow", "dags", "test", DAG_ID, "-c", json.dumps(conf)]
            code = subprocess.run(cmd, env=env, stdout=out, stderr=subprocess.STDOUT).returncode
        result = read_result(env)
        saved = save_output(str(result.get("output_url") or ""))
    finally:
        if emulator is not None:
            emulator.terminate()
            emulator.wait(timeout=10)
    if code != 0 or result.get("status") != "COMPLETED":
        print("".join(log.read_text().splitlines(keepends=True)[-40:]))
        print(f"The demo run failed (exit {code}); the whole log is in {log}")
        return 1
    print()
    print(f"Segmind request id: {result['request_id']}")
    print(f"Output video URL:   {result['output_url']}")
    if saved:
        print(f"Saved a copy to:    {saved.relative_to(REPO)} ({saved.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
