"""The provider on a production topology: PostgreSQL, the CeleryExecutor with a Redis broker, two triggerers.

One deployment serves the module (the same harness as the LocalExecutor leg, other components):
a throwaway PostgreSQL cluster as the metadata database and Celery's result backend, Redis as the
broker, ``airflow celery worker`` twice with two slots each, scheduler, dag-processor, api-server
and two triggerers, all supervised (a component that exits is started again). The Segmind
connection points at the e2e emulator process, its jobs shortened to :data:`LATENCY` seconds for
this module. The tests run in file order, the ones that kill something last.

Needs Debian's ``postgresql`` and ``redis-server`` (``make services``); without them the module is
skipped, and under ``ALEPH_REQUIRE_SERVICES=1`` (set by ``.ci/run``) that skip is a failure.
"""

from __future__ import annotations

import ast
import base64
import contextlib
import json
import os
import re
import signal
import time
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from airflow import __version__ as airflow_version
from packaging.version import Version

from tests.e2e.batch import (
    BATCH_DAG,
    TRIGGER,
    batch_conf,
    edit_tis,
    jobs_in_flight,
    video_inputs,
    wait_until,
)
from tests.e2e.conftest import API_KEY, JOB_LATENCY, REPO, failures, keep_logs
from tests.e2e.services import MAKE_TARGET, PostgresCluster, RedisServer, missing_services
from tests.support.deployment import AirflowDeployment, Component, free_port
from tests.support.intervals import TaskKey

if TYPE_CHECKING:
    from collections.abc import Iterator

    from tests.e2e.conftest import EmulatorProcess

#: Seconds from submit to COMPLETED in the emulator, for this module.
LATENCY = 20.0
#: The batch's inputs, and how many of them the example lets wait at once (``max_active_tis_per_dag``).
INPUTS = 12
AT_ONCE = 8
WORKERS = ("celery-worker-1", "celery-worker-2")
TRIGGERERS = ("triggerer-1", "triggerer-2")
#: Seconds after which the scheduler fails a task whose worker stopped heartbeating; the retry follows.
TASK_HEARTBEAT_TIMEOUT = 15
WORKER_DAG = "e2e_aleph_worker_wait"

MISSING = missing_services()
#: Set by ``.ci/run``: a missing package fails the leg instead of skipping it.
REQUIRED = os.environ.get("ALEPH_REQUIRE_SERVICES") == "1"
pytestmark = [
    # The first test also waits for the deployment to start.
    pytest.mark.timeout(900),
    pytest.mark.skipif(
        bool(MISSING) and not REQUIRED,
        reason=f"Debian's {', '.join(MISSING)} is not installed: run `{MAKE_TARGET}` (apt, needs root)",
    ),
    pytest.mark.skipif(
        Version(airflow_version).release < (3, 3), reason="the Celery leg runs on the newest Airflow only"
    ),
]


