"""Segmind v2 wire protocol: request building and response parsing shared by sync and async code.

Nothing here sends a request: :class:`~airflow_provider_aleph.hooks.segmind.SegmindHook` does,
through an ``httpx.Client`` or ``httpx.AsyncClient``, and hands every answer to the one parser.
"""

from __future__ import annotations

import base64
import email.utils
import enum
import re
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import httpx

from airflow_provider_aleph.exceptions import (
    RETENTION_HINT,
    SegmindAuthError,
    SegmindBadRequest,
    SegmindError,
    SegmindModelRetired,
    SegmindNotAcceptable,
    SegmindNotFound,
    SegmindProtocolError,
    SegmindRateLimited,
    SegmindRequestExpired,
    SegmindServerError,
    SegmindUnreadableAnswer,
)
from airflow_provider_aleph.states import SegmindStatus

if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import BinaryIO

DEFAULT_BASE_URL = "https://api.segmind.com"
DEFAULT_UPLOAD_URL = "https://workflows-api.segmind.com"
USER_AGENT = "airflow-provider-aleph"


__all__ = ["SegmindStatus"]  # re-exported: its home is airflow_provider_aleph.states


class Kind(enum.StrEnum):
    """Which API call a request is; decides how its errors are read and whether it may be retried."""

    SUBMIT = "submit"
    STATUS = "status"
    RESULT = "result"
    UPLOAD = "upload"


@dataclass(frozen=True)
class RequestSpec:
    """Everything needed to send one API call, minus the API key (added at send time).

    :param kind: which call this is.
    :param method: HTTP method.
    :param url: absolute URL.
    :param json: JSON body, for a submit.
    :param request_id: the request id concerned, for reads.
    """

    kind: Kind
    method: str
    url: str
    json: dict[str, Any] | None = None
    request_id: str | None = None

    def describe(self) -> str:
        """A short, secret-free description for log lines and errors."""
        return f"{self.method} {httpx.URL(self.url).copy_with(query=None)}"


@dataclass(frozen=True)
class SubmitResponse:
    """The answer to a submit: the new request's id and where to follow it."""

    request_id: str
    status_url: str
    response_url: str
    raw: dict[str, Any] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class RequestState:
    """A status or result body, read regardless of the HTTP code it came with (FAILED is a 422).

    :param request_id: the request id.
    :param status: the request's state (``UNKNOWN`` for a value the API never documented).
    :param reported: the ``status`` value exactly as the API sent it.
    :param error: the API's failure text, on FAILED.
    :param output_url: the output's URL once COMPLETED (from a result body), else None.
    :param output: the raw ``output`` value, whatever its shape.
    :param metrics: the API's ``metrics`` object.
    """

    request_id: str
    status: SegmindStatus
    reported: str = ""
    error: str | None = None
    output_url: str | None = None
    output: Any = None
    metrics: dict[str, Any] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict, compare=False)


def normalize_base_url(url: str) -> str:
    """Return a base URL with a scheme and without a trailing slash or /v1, /v2 suffix."""
    url = url.strip().rstrip("/")
    if "://" not in url:
        url = f"https://{url}"
    for suffix in ("/v1", "/v2"):
        if url.endswith(suffix):
            url = url[: -len(suffix)]
    return url


def submit_spec(base_url: str, model: str, payload: dict[str, Any]) -> RequestSpec:
    """Build the POST that creates a paid job for ``model``."""
    slug = model.strip().strip("/")
    return RequestSpec(Kind.SUBMIT, "POST", f"{base_url}/v2/{quote(slug, safe='/')}", json=payload)


def status_spec(base_url: str, request_id: str, status_url: str | None = None) -> RequestSpec:
    """Build the status GET: the URL the submit returned, else one built from the bare id."""
    url = status_url or f"{base_url}/v2/requests/{quote(request_id, safe='')}/status"
    return RequestSpec(Kind.STATUS, "GET", url, request_id=request_id)


def result_spec(base_url: str, request_id: str, response_url: str | None = None) -> RequestSpec:
    """Build the result GET: the URL the submit returned, else one built from the bare id."""
    url = response_url or f"{base_url}/v2/requests/{quote(request_id, safe='')}"
    return RequestSpec(Kind.RESULT, "GET", url, request_id=request_id)


def _json_object(response: httpx.Response) -> dict[str, Any] | None:
    try:
        body = response.json()
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def _detail(response: httpx.Response) -> str | None:
    body = _json_object(response)
    if body is not None:
        for key in ("error", "detail", "message"):
            value = body.get(key)
            if value:
                return value if isinstance(value, str) else str(value)
        return None
    text = response.text.strip()
    # HTML error pages from gateways say nothing useful beyond their status.
    if not text or text.startswith("<"):
        return None
    return text[:500]


