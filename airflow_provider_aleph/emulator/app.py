"""Starlette application that speaks Segmind's v2 async protocol; see ``jobs`` for the timeline.

Routes:

- ``POST /v2/{model}`` submit (``x-api-key``); ``GET /v2/requests/{id}/status`` and
  ``GET /v2/requests/{id}`` poll and fetch (``x-api-key``); a FAILED job answers 422 on both.
- ``GET``/``HEAD /outputs/{id}.mp4`` the bundled clip for every completed job (public).
- ``GET``/``HEAD /samples/sample.mp4`` and ``/samples/oversized.mp4`` (17 MiB, over the 16 MB
  input limit) as input videos (public).
- ``GET /_emulator/stats``, ``POST /_emulator/reset``, ``POST /_emulator/config`` for tests;
  no key, but loopback clients only.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
from functools import cache
from importlib.resources import files
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from airflow_provider_aleph.emulator.jobs import COMPLETED, FAILED

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from starlette.requests import Request

    from airflow_provider_aleph.emulator.jobs import Job, JobStore

ALEPH_MODEL = "runway-gen4-aleph"
ASPECT_RATIOS = ("16:9", "9:16", "4:3", "3:4", "1:1", "21:9")
SAMPLE_NAME = "sample.mp4"
OVERSIZED_NAME = "oversized.mp4"
OVERSIZED_SIZE = 17 * 1024 * 1024
MP4 = "video/mp4"
_CHUNK_SIZE = 1024 * 1024
# One shared block of zeros: the oversized sample is streamed, never assembled in memory.
_ZEROS = bytes(_CHUNK_SIZE)


@cache
def sample_bytes() -> bytes:
    """Return the bundled sample clip (about 6 KB, read once)."""
    return (files("airflow_provider_aleph.emulator") / "data" / SAMPLE_NAME).read_bytes()


def _error(status_code: int, detail: str) -> JSONResponse:
    """Build Segmind's error body."""
    return JSONResponse({"error": detail}, status_code=status_code)


def _is_uri(value: str) -> bool:
    """Return whether ``value`` is an absolute http(s) URL or a data URI."""
    if value.startswith("data:"):
        return True
    parts = urlsplit(value)
    return parts.scheme in ("http", "https") and bool(parts.netloc)


def validate_aleph(payload: dict[str, Any]) -> str | None:
    """Return why a Runway Gen4 Aleph payload would be rejected, or None if it is valid.

    :param payload: the submitted JSON object.
    """
    prompt = payload.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        return "Invalid parameter 'prompt': a non-empty string is required"
    video = payload.get("video")
    if not isinstance(video, str) or not _is_uri(video):
        return "Invalid parameter 'video': an http(s) URL or data URI string is required"
    # Optional fields sent as null count as absent, as the real schema treats them.
    aspect_ratio = payload.get("aspect_ratio")
    if aspect_ratio is not None and aspect_ratio not in ASPECT_RATIOS:
        return f"Invalid parameter 'aspect_ratio': must be one of {', '.join(ASPECT_RATIOS)}"
    seed = payload.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        return "Invalid parameter 'seed': must be an integer"
    reference_image = payload.get("reference_image")
    if reference_image is not None and not isinstance(reference_image, str):
        return "Invalid parameter 'reference_image': must be a URI string"
    return None


def _base(request: Request) -> str:
    """Return the scheme and host the client used, so URLs work on any port."""
    return str(request.base_url).rstrip("/")


def _is_loopback(request: Request) -> bool:
    """Return whether the client connected from a loopback address."""
    if request.client is None:
        return False
    try:
        return ipaddress.ip_address(request.client.host).is_loopback
    except ValueError:
        return False


