"""Checks on the inputs of a job, made before any credit is spent."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

import httpx

from airflow_provider_aleph import __version__
from airflow_provider_aleph.protocol import USER_AGENT

#: Segmind's limit on an input video ("max 16MB"), read generously as MiB.
MAX_VIDEO_BYTES = 16 * 1024 * 1024
INTEGER = re.compile(r"-?[0-9]+")
#: Seeds are sent as JSON integers; a signed 64-bit range is what any backend can hold.
SEED_MIN, SEED_MAX = -(2**63), 2**63 - 1
SEED_DIGITS = len(str(SEED_MAX))
URI_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://[^\s]+$")
ASPECT_RATIOS = ("16:9", "9:16", "4:3", "3:4", "1:1", "21:9")


class InvalidParameter(ValueError):
    """A job parameter that cannot be sent; the message names the parameter and what is allowed.

    :param parameter: the parameter's name.
    :param message: what is wrong and what is allowed.
    """

    def __init__(self, parameter: str, message: str) -> None:
        self.parameter = parameter
        super().__init__(f"Invalid parameter {parameter!r}: {message}")


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 120 else text[:117] + "..."


def require_prompt(value: Any) -> str:
    """A non-empty text prompt."""
    if not isinstance(value, str) or not value.strip():
        raise InvalidParameter(
            "prompt",
            f"must be a non-empty string describing the edit (e.g. 'make it winter'); got {_shown(value)}",
        )
    return value


def require_aspect_ratio(value: Any) -> str | None:
    """None, or one of the aspect ratios the model supports."""
    if value is None or value in ASPECT_RATIOS:
        return value
    raise InvalidParameter("aspect_ratio", f"must be one of {', '.join(ASPECT_RATIOS)} or None; got {_shown(value)}")


def require_seed(value: Any) -> int | None:
    """None or a 64-bit integer; a string of digits (a rendered template) is converted."""
    if value is None:
        return None
    number: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str):
        text = value.strip()
        if text in ("", "None"):
            return None
        # Length first: int() refuses strings past Python's digit limit with a bare ValueError.
        if len(text) <= SEED_DIGITS + 1 and INTEGER.fullmatch(text):
            number = int(text)
    if number is not None and SEED_MIN <= number <= SEED_MAX:
        return number
    raise InvalidParameter(
        "seed", f"must be an integer from {SEED_MIN} to {SEED_MAX} (or a string of digits); got {_shown(value)}"
    )


def is_http_url(value: Any) -> bool:
    """Whether ``value`` is an http(s) URL string (which Segmind can fetch itself)."""
    if not isinstance(value, str):
        return False
    parts = urlsplit(value.strip())
    return parts.scheme in ("http", "https") and bool(parts.netloc)


def require_input(parameter: str, value: Any, *, required: bool) -> Any:
    """An input file: an http(s) URL, an object storage URI (``s3://``, ``gs://``, ``file://``, ...) or an
    ``ObjectStoragePath``. Object storage is presigned or uploaded later (see :mod:`storage`).

    :param parameter: the parameter's name, for the message.
    :param value: the value given.
    :param required: whether None is refused.
    """
    if value is None and not required:
        return None
    if type(value).__name__ == "ObjectStoragePath":
        return value
    if isinstance(value, str) and value.strip():
        text = value.strip()
        if is_http_url(text):
            return text
        if URI_SCHEME.match(text) and not text.lower().startswith(("http:", "https:")):
            return text
    raise InvalidParameter(
        parameter,
        "must be an http(s) URL that Segmind can download, an object storage URI such as "
        f"s3://bucket/key or file:///path, or an ObjectStoragePath; got {_shown(value)}",
    )


def remote_size(parameter: str, url: str, *, timeout: float = 30.0) -> int | None:
    """The size in bytes an http(s) input reports, or None when it does not say.

    Asks with HEAD, and with a one-byte ranged GET where HEAD is refused (presigned URLs often
    sign GET only). Never sends the Segmind key: the URL is a third party's.

    :param parameter: the parameter's name, for the message.
    :param url: the input's URL.
    :param timeout: seconds allowed for the check.
    """
    headers = {"User-Agent": f"{USER_AGENT}/{__version__}"}
    try:
        with httpx.Client(timeout=timeout, headers=headers, follow_redirects=False) as client:
            response = client.head(url)
            if response.status_code in (403, 405, 501):
                with client.stream("GET", url, headers={"Range": "bytes=0-0"}) as ranged:
                    response = ranged
    except httpx.HTTPError as exc:
        raise InvalidParameter(parameter, f"could not reach {url}: {type(exc).__name__}: {exc}") from None
    if response.is_redirect:
        raise InvalidParameter(
            parameter,
            f"{url} redirects to {response.headers.get('location')!r}; Segmind does not follow "
            "redirects: pass the final URL",
        )
    if not response.is_success:
        raise InvalidParameter(parameter, f"{url} answered HTTP {response.status_code}; Segmind could not fetch it")
    content_range = response.headers.get("content-range", "")
    total = content_range.rpartition("/")[2] if response.status_code == 206 else ""
    length = total if total.isdigit() else response.headers.get("content-length", "")
    return int(length) if length.isdigit() else None


def require_video_size(url: str, *, limit: int = MAX_VIDEO_BYTES, timeout: float = 30.0) -> int | None:
    """Refuse a video URL whose reported size exceeds Segmind's input limit."""
    size = remote_size("video", url, timeout=timeout)
    if size is not None and size > limit:
        raise InvalidParameter(
            "video",
            f"{url} is {size / 1024 / 1024:.1f} MiB; Segmind accepts input videos of at most "
            f"{limit / 1024 / 1024:.0f} MiB (only about the first 5 s are used: trim it)",
        )
    return size