def retry_after_seconds(response: httpx.Response, now: float | None = None) -> float | None:
    """Seconds to wait before the next call: ``Retry-After``, else ``x-rate-limit-reset-at-utc``."""
    now = time.time() if now is None else now
    header = response.headers.get("retry-after")
    if header:
        header = header.strip()
        try:
            return max(0.0, float(header))
        except ValueError:
            pass
        try:
            parsed = email.utils.parsedate_to_datetime(header)
        except (TypeError, ValueError, IndexError):
            parsed = None
        if parsed is not None:
            if parsed.tzinfo is None:
                parsed = parsed.replace(tzinfo=UTC)
            return max(0.0, parsed.timestamp() - now)
    reset = response.headers.get("x-rate-limit-reset-at-utc")
    if reset:
        reset = reset.strip()
        try:
            return max(0.0, float(reset) - now)
        except ValueError:
            pass
        try:
            when = datetime.fromisoformat(reset.replace("Z", "+00:00"))
        except ValueError:
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        return max(0.0, when.timestamp() - now)
    return None


def error_from_response(response: httpx.Response, spec: RequestSpec) -> SegmindError:
    """Turn an answer that is not a result into the typed error for its status code."""
    code = response.status_code
    detail = _detail(response)
    what = spec.describe()
    common: dict[str, Any] = {"status_code": code, "detail": detail, "request_id": spec.request_id}
    if code == 400:
        return SegmindBadRequest(f"Segmind refused the parameters of {what}", **common)
    if code in (401, 403):
        why = "rejected the API key" if code == 401 else "denied permission for"
        return SegmindAuthError(f"Segmind {why} {what}", **common)
    if code == 404:
        if spec.kind is Kind.SUBMIT:
            return SegmindNotFound(f"Segmind does not know the model or endpoint of {what}", **common)
        return SegmindRequestExpired(
            f"Segmind has no request {spec.request_id!r}: it is unknown or expired. {RETENTION_HINT}",
            **common,
        )
    if code == 406:
        credits = "credit" in (detail or "").lower()
        why = "the account has not enough credits" if credits else "the request's content type"
        return SegmindNotAcceptable(f"Segmind did not accept {what}: {why}", insufficient_credits=credits, **common)
    if code == 410:
        return SegmindModelRetired(f"Segmind retired the model of {what}", **common)
    if code == 429:
        return SegmindRateLimited(f"Segmind rate-limited {what}", retry_after=retry_after_seconds(response), **common)
    if code >= 500:
        return SegmindServerError(f"Segmind had a server error on {what}", **common)
    return SegmindProtocolError(f"Segmind answered {what} with an unexpected HTTP {code}", **common)


def parse_submit(response: httpx.Response, spec: RequestSpec) -> SubmitResponse:
    """Read a submit answer: a 2xx with ``request_id``, ``status_url`` and ``response_url``."""
    if not response.is_success:
        raise error_from_response(response, spec)
    body = _json_object(response)
    if body is None:
        raise SegmindProtocolError(
            f"Segmind answered {spec.describe()} with a body that is not a JSON object",
            status_code=response.status_code,
        )
    request_id, status_url, response_url = (body.get(k) for k in ("request_id", "status_url", "response_url"))
    if not (request_id and status_url and response_url):
        raise SegmindProtocolError(
            f"Segmind accepted {spec.describe()} but its answer lacks request_id/status_url/response_url "
            f"(keys: {sorted(body)}); the job may exist: check the Segmind dashboard before resubmitting",
            status_code=response.status_code,
            request_id=str(request_id) if request_id else None,
        )
    return SubmitResponse(str(request_id), str(status_url), str(response_url), raw=body)


def extract_output_url(body: dict[str, Any]) -> str | None:
    """Find the output URL in a result body: ``output`` as a string, list, or object with ``url``,
    else a sibling ``video`` object."""
    candidates = [body.get("output"), body.get("video")]
    for value in candidates:
        url = _url_in(value)
        if url:
            return url
    return None


def _url_in(value: Any) -> str | None:
    if isinstance(value, str) and value.startswith(("http://", "https://")):
        return value
    if isinstance(value, dict):
        return _url_in(value.get("url"))
    if isinstance(value, list):
        for item in value:
            url = _url_in(item)
            if url:
                return url
    return None


