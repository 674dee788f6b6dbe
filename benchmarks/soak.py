"""Soak: many jobs through the provider's real code paths while the API misbehaves; nothing paid is lost or doubled.

``python -m benchmarks.soak --jobs 1000 --fault-rate 0.1`` (from the repository's root)

The emulator runs in its own process with ``--error-rate`` (that share of API calls meets a 429, a 5xx page or
a dropped connection); some submits lose their answer after the job was created, some prompts carry
``[emulator:fail]``, a few jobs have an invalid parameter. Each logical job goes the way a task does: the
operator's checks, input resolution and ``hook.submit`` from a pool of worker threads; then its trigger,
rebuilt from its serialized kwargs, on ONE event loop with all the others (as in a triggerer); then the
operator's ``result_from_event``. Each job's video URL is unique: the emulator fetches the video of every job
it creates, which counts the paid jobs of each logical job independently of our side. ``lost`` counts paid
jobs that ended with neither an output nor a failure naming their request id (a lost submit answer counts as
accounted for when reported as "outcome unknown"), ``duplicated`` logical jobs with more than one paid job,
``unsafe retries`` failures Airflow would retry although a paid job exists (the accounting is
:mod:`tests.support.ledger`). Exit status 1 if any is not 0.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import httpx

from tests.support.ledger import Account, Outcome, Plan, account, plan_jobs

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

API_KEY = "fake-soak-key-0123456789abcdef"
CONN_ID = "segmind_soak"
REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "airflow_provider_aleph" / "emulator" / "data" / "sample.mp4"
FAIL_MARKER = "[emulator:fail]"
LOG = logging.getLogger("soak.task")


class InputServer(ThreadingHTTPServer):
    """Serves ``/v/{index}.mp4`` (the sample clip) on loopback, counting GETs (the emulator's fetches) per index."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _InputHandler)
        self.body = SAMPLE.read_bytes()
        self.fetches: Counter[int] = Counter()
        self.lock = threading.Lock()
        self.base_url = f"http://127.0.0.1:{self.server_address[1]}"
        threading.Thread(target=self.serve_forever, name="soak-inputs", daemon=True).start()

    def counts(self) -> dict[int, int]:
        """GETs so far, by job index."""
        with self.lock:
            return dict(self.fetches)


class _InputHandler(BaseHTTPRequestHandler):
    server: InputServer
    protocol_version = "HTTP/1.1"

    def do_HEAD(self) -> None:
        self._answer(fetch=False)  # the operator's own size check

    def do_GET(self) -> None:
        self._answer(fetch=True)

    def _answer(self, fetch: bool) -> None:
        index = self.path.removeprefix("/v/").removesuffix(".mp4")
        if not index.isdigit():
            self.send_error(404)
            return
        if fetch:
            with self.server.lock:
                self.server.fetches[int(index)] += 1
        self.send_response(200)
        self.send_header("Content-Type", "video/mp4")
        self.send_header("Content-Length", str(len(self.server.body)))
        self.end_headers()
        if fetch:
            self.wfile.write(self.server.body)

    def log_message(self, format: str, *args: Any) -> None:
        return


@contextlib.contextmanager
def running_emulator(args: argparse.Namespace, workdir: Path) -> Iterator[httpx.Client]:
    """``python -m airflow_provider_aleph.emulator`` on a free port, for the block; a client for its admin routes."""
    ready, log_path = workdir / "emulator.url", workdir / "emulator.log"
    command = [sys.executable, "-m", "airflow_provider_aleph.emulator", "--port", "0", "--ready-file", str(ready)]
    command += ["--latency", str(args.latency), "--error-rate", str(args.fault_rate), "--seed", str(args.seed)]
    with log_path.open("wb") as log:
        env = {**os.environ, "SEGMIND_EMULATOR_API_KEY": API_KEY}
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO)
    try:
        deadline = time.monotonic() + 60
        while not ready.exists():
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the emulator did not start:\n{log_path.read_text()[-2000:]}")
            time.sleep(0.05)
        with httpx.Client(base_url=ready.read_text().strip(), timeout=30) as admin:
            yield admin
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(15)


