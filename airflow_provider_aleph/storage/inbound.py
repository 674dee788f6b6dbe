"""Inputs from object storage: checked from their metadata, then presigned or uploaded to Segmind's files API.

Every check runs before anything is uploaded or submitted, and each refusal is an
:class:`~airflow_provider_aleph.inputs.InvalidParameter` naming the parameter and the URI.
"""

from __future__ import annotations

import mimetypes
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from airflow_provider_aleph.exceptions import InvalidParameter
from airflow_provider_aleph.protocol import UPLOAD_PIECE_BYTES, UploadBody
from airflow_provider_aleph.storage.paths import (
    bucket_of,
    conn_id_of,
    display_url,
    is_http_url,
    is_public_url,
    mask_url_secrets,
    to_path,
)

if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import BinaryIO

    from airflow.providers.common.compat.sdk import ObjectStoragePath
    from fsspec import AbstractFileSystem

    from airflow_provider_aleph.hooks.segmind import SegmindHook
    from airflow_provider_aleph.types import TaskLog

INPUT_MODES = ("auto", "presign", "upload")
#: How long a presigned input URL stays valid: a job may wait in Segmind's queue before it is fetched.
DEFAULT_PRESIGN_SECONDS = 6 * 3600
#: The longest a presigned URL may live: S3's signature version 4 allows 7 days, and so do GCS's V4 URLs.
MAX_PRESIGN_SECONDS = 7 * 24 * 3600
FALLBACK_CONTENT_TYPE = "application/octet-stream"
# What stores report when nobody set a type; the file name says more.
_GENERIC_TYPES = frozenset({FALLBACK_CONTENT_TYPE, "binary/octet-stream"})
_METADATA_TYPE_KEYS = ("ContentType", "content_type", "contentType", "mimetype")
_MIB = 1024 * 1024


def too_large(
    parameter: str, shown: str, size: int, limit: int, *, seconds_used: float | None = None
) -> InvalidParameter:
    """The refusal of an input of ``size`` bytes over ``limit``, with the advice to trim a video.

    :param parameter: the parameter's name.
    :param shown: the file as shown to the user (URI, or URL without its query).
    :param size: its size in bytes.
    :param limit: the largest size accepted.
    :param seconds_used: how many seconds of a video the model uses, if it says.
    """

    def amount(n: int) -> str:
        return f"{n} bytes" if n < _MIB else f"{n / _MIB:.1f} MiB ({n} bytes)"

    ceiling = f"{limit / _MIB:g} MiB" if limit >= _MIB else f"{limit} bytes"
    trim = (
        f" (the model uses only about the first {seconds_used:g} s: trim it, or set fit_input=True to have "
        "the worker cut and re-encode it to fit)"
        if seconds_used
        else ""
    )
    return InvalidParameter(parameter, f"{shown} is {amount(size)}; at most {ceiling} is accepted{trim}")


def require_input_mode(value: Any, *, concerning: str = "") -> str:
    """An ``input_mode``: one of :data:`INPUT_MODES` (the one check of it, at parse time and once rendered).

    :param value: the value given.
    :param concerning: the input it was to apply to, for the message.
    """
    if value not in INPUT_MODES:
        where = f" (for {concerning})" if concerning else ""
        raise InvalidParameter("input_mode", f"must be one of {', '.join(INPUT_MODES)}; got {value!r}{where}")
    return str(value)


def resolve_input(
    name: str,
    value: str | ObjectStoragePath,
    *,
    mode: str,
    hook: SegmindHook,
    max_bytes: int | None,
    log: TaskLog,
    expiration: int = DEFAULT_PRESIGN_SECONDS,
    refuse_size: Callable[[str, int], InvalidParameter] | None = None,
) -> str:
    """An http(s) URL Segmind can fetch for an object storage input, presigned or uploaded.

    The object's metadata is read first: a missing object, a wrong bucket, denied access, a directory,
    an empty file or one over ``max_bytes`` is refused before anything is uploaded or submitted.

    :param name: the parameter's name (``video``, ``reference_image``...), for messages.
    :param value: an object storage URI (``s3://[conn_id@]bucket/key``, ``file:///path``...) or an
        ``ObjectStoragePath``.
    :param mode: ``auto`` (presign when the filesystem can and the URL is public, else upload),
        ``presign`` or ``upload``.
    :param hook: the Segmind hook that uploads.
    :param max_bytes: the largest size accepted, or None for no limit.
    :param log: where to say what was done (a presigned URL is logged without its query).
    :param expiration: seconds a presigned URL stays valid.
    :param refuse_size: builds the refusal of a file over ``max_bytes`` from its URI and size (the
        field's declaration words it); :func:`too_large` without advice when None.
    """
    require_input_mode(mode, concerning=f"{name} {value!s}")
    return deliver(
        check_input(name, value, max_bytes=max_bytes, refuse_size=refuse_size),
        mode=mode,
        hook=hook,
        log=log,
        expiration=expiration,
    )


