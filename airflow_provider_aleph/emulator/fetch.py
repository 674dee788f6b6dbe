"""Input fetching as Segmind does it: the service GETs each job's ``video`` and ``reference_image``.

A submit is answered at once; the fetch runs as a task on the server's event loop with one shared
``httpx.AsyncClient`` (no redirects followed, no proxy settings read, a total deadline of
``fetch_timeout`` seconds per input). The fetched video streams to a file in the emulator's
temporary directory and becomes the job's output (the emulator's "edit" returns its input); the
reference image is read and discarded. A data URI is decoded instead of fetched.

The job is paid either way. A non-200 answer, a network error, a timeout or a file over
:data:`MAX_INPUT_BYTES` makes it end FAILED with an error such as ``could not fetch video: HTTP 403``.
A status poll that reaches the job's finish time while the fetch still runs waits for it, so a
job's outcome never depends on how fast the loop ran.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Any

import anyio
import httpx

from airflow_provider_aleph.emulator.assets import parse_data_url

if TYPE_CHECKING:
    from pathlib import Path

    from airflow_provider_aleph.emulator.assets import FileStore
    from airflow_provider_aleph.emulator.config import EmulatorConfig
    from airflow_provider_aleph.emulator.jobs import JobStore
    from airflow_provider_aleph.emulator.stats import Counters

MAX_INPUT_BYTES = 16 * 1024 * 1024
INPUT_FIELDS = ("video", "reference_image")
_READ_CHUNK = 256 * 1024


class InputRejected(Exception):
    """An input could not be fetched; the message is the reason shown in the job's error."""


def fetchable_inputs(payload: dict[str, Any]) -> dict[str, str]:
    """Return the payload's input fields that name something to fetch (http(s) URL or data URI).

    :param payload: the submitted JSON object.
    """
    found = {}
    for name in INPUT_FIELDS:
        value = payload.get(name)
        if isinstance(value, str) and value.startswith(("http://", "https://", "data:")):
            found[name] = value
    return found


def _over_limit(size: int) -> InputRejected:
    return InputRejected(f"the file is over the 16 MiB limit ({size} bytes or more)")


class InputFetcher:
    """Runs and tracks the input fetches of the jobs; lives on the server's event loop.

    :param config: the settings, read at each fetch (``fetch_timeout``).
    :param files: where a fetched video is stored.
    :param jobs: the jobs whose fetch outcome is recorded.
    :param counters: counts fetches and records failed ones.
    """

    def __init__(self, config: EmulatorConfig, files: FileStore, jobs: JobStore, counters: Counters) -> None:
        self._config = config
        self._files = files
        self._jobs = jobs
        self._counters = counters
        self._client: httpx.AsyncClient | None = None
        self._tasks: dict[str, asyncio.Task[None]] = {}

    def start(self, request_id: str, inputs: dict[str, str]) -> None:
        """Start fetching the inputs of a job just created; call from the event loop.

        :param request_id: the job's request id.
        :param inputs: field name to URL, from :func:`fetchable_inputs`.
        """
        if self._client is None:
            self._client = httpx.AsyncClient(follow_redirects=False, trust_env=False)
        task = asyncio.get_running_loop().create_task(self._run(request_id, inputs))
        self._tasks[request_id] = task
        task.add_done_callback(lambda _: self._tasks.pop(request_id, None))

    async def wait(self, request_id: str) -> None:
        """Wait until the fetch of ``request_id`` is settled; a no-op when none runs.

        :param request_id: the job's request id.
        """
        task = self._tasks.get(request_id)
        if task is not None:
            # A poll that gives up must not cancel the fetch other polls wait for.
            await asyncio.shield(task)

    async def aclose(self) -> None:
        """Cancel the fetches still running and close the HTTP client."""
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def _run(self, request_id: str, inputs: dict[str, str]) -> None:
        """Fetch each input in turn, then settle the job with the outcome."""
        self._counters.event("fetches")
        video_path: Path | None = None
        error = None
        for name, url in inputs.items():
            target = self._files.input_path(request_id) if name == "video" else None
            try:
                async with asyncio.timeout(self._config.fetch_timeout):
                    await self._fetch(url, target)
            except InputRejected as exc:
                error = f"could not fetch {name}: {exc}"
            except TimeoutError:
                error = f"could not fetch {name}: no complete answer within {self._config.fetch_timeout:g} s"
            except httpx.HTTPError as exc:
                error = f"could not fetch {name}: {type(exc).__name__}"
            except OSError as exc:  # the store was reset or closed under us
                error = f"could not store {name}: {type(exc).__name__}"
            if error is not None:
                break
            if target is not None:
                video_path = target
        if error is not None:
            self._counters.fetch_failed(error)
            if video_path is not None:
                video_path.unlink(missing_ok=True)
            video_path = None
        if video_path is not None and self._config.edit_outputs:
            video_path = await self._edited(request_id, video_path)
        settled = self._jobs.settle_inputs(request_id, error, None if video_path is None else str(video_path))
        if settled is None and video_path is not None:
            video_path.unlink(missing_ok=True)  # the job was forgotten (reset) while we fetched

    async def _edited(self, request_id: str, video: Path) -> Path:
        """The job's output with the emulator's visible edit (``edit_outputs``), or ``video`` unchanged when
        the media extra is missing or the input is not a short decodable video. Runs in a worker thread:
        re-encoding must not stall the other clients."""
        from airflow_provider_aleph.emulator.edit import edit_available, edit_video

        job = self._jobs.get(request_id)
        if job is None or not edit_available():
            return video
        prompt = job.payload.get("prompt")
        dest = video.with_name(f"{video.stem}.edited.mp4")
        if not await anyio.to_thread.run_sync(edit_video, video, dest, prompt if isinstance(prompt, str) else ""):
            return video
        self._counters.event("edits")
        video.unlink(missing_ok=True)
        return dest

    async def _fetch(self, url: str, target: Path | None) -> None:
        """Fetch one input into ``target`` (or nowhere); raise InputRejected, httpx.HTTPError or OSError."""
        if url.startswith("data:"):
            await anyio.to_thread.run_sync(_store_data_url, url, target)
            return
        assert self._client is not None
        async with self._client.stream("GET", url, timeout=self._config.fetch_timeout) as response:
            if response.status_code != 200:
                hint = " (redirects are not followed)" if response.is_redirect else ""
                raise InputRejected(f"HTTP {response.status_code}{hint}")
            declared = response.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > MAX_INPUT_BYTES:
                raise _over_limit(int(declared))
            received = 0
            handle = await anyio.open_file(target, "wb") if target is not None else None
            try:
                async for chunk in response.aiter_bytes(_READ_CHUNK):
                    received += len(chunk)
                    if received > MAX_INPUT_BYTES:
                        raise _over_limit(received)
                    if handle is not None:
                        await handle.write(chunk)
            finally:
                if handle is not None:
                    with contextlib.suppress(OSError):
                        await handle.aclose()


def _store_data_url(url: str, target: Path | None) -> None:
    """Decode a data URI input and write it to ``target``; blocking, run in a thread."""
    try:
        _, data = parse_data_url(url)
    except ValueError as exc:
        raise InputRejected(f"not a valid data URI: {exc}") from None
    if len(data) > MAX_INPUT_BYTES:
        raise _over_limit(len(data))
    if target is not None:
        target.write_bytes(data)
