"""Failures before any submit: a transient one on the input's host or object store (network, 5xx, throttling)
leaves Airflow's retries to run, since nothing was spent; a missing object, denied access or a redirect
fails at once. Real DAG runs (dag.test, retries=2) over loopback: a small HTTP server answers the input's
checks, and moto's S3 server is reached through a proxy that refuses connections."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING

import pytest

from tests.conftest import S3_ACCESS_KEY_ID, S3_SECRET_ACCESS_KEY
from tests.dags.helpers import aleph_params, state, task_instances
from tests.support.proxy import RefusingProxy

if TYPE_CHECKING:
    from collections.abc import Iterator

    from tests.conftest import S3Server

pytestmark = pytest.mark.dag


class InputHost(ThreadingHTTPServer):
    """A loopback web server whose every answer has the status code the test sets."""

    code = 200
    location = ""


class _Answer(BaseHTTPRequestHandler):
    server: InputHost

    def _answer(self) -> None:
        self.send_response(self.server.code)
        if self.server.location:
            self.send_header("Location", self.server.location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_HEAD = do_GET = _answer

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def input_host() -> Iterator[InputHost]:
    server = InputHost(("127.0.0.1", 0), _Answer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize(("code", "retried"), [(503, True), (502, True), (429, True), (403, False), (404, False)])
def test_the_input_hosts_transient_answers_are_retried_and_the_others_are_not(
    code: int, retried: bool, input_host: InputHost, segmind_conn
) -> None:
    import aleph_test_dags

    input_host.code = code
    video = f"http://127.0.0.1:{input_host.server_address[1]}/clip.mp4"
    dag_run = aleph_test_dags.parameters.test(run_conf=aleph_params(video))

    assert state(dag_run) == "failed"
    (ti,) = task_instances(dag_run)
    assert ti.try_number == (3 if retried else 1), f"HTTP {code} from the input's host"
    assert segmind_conn.submissions == 0


def test_a_redirect_is_not_retried(input_host: InputHost, segmind_conn) -> None:
    import aleph_test_dags

    input_host.code, input_host.location = 302, "https://elsewhere.example/clip.mp4"
    video = f"http://127.0.0.1:{input_host.server_address[1]}/clip.mp4"
    dag_run = aleph_test_dags.parameters.test(run_conf=aleph_params(video))

    (ti,) = task_instances(dag_run)
    assert ti.try_number == 1
    assert segmind_conn.submissions == 0


def test_an_unreachable_object_store_is_transient_and_left_to_airflow_retries(
    s3_server: S3Server, s3_bucket: str, segmind_conn, monkeypatch: pytest.MonkeyPatch, capfd
) -> None:
    import aleph_test_dags

    s3_server.put(s3_bucket, "clip.mp4", b"\0" * 1024)
    with RefusingProxy(s3_server.endpoint_url) as proxy:
        conn = {
            "conn_type": "aws",
            "login": S3_ACCESS_KEY_ID,
            "password": S3_SECRET_ACCESS_KEY,
            "extra": {
                "endpoint_url": proxy.base_url,
                "region_name": "us-east-1",
                "config_kwargs": {"retries": {"max_attempts": 1}, "connect_timeout": 2},
            },
        }
        monkeypatch.setenv("AIRFLOW_CONN_ALEPH_S3_PROXIED", json.dumps(conn))
        proxy.refuse_for(120)
        dag_run = aleph_test_dags.parameters.test(run_conf=aleph_params(f"s3://aleph_s3_proxied@{s3_bucket}/clip.mp4"))

    assert state(dag_run) == "failed"
    (ti,) = task_instances(dag_run)
    assert ti.try_number == 3, "retries=2: each try refused before the submit"
    assert segmind_conn.submissions == 0
    out, err = capfd.readouterr()
    assert "could not read the metadata" in out + err