@dataclass(frozen=True)
class Inspected:
    """An object storage input whose metadata passed the checks, ready to be presigned or uploaded.

    :param name: the parameter's name.
    :param path: the object.
    :param fs: its filesystem.
    :param shown: the URI as the user wrote it, for messages.
    :param info: its fsspec ``info()``.
    :param size: its size in bytes, when the store reports one.
    """

    name: str
    path: ObjectStoragePath
    fs: AbstractFileSystem
    shown: str
    info: dict[str, Any]
    size: int | None


def check_input(
    name: str,
    value: str | ObjectStoragePath,
    *,
    max_bytes: int | None,
    refuse_size: Callable[[str, int], InvalidParameter] | None = None,
) -> Inspected:
    """Refuse an object storage input from its metadata alone (see :func:`resolve_input`), uploading nothing:
    so every input of a job is checked before any of them is uploaded. What passes goes to :func:`deliver`.

    :param name: the parameter's name.
    :param value: an object storage URI or an ``ObjectStoragePath``.
    :param max_bytes: the largest size accepted, or None for no limit.
    :param refuse_size: builds the refusal of a file over ``max_bytes``, as for :func:`resolve_input`.
    """
    path = _path(name, value)
    # Messages name the URI as the user wrote it (Airflow 3.0 rewrites some when parsing).
    shown = value.strip() if isinstance(value, str) else str(path)
    fs = _filesystem(name, path, shown)
    info = _metadata(name, path, fs, shown)
    return Inspected(name, path, fs, shown, info, _checked_size(name, shown, info, max_bytes, refuse_size))


def deliver(
    inspected: Inspected,
    *,
    mode: str,
    hook: SegmindHook,
    log: TaskLog,
    expiration: int = DEFAULT_PRESIGN_SECONDS,
) -> str:
    """The URL Segmind fetches for a checked input: presigned, or uploaded to Segmind's files API.

    :param inspected: what :func:`check_input` returned.
    :param mode: ``auto``, ``presign`` or ``upload`` (already checked).
    :param hook: the Segmind hook that uploads.
    :param log: where to say what was done (a presigned URL is logged without its query).
    :param expiration: seconds a presigned URL stays valid.
    """
    name, shown = inspected.name, inspected.shown
    if mode != "upload":
        url = _presigned(
            name, inspected.path, inspected.fs, shown, expiration=expiration, required=mode == "presign", log=log
        )
        if url is not None:
            log.info("Input %s: presigned %s for %d s as %s", name, shown, expiration, display_url(url))
            return url
    return _uploaded(inspected, hook=hook, log=log)


def content_type_of(info: dict[str, Any], filename: str) -> str:
    """The media type to upload a file as: the store's metadata, else the file's extension, else
    ``application/octet-stream``.

    :param info: the file's fsspec ``info()``.
    :param filename: the file's name, for its extension.
    """
    stored = None
    for key in _METADATA_TYPE_KEYS:
        value = info.get(key)
        if isinstance(value, str) and "/" in value:
            stored = value.split(";", 1)[0].strip().lower()
            break
    if stored and stored not in _GENERIC_TYPES and _is_media_type(stored):
        return stored
    guessed, _ = mimetypes.guess_type(filename, strict=False)
    return guessed or FALLBACK_CONTENT_TYPE


#: Metadata keys that tag one version of an object's content (S3 and Azure ETag, GCS etag, md5 or generation).
_TAG_KEYS = ("ETag", "etag", "md5Hash", "generation", "VersionId", "version_id")
#: Metadata keys that hold a modification time (local files, S3 listings, GCS, Azure).
_MTIME_KEYS = ("mtime", "LastModified", "last_modified", "updated", "modified")


def identity_of(info: dict[str, Any]) -> dict[str, Any] | None:
    """What tells one content of a stored file from another, from its fsspec ``info()``: its size and
    its content tag (ETag...), or its modification time where the store gives no tag; None when it gives
    neither (a size alone cannot tell a same-sized rewrite).

    A tag is preferred to a time because stores report times with different precision on different
    calls (an S3 listing in milliseconds, a HEAD in seconds), while a tag reads the same every time.

    :param info: the file's fsspec ``info()``.
    """
    size = info.get("size")
    found: dict[str, Any] = {"size": size} if isinstance(size, int) else {}
    tag = next((info[key] for key in _TAG_KEYS if info.get(key) not in (None, "")), None)
    if tag is not None:
        return found | {"tag": str(tag).strip('"')}
    mtime = next((info[key] for key in _MTIME_KEYS if info.get(key) not in (None, "")), None)
    if mtime is None:
        return None
    return found | {"mtime": mtime.isoformat() if hasattr(mtime, "isoformat") else repr(mtime)}


def _is_media_type(value: str) -> bool:
    try:
        UploadBody(value, 0)
    except ValueError:
        return False
    return True