def parse_state(response: httpx.Response, spec: RequestSpec) -> RequestState:
    """Read a status or result answer.

    A 2xx body's ``status`` is matched without regard to case; a value we do not know reads as
    ``UNKNOWN`` (still running, never success). A 2xx body that is not JSON or has no ``status`` is a
    transient error, retried like a 5xx. A FAILED body is a result whatever its 4xx code (Segmind
    serves it as a 422); anything else non-2xx is the typed error for its code.
    """
    body = _json_object(response)
    raw_status = body.get("status") if body is not None else None
    status = SegmindStatus.read(raw_status)
    # Only a 4xx that says FAILED is a result; a 5xx never is, even with a body that names a state.
    failed_body = status is SegmindStatus.FAILED and response.status_code < 500
    if not response.is_success and not failed_body:
        raise error_from_response(response, spec)
    if body is None or status is None:
        what = "a body that is not a JSON object" if body is None else f"no status (keys: {sorted(body)})"
        raise SegmindUnreadableAnswer(
            f"Segmind answered {spec.describe()} with {what}",
            status_code=response.status_code,
            request_id=spec.request_id,
        )
    error = body.get("error")
    metrics = body.get("metrics")
    return RequestState(
        request_id=str(body.get("request_id") or spec.request_id),
        status=status,
        reported=str(raw_status),
        error=str(error) if error else None,
        output_url=extract_output_url(body) if status is SegmindStatus.COMPLETED else None,
        output=body.get("output"),
        metrics=metrics if isinstance(metrics, dict) else {},
        raw=body,
    )


#: Raw bytes base64-encoded at a time in an upload body; a multiple of 3, so the pieces join without padding.
UPLOAD_PIECE_BYTES = 3 * 256 * 1024
_MEDIA_TYPE = re.compile(r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*")


def upload_spec(upload_url: str) -> RequestSpec:
    """Build the files API POST that stores an asset and answers its persistent URL."""
    return RequestSpec(Kind.UPLOAD, "POST", f"{upload_url}/upload-asset")


@dataclass(frozen=True)
class UploadBody:
    """The upload JSON ``{"data_urls": ["data:<type>;base64,<bytes>"]}``, produced piece by piece so a
    video is never held in memory whole, raw or encoded.

    :param content_type: the file's media type, e.g. ``video/mp4``.
    :param size: the file's size in bytes; the stream must yield exactly this many.
    """

    content_type: str
    size: int

    def __post_init__(self) -> None:
        if not _MEDIA_TYPE.fullmatch(self.content_type):
            raise ValueError(f"content_type must be a media type such as 'video/mp4'; got {self.content_type!r}")
        if isinstance(self.size, bool) or not isinstance(self.size, int) or self.size < 0:
            raise ValueError(f"size must be a number of bytes (an int >= 0); got {self.size!r}")

    @property
    def head(self) -> bytes:
        """Everything before the base64 text."""
        return f'{{"data_urls": ["data:{self.content_type};base64,'.encode()

    @property
    def length(self) -> int:
        """The body's exact length, sent as Content-Length (some gateways refuse chunked bodies)."""
        return len(self.head) + 4 * -(-self.size // 3) + 3

    def pieces(self, stream: BinaryIO, piece_bytes: int = UPLOAD_PIECE_BYTES) -> Iterator[bytes]:
        """Yield the body, reading ``stream`` ``piece_bytes`` at a time (a multiple of 3)."""
        yield self.head
        pending, seen = bytearray(), 0
        while True:
            block = stream.read(piece_bytes)
            seen += len(block)
            if seen > self.size:
                break
            pending += block
            if block and len(pending) < piece_bytes:
                continue
            # Encode whole 3-byte groups only, except at the end where base64 pads the rest.
            cut = len(pending) - len(pending) % 3 if block else len(pending)
            yield base64.b64encode(bytes(pending[:cut]))
            del pending[:cut]
            if not block:
                break
        if seen != self.size:
            raise SegmindError(
                f"The file to upload changed while it was read: expected {self.size} bytes, read {seen}"
                + ("" if seen < self.size else " or more")
            )
        yield b'"]}'


def parse_upload(response: httpx.Response, spec: RequestSpec) -> str:
    """Read the files API answer: the first URL of ``file_urls`` (the SDK's name) or ``urls`` (the docs')."""
    what = spec.describe()
    if response.status_code == 404:
        raise SegmindNotFound(
            f"No Segmind files API at {what}: check the connection's extra 'upload_url'", status_code=404
        )
    if response.status_code == 413:
        raise SegmindBadRequest(f"Segmind's files API refused {what}: the file is too large", status_code=413)
    if not response.is_success:
        raise error_from_response(response, spec)
    body = _json_object(response) or {}
    for key in ("file_urls", "urls"):
        url = _url_in(body.get(key))
        if url:
            return url
    raise SegmindProtocolError(
        f"Segmind's files API answered {what} without a file URL (keys: {sorted(body)})",
        status_code=response.status_code,
    )
