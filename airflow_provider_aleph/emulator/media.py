"""Public file routes of the emulator: the files API, uploaded assets, job outputs and samples.

- ``POST /upload-asset`` (``x-api-key``) with ``{"data_urls": ["data:<mime>;base64,..."]}`` stores
  each file and answers ``{"file_urls": [...]}`` (or ``{"urls": [...]}``, see ``upload_answer_key``).
- ``GET``/``HEAD /assets/{id}.{ext}`` serves an uploaded file with its media type (public).
- ``GET``/``HEAD /outputs/{id}.mp4`` serves a completed job's output (public): the generated stream
  when ``output_size`` was set at submit, else the fetched input video, else the bundled sample.
  While ``cut_outputs`` is above 0, a GET sends the full headers, ``cut_after_bytes`` of the body,
  then closes the connection.
- ``GET``/``HEAD /samples/sample.mp4`` and ``/samples/oversized.mp4`` (17 MiB) as input videos.

These routes get no fault injection. Only the upload, which takes a key, is an API call: it
answers a 503 gateway page during an outage (``outage_seconds``), and counts against the account
rate limit (``rpm_limit``), answering 429 and storing nothing over it. The others are never limited.
"""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
from starlette.responses import JSONResponse, Response

from airflow_provider_aleph.emulator.assets import (
    OVERSIZED_NAME,
    OVERSIZED_SIZE,
    SAMPLE_NAME,
    file_chunks,
    generated_chunks,
    oversized_chunks,
    parse_data_url,
    sample_bytes,
    sample_chunks,
)
from airflow_provider_aleph.emulator.connection import SizedStream
from airflow_provider_aleph.emulator.faults import gateway_page
from airflow_provider_aleph.emulator.jobs import COMPLETED

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator, Callable

    from starlette.requests import Request

    from airflow_provider_aleph.emulator.jobs import Job
    from airflow_provider_aleph.emulator.state import EmulatorState

MP4 = "video/mp4"


def error(status_code: int, detail: str) -> JSONResponse:
    """Build Segmind's error body.

    :param status_code: the HTTP status.
    :param detail: the text of ``error``.
    """
    return JSONResponse({"error": detail}, status_code=status_code)


def base_url(request: Request) -> str:
    """Return the scheme and host the client used, so URLs work on any port.

    :param request: the incoming request.
    """
    return str(request.base_url).rstrip("/")


def output_source(job: Job) -> tuple[Callable[[], AsyncGenerator[bytes, None]], int]:
    """Return the chunk factory and size of a completed job's output.

    :param job: a job whose status is COMPLETED.
    """
    if job.output_size is not None:
        return partial(generated_chunks, job.request_id, job.output_size), job.output_size
    if job.video_path is not None:
        path = Path(job.video_path)
        return partial(file_chunks, path), path.stat().st_size
    return sample_chunks, len(sample_bytes())


class MediaRoutes:
    """Handlers of the file routes.

    :param state: the emulator's shared state.
    :param authorized: returns whether a request carries an accepted key.
    :param rate_limited: counts an authorized API call against the rate limit; returns the 429 to
        answer instead when it is over, else None.
    """

    def __init__(
        self,
        state: EmulatorState,
        authorized: Callable[[Request], bool],
        rate_limited: Callable[[Request], Response | None],
    ) -> None:
        self.state = state
        self._authorized = authorized
        self._rate_limited = rate_limited

    async def upload(self, request: Request) -> Response:
        """Store files sent as data URLs: ``POST /upload-asset``."""
        state = self.state
        state.counters.request("upload")
        # Read the whole request first: closing a connection with unread bytes would send a reset.
        raw = await request.body()
        if state.take_outage():
            return gateway_page(503)
        if not self._authorized(request):
            return error(401, "Unauthorized: missing or invalid x-api-key")
        if (limited := self._rate_limited(request)) is not None:
            return limited
        try:
            body: Any = json.loads(raw)
        except ValueError:
            body = None
        items = body.get("data_urls") if isinstance(body, dict) else None
        if not isinstance(items, list) or not items:
            return error(400, 'Invalid request body: expected {"data_urls": ["data:<mime>;base64,...", ...]}')
        decoded = []
        for index, item in enumerate(items):
            try:
                # Decoding megabytes of base64 would stall every other client: do it off the loop.
                decoded.append(await anyio.to_thread.run_sync(parse_data_url, item))
            except ValueError as exc:
                return error(400, f"Invalid data URL at data_urls[{index}]: {exc}")
        urls = []
        for media_type, data in decoded:
            name = await anyio.to_thread.run_sync(state.files.save_asset, media_type, data)
            url = f"{base_url(request)}/assets/{name}"
            state.counters.uploaded(url)
            urls.append(url)
        return JSONResponse({state.config.upload_answer_key: urls})

    async def asset(self, request: Request) -> Response:
        """Serve an uploaded file: ``GET``/``HEAD /assets/{name}``."""
        self.state.counters.request("asset")
        found = self.state.files.asset(request.path_params["name"])
        if found is None:
            return error(404, "Asset not found")
        return SizedStream(
            partial(file_chunks, found.path), found.size, found.media_type, head=request.method == "HEAD"
        )

    async def output(self, request: Request) -> Response:
        """Serve a completed job's video: ``GET``/``HEAD /outputs/{id}.mp4``."""
        state = self.state
        state.counters.request("output")
        filename: str = request.path_params["filename"]
        request_id = filename.removesuffix(".mp4")
        job = state.jobs.get(request_id) if filename.endswith(".mp4") else None
        if job is not None and job.inputs_pending and state.jobs.now() >= job.finished_at:
            await state.fetcher.wait(request_id)
            job = state.jobs.get(request_id)
        # Outputs outlive their request record, but exist only once the job has completed.
        if job is None or job.status_at(state.jobs.now()) != COMPLETED:
            return error(404, "Output not found")
        try:
            chunks, size = output_source(job)
        except OSError:
            return error(404, "Output not found")
        head = request.method == "HEAD"
        cut_after = None
        if not head and state.take("cut_outputs"):
            state.counters.event("cut_outputs")
            cut_after = state.config.cut_after_bytes
        return SizedStream(chunks, size, MP4, head=head, cut_after=cut_after)

    async def sample(self, request: Request) -> Response:
        """Serve an input video for demos and tests: ``GET``/``HEAD /samples/{name}``."""
        self.state.counters.request("sample")
        name: str = request.path_params["name"]
        head = request.method == "HEAD"
        if name == SAMPLE_NAME:
            return SizedStream(sample_chunks, len(sample_bytes()), MP4, head=head)
        if name != OVERSIZED_NAME:
            return error(404, f"Sample '{name}' not found")
        return SizedStream(oversized_chunks, OVERSIZED_SIZE, MP4, head=head)
