"""The refusing TCP proxy of ``tests.support.proxy``, over real loopback sockets only."""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING

import httpx
import pytest

from airflow_provider_aleph.emulator import Emulator
from tests.support.proxy import RefusingProxy

if TYPE_CHECKING:
    from collections.abc import Iterator

# Nothing here depends on the Airflow version: run once, on the newest Airflow leg only.
pytestmark = pytest.mark.airflow_independent

TIMEOUT = 5.0


class _Echo(BaseHTTPRequestHandler):
    """GET answers its path; POST answers its body, byte for byte."""

    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self._answer(self.path.encode())

    def do_POST(self) -> None:
        self._answer(self.rfile.read(int(self.headers["Content-Length"])))

    def _answer(self, body: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def target() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join(TIMEOUT)


@pytest.fixture
def proxy(target: str) -> Iterator[RefusingProxy]:
    with RefusingProxy(target) as running:
        yield running


def get(url: str) -> httpx.Response:
    return httpx.get(url, timeout=TIMEOUT)


def request_over(sock: socket.socket, path: str) -> bytes:
    """Send one keep-alive GET on a raw socket and return the answer's bytes."""
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: proxy\r\n\r\n".encode())
    answer = b""
    while not answer.endswith(path.encode()):
        chunk = sock.recv(65536)
        assert chunk, "closed before the answer ended"
        answer += chunk
    return answer


def test_bytes_relay_both_ways(proxy: RefusingProxy, target: str) -> None:
    assert proxy.base_url.startswith("http://127.0.0.1:")
    assert proxy.base_url != target
    assert get(f"{proxy.base_url}/hello?x=1").text == "/hello?x=1"

    payload = os.urandom(3 * 1024 * 1024 + 17)
    echoed = httpx.post(f"{proxy.base_url}/echo", content=payload, timeout=TIMEOUT)
    assert echoed.content == payload, "several megabytes each way, unchanged"
    assert proxy.accepted == 2
    assert not proxy.refusing


def test_an_emulator_answers_through_it() -> None:
    with Emulator(api_key="proxy-key", latency=0.0) as emu, RefusingProxy(emu.base_url) as proxy:
        headers = {"x-api-key": "proxy-key"}
        with httpx.Client(base_url=proxy.base_url, headers=headers, timeout=TIMEOUT) as client:
            submitted = client.post("/v2/flux-schnell", json={"prompt": "a cat"})
            assert submitted.status_code == 200
            request_id = submitted.json()["request_id"]
            assert submitted.json()["status_url"].startswith(proxy.base_url), "the Host header passes through"
            assert client.get(f"/v2/requests/{request_id}/status").json()["status"] == "COMPLETED"
            assert client.get(emu.sample_url().replace(emu.base_url, proxy.base_url)).content == b"".join(
                emu.output_bytes_iter(request_id)
            )
        assert emu.submissions == 1


def test_connects_are_refused_for_the_time_then_accepted_on_the_same_port(proxy: RefusingProxy) -> None:
    port, base_url = proxy.port, proxy.base_url
    started = time.monotonic()
    proxy.refuse_for(0.6)

    assert proxy.refusing
    with pytest.raises(httpx.ConnectError):
        get(f"{base_url}/down")
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT).close()

    proxy.wait_until_listening(TIMEOUT)
    assert time.monotonic() - started >= 0.55, "refused for the whole time asked"
    assert (proxy.port, proxy.base_url, proxy.refusing) == (port, base_url, False)
    assert get(f"{base_url}/up").text == "/up"


def test_open_connections_are_cut_when_refusal_starts(proxy: RefusingProxy) -> None:
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=TIMEOUT) as sock:
        assert request_over(sock, "/first").endswith(b"/first")
        assert proxy.open_connections == 1

        proxy.refuse_for(60)
        assert proxy.open_connections == 0
        try:
            cut = sock.recv(65536) == b""
        except ConnectionResetError:
            cut = True
        assert cut, "the relayed connection is closed, not left hanging"

    proxy.resume()
    assert not proxy.refusing
    assert get(f"{proxy.base_url}/again").text == "/again"


def test_resume_ends_a_refusal_early_and_refuse_for_restarts_it(proxy: RefusingProxy) -> None:
    proxy.resume()
    assert not proxy.refusing, "a no-op while listening"
    port = proxy.port

    proxy.refuse_for(0.3)
    proxy.refuse_for(60)
    time.sleep(0.6)
    assert proxy.refusing, "the second call restarted the wait"
    with pytest.raises(httpx.ConnectError):
        get(proxy.base_url)

    proxy.resume()
    assert proxy.port == port
    assert get(f"{proxy.base_url}/early").text == "/early"
    proxy.refuse_for(60)
    with pytest.raises(TimeoutError):
        proxy.wait_until_listening(0.2)
    with pytest.raises(ValueError, match="at least 0"):
        proxy.refuse_for(-1)


def test_a_target_that_is_down_closes_the_client_connection() -> None:
    with socket.socket() as spare:
        spare.bind(("127.0.0.1", 0))
        free_port = spare.getsockname()[1]
    with RefusingProxy(f"http://127.0.0.1:{free_port}") as proxy, pytest.raises(httpx.RemoteProtocolError):
        get(proxy.base_url)


def test_close_refuses_for_good_and_is_idempotent(target: str) -> None:
    proxy = RefusingProxy(target).start()
    port = proxy.port
    assert "listening" in repr(proxy)
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
        request_over(sock, "/open")
        proxy.close()
        with contextlib.suppress(ConnectionResetError):
            assert sock.recv(65536) == b""
    proxy.close()

    assert repr(proxy) == "<RefusingProxy stopped>"
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT).close()
    with pytest.raises(RuntimeError, match="not running"):
        _ = proxy.base_url
    with pytest.raises(RuntimeError, match="not running"):
        proxy.refuse_for(1)
