"""Outputs to object storage: a URL streamed into a path in constant memory, never left half-written.

Each attempt writes to a hidden temporary name beside the target, checks the byte count against
``Content-Length`` and what the store reports, and only then moves it to the final name; a failed
attempt deletes its temporary file. A cut or failed download is retried in place: the job's output
stays downloadable for days, so no new (paid) job is needed.
"""

from __future__ import annotations

import os
import posixpath
import uuid
from pathlib import PurePosixPath
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

import httpx
import tenacity

from airflow_provider_aleph import __version__
from airflow_provider_aleph.access import require_under_roots
from airflow_provider_aleph.exceptions import InvalidParameter, SegmindError
from airflow_provider_aleph.protocol import USER_AGENT
from airflow_provider_aleph.storage.paths import bucket_of, conn_id_of, display_url, is_http_url, is_local, to_path

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import ObjectStoragePath
    from fsspec import AbstractFileSystem

    from airflow_provider_aleph.types import TaskLog

#: Buffer of a remote store's writer (S3's smallest multipart part is 5 MiB): bounds memory per copy.
WRITE_BLOCK_BYTES = 8 * 1024 * 1024
DEFAULT_OUTPUT_NAME = "output"
# Storage errors that another attempt cannot fix.
_FATAL_STORAGE_ERRORS = (PermissionError, FileNotFoundError, NotADirectoryError, IsADirectoryError)


class OutputCopyError(SegmindError):
    """A job's output could not be copied to object storage.

    :param message: what went wrong; names the URL (without its query) and the path.
    :param url: the output URL.
    :param path: the destination, as shown in messages.
    :param retryable: whether another attempt may succeed (a network failure, a 5xx, a cut download).
    :param status_code: the download's HTTP status, if it answered.
    """

    retryable = True

    def __init__(
        self, message: str, *, url: str, path: str, retryable: bool = True, status_code: int | None = None
    ) -> None:
        super().__init__(message, status_code=status_code)
        self.url = url
        self.path = path
        self.retryable = retryable


