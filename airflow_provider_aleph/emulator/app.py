"""Starlette application that speaks Segmind's v2 async protocol; see ``jobs`` for the timeline.

API routes (``x-api-key``: the emulator's key, or the ``api_keys`` setting's when set; subject to
``error_rate`` faults and the ``rpm_limit`` rate limit; during an outage, see ``outage_seconds``,
these and ``POST /upload-asset`` answer a 503 gateway page before anything else):

- ``POST /v2/{model}`` submit. 406 for a key out of credits, a submit the ``credits`` balance does not
  cover (nothing is created or debited), or a body that is not ``application/json``; 410 for a
  retired model; 400 for an invalid body or Aleph parameter.
- ``GET /v2/requests/{id}/status`` and ``GET /v2/requests/{id}`` poll and fetch; a FAILED job
  answers 422 on both; an unknown or expired id 404. While ``garbled_answers`` is above 0, an answer
  about a job is HTTP 200 with an HTML page or JSON without ``status`` instead (alternately); with
  ``interim_status`` set, each job's first ``interim_polls`` status polls answer HTTP 200 with it.
  ``request_id_check`` may look at the id before the key (404 to any key for a malformed or unknown id).
- A route that does not exist answers 404 ``{"error": "Not Found"}``: a body that names no request, so a
  client can tell it from an unknown request's 404.

The rate limit counts every authorized API call: submit, status, result and ``POST /upload-asset``;
a refused submit creates no job, a refused upload stores nothing.

File routes (``POST /upload-asset``, ``/assets/...``, ``/outputs/...``, ``/samples/...``): see ``media``.

Test routes, no key but loopback clients only: ``GET /_emulator/stats``, ``GET /_emulator/jobs`` (each
job's payload), ``POST /_emulator/reset``, ``GET``/``POST /_emulator/config``.
"""

from __future__ import annotations

import contextlib
import hmac
import ipaddress
import json
import uuid
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from airflow_provider_aleph.emulator.faults import RATE_LIMIT_DETAIL, fault_response, gateway_page
from airflow_provider_aleph.emulator.fetch import fetchable_inputs
from airflow_provider_aleph.emulator.jobs import COMPLETED, FAILED, InsufficientCredits
from airflow_provider_aleph.emulator.media import MediaRoutes, base_url, error
from airflow_provider_aleph.emulator.ratelimit import rate_limit_headers

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from starlette.requests import Request

    from airflow_provider_aleph.emulator.jobs import Job
    from airflow_provider_aleph.emulator.state import EmulatorState

ALEPH_MODEL = "runway-gen4-aleph"
ASPECT_RATIOS = ("16:9", "9:16", "4:3", "3:4", "1:1", "21:9")
UNKNOWN_REQUEST = "Request not found or expired"
INSUFFICIENT_CREDITS = "Insufficient credits: the account balance does not cover this request"
#: A garbled answer's HTML: a page a proxy or a maintenance screen serves with HTTP 200.
GARBLED_PAGE = (
    "<!DOCTYPE html>\n<html><head><title>Segmind</title></head>"
    "<body><h1>Please wait</h1><p>The service is being updated; this page refreshes itself.</p>"
    "<hr><address>segmind-emulator</address></body></html>\n"
)


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


def _is_json(content_type: str) -> bool:
    """Return whether a Content-Type header names JSON."""
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or media.endswith("+json")


def _is_loopback(request: Request) -> bool:
    """Return whether the client connected from a loopback address."""
    if request.client is None:
        return False
    try:
        return ipaddress.ip_address(request.client.host).is_loopback
    except ValueError:
        return False


