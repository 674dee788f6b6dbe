"""A real Airflow deployment for the end-to-end tests: the emulator and Airflow's own components,
each its own process.

One deployment serves the whole e2e module (starting it costs about half a minute on two cores):
``airflow api-server``, ``scheduler`` (LocalExecutor, ``parallelism=2``), ``dag-processor`` and
``triggerer`` with a private ``AIRFLOW_HOME``, the example DAGs plus ``tests/e2e/dag_files``, and
the Segmind connection pointing at an emulator process whose jobs take ``JOB_LATENCY`` seconds.
The simple auth manager has one user, ``admin``, whose password the fixture sets, so the browser
test logs in like a person would. When a test fails (or the deployment does not start), every
component's log, the task logs and the emulator's log are copied to
``test-artifacts/airflow-home-logs/``.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from airflow_provider_aleph.emulator.spawn import spawn
from tests.support.deployment import AirflowDeployment
from tests.support.proxy import RefusingProxy

if TYPE_CHECKING:
    from collections.abc import Iterator

REPO = Path(__file__).resolve().parents[2]
#: Seconds from submit to COMPLETED in the emulator.
JOB_LATENCY = 20.0
#: The executor's slots: fewer than the batch's six jobs, so only released slots let them overlap.
PARALLELISM = 2
API_KEY = "fake-e2e-emulator-0123456789abcdef"
ADMIN_PASSWORD = "fake-e2e-admin-password"
#: Screenshots and kept logs land here (a CI artifact folder).
ARTIFACTS = Path(os.environ.get("ALEPH_E2E_ARTIFACTS", REPO / "test-artifacts"))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test in this folder is end to end."""
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.e2e)


class EmulatorProcess:
    """``python -m airflow_provider_aleph.emulator`` on a free port, read and set over its test routes.

    :param latency: seconds each job takes.
    """

    def __init__(self, latency: float) -> None:
        self.log = Path(tempfile.mkdtemp(prefix="aleph-e2e-emulator-")) / "emulator.log"
        args = ["--port", "0", "--latency", str(latency), "--api-key", API_KEY]
        self.process, self.base_url = spawn(args, log_path=self.log)
        self.client = httpx.Client(base_url=self.base_url, timeout=30)

    def stats(self) -> dict[str, Any]:
        """The emulator's counters (``GET /_emulator/stats``)."""
        answer: dict[str, Any] = self.client.get("/_emulator/stats").raise_for_status().json()
        return answer

    def jobs(self) -> list[dict[str, Any]]:
        """Each accepted job's ``request_id``, ``model`` and ``payload``, in submit order (``GET /_emulator/jobs``)."""
        answer: list[dict[str, Any]] = self.client.get("/_emulator/jobs").raise_for_status().json()
        return answer

    def configure(self, **settings: Any) -> None:
        """Change run-time settings (``POST /_emulator/config``), e.g. ``latency=2``."""
        self.client.post("/_emulator/config", json=settings).raise_for_status()

    def reset(self) -> None:
        """Forget every job and counter."""
        self.client.post("/_emulator/reset").raise_for_status()

    def stop(self) -> None:
        """Stop the process."""
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)


@pytest.fixture(scope="session")
def e2e_emulator():
    """The emulator process of the e2e deployment."""
    emulator = EmulatorProcess(latency=JOB_LATENCY)
    try:
        yield emulator
    finally:
        emulator.stop()


@pytest.fixture(scope="session")
def e2e_proxy(e2e_emulator: EmulatorProcess) -> Iterator[RefusingProxy]:
    """A TCP relay in front of the emulator's API, which the deployment's connection points at: a test
    makes it refuse connections for a while, as an API host that is down does."""
    with RefusingProxy(e2e_emulator.base_url) as proxy:
        yield proxy


@pytest.fixture(scope="session")
def deployment(e2e_emulator: EmulatorProcess, e2e_proxy: RefusingProxy, tmp_path_factory: pytest.TempPathFactory):
    """The running Airflow deployment, shared by the e2e tests."""
    home = tmp_path_factory.mktemp("e2e-airflow-home")
    dags = home / "dags"
    dags.mkdir()
    (dags / "example_dags").symlink_to(REPO / "example_dags")
    (dags / "e2e_dag_files").symlink_to(Path(__file__).parent / "dag_files")
    connection = {
        "conn_type": "segmind",
        "password": API_KEY,
        "host": e2e_proxy.base_url,
        "extra": {"upload_url": e2e_emulator.base_url, "max_requests_per_minute": 600},
    }
    env = {
        "AIRFLOW_CONN_SEGMIND_DEFAULT": json.dumps(connection),
        # A killed triggerer's triggers move to a live one once its heartbeat is this old.
        "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": "1",
        "AIRFLOW__TRIGGERER__TRIGGERER_HEALTH_CHECK_THRESHOLD": "8",
        "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "1",
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
    }
    airflow = AirflowDeployment(dags, home, parallelism=PARALLELISM, env=env, admin_password=ADMIN_PASSWORD)
    try:
        airflow.start()
    except BaseException:
        airflow.stop()
        keep_logs(airflow, e2e_emulator)
        raise
    failed_before = failures()
    try:
        yield airflow
    finally:
        airflow.stop()
        if failures() > failed_before:
            keep_logs(airflow, e2e_emulator)


def failures() -> int:
    return int(os.environ.get("_ALEPH_E2E_FAILURES", "0"))


def keep_logs(airflow: AirflowDeployment, emulator: EmulatorProcess, folder: str = "airflow-home-logs") -> None:
    """Copy the component logs, task logs and the emulator's log beside the screenshots, into ``folder``."""
    import shutil

    target = ARTIFACTS / folder
    shutil.rmtree(target, ignore_errors=True)
    (target / "component-logs").mkdir(parents=True, exist_ok=True)
    for folder in ("component-logs", "logs"):
        source = airflow.home / folder
        if source.exists():
            shutil.copytree(source, target / folder, dirs_exist_ok=True)
    shutil.copyfile(emulator.log, target / "component-logs" / "emulator.log")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):
    """Count failed e2e tests, so the deployment keeps its logs when any failed."""
    report = yield
    if report.failed:
        os.environ["_ALEPH_E2E_FAILURES"] = str(failures() + 1)
    return report