class Soak:
    """One soak run: submits from worker threads, triggers on this thread's event loop; ``admin`` is a client
    for the emulator's admin routes."""

    def __init__(self, args: argparse.Namespace, admin: httpx.Client, inputs: InputServer) -> None:
        self.args = args
        self.admin = admin
        self.inputs = inputs
        self.outcomes: dict[int, Outcome] = {}
        self._lose_lock = threading.Lock()

    def submit(self, plan: Plan) -> Outcome:
        """What ``execute`` does up to the submit, in a worker thread: checks, input resolution, ``hook.submit``."""
        from airflow.providers.common.compat.sdk import AirflowFailException

        from airflow_provider_aleph.access import origin_of
        from airflow_provider_aleph.events import task_failure
        from airflow_provider_aleph.exceptions import InvalidParameter, SegmindError, SegmindSubmitOutcomeUnknown
        from airflow_provider_aleph.operators.aleph import RunwayAlephOperator

        operator = RunwayAlephOperator(
            task_id=f"soak_{plan.index}",
            prompt=f"make it {FAIL_MARKER + ' ' if plan.fail else ''}winter #{plan.index}",
            video=f"{self.inputs.base_url}/v/{plan.index}.mp4",
            aspect_ratio="2:1" if plan.invalid else None,
            segmind_conn_id=CONN_ID,
            # The input server listens on loopback: the DAG author allows it, as for any private host.
            allowed_hosts=[origin_of(self.inputs.base_url)],
        )
        try:
            payload = operator.resolve_inputs(operator.build_payload())
        except InvalidParameter as err:
            return Outcome("refused", message=str(err))
        try:
            if plan.lose_answer:
                with self._lose_lock:
                    self.admin.post("/_emulator/config", json={"lose_submit_answers": 1}).raise_for_status()
            submitted = operator.hook.submit(operator.model, payload)
        except SegmindError as err:
            # The submit phase: a retry cannot pay twice for what was not created.
            retry = not isinstance(task_failure(err, retry_safe=True), AirflowFailException)
            kind = "unknown" if isinstance(err, SegmindSubmitOutcomeUnknown) else "submit_failed"
            return Outcome(kind, err.request_id, str(err), airflow_retry=retry)
        finally:
            operator.hook.close()
        return Outcome("accepted", submitted.request_id, urls=(submitted.status_url, submitted.response_url))

    async def wait(self, accepted: Outcome) -> Outcome:
        """The trigger, rebuilt from its serialized kwargs as a triggerer does, then the worker's result step."""
        from datetime import UTC, datetime, timedelta

        from airflow.providers.common.compat.sdk import AirflowFailException

        from airflow_provider_aleph.events import finish
        from airflow_provider_aleph.triggers.segmind import SegmindRequestTrigger

        request_id, (status_url, response_url) = str(accepted.request_id), accepted.urls or ("", "")
        now = datetime.now(UTC)
        deadline = now + timedelta(seconds=self.args.timeout)
        first = SegmindRequestTrigger(
            request_id, CONN_ID, deadline, self.args.poll_interval, status_url, response_url, submitted_at=now
        )
        trigger = SegmindRequestTrigger(**json.loads(json.dumps(first.serialize()[1])))
        events = [event.payload async for event in trigger.run()]
        if len(events) != 1:
            return Outcome("failed", request_id, f"the trigger of {request_id} yielded {len(events)} events")
        # The task and its instance, as far as finish needs them: no copy, no outlets, somewhere to push XCom.
        task: Any = SimpleNamespace(segmind_conn_id=CONN_ID, output_path=None, local_roots=(), outlets=(), log=LOG)
        context: Any = {"ti": SimpleNamespace(xcom_push=lambda key, value: None)}
        try:
            result = finish(task, context, events[0], require_output_url=True, retry_safe=False)
        except Exception as err:
            return Outcome("failed", request_id, str(err), airflow_retry=not isinstance(err, AirflowFailException))
        return Outcome("completed", result["request_id"], output_url=result["output_url"])

    async def run(self, plans: Sequence[Plan]) -> None:
        """Submit every job from the thread pool and wait on each accepted one on this loop, overlapping."""
        loop = asyncio.get_running_loop()

        async def one(plan: Plan) -> None:
            outcome = await loop.run_in_executor(pool, self.submit, plan)
            self.outcomes[plan.index] = await self.wait(outcome) if outcome.kind == "accepted" else outcome

        with ThreadPoolExecutor(self.args.workers, thread_name_prefix="soak-worker") as pool:
            await asyncio.gather(*(one(plan) for plan in plans))


def wait_for_fetches(inputs: InputServer, admin: httpx.Client, timeout: float = 60.0) -> dict[str, Any]:
    """The emulator's stats once it has fetched the video of every job it created (fetches run in the background)."""
    deadline = time.monotonic() + timeout
    while True:
        stats: dict[str, Any] = admin.get("/_emulator/stats").raise_for_status().json()
        if sum(inputs.counts().values()) >= stats["submissions"] or time.monotonic() > deadline:
            return stats
        time.sleep(0.1)


OUTCOME_LABELS = {
    "completed": "completed, with an output URL",
    "failed": "failed after submit, naming the request id",
    "failed without its request id": "failed after submit, WITHOUT the request id",
    "unknown": "submit outcome unknown (answer lost): reported, not resubmitted",
    "refused": "refused before submit (invalid parameter)",
    "submit_failed": "submit refused or unreachable, nothing created",
    "missing": "no outcome recorded",
}