class EmulatorApp:
    """Route handlers bound to one emulator state and API key.

    :param state: the jobs, settings and counters to serve.
    :param api_key: the key the API routes accept (besides ``insufficient_credits_keys``) while the
        ``api_keys`` setting is empty.
    """

    def __init__(self, state: EmulatorState, api_key: str) -> None:
        self.state = state
        self._api_key = api_key
        self.media = MediaRoutes(state, self._authorized, self._rate_limited)

    def build(self) -> Starlette:
        """Return the Starlette application."""
        media = self.media
        routes = [
            Route("/v2/requests/{request_id}/status", self.status, methods=["GET"]),
            Route("/v2/requests/{request_id}", self.result, methods=["GET"]),
            Route("/v2/{model}", self.submit, methods=["POST"]),
            Route("/upload-asset", media.upload, methods=["POST"]),
            Route("/assets/{name}", media.asset, methods=["GET", "HEAD"]),
            Route("/outputs/{filename}", media.output, methods=["GET", "HEAD"]),
            Route("/samples/{name}", media.sample, methods=["GET", "HEAD"]),
            Route("/_emulator/stats", self.admin_stats, methods=["GET"]),
            Route("/_emulator/jobs", self.admin_jobs, methods=["GET"]),
            Route("/_emulator/reset", self.admin_reset, methods=["POST"]),
            Route("/_emulator/config", self.admin_config, methods=["GET", "POST"]),
        ]
        return Starlette(routes=routes, exception_handlers={HTTPException: self._http_error}, lifespan=self._lifespan)

    @contextlib.asynccontextmanager
    async def _lifespan(self, app: Starlette) -> AsyncIterator[None]:
        """Close the input fetcher's client and cancel its fetches when the server stops."""
        yield
        await self.state.fetcher.aclose()

    async def _http_error(self, request: Request, exc: Exception) -> Response:
        """Answer routing errors (404, 405) with Segmind's JSON error body."""
        if not isinstance(exc, HTTPException):
            raise exc
        response = error(exc.status_code, exc.detail)
        if exc.headers:
            response.headers.update(exc.headers)
        return response

    def _authorized(self, request: Request) -> bool:
        """Return whether the request carries an accepted key (``api_keys``, else ours) or one without credits."""
        key = request.headers.get("x-api-key", "").encode()
        if not key:
            return False
        config = self.state.config
        current = config.api_keys or (self._api_key,)
        accepted = [other.encode() for other in (*current, *config.insufficient_credits_keys)]
        # Compare against every key, so the time taken does not tell which one matched.
        return sum(hmac.compare_digest(key, candidate) for candidate in accepted) > 0

    async def _gate(self, request: Request, route: str) -> Response | None:
        """Count an API call, then return the outage's 503, a fault, 401 or 429 to answer instead, if any."""
        state = self.state
        state.counters.request(route)
        # Read the whole request first: closing a connection with unread bytes would send a reset.
        await request.body()
        if state.take_outage():
            # Before the fault draws, so an outage does not shift the seeded sequence of faults.
            return gateway_page(503)
        kind = state.faults.draw(state.config.error_rate, submit=route == "submit")
        if kind is not None:
            state.counters.fault(kind)
            return fault_response(kind)
        if not self._authorized(request):
            return error(401, "Unauthorized: missing or invalid x-api-key")
        return self._rate_limited(request)

    def _rate_limited(self, request: Request) -> Response | None:
        """Count an authorized API call against its key's window; return the 429 if it is over the limit."""
        state = self.state
        wait = state.limiter.acquire(request.headers["x-api-key"], state.config.rpm_limit, state.config.rate_window)
        if wait is None:
            return None
        state.counters.event("rate_limited")
        return JSONResponse({"error": RATE_LIMIT_DETAIL}, status_code=429, headers=rate_limit_headers(wait))

    async def submit(self, request: Request) -> Response:
        """Accept a job: ``POST /v2/{model}``."""
        if (refusal := await self._gate(request, "submit")) is not None:
            return refusal
        state = self.state
        if request.headers["x-api-key"] in state.config.insufficient_credits_keys:
            state.counters.event("insufficient_credits")
            return error(406, INSUFFICIENT_CREDITS)
        content_type = request.headers.get("content-type", "")
        if not _is_json(content_type):
            return error(406, f"Not acceptable: Content-Type must be application/json, got {content_type or 'none'!r}")
        model: str = request.path_params["model"]
        if model in state.config.retired_models:
            return error(410, f"Model '{model}' has been retired and is no longer available")
        try:
            payload = json.loads(await request.body())
        except ValueError:
            return error(400, "Invalid request body: expected a JSON object")
        if not isinstance(payload, dict):
            return error(400, "Invalid request body: expected a JSON object")
        if model == ALEPH_MODEL and (problem := validate_aleph(payload)) is not None:
            return error(400, problem)
        inputs = fetchable_inputs(payload) if state.config.fetch_inputs else {}
        try:
            job = state.jobs.submit(model, payload, inputs_pending=bool(inputs))
        except InsufficientCredits:
            state.counters.event("insufficient_credits")
            return error(406, INSUFFICIENT_CREDITS)
        if inputs:
            state.fetcher.start(job.request_id, inputs)
        if state.take("lose_submit_answers"):
            # The job exists and is paid for; only its answer is lost on the way back.
            _, lost = state.faults.lost_answer(state.config.lose_submit_mode)
            state.counters.event("lost_answers")
            return lost
        status_url = f"{base_url(request)}/v2/requests/{job.request_id}/status"
        return JSONResponse(
            {
                "request_id": job.request_id,
                "status": job.status_at(job.submitted_at),
                "status_url": status_url,
                "response_url": f"{base_url(request)}/v2/requests/{job.request_id}",
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

    async def _find(self, request: Request, route: str) -> tuple[Job | None, float, Response | None]:
        """Gate the call and resolve the request id in the path, or return the answer to send instead."""
        request_id: str = request.path_params["request_id"]
        now = self.state.jobs.now()
        if self._id_refused_before_key(request_id, now):
            self.state.counters.request(route)
            return None, now, error(404, UNKNOWN_REQUEST)
        if (refusal := await self._gate(request, route)) is not None:
            return None, 0.0, refusal
        job = self.state.jobs.lookup(request_id, now)
        if job is not None and job.inputs_pending and now >= job.finished_at:
            # The job's time is up: its outcome depends on the fetch, so wait for it.
            await self.state.fetcher.wait(request_id)
            job = self.state.jobs.lookup(request_id, now)
        if job is None:
            return None, now, error(404, UNKNOWN_REQUEST)
        return job, now, None

    def _id_refused_before_key(self, request_id: str, now: float) -> bool:
        """Whether ``request_id_check`` answers this id 404 before any key is looked at."""
        check = self.state.config.request_id_check
        if check == "form_first":
            try:
                uuid.UUID(request_id)
            except ValueError:
                return True
            return False
        return check == "lookup_first" and self.state.jobs.lookup(request_id, now) is None

    def _garbled(self, job: Job) -> Response | None:
        """Use up one ``garbled_answers`` and return its HTTP 200 answer, or None when none is left."""
        kind = self.state.take_garbled()
        if kind is None:
            return None
        self.state.counters.event("garbled_answers")
        if kind == "html":
            return HTMLResponse(GARBLED_PAGE)
        return JSONResponse({"request_id": job.request_id, "message": "Request accepted"})

    async def status(self, request: Request) -> Response:
        """Report a job's state: ``GET /v2/requests/{id}/status``."""
        job, now, refusal = await self._find(request, "status")
        if job is None:
            assert refusal is not None
            return refusal
        if (garbled := self._garbled(job)) is not None:
            return garbled
        if (interim := self.state.interim_answer(job.request_id)) is not None:
            # Whatever the job's real state: a client must keep polling on a status it does not know.
            self.state.counters.event("interim_answers")
            return JSONResponse({"request_id": job.request_id, "status": interim, "metrics": {}})
        body, code = self._status_body(job, now)
        return JSONResponse(body, status_code=code)

    async def result(self, request: Request) -> Response:
        """Return a job's result body: ``GET /v2/requests/{id}``."""
        job, now, refusal = await self._find(request, "result")
        if job is None:
            assert refusal is not None
            return refusal
        if (garbled := self._garbled(job)) is not None:
            return garbled
        body, code = self._status_body(job, now)
        if body["status"] == FAILED:
            return JSONResponse(body, status_code=code)
        output = f"{base_url(request)}/outputs/{job.request_id}.mp4" if body["status"] == COMPLETED else None
        return JSONResponse(
            {"request_id": job.request_id, "status": body["status"], "output": output, "metrics": body["metrics"]}
        )

    async def admin_stats(self, request: Request) -> Response:
        """Return every counter: ``GET /_emulator/stats``."""
        if not _is_loopback(request):
            return error(403, "Admin routes are loopback only")
        return JSONResponse(self.state.stats())

    async def admin_jobs(self, request: Request) -> Response:
        """Return each accepted job's request id, model and payload, in submit order: ``GET /_emulator/jobs``."""
        if not _is_loopback(request):
            return error(403, "Admin routes are loopback only")
        jobs = sorted(self.state.jobs.snapshot().values(), key=lambda job: job.submitted_at)
        return JSONResponse([{"request_id": j.request_id, "model": j.model, "payload": j.payload} for j in jobs])

    async def admin_reset(self, request: Request) -> Response:
        """Forget all jobs, counters and stored files: ``POST /_emulator/reset``."""
        if not _is_loopback(request):
            return error(403, "Admin routes are loopback only")
        self.state.reset()
        return JSONResponse({"reset": True})

    async def admin_config(self, request: Request) -> Response:
        """Read (GET) or change (POST, a JSON object of settings) the settings: ``/_emulator/config``."""
        if not _is_loopback(request):
            return error(403, "Admin routes are loopback only")
        if request.method == "POST":
            try:
                changes = json.loads(await request.body())
            except ValueError:
                return error(400, "Invalid request body: expected a JSON object")
            if not isinstance(changes, dict):
                return error(400, "Invalid request body: expected a JSON object")
            try:
                self.state.config.update(changes)
            except ValueError as exc:
                return error(400, str(exc))
        return JSONResponse(self.state.config.as_dict())


def create_app(state: EmulatorState, api_key: str) -> Starlette:
    """Return the emulator's ASGI application.

    :param state: the jobs, settings and counters to serve.
    :param api_key: the key the API routes accept while the ``api_keys`` setting is empty.
    """
    return EmulatorApp(state, api_key).build()
