"""Test set-up: a private AIRFLOW_HOME with a migrated database, and the Segmind emulator."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
_HOME = Path(tempfile.mkdtemp(prefix="aleph-airflow-home-"))
# dag.test() parses its whole DAGs folder: give it only the example DAGs and the tests' DAG files.
_DAGS = _HOME / "dags"
_DAGS.mkdir()
(_DAGS / "example_dags").symlink_to(REPO / "example_dags")
(_DAGS / "test_dag_files").symlink_to(REPO / "tests" / "dag_files")

# Airflow reads its configuration at import: set it before anything imports airflow.
os.environ.update(
    {
        "AIRFLOW_HOME": str(_HOME),
        "AIRFLOW__CORE__DAGS_FOLDER": str(_DAGS),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{_HOME / 'airflow.db'}",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
    }
)
os.environ.pop("SEGMIND_API_KEY", None)

import pytest  # noqa: E402

from airflow_provider_aleph.emulator import Emulator  # noqa: E402

TEST_API_KEY = "fake-test-emulator-0123456789abcdef"


def pytest_configure(config: pytest.Config) -> None:
    """Create the Airflow database once per run (DAG-level tests need it)."""
    subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=os.environ.copy(),
    )


@pytest.fixture
def emulator():
    """A Segmind emulator on a free loopback port, fast enough for tests."""
    with Emulator(api_key=TEST_API_KEY, latency=0.3) as emu:
        yield emu


@pytest.fixture
def segmind_conn(emulator, monkeypatch: pytest.MonkeyPatch):
    """The default Segmind connection, pointing at the emulator, given as JSON in the environment."""
    import json

    monkeypatch.setenv(
        "AIRFLOW_CONN_SEGMIND_DEFAULT",
        json.dumps({"conn_type": "segmind", "password": TEST_API_KEY, "host": emulator.base_url}),
    )
    return emulator
