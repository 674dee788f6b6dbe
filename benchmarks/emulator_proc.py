"""The Segmind emulator in its own process, counting the requests it serves, for the benchmarks.

Server side (``python -m benchmarks.emulator_proc --latency 30 --ready-file F``): the package's
:class:`~airflow_provider_aleph.emulator.Emulator`, unchanged, behind an ASGI middleware that counts
each request by kind (submit, status, result, output, sample) and by request id, notes when each
request arrived and the HTTP status it was answered with, and serves three read-only routes of its own:

- ``GET /_bench/counts``: ``{"by_kind": {...}, "by_request": {id: {kind: n}}}``;
- ``GET /_bench/finished``: ``{id: t}``, when each job reaches its terminal state, on the
  machine's monotonic clock (``CLOCK_MONOTONIC``, the same in every process of the machine);
- ``GET /_bench/timeline``: ``{"t": [...], "kind": [...], "code": [...]}``, one entry per request
  in arrival order: when it arrived (same clock), its kind, and the HTTP status of its answer
  (0 when no answer was sent).

With ``--time-scale K`` (a benchmark that runs K times faster than real time), the ``Retry-After``
of each 429 is rewritten from whole seconds to whole *unscaled* seconds divided by K (at least
``1 / K``): the emulator rounds the wait up to a whole second, which in a run K times faster would
stretch every announced wait up to K-fold. The exact reset time (``x-rate-limit-reset-at-utc``) is
left as it is.

Client side: :class:`EmulatorProcess` starts it, reads those routes, and reads the process's
CPU time from ``/proc`` so a run can show the emulator was not the bottleneck.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from airflow_provider_aleph.emulator.spawn import spawn
from benchmarks.procstat import cpu_seconds

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, MutableMapping, Sequence
    from types import FrameType, TracebackType

    Scope = MutableMapping[str, Any]
    Message = MutableMapping[str, Any]
    Receive = Callable[[], Awaitable[Message]]
    Send = Callable[[Message], Awaitable[None]]
    ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

API_KEY_ENV = "SEGMIND_EMULATOR_API_KEY"
_ROUTES = (
    (re.compile(r"^/v2/requests/(?P<id>[^/]+)/status$"), "status"),
    (re.compile(r"^/v2/requests/(?P<id>[^/]+)$"), "result"),
    (re.compile(r"^/v2/[^/]+$"), "submit"),
    (re.compile(r"^/outputs/(?P<id>[^/.]+)"), "output"),
    (re.compile(r"^/samples/"), "sample"),
)


def classify(method: str, path: str) -> tuple[str, str | None]:
    """The kind of an API request and the request id it names, if any.

    :param method: the HTTP method.
    :param path: the URL path.
    """
    for pattern, kind in _ROUTES:
        match = pattern.match(path)
        if match is None:
            continue
        if kind == "submit" and method != "POST":
            break
        return kind, match.groupdict().get("id")
    return "other", None


class CountingApp:
    """ASGI middleware: count requests by kind and request id, note when each arrived and how it was
    answered; answer ``/_bench/*`` itself.

    :param app: the emulator's ASGI application.
    :param finished: returns ``{request_id: terminal time}`` for the ``/_bench/finished`` route.
    :param time_scale: how many times faster than real time the benchmark runs; above 1, the
        ``Retry-After`` of a 429 is given in whole unscaled seconds divided by it.
    """

    def __init__(self, app: ASGIApp, finished: Callable[[], dict[str, float]], time_scale: float = 1.0) -> None:
        self.app = app
        self.finished = finished
        self.time_scale = time_scale
        self.by_kind: Counter[str] = Counter()
        self.by_request: defaultdict[str, Counter[str]] = defaultdict(Counter)
        self.arrived: list[float] = []
        self.kinds: list[str] = []
        self.codes: list[int] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Count, or serve a ``/_bench`` route, or pass the request on."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        if path == "/_bench/counts":
            counts = {"by_kind": dict(self.by_kind), "by_request": {k: dict(v) for k, v in self.by_request.items()}}
            await _send_json(send, counts)
            return
        if path == "/_bench/finished":
            await _send_json(send, self.finished())
            return
        if path == "/_bench/timeline":
            await _send_json(send, {"t": self.arrived, "kind": self.kinds, "code": self.codes})
            return
        if path.startswith("/_emulator/"):
            await self.app(scope, receive, send)
            return
        kind, request_id = classify(scope["method"], path)
        self.by_kind[kind] += 1
        if request_id is not None:
            self.by_request[request_id][kind] += 1
        index = len(self.arrived)
        self.arrived.append(time.monotonic())
        self.kinds.append(kind)
        self.codes.append(0)

        async def noting(message: Message) -> None:
            if message["type"] == "http.response.start":
                self.codes[index] = int(message["status"])
                if message["status"] == 429 and self.time_scale != 1.0:
                    message["headers"] = scaled_retry_after(message.get("headers", []), self.time_scale)
            await send(message)

        await self.app(scope, receive, noting)


def scaled_retry_after(headers: list[tuple[bytes, bytes]], time_scale: float) -> list[tuple[bytes, bytes]]:
    """The headers of a 429 with ``Retry-After`` in whole unscaled seconds divided by ``time_scale``.

    The wait is read from ``x-rate-limit-reset-at-utc`` (millisecond precision); without it the
    headers are returned as they are.

    :param headers: the answer's headers, as ASGI sends them.
    :param time_scale: how many times faster than real time the run goes.
    """
    reset = next((value for name, value in headers if name.lower() == b"x-rate-limit-reset-at-utc"), None)
    if reset is None:
        return headers
    when = datetime.fromisoformat(reset.decode().replace("Z", "+00:00"))
    wait = max(0.0, when.timestamp() - time.time())
    # What a real-time server would announce (the wait rounded up to whole seconds, at least 1), scaled.
    scaled = max(1, math.ceil(wait * time_scale - 1e-6)) / time_scale
    kept = [(name, value) for name, value in headers if name.lower() != b"retry-after"]
    return [*kept, (b"retry-after", f"{scaled:.3f}".encode())]


async def _send_json(send: Send, body: Any) -> None:
    data = json.dumps(body).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": data})


def serve(argv: Sequence[str] | None = None) -> int:
    """Run the counting emulator until SIGTERM or SIGINT.

    :param argv: ``--latency S --ready-file F [--time-scale K] [--set NAME=JSON ...]``; the key comes
        from ``$SEGMIND_EMULATOR_API_KEY``.
    """
    from airflow_provider_aleph.emulator import Emulator

    parser = argparse.ArgumentParser(prog="python -m benchmarks.emulator_proc")
    parser.add_argument("--latency", type=float, required=True)
    parser.add_argument("--ready-file", type=Path, required=True)
    parser.add_argument("--time-scale", type=float, default=1.0, help="how many times faster than real time")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=JSON", help="another Emulator argument")
    args = parser.parse_args(argv)
    options: dict[str, Any] = {}
    for item in args.set:
        name, _, value = item.partition("=")
        options[name] = json.loads(value)
    emulator = Emulator(api_key=os.environ[API_KEY_ENV], latency=args.latency, port=0, **options)

    def finished() -> dict[str, float]:
        return {request_id: job.finished_at for request_id, job in emulator.jobs.items()}

    # The emulator builds its app in __init__ and serves it on start(): count in front of it.
    emulator._app = CountingApp(emulator._app, finished, args.time_scale)  # type: ignore[assignment]
    stop = threading.Event()

    def _stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    with emulator:
        partial = args.ready_file.with_name(args.ready_file.name + ".partial")
        partial.write_text(emulator.base_url)
        os.replace(partial, args.ready_file)
        while not stop.wait(0.5):
            pass
    return 0


class EmulatorProcess:
    """Start the counting emulator as a child process; use as a context manager.

    :param latency: seconds from submit to the terminal state.
    :param api_key: the key it accepts (passed through the environment, never the command line).
    :param options: other :class:`~airflow_provider_aleph.emulator.Emulator` arguments.
    :param python: the interpreter to run it with.
    :param log_path: where its output goes; a temporary file when None.
    :param time_scale: how many times faster than real time the benchmark runs (see the module's
        docstring: it changes only the ``Retry-After`` of 429 answers).
    """

    def __init__(
        self,
        latency: float,
        api_key: str,
        options: dict[str, Any] | None = None,
        python: str = sys.executable,
        log_path: Path | None = None,
        time_scale: float = 1.0,
    ) -> None:
        self.latency = latency
        self.time_scale = time_scale
        self._api_key = api_key
        self.options = options or {}
        self.python = python
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None
        self.base_url = ""
        self._client: httpx.Client | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(latency={self.latency}, base_url={self.base_url!r})"

    def start(self, timeout: float = 60.0) -> EmulatorProcess:
        """Spawn the process and wait until it serves; return self."""
        args = ["--latency", str(self.latency), "--time-scale", str(self.time_scale)]
        for name, value in self.options.items():
            args += ["--set", f"{name}={json.dumps(value)}"]
        env = {**os.environ, API_KEY_ENV: self._api_key}
        repo = str(Path(__file__).resolve().parent.parent)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [repo, env.get("PYTHONPATH")]))
        self.process, self.base_url = spawn(
            args,
            log_path=self.log_path,
            module="benchmarks.emulator_proc",
            python=self.python,
            env=env,
            cwd=repo,
            timeout=timeout,
        )
        self._client = httpx.Client(base_url=self.base_url, timeout=60)
        return self

    @property
    def pid(self) -> int:
        """The emulator's process id."""
        if self.process is None:
            raise RuntimeError("the emulator is not running")
        return self.process.pid

    def cpu_seconds(self) -> float:
        """CPU seconds the emulator process has used since it started."""
        return cpu_seconds(self.pid)

    def _get(self, path: str) -> Any:
        if self._client is None:
            raise RuntimeError("the emulator is not running")
        response = self._client.get(path)
        response.raise_for_status()
        return response.json()

    def counts(self) -> dict[str, Any]:
        """Requests served so far: ``{"by_kind": {...}, "by_request": {id: {kind: n}}}``."""
        result: dict[str, Any] = self._get("/_bench/counts")
        return result

    def finished_times(self) -> dict[str, float]:
        """When each job reaches its terminal state, on the machine's monotonic clock."""
        result: dict[str, float] = self._get("/_bench/finished")
        return result

    def timeline(self) -> dict[str, list[Any]]:
        """Every request so far: ``{"t": [...], "kind": [...], "code": [...]}``, in arrival order."""
        result: dict[str, list[Any]] = self._get("/_bench/timeline")
        return result

    def configure(self, **changes: Any) -> dict[str, Any]:
        """Change emulator settings now (``POST /_emulator/config``); return all settings.

        :param changes: new values keyed by setting name, e.g. ``rpm_limit=50``.
        """
        if self._client is None:
            raise RuntimeError("the emulator is not running")
        response = self._client.post("/_emulator/config", json=changes)
        response.raise_for_status()
        settings: dict[str, Any] = response.json()
        return settings

    def stop(self) -> None:
        """Stop the process (SIGTERM, then SIGKILL after 15 s)."""
        if self._client is not None:
            self._client.close()
            self._client = None
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(15)

    def __enter__(self) -> EmulatorProcess:
        """Start the emulator."""
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        """Stop the emulator."""
        self.stop()


if __name__ == "__main__":
    sys.exit(serve())
