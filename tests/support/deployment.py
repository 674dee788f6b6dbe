"""A real Airflow deployment on this machine, for benchmarks and end-to-end tests.

:class:`AirflowDeployment` runs ``airflow scheduler`` (LocalExecutor), ``airflow dag-processor``,
``airflow triggerer`` and ``airflow api-server``, each in its own process, sharing one private
``AIRFLOW_HOME`` and a SQLite database (Airflow 3 accepts SQLite with the LocalExecutor; it is not
for production, but enough for a handful of concurrent tasks). Apart from ``airflow db migrate``,
it drives Airflow through its public REST API (``/api/v2``), with the simple auth manager in
all-admins mode, or with one user ``admin`` when ``admin_password`` is given (the REST calls then
carry a token from ``POST /auth/token``, and a browser can log in)::

    with AirflowDeployment(dags_folder, env={"AIRFLOW_CONN_X": "..."}) as airflow:
        airflow.wait_for_dag("my_dag")
        run_id = airflow.trigger("my_dag")
        assert airflow.wait_for_run("my_dag", run_id) == "success"
        airflow.running_intervals("my_dag", run_id)

The components' logs are kept in ``<home>/component-logs/``; on a failure inside the ``with`` block
the home folder is kept and its path is in the exception notes.

The processes are data: by default the four above, or any list of :class:`Component` (two
triggerers, ``airflow celery worker`` processes with their own log-server ports, ...), with the
executor and database chosen through ``env`` (``AIRFLOW__CORE__EXECUTOR``,
``AIRFLOW__DATABASE__SQL_ALCHEMY_CONN``). The deployment supervises them as systemd or Kubernetes
would: a component that exits without :meth:`AirflowDeployment.kill` having stopped it is started
again after :data:`RESTART_DELAY` seconds, and :attr:`AirflowDeployment.restarts` records it.

Running intervals (the time a task instance spends running on a worker) come from Airflow's own
records; :mod:`tests.support.intervals` says how.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from tests.support.intervals import TaskKey, event_intervals, json_lines, log_intervals

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping
    from types import TracebackType

    from tests.support.intervals import Interval

TERMINAL_RUN_STATES = frozenset({"success", "failed"})
#: Seconds the supervisor waits before starting a component that exited (systemd's ``RestartSec``).
RESTART_DELAY = 2.0
#: Attempts of one trigger through the REST API when the database is busy.
TRIGGER_ATTEMPTS = 3


@dataclass(frozen=True)
class Component:
    """One process of a deployment.

    :param name: its name here: the key of :attr:`AirflowDeployment.processes` and of its log file.
    :param args: the ``airflow`` command's arguments, e.g. ``("celery", "worker")``.
    :param health: the key ``/monitor/health`` reports it under, if any.
    :param env: environment variables for this process only (e.g. its own log-server port).
    """

    name: str
    args: tuple[str, ...]
    health: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)


#: The processes of the default deployment, in start order, with the health key each reports under.
COMPONENTS = {"api-server": None, "scheduler": "scheduler", "dag-processor": "dag_processor", "triggerer": "triggerer"}


def default_components(names: Iterable[str] = COMPONENTS) -> list[Component]:
    """The default processes among ``names``, in start order (the api-server's port is added at start).

    :param names: some of :data:`COMPONENTS`.
    """
    unknown = set(names) - set(COMPONENTS)
    if unknown:
        raise ValueError(f"components must be among {', '.join(COMPONENTS)}; got {sorted(unknown)}")
    return [Component(name, (name,), health) for name, health in COMPONENTS.items() if name in set(names)]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class AirflowDeployment:
    """Scheduler, dag-processor, triggerer and api-server of one Airflow, each its own process.

    :param dags_folder: the DAG files to serve.
    :param home: ``AIRFLOW_HOME``; a new temporary folder when None (removed on a clean stop).
    :param python: the interpreter whose Airflow runs (``python -m airflow``).
    :param parallelism: how many task instances the LocalExecutor runs at once.
    :param env: more environment variables for every component (connections, DAG settings).
    :param components: which processes to start: names among :data:`COMPONENTS` (all four by default)
        or :class:`Component` descriptions, in start order.
    :param admin_password: when set, the UI and API ask for a login: user ``admin``, this password.
    """

    def __init__(
        self,
        dags_folder: Path,
        home: Path | None = None,
        *,
        python: str = sys.executable,
        parallelism: int = 4,
        env: Mapping[str, str] | None = None,
        components: Iterable[str | Component] = COMPONENTS,
        admin_password: str | None = None,
    ) -> None:
        self.dags_folder = Path(dags_folder)
        self._own_home = home is None
        self.home = Path(home) if home is not None else Path(tempfile.mkdtemp(prefix="aleph-airflow-"))
        self.python = python
        self.parallelism = parallelism
        self.extra_env = dict(env or {})
        given = list(components)
        names = [item for item in given if isinstance(item, str)]
        specs = default_components(names) + [item for item in given if isinstance(item, Component)]
        self.specs = {spec.name: spec for spec in specs}
        self.components = list(self.specs)
        self.port = free_port()
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        #: ``(component, exit code)`` of every exit the supervisor answered with a restart.
        self.restarts: list[tuple[str, int]] = []
        self._lock = threading.RLock()
        self._stopping = threading.Event()
        self._supervisor: threading.Thread | None = None
        self.logs = self.home / "component-logs"
        self.admin_password = admin_password
        self._client: httpx.Client | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(home={str(self.home)!r}, port={self.port}, running={sorted(self.processes)})"

    @property
    def base_url(self) -> str:
        """The api-server's address, e.g. ``http://127.0.0.1:8080``."""
        return f"http://127.0.0.1:{self.port}"

    def environment(self) -> dict[str, str]:
        """The environment every component (and ``airflow`` CLI call) runs with."""
        env = dict(os.environ)
        env.update(
            {
                "AIRFLOW_HOME": str(self.home),
                "AIRFLOW__CORE__DAGS_FOLDER": str(self.dags_folder),
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
                "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
                "AIRFLOW__CORE__PARALLELISM": str(self.parallelism),
                "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{self.home / 'airflow.db'}",
                # Workers reach the execution API here: it must follow the api-server's port.
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.base_url}/execution/",
                "AIRFLOW__API__BASE_URL": self.base_url,
                "AIRFLOW__API__PORT": str(self.port),
                "AIRFLOW__API__WORKERS": "1",
                "AIRFLOW__CORE__AUTH_MANAGER": (
                    "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
                ),
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": str(self.admin_password is None),
            }
        )
        if self.admin_password is not None:
            env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"] = "admin:admin"
            env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"] = str(self._passwords_file())
        # One signing secret for every component, or tokens minted by one are refused by another.
        env.setdefault("AIRFLOW__API_AUTH__JWT_SECRET", self._secret("jwt"))
        env.setdefault("AIRFLOW__API__SECRET_KEY", self._secret("api"))
        env.update(self.extra_env)
        return env

    def _passwords_file(self) -> Path:
        path = self.home / "simple-auth-passwords.json"
        if not path.exists():
            path.write_text(json.dumps({"admin": self.admin_password}))
            path.chmod(0o600)
        return path

    def _secret(self, name: str) -> str:
        path = self.home / f".{name}-secret"
        if not path.exists():
            path.write_text(secrets.token_urlsafe(32))
            path.chmod(0o600)
        return path.read_text()

    # -- life cycle ---------------------------------------------------------------------------

    def airflow(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        """Run an ``airflow`` CLI command against this deployment and return its result.

        :param args: the command's arguments, e.g. ``("dags", "list")``.
        :param timeout: seconds allowed.
        """
        return subprocess.run(
            [self.python, "-m", "airflow", *args],
            env=self.environment(),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def start(self, timeout: float = 300) -> AirflowDeployment:
        """Migrate the database, start the components and wait until each reports healthy.

        :param timeout: seconds allowed for all of it.
        """
        deadline = time.monotonic() + timeout
        self.home.mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(exist_ok=True)
        migrated = self.airflow("db", "migrate", timeout=timeout)
        if migrated.returncode != 0:
            raise RuntimeError(f"airflow db migrate failed:\n{migrated.stderr[-3000:]}")
        for name in self.components:
            self.start_component(name)
        self._stopping.clear()
        self._supervisor = threading.Thread(target=self._supervise, name="airflow-supervisor", daemon=True)
        self._supervisor.start()
        self._client = httpx.Client(base_url=f"{self.base_url}/api/v2", timeout=60)
        self.wait_healthy(deadline - time.monotonic())
        return self

    def start_component(self, name: str) -> subprocess.Popen[bytes]:
        """Start one component's process (again, after :meth:`kill`); its output goes to its log.

        :param name: one of :attr:`components`.
        """
        spec = self.specs.get(name)
        if spec is None:
            raise ValueError(f"name must be one of {', '.join(self.specs)}; got {name!r}")
        command = [self.python, "-m", "airflow", *spec.args]
        if spec.args == ("api-server",):
            command += ["--port", str(self.port), "--host", "127.0.0.1"]
        with self._lock, (self.logs / f"{name}.log").open("ab") as log:
            process = subprocess.Popen(
                command,
                env={**self.environment(), **spec.env},
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            self.processes[name] = process
        return process

    def _supervise(self) -> None:
        """Start again every component that exited on its own, until :meth:`stop`."""
        exited: dict[str, float] = {}
        while not self._stopping.wait(0.5):
            with self._lock:
                for name, process in list(self.processes.items()):
                    if process.poll() is None:
                        continue
                    since = exited.setdefault(name, time.monotonic())
                    if time.monotonic() - since < RESTART_DELAY or self._stopping.is_set():
                        continue
                    del exited[name]
                    self.restarts.append((name, process.returncode))
                    with (self.logs / f"{name}.log").open("a") as log:
                        log.write(f"\n[supervisor] {name} exited with code {process.returncode}; starting it again\n")
                    self.start_component(name)

    def kill(self, name: str, sig: int = signal.SIGKILL) -> int:
        """Send ``sig`` to one component's whole process group, wait for it to end; return its exit code.

        :param name: a running component.
        :param sig: the signal; SIGKILL by default (no clean-up runs, as when a machine dies).
        """
        with self._lock:
            process = self.processes.pop(name)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        return process.wait(60)

    def wait_healthy(self, timeout: float) -> dict[str, Any]:
        """Wait until the api-server answers and every started component reports healthy.

        :param timeout: seconds allowed.
        """
        wanted = sorted({spec.health for spec in self.specs.values() if spec.health})
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            looping = [name for name, count in Counter(name for name, _ in self.restarts).items() if count >= 3]
            if looping:
                raise RuntimeError(f"airflow {', '.join(looping)} exited again and again while starting{self.tails()}")
            with contextlib.suppress(httpx.HTTPError):
                health = self.api("GET", "/monitor/health")
                last = health
                if all((health.get(key) or {}).get("status") == "healthy" for key in wanted):
                    return dict(health)
            time.sleep(1)
        raise RuntimeError(
            f"Airflow did not become healthy in {timeout:.0f}s (last health: {last}, restarts: {self.restarts})"
            f"{self.tails()}"
        )

    def tails(self, lines: int = 30) -> str:
        """The last lines of each component's log, for error messages.

        :param lines: how many lines per component.
        """
        parts = []
        for name in self.specs:
            path = self.logs / f"{name}.log"
            if path.exists():
                text = "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
                parts.append(f"\n--- {path} (last {lines} lines) ---\n{text}")
        return "".join(parts)

    def stop(self, timeout: float = 30) -> None:
        """Stop every component: SIGTERM to its process group, then SIGKILL after ``timeout``.

        :param timeout: seconds each component is given to stop.
        """
        self._stopping.set()
        if self._supervisor is not None:
            self._supervisor.join(10)
            self._supervisor = None
        if self._client is not None:
            self._client.close()
            self._client = None
        for process in self.processes.values():
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for process in self.processes.values():
            try:
                process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(10)
        self.processes.clear()

    def __enter__(self) -> AirflowDeployment:
        """Start the deployment."""
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        """Stop it; keep the home folder (and its logs) when the block failed."""
        self.stop()
        if exc is not None:
            exc.add_note(f"Airflow home and component logs kept in {self.home}")
        elif self._own_home:
            shutil.rmtree(self.home, ignore_errors=True)

    # -- REST API -----------------------------------------------------------------------------

    def api(self, method: str, path: str, **kwargs: Any) -> Any:
        """Call the public REST API (``/api/v2`` + ``path``) and return the decoded JSON answer.

        :param method: the HTTP method.
        :param path: the path under ``/api/v2``.
        :param kwargs: passed to ``httpx.Client.request`` (``json=``, ``params=``).
        """
        if self._client is None:
            raise RuntimeError("the deployment is not started")
        response = self._client.request(method, path, **kwargs)
        if response.status_code == 401 and self.admin_password is not None:
            self._client.headers["Authorization"] = f"Bearer {self._token()}"
            response = self._client.request(method, path, **kwargs)
        if response.is_error:
            raise httpx.HTTPStatusError(
                f"{method} {path} answered {response.status_code}: {response.text[:500]}",
                request=response.request,
                response=response,
            )
        return response.json() if response.content else None

    def _token(self) -> str:
        """A fresh access token for ``admin``."""
        answer = httpx.post(
            f"{self.base_url}/auth/token",
            json={"username": "admin", "password": self.admin_password},
            timeout=60,
        )
        answer.raise_for_status()
        return str(answer.json()["access_token"])

    def wait_for_dag(self, dag_id: str, timeout: float = 180) -> dict[str, Any]:
        """Wait until the dag-processor has parsed ``dag_id``; fail early on an import error.

        :param dag_id: the DAG id.
        :param timeout: seconds allowed.
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                dag: dict[str, Any] = self.api("GET", f"/dags/{dag_id}")
                return dag
            except httpx.HTTPStatusError as err:
                if err.response.status_code != 404:
                    raise
            errors = self.api("GET", "/importErrors").get("import_errors", [])
            if errors:
                raise RuntimeError(f"DAG import errors: {json.dumps(errors, indent=1)[:3000]}")
            time.sleep(1)
        raise RuntimeError(f"DAG {dag_id!r} was not parsed within {timeout:.0f}s{self.tails()}")

    def unpause(self, dag_id: str) -> None:
        """Unpause a DAG (new DAGs start unpaused in this deployment).

        :param dag_id: the DAG id.
        """
        self.api("PATCH", f"/dags/{dag_id}", json={"is_paused": False})

    def trigger(self, dag_id: str, conf: Mapping[str, Any] | None = None) -> str:
        """Create a DAG run now and return its run id.

        :param dag_id: the DAG id.
        :param conf: the run's configuration.
        """
        # The run id is chosen here so that a retry cannot make a second run: on SQLite a busy scheduler
        # can make the api-server's write fail ("Database error", HTTP 500), which a person would retry.
        run_id = f"manual__{uuid.uuid4().hex[:16]}"
        body = {"dag_run_id": run_id, "logical_date": None, "conf": dict(conf or {})}
        for attempt in range(1, TRIGGER_ATTEMPTS + 1):
            try:
                self.api("POST", f"/dags/{dag_id}/dagRuns", json=body)
                return run_id
            except httpx.HTTPStatusError as err:
                if err.response.status_code == 409 and attempt > 1:
                    return run_id  # the earlier attempt's run was made after all
                if err.response.status_code != 500 or "Database error" not in err.response.text:
                    raise
                if attempt == TRIGGER_ATTEMPTS:
                    raise
                time.sleep(2)
        raise AssertionError("unreachable")

    def wait_for_run(self, dag_id: str, run_id: str, timeout: float = 600) -> str:
        """Wait until the run ends; return its state (``success`` or ``failed``).

        :param dag_id: the DAG id.
        :param run_id: the run id.
        :param timeout: seconds allowed.
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = str(self.api("GET", f"/dags/{dag_id}/dagRuns/{run_id}")["state"])
            if state in TERMINAL_RUN_STATES:
                return state
            time.sleep(2)
        raise RuntimeError(f"run {run_id} of {dag_id} did not end within {timeout:.0f}s{self.tails()}")

    def _paged(self, path: str, key: str, params: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        while True:
            page = self.api("GET", path, params={**(params or {}), "limit": 100, "offset": len(items)})
            items.extend(page[key])
            if not page[key] or len(items) >= page["total_entries"]:
                return items

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        """The task instances of a run, mapped ones included.

        :param dag_id: the DAG id.
        :param run_id: the run id.
        """
        return self._paged(f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances", "task_instances")

    def event_log(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        """The event-log rows of a run (state changes of its task instances, among others).

        :param dag_id: the DAG id.
        :param run_id: the run id.
        """
        return self._paged("/eventLogs", "event_logs", {"dag_id": dag_id, "run_id": run_id})

    def task_log_file(self, dag_id: str, run_id: str, key: TaskKey) -> Path:
        """Where the worker wrote the log of one task try (Airflow's default file name template).

        :param dag_id: the DAG id.
        :param run_id: the run id.
        :param key: the task try.
        """
        folder = self.home / "logs" / f"dag_id={dag_id}" / f"run_id={run_id}" / f"task_id={key.task_id}"
        if key.map_index >= 0:
            folder = folder / f"map_index={key.map_index}"
        return folder / f"attempt={key.try_number}.log"

    def running_intervals(self, dag_id: str, run_id: str) -> dict[TaskKey, list[Interval]]:
        """How long each task try of a run was running on a worker, interval by interval.

        From the event log where Airflow writes state changes there (3.1+); otherwise from the log
        file each task try's worker wrote (the triggerer writes its lines to another file).

        :param dag_id: the DAG id.
        :param run_id: the run id.
        """
        intervals = event_intervals(self.event_log(dag_id, run_id))
        if intervals:
            return intervals
        for ti in self.task_instances(dag_id, run_id):
            key = TaskKey(ti["task_id"], ti.get("map_index", -1), ti["try_number"])
            path = self.task_log_file(dag_id, run_id, key)
            if not path.exists():
                continue
            found = log_intervals(json_lines(path))
            if found:
                intervals[key] = found
        return intervals
