"""The emulator fetches each job's inputs over real sockets, as Segmind does, and edits them into outputs."""

from __future__ import annotations

import base64
import contextlib
import os
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from airflow_provider_aleph.emulator import Emulator

if TYPE_CHECKING:
    from collections.abc import Iterator

    from tests.fakes import FakeClock


# Nothing here depends on the Airflow version: run once, on the newest Airflow leg only.
pytestmark = pytest.mark.airflow_independent
KEY = "inputs-key"
ALEPH = "runway-gen4-aleph"
LATENCY = 2.0
FETCH_TIMEOUT = 2.5  # generous: inputs are fetched in real time, on a machine that may be busy
CLIP = os.urandom(300_000)
OVER_LIMIT = 16 * 1024 * 1024 + 1


class InputServer(ThreadingHTTPServer):
    """A local web server of input files and failure cases; records the paths it was asked for."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), InputHandler)
        self.hits: list[str] = []
        self.release = threading.Event()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}{path}"


class InputHandler(BaseHTTPRequestHandler):
    server: InputServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _headers(self, code: int, length: int | None, extra: dict[str, str] | None = None) -> None:
        self.send_response(code)
        self.send_header("Content-Type", "video/mp4")
        if length is not None:
            self.send_header("Content-Length", str(length))
        for name, value in (extra or {}).items():
            self.send_header(name, value)
        self.end_headers()

    def do_GET(self) -> None:
        self.server.hits.append(self.path)
        if self.path == "/clip.mp4":
            self._headers(200, len(CLIP))
            self.wfile.write(CLIP)
        elif self.path.startswith("/status/"):
            self._headers(int(self.path.rsplit("/", 1)[1]), 2)
            self.wfile.write(b"no")
        elif self.path == "/redirect":
            self._headers(302, 0, {"Location": "/clip.mp4"})
        elif self.path == "/undeclared-big":
            # No Content-Length: the size is only known by counting, and the stream goes on past the limit.
            self.close_connection = True
            self._headers(200, None, {"Connection": "close"})
            block = bytes(1024 * 1024)
            try:
                for _ in range(OVER_LIMIT // len(block) + 2):
                    self.wfile.write(block)
            except OSError:
                pass
        elif self.path == "/hang":
            self.server.release.wait(10)
        else:
            self._headers(404, 0)


@pytest.fixture
def inputs() -> Iterator[InputServer]:
    server = InputServer()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server
    server.release.set()
    server.shutdown()
    server.server_close()


@pytest.fixture
def emu(clock: FakeClock) -> Iterator[Emulator]:
    with Emulator(api_key=KEY, latency=LATENCY, clock=clock, fetch_timeout=FETCH_TIMEOUT) as emulator:
        yield emulator


@pytest.fixture
def client(emu: Emulator) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=emu.base_url, headers={"x-api-key": KEY}, timeout=10) as http:
        yield http


def submit(client: httpx.Client, model: str = ALEPH, **payload: Any) -> dict[str, Any]:
    response = client.post(f"/v2/{model}", json={"prompt": "make it winter", **payload})
    assert response.status_code == 200, response.text
    return dict(response.json())


def test_output_is_the_fetched_input_byte_for_byte(
    client: httpx.Client, emu: Emulator, clock: FakeClock, inputs: InputServer
) -> None:
    body = submit(client, video=inputs.url("/clip.mp4"))
    clock.advance(LATENCY)

    # The status poll at the job's finish time waits for the fetch, so no sleep is needed.
    assert client.get(body["status_url"]).json()["status"] == "COMPLETED"
    output_url = client.get(body["response_url"]).json()["output"]
    download = httpx.get(output_url)
    assert download.status_code == 200
    assert download.headers["content-type"] == "video/mp4"
    assert int(download.headers["content-length"]) == len(CLIP)
    assert download.content == CLIP
    assert httpx.head(output_url).headers["content-length"] == str(len(CLIP))
    assert b"".join(emu.output_bytes_iter(body["request_id"])) == CLIP
    assert inputs.hits == ["/clip.mp4"], "the input is fetched exactly once"
    stats = emu.stats()
    assert (stats["fetches"], stats["fetch_failures"]["count"]) == (1, 0)


def test_fetched_input_lives_in_a_temporary_folder_removed_on_stop(clock: FakeClock, inputs: InputServer) -> None:
    emulator = Emulator(api_key=KEY, latency=0.0, clock=clock)
    with emulator, httpx.Client(base_url=emulator.base_url, headers={"x-api-key": KEY}) as http:
        folder = emulator.storage_dir
        assert folder is not None
        assert folder.is_dir()
        body = submit(http, video=inputs.url("/clip.mp4"))
        assert http.get(body["status_url"]).json()["status"] == "COMPLETED"
        stored = [path for path in folder.rglob("*") if path.is_file()]
        assert [path.read_bytes() == CLIP for path in stored] == [True]
    assert emulator.storage_dir is None
    assert not folder.exists()


FAILING_INPUTS = [
    pytest.param("/status/403", "could not fetch video: HTTP 403", id="forbidden"),
    pytest.param("/status/404", "could not fetch video: HTTP 404", id="missing"),
    pytest.param("/status/500", "could not fetch video: HTTP 500", id="server-error"),
    pytest.param("/redirect", "could not fetch video: HTTP 302 (redirects are not followed)", id="redirect"),
    pytest.param("/undeclared-big", "could not fetch video: the file is over the 16 MiB limit", id="big-by-count"),
    pytest.param("/hang", f"could not fetch video: no complete answer within {FETCH_TIMEOUT} s", id="timeout"),
]


@pytest.mark.parametrize(("path", "reason"), FAILING_INPUTS)
def test_unfetchable_video_fails_a_paid_job(
    client: httpx.Client, emu: Emulator, clock: FakeClock, inputs: InputServer, path: str, reason: str
) -> None:
    body = submit(client, video=inputs.url(path))
    assert emu.submissions == 1, "the submit is accepted (and paid) before the fetch"
    clock.advance(LATENCY)

    for url in (body["status_url"], body["response_url"]):
        answer = client.get(url)
        assert answer.status_code == 422
        assert answer.json()["status"] == "FAILED"
        assert answer.json()["error"].startswith(reason)
    assert httpx.get(f"{emu.base_url}/outputs/{body['request_id']}.mp4").status_code == 404
    assert inputs.hits == [path], "redirects are never followed"
    stats = emu.stats()
    assert stats["fetch_failures"]["count"] == 1
    assert stats["fetch_failures"]["errors"][0].startswith(reason)
    assert emu.jobs[body["request_id"]].failed


def test_video_over_16_mib_by_its_declared_length_fails_the_job(
    client: httpx.Client, emu: Emulator, clock: FakeClock
) -> None:
    body = submit(client, video=emu.sample_url("oversized.mp4"))
    clock.advance(LATENCY)
    failed = client.get(body["status_url"])
    assert failed.status_code == 422
    assert (
        failed.json()["error"]
        == f"could not fetch video: the file is over the 16 MiB limit ({17 * 2**20} bytes or more)"
    )


def test_unreachable_video_fails_the_job(client: httpx.Client, clock: FakeClock) -> None:
    with socket_without_listener() as url:
        body = submit(client, video=url)
        clock.advance(LATENCY)
        failed = client.get(body["status_url"])
    assert failed.status_code == 422
    assert failed.json()["error"] == "could not fetch video: ConnectError"


@contextlib.contextmanager
def socket_without_listener() -> Iterator[str]:
    """Reserve a loopback port nobody listens on, for the duration of a block."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))  # bound but not listening: connections are refused
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/clip.mp4"