def copy_output(
    url: str,
    output_path: str | ObjectStoragePath,
    *,
    log: TaskLog,
    attempts: int = 5,
    backoff: float = 1.0,
    timeout: float = 60.0,
    chunk_size: int | None = None,
) -> ObjectStoragePath:
    """Stream ``url`` into ``output_path`` and return the path written.

    :param url: the http(s) URL of the output.
    :param output_path: an object storage URI, an absolute local path or an ``ObjectStoragePath``; one that
        ends with ``/`` or is an existing directory receives ``<dir>/<file name of the URL>``.
    :param log: where to report retries and the result.
    :param attempts: downloads tried, the first included, before giving up.
    :param backoff: first backoff in seconds; doubles each attempt, with full jitter.
    :param timeout: seconds allowed per network operation (connecting, each read).
    :param chunk_size: re-chunk the body into pieces of this many bytes; None (the default) writes
        pieces as they arrive from the socket (tens of KiB), which is the cheapest: re-assembling
        large pieces costs more CPU than the copy itself. Writes are buffered in blocks either way.
    """
    if attempts < 1:
        raise ValueError(f"attempts must be at least 1; got {attempts!r}")
    dest = _destination(url, output_path)
    shown = str(dest)
    if not is_http_url(url):
        raise OutputCopyError(
            f"Cannot copy {url!r} to {shown}: it is not an http(s) URL", url=url, path=shown, retryable=False
        )
    try:
        fs = dest.fs
        final = str(dest.path)
        if is_local(fs):
            fs.makedirs(posixpath.dirname(final), exist_ok=True)
    except Exception as exc:
        raise _storage_error(url, shown, exc, retryable=False) from None

    def before_sleep(state: tenacity.RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        log.warning(
            "Copy attempt %d of %d failed: %s; retrying in %.1fs",
            state.attempt_number,
            attempts,
            error,
            state.upcoming_sleep,
        )

    retrying = tenacity.Retrying(
        stop=tenacity.stop_after_attempt(attempts),
        wait=tenacity.wait_random_exponential(multiplier=backoff, max=max(backoff, 60.0)),
        retry=tenacity.retry_if_exception(lambda exc: isinstance(exc, OutputCopyError) and exc.retryable),
        before_sleep=before_sleep,
        reraise=True,
    )
    client_timeout = httpx.Timeout(timeout, connect=min(timeout, 10.0))
    # A third party's URL: no API key, and redirects (CDNs) are fine to follow.
    headers = {"User-Agent": f"{USER_AGENT}/{__version__}"}
    with httpx.Client(timeout=client_timeout, headers=headers, follow_redirects=True) as client:
        for attempt in retrying:
            with attempt:
                size = _copy_once(client, url, fs, final, shown=shown, chunk_size=chunk_size)
    log.info("Copied %s to %s (%d bytes)", display_url(url), shown, size)
    return dest


def check_output_path(output_path: str | ObjectStoragePath | None, *, local_roots: tuple[str, ...]) -> None:
    """Refuse, before anything is spent, an ``output_path`` the copy could not or may not write: one that
    is not a path, a local one outside ``local_roots``, or a local folder that cannot be written.

    :param output_path: the rendered ``output_path``; None or empty for no copy.
    :param local_roots: the folders local outputs may resolve under (the operator's ``local_roots``).
    """
    if output_path is None or (isinstance(output_path, str) and not output_path.strip()):
        return
    try:
        path = as_output_path(output_path)
    except (ValueError, TypeError, ImportError) as exc:
        raise InvalidParameter("output_path", f"{output_path!s} is not usable: {exc}") from None
    require_under_roots("output_path", path, local_roots, shown=str(output_path))
    if is_local(path.fs):
        existing = os.path.realpath(str(path.path))
        while not os.path.exists(existing) and existing != os.path.dirname(existing):
            existing = os.path.dirname(existing)
        if not os.access(existing, os.W_OK):
            raise InvalidParameter("output_path", f"{output_path!s} cannot be written: {existing} is not writable")


def as_output_path(output_path: str | ObjectStoragePath) -> ObjectStoragePath:
    """The ``ObjectStoragePath`` of an ``output_path`` as given (a bare absolute path is a local file).

    :param output_path: a URI string, an absolute local path or an ``ObjectStoragePath``.
    """
    text = output_path.strip() if isinstance(output_path, str) else None
    # A bare absolute path is a local file: the common case of a shared volume.
    return to_path(f"file://{text}" if text and text.startswith("/") else output_path)


def is_folder_output(output_path: str | ObjectStoragePath) -> bool:
    """Whether ``output_path`` names a folder (ends with ``/`` or is an existing directory): the file's
    name then comes from the output URL, unknown before the job.

    :param output_path: the rendered ``output_path``.
    """
    if isinstance(output_path, str) and output_path.strip().endswith("/"):
        return True
    try:
        return bool(as_output_path(output_path).is_dir())
    except Exception:
        return False


def probe_output_path(output_path: str | ObjectStoragePath | None, *, log: TaskLog) -> None:
    """Prove, before anything is spent, that the copy will be able to write ``output_path``: its bucket
    exists (buckets are never created), its local folder exists or can be created, and the store accepts a
    small marker file written beside the target. The marker is removed; a store that lets us write but
    not delete only gets a warning. Call :func:`check_output_path` first.

    :param output_path: the rendered ``output_path``; None or empty for no copy.
    :param log: where a marker that could not be removed is reported.
    """
    if output_path is None or (isinstance(output_path, str) and not output_path.strip()):
        return
    shown = str(output_path)
    path = as_output_path(output_path)
    folder = path if is_folder_output(output_path) else path.parent
    fs: AbstractFileSystem | None = None
    try:
        fs = path.fs
        bucket = bucket_of(path)
        if bucket and not fs.exists(bucket):
            raise InvalidParameter(
                "output_path",
                f"{shown} cannot be written: bucket {bucket!r} does not exist, or connection "
                f"{conn_id_of(path)!r} cannot see it (buckets are never created); nothing was submitted",
            )
        directory = str(folder.path).rstrip("/") or "/"
        if is_local(fs):
            fs.makedirs(directory, exist_ok=True)
        marker = posixpath.join(directory, f".segmind-write-probe-{uuid.uuid4().hex[:12]}")
        with fs.open(marker, "wb") as out:
            out.write(b"")
    except InvalidParameter:
        raise
    except Exception as exc:
        raise InvalidParameter(
            "output_path",
            f"{shown} cannot be written: {type(exc).__name__}: {exc}",
            # A local disk that refuses says so for good; a remote store may have had a bad moment.
            retryable=fs is not None and not is_local(fs) and not isinstance(exc, _FATAL_STORAGE_ERRORS),
        ) from None
    try:
        fs.rm(marker)
    except Exception as exc:
        log.warning(
            "output_path %s can be written, but the probe file %s could not be removed (%s: %s); "
            "a policy that allows writes but not deletes leaves it there",
            shown,
            marker,
            type(exc).__name__,
            exc,
        )


def write_atomically(fs: AbstractFileSystem, final: str, data: bytes) -> None:
    """Write ``data`` to ``final`` through a hidden temporary name beside it, moved into place only once
    complete: a reader never sees a partial file. The temporary file is removed when anything fails.

    :param fs: the filesystem.
    :param final: the path within ``fs``.
    :param data: the whole content.
    """
    tmp = _temporary_name(final)
    moved = False
    try:
        with fs.open(tmp, "wb") as out:
            out.write(data)
        fs.mv(tmp, final)
        moved = True
    finally:
        if not moved:
            _discard(fs, tmp)


def _temporary_name(final: str) -> str:
    return posixpath.join(posixpath.dirname(final), f".{posixpath.basename(final)}.{uuid.uuid4().hex[:12]}.part")


def _destination(url: str, output_path: str | ObjectStoragePath) -> ObjectStoragePath:
    text = output_path.strip() if isinstance(output_path, str) else None
    try:
        path = as_output_path(output_path)
    except (ValueError, TypeError, ImportError) as exc:
        raise OutputCopyError(
            f"Cannot copy {display_url(url)}: output_path {output_path!s} is not usable: {exc}",
            url=url,
            path=str(output_path),
            retryable=False,
        ) from None
    into_dir = bool(text and text.endswith("/"))
    if not into_dir:
        try:
            into_dir = bool(path.is_dir())
        except Exception:
            into_dir = False
    return path / _file_name(url) if into_dir else path


def _file_name(url: str) -> str:
    name = PurePosixPath(unquote(urlsplit(url).path)).name
    return name if name not in ("", ".", "..") else DEFAULT_OUTPUT_NAME


def _copy_once(
    client: httpx.Client, url: str, fs: AbstractFileSystem, final: str, *, shown: str, chunk_size: int | None
) -> int:
    """One download into a temporary name, verified, then moved to ``final``; the byte count."""
    tmp = _temporary_name(final)
    moved = False
    try:
        with client.stream("GET", url) as response:
            _check_status(response, url, shown)
            expected = response.headers.get("content-length", "")
            written = 0
            with fs.open(tmp, "wb", block_size=WRITE_BLOCK_BYTES) as out:
                for chunk in response.iter_bytes(chunk_size):
                    out.write(chunk)
                    written += len(chunk)
                received = response.num_bytes_downloaded
                if expected.isdigit() and received != int(expected):
                    raise OutputCopyError(
                        f"The download of {display_url(url)} was cut: {received} of {expected} bytes "
                        f"(Content-Length) arrived; {shown} was not written",
                        url=url,
                        path=shown,
                    )
        stored = fs.size(tmp)
        if stored != written:
            raise OutputCopyError(
                f"The store holds {stored} bytes of the {written} downloaded from {display_url(url)}; "
                f"{shown} was not written",
                url=url,
                path=shown,
            )
        fs.mv(tmp, final)
        moved = True
        return written
    except OutputCopyError:
        raise
    except httpx.HTTPError as exc:
        raise OutputCopyError(
            f"The download of {display_url(url)} to {shown} failed: {type(exc).__name__}: {exc}", url=url, path=shown
        ) from None
    except Exception as exc:
        raise _storage_error(url, shown, exc) from None
    finally:
        if not moved:
            _discard(fs, tmp)


def _check_status(response: httpx.Response, url: str, shown: str) -> None:
    code = response.status_code
    if code == 200:
        return
    if code in (404, 410):
        why = "the file is gone (Segmind keeps output files for about 7 days)"
    elif code == 429 or code >= 500:
        why = "the server had a temporary problem"
    else:
        why = "the server refused it"
    raise OutputCopyError(
        f"Downloading {display_url(url)} to {shown} answered HTTP {code}: {why}",
        url=url,
        path=shown,
        retryable=code == 429 or code >= 500,
        status_code=code,
    )


def _storage_error(url: str, shown: str, exc: Exception, retryable: bool | None = None) -> OutputCopyError:
    return OutputCopyError(
        f"Writing {display_url(url)} to {shown} failed: {type(exc).__name__}: {exc}",
        url=url,
        path=shown,
        retryable=not isinstance(exc, _FATAL_STORAGE_ERRORS) if retryable is None else retryable,
    )


def _discard(fs: AbstractFileSystem, tmp: str) -> None:
    try:
        if fs.exists(tmp):
            fs.rm(tmp)
    except Exception:
        # The temporary name is hidden and unique; a leftover never shadows the final file.
        pass