def _path(name: str, value: str | ObjectStoragePath) -> ObjectStoragePath:
    try:
        return to_path(value)
    except (ValueError, TypeError, ImportError) as exc:
        # fsspec answers an unknown scheme with ValueError, a known one without its package with ImportError.
        raise InvalidParameter(
            name, f"cannot open {value!s}: {exc} (is the provider for this storage installed?)"
        ) from None


def _filesystem(name: str, path: ObjectStoragePath, shown: str) -> AbstractFileSystem:
    try:
        return path.fs
    except Exception as exc:
        raise InvalidParameter(
            name,
            f"cannot reach the storage of {shown} (connection {conn_id_of(path)!r}): {type(exc).__name__}: {exc} "
            "(is the provider for this storage installed?)",
        ) from None


def _metadata(name: str, path: ObjectStoragePath, fs: AbstractFileSystem, shown: str) -> dict[str, Any]:
    try:
        # A listing cached earlier in this process must not hide an object written since.
        fs.invalidate_cache(path.path)
        info = fs.info(path.path)
    except FileNotFoundError:
        raise InvalidParameter(name, _missing(path, fs, shown)) from None
    except PermissionError as exc:
        raise InvalidParameter(name, f"access to {shown} was denied (connection {conn_id_of(path)!r}): {exc}") from None
    except Exception as exc:
        # Anything else (a network error, throttling, a 5xx from the store) may pass on another try.
        raise InvalidParameter(
            name, f"could not read the metadata of {shown}: {type(exc).__name__}: {exc}", retryable=True
        ) from None
    if info.get("type") == "directory":
        raise InvalidParameter(name, f"{shown} is a directory; give the URI of one file")
    return dict(info)


def _missing(path: ObjectStoragePath, fs: AbstractFileSystem, shown: str) -> str:
    bucket = bucket_of(path)
    if bucket:
        try:
            bucket_exists = fs.exists(bucket)
        except Exception:
            bucket_exists = True
        if not bucket_exists:
            return (
                f"{shown} cannot be read: bucket {bucket!r} does not exist, or connection "
                f"{conn_id_of(path)!r} cannot see it"
            )
    return f"{shown} does not exist"


def _checked_size(
    name: str,
    shown: str,
    info: dict[str, Any],
    max_bytes: int | None,
    refuse: Callable[[str, int], InvalidParameter] | None,
) -> int | None:
    size = info.get("size")
    if not isinstance(size, int):
        return None
    if size == 0:
        raise InvalidParameter(name, f"{shown} is empty")
    if max_bytes is not None and size > max_bytes:
        raise refuse(shown, size) if refuse is not None else too_large(name, shown, size, max_bytes)
    return size


def _presigned(
    name: str,
    path: ObjectStoragePath,
    fs: AbstractFileSystem,
    shown: str,
    *,
    expiration: int,
    required: bool,
    log: TaskLog,
) -> str | None:
    """A presigned URL, or None in ``auto`` mode when uploading is the better way."""
    try:
        url = fs.sign(path.path, expiration=expiration)
    except NotImplementedError:
        reason = f"its filesystem ({type(fs).__name__}) cannot presign URLs"
    except Exception as exc:
        reason = f"presigning failed: {type(exc).__name__}: {exc}"
    else:
        if not is_http_url(url):
            reason = "its filesystem signs URLs that are not http(s)"
        else:
            mask_url_secrets(url)
            if is_public_url(url):
                return url
            if required:
                log.warning(
                    "Input %s: the presigned URL of %s points at %s, which Segmind's servers may not reach",
                    name,
                    shown,
                    display_url(url),
                )
                return url
            reason = f"its presigned URL points at a private host ({display_url(url)})"
    if required:
        raise InvalidParameter(
            name, f"{shown} cannot be presigned: {reason}; use input_mode='upload' or 'auto' to upload it"
        )
    log.info("Input %s: %s not presigned (%s); uploading it", name, shown, reason)
    return None


def _uploaded(inspected: Inspected, *, hook: SegmindHook, log: TaskLog) -> str:
    name, path, fs, shown, size = inspected.name, inspected.path, inspected.fs, inspected.shown, inspected.size
    if size is None:
        raise InvalidParameter(name, f"the storage of {shown} does not report its size, so it cannot be uploaded")
    content_type = content_type_of(inspected.info, path.name)

    def source() -> BinaryIO:
        # Small read blocks: some filesystems would otherwise prefetch the whole object.
        stream: BinaryIO = fs.open(path.path, "rb", block_size=4 * UPLOAD_PIECE_BYTES)
        return stream

    try:
        url = hook.upload_asset(source, content_type=content_type, size=size)
    except FileNotFoundError:
        raise InvalidParameter(name, f"{shown} disappeared before it could be uploaded") from None
    except PermissionError as exc:
        raise InvalidParameter(name, f"reading {shown} was denied (connection {conn_id_of(path)!r}): {exc}") from None
    log.info("Input %s: uploaded %s (%s, %d bytes) to Segmind's files API as %s", name, shown, content_type, size, url)
    return url