def test_unfetchable_reference_image_fails_the_job(client: httpx.Client, clock: FakeClock, inputs: InputServer) -> None:
    body = submit(client, video=inputs.url("/clip.mp4"), reference_image=inputs.url("/status/404"))
    clock.advance(LATENCY)
    failed = client.get(body["response_url"])
    assert failed.status_code == 422
    assert failed.json()["error"] == "could not fetch reference_image: HTTP 404"
    assert inputs.hits == ["/clip.mp4", "/status/404"]


def test_reference_image_is_fetched_but_the_output_is_the_video(
    client: httpx.Client, emu: Emulator, clock: FakeClock, inputs: InputServer
) -> None:
    body = submit(client, video=inputs.url("/clip.mp4"), reference_image=emu.sample_url())
    clock.advance(LATENCY)
    assert client.get(body["status_url"]).json()["status"] == "COMPLETED"
    assert httpx.get(f"{emu.base_url}/outputs/{body['request_id']}.mp4").content == CLIP


def test_data_uri_video_is_decoded_into_the_output(client: httpx.Client, emu: Emulator, clock: FakeClock) -> None:
    good = submit(client, video="data:video/mp4;base64," + base64.b64encode(CLIP[:5000]).decode())
    bad = submit(client, video="data:video/mp4;base64,@@not base64@@")
    clock.advance(LATENCY)
    assert httpx.get(f"{emu.base_url}/outputs/{good['request_id']}.mp4").content == CLIP[:5000]
    failed = client.get(bad["status_url"]).json()
    assert failed["error"].startswith("could not fetch video: not a valid data URI")


def test_without_video_the_output_is_the_bundled_sample(client: httpx.Client, emu: Emulator, clock: FakeClock) -> None:
    body = submit(client, model="flux-schnell", steps=4)
    clock.advance(LATENCY)
    output = httpx.get(client.get(body["response_url"]).json()["output"])
    assert output.content == httpx.get(emu.sample_url()).content
    assert emu.stats()["fetches"] == 0


def test_fetching_can_be_turned_off(client: httpx.Client, emu: Emulator, clock: FakeClock, inputs: InputServer) -> None:
    emu.config(fetch_inputs=False)
    body = submit(client, video=inputs.url("/status/403"))
    clock.advance(LATENCY)
    assert client.get(body["status_url"]).json()["status"] == "COMPLETED"
    assert httpx.get(f"{emu.base_url}/outputs/{body['request_id']}.mp4").content == httpx.get(emu.sample_url()).content
    assert inputs.hits == []


def test_slow_fetch_keeps_the_job_processing_until_it_ends(inputs: InputServer) -> None:
    # Real clock, latency 0: the job's time is up at once, so only the fetch decides when it ends.
    with (
        Emulator(api_key=KEY, latency=0.0, fetch_timeout=30) as emulator,
        httpx.Client(base_url=emulator.base_url, headers={"x-api-key": KEY}) as http,
    ):
        body = submit(http, video=inputs.url("/hang"))
        deadline = time.monotonic() + 10
        while not inputs.hits:
            assert time.monotonic() < deadline, "the emulator never fetched the input"
            time.sleep(0.01)
        assert emulator.jobs[body["request_id"]].status_at(time.monotonic()) == "PROCESSING"
        inputs.release.set()  # the input server now closes the connection without an answer
        failed = http.get(body["status_url"])
    assert failed.status_code == 422
    assert failed.json()["error"] == "could not fetch video: RemoteProtocolError"
