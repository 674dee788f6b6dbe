"""A run's params cannot make a worker read, send or write where its DAG author did not allow (real dag.test()
runs against the emulator): local files outside ``local_roots``, private hosts, undocumented answers."""

from __future__ import annotations

import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

import pytest

from tests.dags.helpers import aleph_params, failure_message, says, state, task_instances, xcom

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from airflow_provider_aleph.emulator import Emulator

pytestmark = pytest.mark.dag


def _nothing_spent(emu: Emulator) -> None:
    stats = emu.stats()
    assert emu.submissions == 0, "refused before any submit"
    assert stats["uploads"]["count"] == 0, "refused before any upload"


def _refused_once(dag_run: Any) -> None:
    assert state(dag_run) == "failed"
    (ti,) = task_instances(dag_run)
    assert int(ti.try_number) == 1, "a refused input is not retried"
    assert xcom(dag_run, "request_id") is None


def test_a_file_outside_the_roots_is_refused_before_any_upload(segmind_conn: Emulator, capfd) -> None:
    import aleph_test_dags

    dag_run = aleph_test_dags.parameters.test(run_conf=aleph_params("file:///etc/hostname"))

    _refused_once(dag_run)
    _nothing_spent(segmind_conn)
    failure = failure_message(capfd)
    assert says(failure, "Invalid parameter 'video'")
    assert says(failure, "local_roots")
    assert says(failure, "/etc/hostname")


def test_a_symlink_inside_the_roots_to_a_file_outside_is_refused(segmind_conn: Emulator, tmp_path: Path, capfd) -> None:
    import aleph_test_dags

    link = tmp_path / "innocent.mp4"
    link.symlink_to("/etc/hostname")
    dag_run = aleph_test_dags.parameters.test(run_conf=aleph_params(link.as_uri()))

    _refused_once(dag_run)
    _nothing_spent(segmind_conn)
    assert says(failure_message(capfd), "local_roots")


def test_without_roots_no_local_file_is_read(segmind_conn: Emulator, tmp_path: Path, capfd) -> None:
    import aleph_test_dags

    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(64))
    dag_run = aleph_test_dags.no_roots.test(run_conf={"video": clip.as_uri()})

    _refused_once(dag_run)
    _nothing_spent(segmind_conn)
    failure = failure_message(capfd)
    assert says(failure, "Invalid parameter 'video'")
    assert says(failure, "local_roots"), "the message says how to allow a folder"


def test_a_local_file_under_the_roots_is_uploaded(segmind_conn: Emulator, tmp_path: Path) -> None:
    import aleph_test_dags

    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(64))
    dag_run = aleph_test_dags.parameters.test(run_conf=aleph_params(clip.as_uri()))

    assert state(dag_run) == "success"
    assert segmind_conn.submissions == 1
    assert segmind_conn.stats()["uploads"]["count"] == 1


class _Counting(BaseHTTPRequestHandler):
    hits = 0

    def do_HEAD(self) -> None:
        type(self).hits += 1
        self.send_response(200)
        self.send_header("Content-Length", "1000")
        self.end_headers()

    do_GET = do_HEAD

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def internal_service() -> Iterator[tuple[str, type[_Counting]]]:
    """A service on another loopback address, as a worker's neighbour on a private network would be."""

    class Handler(_Counting):
        hits = 0

    server = ThreadingHTTPServer(("127.0.0.2", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.2:{server.server_address[1]}/internal/clip.mp4", Handler
    finally:
        server.shutdown()
        server.server_close()


def test_an_internal_address_is_refused_before_any_request_to_it(
    segmind_conn: Emulator, internal_service: tuple[str, type[_Counting]], capfd
) -> None:
    import aleph_test_dags

    url, handler = internal_service
    dag_run = aleph_test_dags.parameters.test(run_conf=aleph_params(url))

    _refused_once(dag_run)
    _nothing_spent(segmind_conn)
    assert handler.hits == 0, "the worker sent nothing to the internal address"
    failure = failure_message(capfd)
    assert says(failure, "Invalid parameter 'video'")
    assert says(failure, "allowed_hosts")


def test_an_output_path_outside_the_roots_is_refused_before_the_submit(segmind_conn: Emulator, capfd) -> None:
    import reattach_test_dags

    target = "/etc/aleph-should-never-be-written.mp4"
    dag_run = reattach_test_dags.copy_retry.test(run_conf={"video": segmind_conn.sample_url(), "output_path": target})

    assert state(dag_run) == "failed"
    assert segmind_conn.submissions == 0
    assert not os.path.exists(target)
    failure = failure_message(capfd)
    assert says(failure, "Invalid parameter 'output_path'")
    assert says(failure, "local_roots")


# -- an answer the API never documented does not kill a paid job -------------------------------------


@pytest.mark.parametrize("dag_name", ["deferrable", "in_worker"])
def test_an_undocumented_interim_status_ends_in_success_with_one_submission(
    dag_name: str, segmind_conn: Emulator, capfd
) -> None:
    import aleph_test_dags

    segmind_conn.config(interim_status="STARTING", interim_polls=3)
    dag_run = getattr(aleph_test_dags, dag_name).test(run_conf={"video": segmind_conn.sample_url()})

    assert state(dag_run) == "success"
    assert segmind_conn.submissions == 1
    assert segmind_conn.stats()["interim_answers"] == 3
    assert xcom(dag_run, "return_value")["status"] == "COMPLETED"
    out, err = capfd.readouterr()
    warned = [line for line in (out + err).splitlines() if "undocumented status 'STARTING'" in line]
    assert len(warned) == 1, "one warning per request, naming the value"


def test_garbled_answers_are_retried_like_a_5xx(segmind_conn: Emulator) -> None:
    import aleph_test_dags

    segmind_conn.config(garbled_answers=2)
    dag_run = aleph_test_dags.deferrable.test(run_conf={"video": segmind_conn.sample_url()})

    assert state(dag_run) == "success"
    assert segmind_conn.submissions == 1
    assert segmind_conn.stats()["garbled_answers"] == 2
