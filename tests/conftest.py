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
        # The example DAGs' local folders, as a deployment would list them: the tests' files live here.
        "ALEPH_LOCAL_ROOTS": tempfile.gettempdir(),
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
        json.dumps(
            {
                "conn_type": "segmind",
                "password": TEST_API_KEY,
                "host": emulator.base_url,
                # Uploads go to the emulator too; tests poll fast, so the account budget is set high.
                "extra": {"upload_url": emulator.base_url, "max_requests_per_minute": 6000},
            }
        ),
    )
    return emulator


# -- real S3 on loopback: moto's standalone server in a subprocess ---------------------------------

S3_CONN_ID = "aleph_s3_test"
S3_ACCESS_KEY_ID = "fake-aleph-s3-access-key"
S3_SECRET_ACCESS_KEY = "fake-aleph-s3-secret-0123456789"  # moto accepts any key
S3_REGION = "us-east-1"


class S3Server:
    """A running moto S3 server and the Airflow connection (type ``aws``) that reaches it.

    :param endpoint_url: ``http://127.0.0.1:PORT`` of the server.
    :param conn_id: the Airflow connection id, set in the environment for the whole session.
    """

    def __init__(self, endpoint_url: str, conn_id: str = S3_CONN_ID) -> None:
        import boto3

        self.endpoint_url = endpoint_url
        self.conn_id = conn_id
        self.client = boto3.client(
            "s3",
            endpoint_url=endpoint_url,
            aws_access_key_id=S3_ACCESS_KEY_ID,
            aws_secret_access_key=S3_SECRET_ACCESS_KEY,
            region_name=S3_REGION,
        )

    def create_bucket(self, name: str | None = None) -> str:
        """Create a new, empty bucket (a unique name unless given) and return its name."""
        import uuid

        name = name or f"aleph-test-{uuid.uuid4().hex[:16]}"
        self.client.create_bucket(Bucket=name)
        return name

    def uri(self, bucket: str, key: str = "") -> str:
        """``s3://CONN_ID@bucket/key``: an object storage URI that names the connection."""
        return f"s3://{self.conn_id}@{bucket}/{key}"

    def put(self, bucket: str, key: str, data: bytes, content_type: str | None = None) -> None:
        """Store an object directly (not through the code under test)."""
        extra = {"ContentType": content_type} if content_type else {}
        self.client.put_object(Bucket=bucket, Key=key, Body=data, **extra)

    def get(self, bucket: str, key: str) -> bytes:
        """Read an object directly."""
        return self.client.get_object(Bucket=bucket, Key=key)["Body"].read()

    def keys(self, bucket: str) -> list[str]:
        """Every key in ``bucket``, sorted."""
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
        return sorted(item["Key"] for page in pages for item in page.get("Contents", []))


def _start_moto(log_path: Path) -> tuple[subprocess.Popen[bytes], str]:
    import re
    import time

    with log_path.open("wb") as log_file:
        # Port 0: the server picks a free port and prints it, so parallel runs never collide.
        process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", "0"],
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        found = re.search(rb"Running on (http://127\.0\.0\.1:\d+)", log_path.read_bytes())
        if found:
            return process, found.group(1).decode()
        if process.poll() is not None:
            break
        time.sleep(0.05)
    process.kill()
    process.wait()
    raise RuntimeError(f"moto server did not start: {log_path.read_text(errors='replace')[-2000:]}")


@pytest.fixture(scope="session")
def s3_server():
    """moto's standalone S3 server on a loopback port, for the whole session, and an Airflow connection
    ``S3_CONN_ID`` (type ``aws``, fake keys, ``endpoint_url`` in its extra) given in the environment.

    Reach it with ``ObjectStoragePath(s3_server.uri(bucket, key))``; take a fresh bucket per test
    with the ``s3_bucket`` fixture or ``s3_server.create_bucket()``.
    """
    import json

    process, endpoint_url = _start_moto(_HOME / "moto-server.log")
    connection = {
        "conn_type": "aws",
        "login": S3_ACCESS_KEY_ID,
        "password": S3_SECRET_ACCESS_KEY,
        "extra": {"endpoint_url": endpoint_url, "region_name": S3_REGION},
    }
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(f"AIRFLOW_CONN_{S3_CONN_ID.upper()}", json.dumps(connection))
        # Never look for real credentials or instance metadata.
        patch.setenv("AWS_EC2_METADATA_DISABLED", "true")
        patch.setenv("AWS_CONFIG_FILE", os.devnull)
        patch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
        try:
            yield S3Server(endpoint_url)
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.fixture
def s3_bucket(s3_server: S3Server) -> str:
    """A new, empty bucket on the session's moto server, for one test."""
    return s3_server.create_bucket()


# -- a long, large source video, made once per session (tests/support/videos.py) --------------------


@pytest.fixture(scope="session")
def big_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 30 s H.264 MP4 of random noise, about 40 MiB: longer than Aleph's 5 s and over its 16 MB limit.

    Made with PyAV in a few seconds (noise cannot be compressed, so the bitrate sets the size); the
    media extra is in both locks, so a missing PyAV fails here rather than skipping.
    """
    from tests.support.videos import BIG_SECONDS, make_video

    path = tmp_path_factory.mktemp("big-video") / "long-source.mp4"
    return make_video(path, seconds=BIG_SECONDS, size=(640, 360), fps=24, noise=True, bit_rate=11_000_000)