class EmulatorApp:
    """Route handlers bound to one job store and API key.

    :param store: the jobs and settings to serve.
    :param api_key: the only key the v2 routes accept.
    """

    def __init__(self, store: JobStore, api_key: str) -> None:
        self.store = store
        self._api_key = api_key.encode()

    def build(self) -> Starlette:
        """Return the Starlette application."""
        routes = [
            Route("/v2/requests/{request_id}/status", self.status, methods=["GET"]),
            Route("/v2/requests/{request_id}", self.result, methods=["GET"]),
            Route("/v2/{model}", self.submit, methods=["POST"]),
            Route("/outputs/{filename}", self.output, methods=["GET", "HEAD"]),
            Route("/samples/{name}", self.sample, methods=["GET", "HEAD"]),
            Route("/_emulator/stats", self.admin_stats, methods=["GET"]),
            Route("/_emulator/reset", self.admin_reset, methods=["POST"]),
            Route("/_emulator/config", self.admin_config, methods=["GET", "POST"]),
        ]
        return Starlette(routes=routes, exception_handlers={HTTPException: self._http_error})

    async def _http_error(self, request: Request, exc: Exception) -> Response:
        """Answer routing errors (404, 405) with Segmind's JSON error body."""
        if not isinstance(exc, HTTPException):
            raise exc
        response = _error(exc.status_code, exc.detail)
        if exc.headers:
            response.headers.update(exc.headers)
        return response

    def _unauthorized(self, request: Request) -> JSONResponse | None:
        """Return a 401 answer unless the request carries the configured key."""
        key = request.headers.get("x-api-key", "").encode()
        if key and hmac.compare_digest(key, self._api_key):
            return None
        return _error(401, "Unauthorized: missing or invalid x-api-key")

    async def submit(self, request: Request) -> Response:
        """Accept a job: ``POST /v2/{model}``."""
        if (denied := self._unauthorized(request)) is not None:
            return denied
        model: str = request.path_params["model"]
        if model in self.store.config.retired_models:
            return _error(410, f"Model '{model}' has been retired and is no longer available")
        try:
            payload = json.loads(await request.body())
        except ValueError:
            return _error(400, "Invalid request body: expected a JSON object")
        if not isinstance(payload, dict):
            return _error(400, "Invalid request body: expected a JSON object")
        if model == ALEPH_MODEL and (problem := validate_aleph(payload)) is not None:
            return _error(400, problem)
        job = self.store.submit(model, payload)
        status_url = f"{_base(request)}/v2/requests/{job.request_id}/status"
        return JSONResponse(
            {
                "request_id": job.request_id,
                "status": job.status_at(job.submitted_at),
                "status_url": status_url,
                "response_url": f"{_base(request)}/v2/requests/{job.request_id}",
                "poll_url": status_url,
            }
        )

    def _status_body(self, job: Job, now: float) -> tuple[dict[str, Any], int]:
        """Return the status body of ``job`` and its HTTP code (422 once FAILED)."""
        status = job.status_at(now)
        body: dict[str, Any] = {"request_id": job.request_id, "status": status}
        if status == FAILED:
            body["error"] = job.error
        body["metrics"] = job.metrics_at(now)
        return body, 422 if status == FAILED else 200

    def _find(self, request: Request) -> tuple[Job | None, float, Response | None]:
        """Resolve the request id in the path, or the 401/404 answer to send instead."""
        if (denied := self._unauthorized(request)) is not None:
            return None, 0.0, denied
        now = self.store.now()
        job = self.store.lookup(request.path_params["request_id"], now)
        if job is None:
            return None, now, _error(404, "Request not found or expired")
        return job, now, None

    async def status(self, request: Request) -> Response:
        """Report a job's state: ``GET /v2/requests/{id}/status``."""
        job, now, refusal = self._find(request)
        if job is None:
            assert refusal is not None
            return refusal
        body, code = self._status_body(job, now)
        return JSONResponse(body, status_code=code)

    async def result(self, request: Request) -> Response:
        """Return a job's result body: ``GET /v2/requests/{id}``."""
        job, now, refusal = self._find(request)
        if job is None:
            assert refusal is not None
            return refusal
        body, code = self._status_body(job, now)
        if body["status"] == FAILED:
            return JSONResponse(body, status_code=code)
        output = f"{_base(request)}/outputs/{job.request_id}.mp4" if body["status"] == COMPLETED else None
        return JSONResponse(
            {
                "request_id": job.request_id,
                "status": body["status"],
                "output": output,
                "metrics": body["metrics"],
            }
        )

    async def output(self, request: Request) -> Response:
        """Serve a completed job's video: ``GET``/``HEAD /outputs/{id}.mp4``."""
        filename: str = request.path_params["filename"]
        request_id = filename.removesuffix(".mp4")
        job = self.store.get(request_id) if filename.endswith(".mp4") else None
        # Outputs outlive their request record, but exist only once the job has completed.
        if job is None or job.status_at(self.store.now()) != COMPLETED:
            return _error(404, "Output not found")
        return Response(sample_bytes(), media_type=MP4)

    async def sample(self, request: Request) -> Response:
        """Serve an input video for demos and tests: ``GET``/``HEAD /samples/{name}``."""
        name: str = request.path_params["name"]
        if name == SAMPLE_NAME:
            return Response(sample_bytes(), media_type=MP4)
        if name != OVERSIZED_NAME:
            return _error(404, f"Sample '{name}' not found")
        headers = {"content-length": str(OVERSIZED_SIZE)}
        if request.method == "HEAD":
            return Response(b"", media_type=MP4, headers=headers)
        return StreamingResponse(_oversized_chunks(), media_type=MP4, headers=headers)

    async def admin_stats(self, request: Request) -> Response:
        """Return submission counters: ``GET /_emulator/stats``."""
        if not _is_loopback(request):
            return _error(403, "Admin routes are loopback only")
        return JSONResponse(self.store.stats())

    async def admin_reset(self, request: Request) -> Response:
        """Forget all jobs and counters: ``POST /_emulator/reset``."""
        if not _is_loopback(request):
            return _error(403, "Admin routes are loopback only")
        self.store.reset()
        return JSONResponse({"reset": True})

    async def admin_config(self, request: Request) -> Response:
        """Read (GET) or change (POST) latency, fail_rate, retention: ``/_emulator/config``."""
        if not _is_loopback(request):
            return _error(403, "Admin routes are loopback only")
        if request.method == "POST":
            try:
                changes = json.loads(await request.body())
            except ValueError:
                return _error(400, "Invalid request body: expected a JSON object")
            if not isinstance(changes, dict):
                return _error(400, "Invalid request body: expected a JSON object")
            try:
                self.store.config.update(changes)
            except ValueError as exc:
                return _error(400, str(exc))
        return JSONResponse(self.store.config.as_dict())


async def _oversized_chunks() -> AsyncIterator[bytes]:
    """Yield the sample clip followed by zero padding up to :data:`OVERSIZED_SIZE` bytes."""
    head = sample_bytes()
    yield head
    remaining = OVERSIZED_SIZE - len(head)
    while remaining > 0:
        size = min(remaining, _CHUNK_SIZE)
        yield _ZEROS if size == _CHUNK_SIZE else _ZEROS[:size]
        remaining -= size


def create_app(store: JobStore, api_key: str) -> Starlette:
    """Return the emulator's ASGI application.

    :param store: the jobs and settings to serve.
    :param api_key: the only key the v2 routes accept.
    """
    return EmulatorApp(store, api_key).build()