def celery_components() -> list[Component]:
    """The processes of the Celery deployment, in start order, each with its own log-server port."""
    components = [
        Component("api-server", ("api-server",)),
        Component("scheduler", ("scheduler",), "scheduler"),
        Component("dag-processor", ("dag-processor",), "dag_processor"),
    ]
    components += [
        Component(
            name,
            ("triggerer",),
            "triggerer",
            {
                "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
                # job.hostname names the triggerer, so the trigger table says which one runs a trigger.
                "AIRFLOW__CORE__HOSTNAME_CALLABLE": "tests.support.hostname.component_hostname",
                "ALEPH_COMPONENT_NAME": name,
            },
        )
        for name in TRIGGERERS
    ]
    components += [
        Component(
            name,
            ("celery", "worker", "--concurrency", "2", "--celery-hostname", f"{name}@%h"),
            env={"AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port())},
        )
        for name in WORKERS
    ]
    return components


class Services:
    """The PostgreSQL cluster and the Redis server the deployment runs on."""

    def __init__(self, postgres: PostgresCluster, redis: RedisServer) -> None:
        self.postgres = postgres
        self.redis = redis

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        """Rows of one query on Airflow's database."""
        import psycopg2

        address = {"host": "127.0.0.1", "port": self.postgres.port, "user": "airflow", "dbname": "postgres"}
        with contextlib.closing(psycopg2.connect(**address)) as db, db.cursor() as cursor:
            cursor.execute(sql)
            return list(cursor.fetchall())


@pytest.fixture(scope="module")
def services() -> Iterator[Services]:
    """PostgreSQL and Redis, with Redis' traffic recorded from the start."""
    if MISSING:
        pytest.fail(f"ALEPH_REQUIRE_SERVICES=1 but Debian's {', '.join(MISSING)} is not installed: run `{MAKE_TARGET}`")
    postgres = PostgresCluster()
    redis = RedisServer()
    try:
        postgres.init()
        redis.start()
        redis.monitor()
        yield Services(postgres, redis)
    finally:
        redis.stop()
        postgres.remove()


@pytest.fixture(scope="module")
def celery_deployment(
    services: Services, e2e_emulator: EmulatorProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[AirflowDeployment]:
    """The Celery deployment, shared by this module's tests; the emulator's jobs take :data:`LATENCY`."""
    home = tmp_path_factory.mktemp("e2e-celery-home")
    dags = home / "dags"
    dags.mkdir()
    (dags / "example_dags").symlink_to(REPO / "example_dags")
    (dags / "e2e_dag_files").symlink_to(Path(__file__).parent / "dag_files")
    connection = {
        "conn_type": "segmind",
        "password": API_KEY,
        "host": e2e_emulator.base_url,
        "extra": {"upload_url": e2e_emulator.base_url, "max_requests_per_minute": 600},
    }
    database = services.postgres.url
    env = {
        "AIRFLOW_CONN_SEGMIND_DEFAULT": json.dumps(connection),
        "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": database,
        "AIRFLOW__CELERY__BROKER_URL": services.redis.url,
        "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + database,
        "AIRFLOW__CELERY__WORKER_CONCURRENCY": "2",
        # A killed triggerer's triggers move to the other once its heartbeat is this old.
        "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": "1",
        "AIRFLOW__TRIGGERER__TRIGGERER_HEALTH_CHECK_THRESHOLD": "8",
        # A task whose worker died is failed (and retried) once its heartbeat is this old.
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": str(TASK_HEARTBEAT_TIMEOUT),
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "2",
        "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "1",
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
    }
    airflow = AirflowDeployment(dags, home, parallelism=8, env=env, components=celery_components())
    e2e_emulator.configure(latency=LATENCY)
    try:
        airflow.start()
        for worker in WORKERS:
            log = airflow.logs / f"{worker}.log"

            def ready(log: Path = log) -> bool:
                return log.exists() and " ready." in log.read_text(errors="replace")

            wait_until(ready, 120, f"{worker} to be ready", airflow)
        airflow.wait_for_dag(BATCH_DAG)
    except BaseException:
        airflow.stop()
        keep_logs(airflow, e2e_emulator, "celery-home-logs")
        e2e_emulator.configure(latency=JOB_LATENCY)
        raise
    failed_before = failures()
    try:
        yield airflow
    finally:
        airflow.stop()
        e2e_emulator.configure(latency=JOB_LATENCY, rpm_limit=None)
        if failures() > failed_before:
            keep_logs(airflow, e2e_emulator, "celery-home-logs")


def request_ids(airflow: AirflowDeployment, run_id: str) -> list[str]:
    """The request id in the XCom of every ``edit`` task instance of a batch run."""
    ids = []
    for ti in edit_tis(airflow, run_id):
        entry = airflow.api(
            "GET",
            f"/dags/{BATCH_DAG}/dagRuns/{run_id}/taskInstances/edit/xcomEntries/return_value",
            params={"map_index": ti["map_index"], "deserialize": True},
        )
        ids.append(str(entry["value"]["request_id"]))
    return ids


def assert_batch_paid_once(
    airflow: AirflowDeployment, emulator: EmulatorProcess, run_id: str, outputs: Path, count: int, timeout: float
) -> None:
    """The run succeeds, every edit on its first try, with one paid submission per input and every output.

    :param count: the run's inputs.
    """
    assert airflow.wait_for_run(BATCH_DAG, run_id, timeout=timeout) == "success", airflow.tails()
    tis = edit_tis(airflow, run_id)
    assert [(ti["state"], ti["try_number"]) for ti in tis] == [("success", 1)] * count
    # One submission per input: each task's request id is its own, and the emulator saw exactly these.
    ids = request_ids(airflow, run_id)
    assert len(set(ids)) == count
    assert sorted(emulator.stats()["request_ids"]) == sorted(ids)
    assert len(list(outputs.glob("*.mp4"))) == count


def triggerer_of_each_trigger(services: Services) -> dict[str, int]:
    """How many of our triggers each triggerer component runs now, read from the database.

    ``trigger.triggerer_id`` is the id of a ``TriggererJob`` row, whose ``hostname`` is the component's
    name here (see :mod:`tests.support.hostname`).
    """
    rows = services.query(
        "SELECT job.hostname, count(*) FROM trigger JOIN job ON job.id = trigger.triggerer_id "
        f"WHERE trigger.classpath = '{TRIGGER}' GROUP BY job.hostname"
    )
    return {str(hostname): int(count) for hostname, count in rows}


def test_batch_waits_deferred_with_no_worker_slot_held(
    celery_deployment: AirflowDeployment, services: Services, e2e_emulator: EmulatorProcess, tmp_path: Path
) -> None:
    """Twelve edits: eight wait deferred at once (the example's cap), the Celery workers run nothing meanwhile."""
    e2e_emulator.reset()
    inputs, outputs = video_inputs(tmp_path, INPUTS)
    run_id = celery_deployment.trigger(BATCH_DAG, batch_conf(inputs, outputs))

    # Eight jobs wait at once (the other four wait for the cap), and no worker slot is held for them.
    usage = jobs_in_flight(celery_deployment, e2e_emulator, AT_ONCE, LATENCY)
    print(f"in flight: {usage}")
    assert usage["deferred_slots"] == AT_ONCE, usage
    assert usage["running_slots"] + usage["queued_slots"] == 0, usage

    def all_placed() -> dict[str, int] | None:
        placement = triggerer_of_each_trigger(services)
        return placement if sum(placement.values()) == AT_ONCE else None

    # Airflow hands triggers out first come, up to each triggerer's capacity: one or both may run them.
    placement = wait_until(all_placed, LATENCY, "every trigger to have a triggerer", celery_deployment)
    print(f"triggers per triggerer: {placement}")
    assert set(placement) <= set(TRIGGERERS), placement
    # The trigger rows hold what a trigger is rebuilt from, never the key.
    rows = services.query(f"SELECT kwargs FROM trigger WHERE classpath = '{TRIGGER}'")
    assert len(rows) == AT_ONCE
    assert all(API_KEY not in str(row[0]) for row in rows)

    assert_batch_paid_once(celery_deployment, e2e_emulator, run_id, outputs, INPUTS, timeout=8 * LATENCY + 120)
    assert e2e_emulator.stats()["submissions"] == INPUTS


#: The account's limit for the rate-limit test: API calls per key per window of this many seconds.
RATE_LIMIT, RATE_WINDOW = 8, 10.0


def test_one_account_two_triggerers_no_task_fails_on_429(
    celery_deployment: AirflowDeployment, e2e_emulator: EmulatorProcess, tmp_path: Path
) -> None:
    """With the account's rate limit on and a connection budget set far above it, the batch still succeeds:
    the 429s slow the polls and submits down, no task fails or retries because of them."""
    e2e_emulator.reset()
    e2e_emulator.configure(rpm_limit=RATE_LIMIT, rate_window=RATE_WINDOW)
    try:
        inputs, outputs = video_inputs(tmp_path, AT_ONCE)
        run_id = celery_deployment.trigger(BATCH_DAG, batch_conf(inputs, outputs))
        assert_batch_paid_once(celery_deployment, e2e_emulator, run_id, outputs, AT_ONCE, timeout=600)
        stats = e2e_emulator.stats()
    finally:
        e2e_emulator.configure(rpm_limit=None)
    print(f"429 answers: {stats.get('rate_limited')}")
    assert stats.get("rate_limited", 0) > 0, f"the limit was never reached: {stats}"


def test_postgres_restarted_mid_batch_loses_nothing(
    celery_deployment: AirflowDeployment, services: Services, e2e_emulator: EmulatorProcess, tmp_path: Path
) -> None:
    """Stop and start PostgreSQL while jobs wait deferred: components that exit are restarted, and every
    edit still succeeds on its first try with one submission per input."""
    e2e_emulator.reset()
    inputs, outputs = video_inputs(tmp_path, AT_ONCE)
    run_id = celery_deployment.trigger(BATCH_DAG, batch_conf(inputs, outputs))
    usage = jobs_in_flight(celery_deployment, e2e_emulator, AT_ONCE, LATENCY)
    assert usage["deferred_slots"] > 0, usage

    restarts_before = len(celery_deployment.restarts)
    services.postgres.stop()
    time.sleep(3)  # an outage long enough for every component to meet it
    services.postgres.start()

    assert_batch_paid_once(celery_deployment, e2e_emulator, run_id, outputs, AT_ONCE, timeout=4 * LATENCY + 240)
    print(f"components restarted after the database restart: {celery_deployment.restarts[restarts_before:]}")


#: Job latency while a triggerer is killed: longer than the health-check threshold and the takeover.
KILL_LATENCY = 30.0


def test_triggerer_holding_the_triggers_killed(
    celery_deployment: AirflowDeployment, services: Services, e2e_emulator: EmulatorProcess, tmp_path: Path
) -> None:
    """SIGKILL the triggerer that runs the triggers mid-batch: the other takes them over, nothing is paid twice."""
    e2e_emulator.reset()
    e2e_emulator.configure(latency=KILL_LATENCY)  # the jobs outlast the takeover
    try:
        inputs, outputs = video_inputs(tmp_path, AT_ONCE)
        run_id = celery_deployment.trigger(BATCH_DAG, batch_conf(inputs, outputs))
        jobs_in_flight(celery_deployment, e2e_emulator, AT_ONCE, KILL_LATENCY)
        placement = wait_until(
            lambda: triggerer_of_each_trigger(services),
            KILL_LATENCY,
            "a triggerer to take the triggers",
            celery_deployment,
        )
        holder = max(placement, key=lambda name: placement[name])
        assert holder in TRIGGERERS, placement
        (other,) = set(TRIGGERERS) - {holder}
        assert celery_deployment.kill(holder) == -signal.SIGKILL

        def taken_over() -> dict[str, int] | None:
            now = triggerer_of_each_trigger(services)
            return now if set(now) == {other} else None

        after = wait_until(taken_over, KILL_LATENCY, f"{other} to take the triggers over", celery_deployment)
        print(f"triggers before the kill: {placement}; {holder} killed; then: {after}")
        wait = 4 * KILL_LATENCY + 120
        assert_batch_paid_once(celery_deployment, e2e_emulator, run_id, outputs, AT_ONCE, timeout=wait)
    finally:
        celery_deployment.start_component(holder)
        e2e_emulator.configure(latency=LATENCY)


#: How many ``deferrable=False`` runs wait in the workers when one worker is killed.
WAITING_RUNS = 4


def test_celery_worker_killed_mid_wait_reattaches(
    celery_deployment: AirflowDeployment, e2e_emulator: EmulatorProcess
) -> None:
    """SIGKILL a Celery worker's process group while its tasks wait on jobs they submitted: Airflow retries
    them (task heartbeat timeout), each retry reattaches to its request, one submission per run."""
    e2e_emulator.reset()
    e2e_emulator.configure(latency=3 * TASK_HEARTBEAT_TIMEOUT)  # still running when the retries start
    try:
        celery_deployment.wait_for_dag(WORKER_DAG)
        runs = [celery_deployment.trigger(WORKER_DAG) for _ in range(WAITING_RUNS)]

        def first_log(run_id: str) -> str:
            path = celery_deployment.task_log_file(WORKER_DAG, run_id, TaskKey("edit", -1, 1))
            return path.read_text(errors="replace") if path.exists() else ""

        def all_waiting() -> bool:
            return all("Waiting in the worker" in first_log(run_id) for run_id in runs)

        wait_until(all_waiting, 120, "every edit to wait in its worker", celery_deployment)
        first_ids = {}
        for run_id in runs:
            found = re.search(r"request_id=([\w-]+)", first_log(run_id))
            assert found is not None, first_log(run_id)
            first_ids[run_id] = found.group(1)
        tis = {run_id: edit_ti(celery_deployment, run_id) for run_id in runs}
        worker_of = {run_id: worker_holding(celery_deployment, int(ti["pid"])) for run_id, ti in tis.items()}
        victim = Counter(worker_of.values()).most_common(1)[0][0]
        killed = [run_id for run_id, worker in worker_of.items() if worker == victim]
        print(f"tasks per worker: {Counter(worker_of.values())}; killing {victim}")
        assert celery_deployment.kill(victim) == -signal.SIGKILL
        celery_deployment.start_component(victim)  # back, as after a deploy

        for run_id in runs:
            assert celery_deployment.wait_for_run(WORKER_DAG, run_id, timeout=600) == "success"
        for run_id in runs:
            ti = edit_ti(celery_deployment, run_id)
            assert (ti["state"], ti["try_number"]) == ("success", 2 if run_id in killed else 1), (run_id, ti)
            xcom = celery_deployment.api(
                "GET",
                f"/dags/{WORKER_DAG}/dagRuns/{run_id}/taskInstances/edit/xcomEntries/return_value",
                params={"deserialize": True},
            )
            assert xcom["value"]["request_id"] == first_ids[run_id]
            assert xcom["value"]["status"] == "COMPLETED"
            if run_id in killed:
                retry = celery_deployment.task_log_file(WORKER_DAG, run_id, TaskKey("edit", -1, 2))
                assert f"Reattaching to Segmind request {first_ids[run_id]}" in retry.read_text(errors="replace")
        # Exactly one paid submission per run: the emulator saw each run's first request id and no other.
        assert sorted(e2e_emulator.stats()["request_ids"]) == sorted(first_ids.values())
    finally:
        e2e_emulator.configure(latency=LATENCY)


def edit_ti(airflow: AirflowDeployment, run_id: str) -> dict[str, Any]:
    """The one ``edit`` task instance of a worker-wait run."""
    (ti,) = [ti for ti in airflow.task_instances(WORKER_DAG, run_id) if ti["task_id"] == "edit"]
    return ti


def worker_holding(airflow: AirflowDeployment, pid: int) -> str:
    """The Celery worker component whose process tree holds ``pid`` (followed up through parent ids)."""
    workers = {airflow.processes[name].pid: name for name in WORKERS}
    current = pid
    while current > 1:
        if current in workers:
            return workers[current]
        stat = Path(f"/proc/{current}/stat").read_text()
        current = int(stat.rsplit(")", 1)[1].split()[1])
    raise AssertionError(f"process {pid} runs under no Celery worker")


def redis_commands(traffic: bytes) -> list[bytes]:
    """Every argument of every command in ``redis-cli MONITOR`` output, unescaped, with any base64 body
    of a Celery message decoded beside it."""
    texts: list[bytes] = []
    for line in traffic.splitlines():
        for quoted in re.findall(rb'"((?:[^"\\]|\\.)*)"', line):
            value = ast.literal_eval("b'" + quoted.decode("ascii").replace("'", "\\'") + "'")
            texts.append(value)
            if value.startswith(b"{"):
                try:
                    message = json.loads(value)
                except ValueError:
                    continue
                if isinstance(message, dict) and isinstance(message.get("body"), str):
                    texts.append(base64.b64decode(message["body"]))
    return texts


def test_no_api_key_in_logs_trigger_table_or_broker_traffic(
    celery_deployment: AirflowDeployment, services: Services
) -> None:
    """After the batches above: no component or task log, no trigger row and no Celery message holds the key."""
    logs = [
        path
        for folder in (celery_deployment.logs, celery_deployment.home / "logs")
        for path in folder.rglob("*")
        if path.is_file()
    ]
    assert any(path.name.startswith("celery-worker") for path in logs)
    for path in logs:
        assert API_KEY not in path.read_text(errors="replace"), path

    kwargs = services.query("SELECT kwargs FROM trigger")
    assert all(API_KEY not in str(row[0]) for row in kwargs)

    traffic = services.redis.traffic.read_bytes()
    commands = redis_commands(traffic)
    # The workloads the scheduler sent the workers are in the capture, and the key is in none of them.
    assert any(BATCH_DAG.encode() in text for text in commands), traffic[:2000]
    assert API_KEY.encode() not in traffic
    assert not [text for text in commands if API_KEY.encode() in text]
