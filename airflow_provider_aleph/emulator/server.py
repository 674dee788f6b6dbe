"""In-process Segmind emulator: uvicorn serving the emulator app on a background thread.

The server owns a temporary directory (uploaded assets, fetched inputs) from ``start()`` to
``stop()``, and uses the protocol class of ``connection`` so faults can drop connections.
"""

from __future__ import annotations

import contextlib
import hashlib
import socket
import threading
import time
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import uvicorn

from airflow_provider_aleph.emulator.app import create_app
from airflow_provider_aleph.emulator.assets import FILE_CHUNK_SIZE, SAMPLE_NAME, output_bytes_iter, sample_bytes
from airflow_provider_aleph.emulator.config import DEFAULT_COST_PER_JOB, DEFAULT_CREDITS, EmulatorConfig
from airflow_provider_aleph.emulator.connection import http_protocol_class
from airflow_provider_aleph.emulator.state import EmulatorState

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator, Mapping
    from pathlib import Path
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


def _read_file(path: str) -> Iterator[bytes]:
    """Yield a file's content in chunks."""
    with open(path, "rb") as handle:
        while chunk := handle.read(FILE_CHUNK_SIZE):
            yield chunk


class Emulator:
    """Offline Segmind v2 API on a loopback port; start it with ``with Emulator() as emu:``.

    Every keyword after ``log_level`` is a setting of :class:`EmulatorConfig`, changeable at run
    time with ``emu.config(name=value)`` or ``POST /_emulator/config``.

    :param api_key: the ``x-api-key`` the API routes accept while the ``api_keys`` setting is empty.
    :param latency: seconds from submit to the terminal state (their median when ``latency_sigma`` is
        above 0); the first quarter of each job's duration is QUEUED.
    :param fail_rate: probability, from 0 to 1, that a job ends FAILED.
    :param retention: seconds a terminal request record is kept before it answers 404.
    :param host: address to listen on.
    :param port: port to listen on; 0 picks a free one.
    :param seed: seed of the random sources that decide job failures, durations and injected faults.
    :param retired_models: model slugs whose submissions answer 410 Gone.
    :param clock: monotonic time source in seconds for jobs and the rate limit; inject one in tests.
    :param log_level: uvicorn log level; access logs are always off.
    :param latency_sigma: standard deviation of the log of job durations: above 0, each job's duration is drawn from a
        lognormal whose median is ``latency`` (seeded by ``seed``); 0 for exactly ``latency``.
    :param fetch_inputs: fetch each job's ``video`` / ``reference_image`` as Segmind does.
    :param fetch_timeout: seconds allowed for each input fetch.
    :param upload_answer_key: key of the URL list in the files API answer, ``file_urls`` or ``urls``.
    :param output_size: when set, every job's output is a generated stream of this many bytes.
    :param edit_outputs: tint and caption a fetched video's output by the prompt (needs the media extra).
    :param cut_outputs: the next N output downloads are cut after ``cut_after_bytes`` bytes.
    :param cut_after_bytes: body bytes sent before a cut download is closed.
    :param error_rate: probability, from 0 to 1, that an API request gets an injected fault.
    :param rpm_limit: API calls allowed per key within ``rate_window`` seconds; None for no limit.
    :param rate_window: length in seconds of the sliding rate-limit window.
    :param insufficient_credits_keys: keys that are valid but whose submits answer 406 (no credits).
    :param lose_submit_answers: the next N accepted submits create their job, then lose the answer.
    :param lose_submit_mode: how an answer is lost: ``504``, ``drop`` or ``alternate``.
    :param interim_status: a status the API never documented (e.g. ``STARTING``), answered with HTTP 200
        to each job's first ``interim_polls`` status polls; None for none.
    :param interim_polls: how many status polls of each job get ``interim_status``.
    :param garbled_answers: the next N status or result reads answer 200 with no JSON or no ``status``.
    :param outage_seconds: an outage from ``start()`` for this many seconds: every API call answers a
        503 gateway page; setting it at run time starts a new one from then (0 ends it).
    :param api_keys: keys the API routes accept instead of ``api_key``, to emulate a key rotation
        (``emu.config(api_keys=[old, new])``, then ``[new]``); empty for ``api_key`` alone.
    :param cost_per_job: credits each accepted submit costs (reported as a COMPLETED job's ``cost``).
    :param credits: the account balance that each accepted submit debits; a submit it does not cover
        answers 406. The default lasts over a million default-priced jobs.
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
        *,
        latency_sigma: float = 0.0,
        fetch_inputs: bool = True,
        fetch_timeout: float = 10.0,
        upload_answer_key: str = "file_urls",
        output_size: int | None = None,
        edit_outputs: bool = False,
        cut_outputs: int = 0,
        cut_after_bytes: int = 0,
        error_rate: float = 0.0,
        rpm_limit: int | None = None,
        rate_window: float = 60.0,
        insufficient_credits_keys: Iterable[str] = (),
        lose_submit_answers: int = 0,
        lose_submit_mode: str = "alternate",
        interim_status: str | None = None,
        interim_polls: int = 3,
        garbled_answers: int = 0,
        outage_seconds: float = 0.0,
        api_keys: Iterable[str] = (),
        cost_per_job: float = DEFAULT_COST_PER_JOB,
        credits: float = DEFAULT_CREDITS,
    ) -> None:
        self.api_key = api_key
        self.host = host
        self.port = port
        self.config = EmulatorConfig(
            latency=latency,
            latency_sigma=latency_sigma,
            fail_rate=fail_rate,
            retention=retention,
            retired_models=tuple(retired_models),
            fetch_inputs=fetch_inputs,
            fetch_timeout=fetch_timeout,
            upload_answer_key=upload_answer_key,
            output_size=output_size,
            edit_outputs=edit_outputs,
            cut_outputs=cut_outputs,
            cut_after_bytes=cut_after_bytes,
            error_rate=error_rate,
            rpm_limit=rpm_limit,
            rate_window=rate_window,
            insufficient_credits_keys=tuple(insufficient_credits_keys),
            lose_submit_answers=lose_submit_answers,
            lose_submit_mode=lose_submit_mode,
            interim_status=interim_status,
            interim_polls=interim_polls,
            garbled_answers=garbled_answers,
            outage_seconds=outage_seconds,
            api_keys=tuple(api_keys),
            cost_per_job=cost_per_job,
            credits=credits,
        )
        self._state = EmulatorState(self.config, clock=clock, seed=seed)
        self._app = create_app(self._state, api_key)
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

    @property
    def storage_dir(self) -> Path | None:
        """Return the temporary folder of uploaded assets and fetched inputs; None when stopped."""
        return self._state.files.root

    def sample_url(self, name: str = SAMPLE_NAME) -> str:
        """Return the public URL of a bundled input video.

        :param name: ``sample.mp4`` or ``oversized.mp4`` (17 MiB, over Segmind's input limit).
        """
        return f"{self.base_url}/samples/{name}"

    @property
    def submissions(self) -> int:
        """Return the number of accepted (HTTP 200, billable) submissions."""
        return self._state.jobs.submissions

    @property
    def jobs(self) -> Mapping[str, Job]:
        """Return a read-only snapshot of the job records keyed by request id."""
        return MappingProxyType(self._state.jobs.snapshot())

    def stats(self) -> dict[str, Any]:
        """Return the counters served by ``GET /_emulator/stats``.

        Keys: ``submissions`` (paid jobs), ``by_model``, ``request_ids``, ``requests`` (per route),
        ``faults`` (injected, by kind), ``rate_limited``, ``insufficient_credits``, ``lost_answers``,
        ``cut_outputs``, ``interim_answers``, ``garbled_answers``, ``outage_answers`` (503s of an
        outage), ``outage_remaining`` (seconds, 0 when none), ``uploads`` (``count`` and the issued
        ``urls``), ``fetches`` and ``fetch_failures`` (``count`` and the jobs' ``errors``).
        """
        return self._state.stats()

    def reset(self) -> None:
        """Forget every job, counter, uploaded asset and fetched input; restart the seeded draws."""
        self._state.reset()

    def output_bytes_iter(self, request_id: str) -> Iterator[bytes]:
        """Yield the bytes ``/outputs/{request_id}.mp4`` serves once the job has completed.

        For a generated output (``output_size`` set at submit) the bytes are recomputed, not read
        back from the server, so a test can check a copy without a second download.

        :param request_id: id of a job of this emulator.
        """
        job = self._state.jobs.get(request_id)
        if job is None:
            raise KeyError(f"no job {request_id!r} in this emulator")
        if job.output_size is not None:
            return output_bytes_iter(request_id, job.output_size)
        if job.inputs_pending:
            raise RuntimeError(f"the inputs of job {request_id!r} are still being fetched")
        if job.video_path is not None:
            return _read_file(job.video_path)
        return iter([sample_bytes()])

    def expected_output_sha256(self, request_id: str) -> str:
        """Return the hex SHA-256 of what ``/outputs/{request_id}.mp4`` serves.

        :param request_id: id of a job of this emulator.
        """
        digest = hashlib.sha256()
        for chunk in self.output_bytes_iter(request_id):
            digest.update(chunk)
        return digest.hexdigest()

    def start(self) -> Emulator:
        """Start serving on a daemon thread and return once requests are answered."""
        if self.running:
            raise RuntimeError("the emulator is already running")
        sock = _bind(self.host, self.port)
        self.port = sock.getsockname()[1]
        self._state.files.open()
        if self.config.outage_seconds > 0:
            # The outage a keyword or flag asks for counts from serving, not from construction.
            self._state.start_outage(self.config.outage_seconds)
        config = uvicorn.Config(
            self._app,
            http=http_protocol_class(),
            log_level=self._log_level,
            access_log=False,
            lifespan="on",
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
        self._state.files.close()
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
