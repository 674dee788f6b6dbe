"""In-process Segmind emulator: uvicorn serving the emulator app on a background thread."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import uvicorn

from airflow_provider_aleph.emulator.app import SAMPLE_NAME, create_app
from airflow_provider_aleph.emulator.jobs import EmulatorConfig, JobStore

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping
    from types import TracebackType

    from airflow_provider_aleph.emulator.jobs import Job

DEFAULT_API_KEY = "emulator-key"
_START_TIMEOUT = 10.0
_STOP_TIMEOUT = 10.0


def _bind(host: str, port: int) -> socket.socket:
    """Bind a listening TCP socket ourselves so the real port is known before uvicorn starts."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


class Emulator:
    """Offline Segmind v2 API on a loopback port; start it with ``with Emulator() as emu:``.

    :param api_key: the only ``x-api-key`` the v2 routes accept.
    :param latency: seconds from submit to the terminal state; the first quarter is QUEUED.
    :param fail_rate: probability, from 0 to 1, that a job ends FAILED.
    :param retention: seconds a terminal request record is kept before it answers 404.
    :param host: address to listen on.
    :param port: port to listen on; 0 picks a free one.
    :param seed: seed of the random source that decides failures.
    :param retired_models: model slugs whose submissions answer 410 Gone.
    :param clock: monotonic time source in seconds; inject one to move time in tests.
    :param log_level: uvicorn log level; access logs are always off.
    """

    def __init__(
        self,
        api_key: str = DEFAULT_API_KEY,
        latency: float = 1.0,
        fail_rate: float = 0.0,
        retention: float = 3600.0,
        host: str = "127.0.0.1",
        port: int = 0,
        seed: int = 0,
        retired_models: Iterable[str] = (),
        clock: Callable[[], float] = time.monotonic,
        log_level: str = "warning",
    ) -> None:
        self.api_key = api_key
        self.host = host
        self.port = port
        self.config = EmulatorConfig(
            latency=latency, fail_rate=fail_rate, retention=retention, retired_models=tuple(retired_models)
        )
        self._store = JobStore(self.config, clock=clock, seed=seed)
        self._app = create_app(self._store, api_key)
        self._log_level = log_level
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None

    @property
    def running(self) -> bool:
        """Return whether the server is up."""
        return self._server is not None

    @property
    def base_url(self) -> str:
        """Return ``http://HOST:PORT`` of the running server."""
        if not self.running:
            raise RuntimeError("the emulator is not running; call start() or use it as a context manager")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def sample_url(self, name: str = SAMPLE_NAME) -> str:
        """Return the public URL of a bundled input video.

        :param name: ``sample.mp4`` or ``oversized.mp4`` (17 MiB, over Segmind's input limit).
        """
        return f"{self.base_url}/samples/{name}"

    @property
    def submissions(self) -> int:
        """Return the number of accepted (HTTP 200, billable) submissions."""
        return self._store.submissions

    @property
    def jobs(self) -> Mapping[str, Job]:
        """Return a read-only snapshot of the job records keyed by request id."""
        return MappingProxyType(self._store.snapshot())

    def stats(self) -> dict[str, Any]:
        """Return the counters served by ``GET /_emulator/stats``."""
        return self._store.stats()

    def reset(self) -> None:
        """Forget every job and counter."""
        self._store.reset()

    def start(self) -> Emulator:
        """Start serving on a daemon thread and return once requests are answered."""
        if self.running:
            raise RuntimeError("the emulator is already running")
        sock = _bind(self.host, self.port)
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            self._app,
            log_level=self._log_level,
            access_log=False,
            lifespan="off",
            # Longer than typical client pool idle times, so pooled connections are rarely cut mid-reuse.
            timeout_keep_alive=65,
            timeout_graceful_shutdown=5,
            backlog=4096,
        )
        server = uvicorn.Server(config)
        thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name=f"segmind-emulator-{self.port}", daemon=True
        )
        self._server, self._thread, self._socket = server, thread, sock
        thread.start()
        deadline = time.monotonic() + _START_TIMEOUT
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the emulator failed to start on {self.host}:{self.port}")
            time.sleep(0.005)
        return self

    def stop(self) -> None:
        """Shut the server down and wait for its thread; a no-op when not running."""
        server, thread, sock = self._server, self._thread, self._socket
        if server is None:
            return
        server.should_exit = True
        if thread is not None:
            thread.join(_STOP_TIMEOUT)
            if thread.is_alive():
                # Open streams outlived the graceful timeout: drop them so the thread can end.
                server.force_exit = True
                thread.join(_STOP_TIMEOUT)
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.close()
        self._server = self._thread = self._socket = None

    def __enter__(self) -> Emulator:
        """Start the server."""
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Stop the server."""
        self.stop()

    def __repr__(self) -> str:
        """Describe the emulator without its key."""
        where = self.base_url if self.running else "stopped"
        return f"<Emulator {where} submissions={self.submissions}>"