def summary(args: argparse.Namespace, result: Account, wall: float) -> str:
    """The run's summary as Markdown tables, then the two headline lines."""
    stats, faults = result.stats, result.stats.get("faults", {})
    ours = [(OUTCOME_LABELS.get(kind, kind), count) for kind, count in sorted(result.outcomes.items())]
    theirs = [
        ("paid jobs created", stats["submissions"]),
        ("of which the answer was lost", f"{stats.get('lost_answers', 0)} ({result.paid_unknown} reported as unknown)"),
        ("injected faults", f"{sum(faults.values())}: " + ", ".join(f"{k} {v}" for k, v in sorted(faults.items()))),
        ("API calls", ", ".join(f"{k} {v}" for k, v in sorted(stats.get("requests", {}).items()))),
    ]
    checks = [
        ("lost (paid, neither output nor failure naming it)", result.lost),
        ("duplicated (logical jobs with more than one paid job)", result.duplicated),
        ("unsafe retries (Airflow would retry a paid job)", result.unsafe_retries),
        ("inconsistencies between the two views", len(result.inconsistencies)),
    ]
    lines = [f"Soak: {args.jobs} jobs, emulator error rate {args.fault_rate}, {wall:.1f} s wall time"]
    tables = (("our side, per logical job", "jobs", ours), ("emulator", "count", theirs), ("check", "value", checks))
    for title, unit, rows in tables:
        lines += ["", f"| {title} | {unit} |", "|---|---|", *(f"| {name} | {value} |" for name, value in rows)]
    lines += ["", *result.inconsistencies[:20], f"lost = {result.lost}", f"duplicated = {result.duplicated}"]
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Read the command line."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.soak", description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=1000, help="logical jobs (default 1000)")
    parser.add_argument("--fault-rate", type=float, default=0.1, help="share of API calls with an injected fault")
    parser.add_argument("--fail-rate", type=float, default=0.03, help="share of jobs whose prompt ends FAILED")
    parser.add_argument("--lost-answer-rate", type=float, default=0.02, help="share of submits whose answer is lost")
    parser.add_argument("--invalid-rate", type=float, default=0.01, help="share of jobs with an invalid parameter")
    parser.add_argument("--latency", type=float, default=1.5, help="emulator seconds from submit to done")
    parser.add_argument("--poll-interval", type=float, default=0.5, help="trigger poll interval, seconds")
    parser.add_argument("--rpm", type=float, default=30000, help="connection extra max_requests_per_minute")
    parser.add_argument("--workers", type=int, default=8, help="threads submitting, as workers would")
    parser.add_argument("--timeout", type=float, default=600, help="each trigger's deadline, seconds after submit")
    parser.add_argument("--seed", type=int, default=1, help="seed of the emulator's fault draws")
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    parser.add_argument("--verbose", action="store_true", help="show the provider's own log lines")
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error("--jobs must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the soak and print its summary; 0 when nothing was lost or doubled."""
    args = parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="aleph-soak-"))
    # A private Airflow home, set before anything imports Airflow, and its log level (Airflow 3.3 logs through
    # structlog, which reads it when Airflow is first imported).
    os.environ["AIRFLOW_HOME"] = str(workdir / "airflow")
    os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{workdir / 'airflow.db'}"
    os.environ["AIRFLOW__LOGGING__LOGGING_LEVEL"] = "INFO" if args.verbose else "CRITICAL"
    inputs = InputServer()
    try:
        with running_emulator(args, workdir) as admin:
            extra = {"max_requests_per_minute": args.rpm, "timeout": 30}
            connection = {"conn_type": "segmind", "password": API_KEY, "host": str(admin.base_url), "extra": extra}
            os.environ[f"AIRFLOW_CONN_{CONN_ID.upper()}"] = json.dumps(connection)
            plans = plan_jobs(args.jobs, args.fail_rate, args.lost_answer_rate, args.invalid_rate)
            soak = Soak(args, admin, inputs)
            started = time.monotonic()
            asyncio.run(soak.run(plans))
            wall = time.monotonic() - started
            result = account(plans, soak.outcomes, inputs.counts(), wait_for_fetches(inputs, admin))
    finally:
        inputs.shutdown()
        inputs.server_close()
        shutil.rmtree(workdir, ignore_errors=True)
    print(summary(args, result, wall))
    if args.json:
        numbers = {k: v for k, v in vars(result).items() if k != "stats"} | {"jobs": args.jobs, "wall_seconds": wall}
        numbers["emulator"] = {k: v for k, v in result.stats.items() if k != "request_ids"}
        args.json.write_text(json.dumps(numbers, indent=2))
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
