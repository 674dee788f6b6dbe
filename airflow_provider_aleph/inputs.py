"""The files a job reads: declared per operator, then checked and made fetchable before any credit is spent.

An operator declares its file fields as :class:`FileInput` rows (``RunwayAlephOperator`` declares
``video`` and ``reference_image``); everything else follows from the declaration:

- an http(s) URL is checked from the worker (its host must be public, it must answer without a
  redirect, and its reported size must be within the field's limit) and sent as it is;
- object storage (``s3://``, ``gs://``, ``file://``..., an ``ObjectStoragePath``) is checked from its
  metadata, then presigned or uploaded to Segmind's files API as ``input_mode`` says;
- lineage reports the declared fields' values as the job's inputs.

What the worker may touch is the DAG author's decision, never a run's: local files only under
``local_roots``, private or loopback hosts only when listed in ``allowed_hosts`` (or the connection's own).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import httpx

from airflow_provider_aleph import __version__
from airflow_provider_aleph.access import require_public_host, require_under_roots
from airflow_provider_aleph.exceptions import InvalidParameter
from airflow_provider_aleph.protocol import USER_AGENT
from airflow_provider_aleph.storage.inbound import (
    DEFAULT_PRESIGN_SECONDS,
    INPUT_MODES,
    Inspected,
    check_input,
    deliver,
    identity_of,
    require_input_mode,
    too_large,
)
from airflow_provider_aleph.storage.paths import Source, classify

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from airflow_provider_aleph.hooks.segmind import SegmindHook
    from airflow_provider_aleph.types import TaskLog

__all__ = [
    "INPUT_MODES",
    "FileInput",
    "InputPolicy",
    "InspectedFiles",
    "InvalidParameter",
    "RemoteFile",
    "check_url_input",
    "deliver_files",
    "inspect_files",
    "lineage_inputs",
    "remote_file",
    "remote_size",
    "require_file",
    "require_input_mode",
    "resolve_files",
    "shown",
]

MIB = 1024 * 1024


@dataclass(frozen=True)
class FileInput:
    """A payload field that names a file the model reads.

    :param name: the payload field (and operator parameter) name, e.g. ``video``.
    :param max_bytes: the largest file the model accepts, or None for no limit.
    :param seconds_used: for a video, how many seconds of it the model uses (Aleph: about 5), or None.
    :param required: whether the field must be given.
    """

    name: str
    max_bytes: int | None = None
    seconds_used: float | None = None
    required: bool = False

    def too_large(self, what: str, size: int) -> InvalidParameter:
        """The refusal of a file of ``size`` bytes over :attr:`max_bytes`.

        :param what: the file as shown to the user (URI or URL without its query).
        :param size: its size in bytes.
        """
        return too_large(self.name, what, size, self.max_bytes or 0, seconds_used=self.seconds_used)


@dataclass(frozen=True)
class InputPolicy:
    """How inputs reach Segmind and what the worker may touch for them; set in DAG code, not by a run.

    :param mode: ``auto``, ``presign`` or ``upload`` (see :func:`~airflow_provider_aleph.storage.resolve_input`).
    :param local_roots: folders local files may resolve under (none: local files are refused).
    :param allowed_hosts: private or loopback hosts (``host`` or ``host:port``) inputs may name; the
        connection's own API and files API hosts belong here.
    :param fit: ``fit_input``: videos of a field that declares its seconds are cut to
        them and re-encoded under the field's limit when needed, instead of refused as too large.
    :param fit_seconds: how many seconds to keep when fitting (None: each field's declared seconds).
    """

    mode: str
    local_roots: tuple[str, ...] = ()
    allowed_hosts: tuple[str, ...] = ()
    fit: bool = False
    fit_seconds: float | None = None


def shown(value: Any) -> str:
    """A value as quoted in a message, cut to a readable length."""
    text = repr(value)
    return text if len(text) <= 120 else text[:117] + "..."


def require_file(spec: FileInput, value: Any) -> Any:
    """A file field's value: an http(s) URL, an object storage URI or an ``ObjectStoragePath`` (None
    when the field is optional and not given); surrounding spaces are dropped.

    :param spec: the field's declaration.
    :param value: the value given (rendered).
    """
    if value is None and not spec.required:
        return None
    if classify(value) is None:
        raise InvalidParameter(
            spec.name,
            "must be an http(s) URL that Segmind can download, an object storage URI such as "
            f"s3://bucket/key or file:///path, or an ObjectStoragePath; got {shown(value)}",
        )
    return value.strip() if isinstance(value, str) else value


@dataclass(frozen=True)
class FitPlan:
    """How a video input is fitted to its field (see :mod:`airflow_provider_aleph.media.fit`).

    :param seconds: how many seconds of its start to keep.
    :param max_bytes: the field's size limit, or None.
    """

    seconds: float
    max_bytes: int | None


@dataclass(frozen=True)
class InspectedFiles:
    """A payload's file inputs after their checks, before any is presigned or uploaded.

    :param payload: the validated payload, as the user gave it.
    :param storage: the object storage inputs that passed, by field, ready for :func:`deliver_files`.
    :param identities: by file field, what tells its content from another (size and ETag or
        modification time, from the store or a HEAD), or None where the input gives neither.
    :param fit: by file field, how to fit it (``fit_input``); fields not named pass as they are.
    """

    payload: dict[str, Any]
    storage: dict[str, Inspected]
    identities: dict[str, dict[str, Any] | None]
    fit: dict[str, FitPlan] = field(default_factory=dict)


def inspect_files(
    payload: Mapping[str, Any],
    declared: Iterable[FileInput],
    *,
    policy: InputPolicy,
    every_storage_value: bool = False,
) -> InspectedFiles:
    """Check every file input of ``payload`` from its metadata (object storage) or a HEAD (http), and note
    its identity; nothing is presigned or uploaded yet, so a refused second file leaves nothing behind.

    :param payload: the validated payload.
    :param declared: the operator's file fields.
    :param policy: local roots and allowed hosts.
    :param every_storage_value: also check undeclared top-level object storage values (the generic
        operator, which cannot know its model's fields).
    """
    specs = {spec.name: spec for spec in declared}
    files = {
        name: (classify(value), specs.get(name) or FileInput(name))
        for name, value in payload.items()
        if name in specs or (every_storage_value and classify(value) is Source.STORAGE)
    }
    storage: dict[str, Inspected] = {}
    identities: dict[str, dict[str, Any] | None] = {}
    fit: dict[str, FitPlan] = {}
    for name, (source, spec) in files.items():
        seconds = (policy.fit_seconds or spec.seconds_used) if policy.fit and spec.seconds_used else None
        # A video that can be fitted is not refused for its size: fitting makes it small enough.
        fitted_spec = spec if seconds is None else replace(spec, max_bytes=None)
        if source is Source.STORAGE:
            require_under_roots(name, payload[name], policy.local_roots)
            storage[name] = check_input(
                name, payload[name], max_bytes=fitted_spec.max_bytes, refuse_size=spec.too_large
            )
            identities[name] = identity_of(storage[name].info)
        elif source is Source.URL:
            identities[name] = _check_url(fitted_spec, payload[name], allowed_hosts=policy.allowed_hosts).identity
        if seconds is not None and source is not None:
            fit[name] = FitPlan(seconds, spec.max_bytes)
            # What is sent depends on the fit too: another fit_seconds is another job.
            known = identities[name]
            identities[name] = None if known is None else known | {"fit_seconds": seconds}
    return InspectedFiles(dict(payload), storage, identities, fit)


def deliver_files(
    inspected: InspectedFiles,
    *,
    mode: str,
    hook: SegmindHook,
    log: TaskLog,
    expiration: int = DEFAULT_PRESIGN_SECONDS,
) -> dict[str, Any]:
    """The payload with every checked object storage input presigned or uploaded (see ``input_mode``); an
    input to fit (``fit_input``) is fitted first when it must be, and the fitted file uploaded.

    :param inspected: what :func:`inspect_files` returned.
    :param mode: ``auto``, ``presign`` or ``upload`` (already checked).
    :param hook: the Segmind hook that uploads.
    :param log: the task's logger.
    :param expiration: seconds a presigned URL stays valid.
    """
    if inspected.fit:
        from airflow_provider_aleph.media.inputs import deliver_fitted

        return deliver_fitted(inspected, mode=mode, hook=hook, log=log, expiration=expiration)
    resolved = dict(inspected.payload)
    for name, checked in inspected.storage.items():
        resolved[name] = deliver(checked, mode=mode, hook=hook, log=log, expiration=expiration)
    return resolved


def resolve_files(
    payload: Mapping[str, Any],
    declared: Iterable[FileInput],
    *,
    policy: InputPolicy,
    hook: SegmindHook,
    log: TaskLog,
    every_storage_value: bool = False,
) -> dict[str, Any]:
    """The payload with every file input checked and turned into a URL Segmind can fetch
    (:func:`inspect_files`, then :func:`deliver_files`).

    :param payload: the validated payload.
    :param declared: the operator's file fields.
    :param policy: input mode, local roots and allowed hosts.
    :param hook: the Segmind hook that uploads.
    :param log: the task's logger.
    :param every_storage_value: also resolve undeclared top-level object storage values.
    """
    inspected = inspect_files(payload, declared, policy=policy, every_storage_value=every_storage_value)
    return deliver_files(inspected, mode=policy.mode, hook=hook, log=log)


def lineage_inputs(payload: Any, declared: Iterable[FileInput], *, every_file_value: bool = False) -> list[Any]:
    """The files a job reads, as given by the user (URLs, object storage URIs or paths), for lineage.

    :param payload: the payload as given (possibly unrendered: anything that is not a file is skipped).
    :param declared: the operator's file fields.
    :param every_file_value: also report undeclared top-level file values (the generic operator).
    """
    if not isinstance(payload, dict):
        return []
    names = {spec.name for spec in declared}
    return [
        value for name, value in payload.items() if classify(value) is not None and (name in names or every_file_value)
    ]


@dataclass(frozen=True)
class RemoteFile:
    """What an http(s) input's server says about it.

    :param size: its size in bytes, or None when not said.
    :param identity: its size with its ``ETag`` (or ``Last-Modified`` when it sends no ETag), or None
        when it sends neither.
    """

    size: int | None
    identity: dict[str, Any] | None


def check_url_input(
    spec: FileInput, url: str, *, allowed_hosts: tuple[str, ...] = (), timeout: float = 30.0
) -> int | None:
    """Refuse an http(s) input Segmind could not fetch, before anything is spent: a private host, a
    redirect, an error answer, or a reported size over the field's limit. Returns the reported size.

    :param spec: the field's declaration.
    :param url: the input's URL.
    :param allowed_hosts: private hosts the DAG author allowed (``host`` or ``host:port``).
    :param timeout: seconds allowed for the check.
    """
    return _check_url(spec, url, allowed_hosts=allowed_hosts, timeout=timeout).size


def _check_url(spec: FileInput, url: str, *, allowed_hosts: tuple[str, ...], timeout: float = 30.0) -> RemoteFile:
    require_public_host(spec.name, url, exempt=allowed_hosts)
    found = remote_file(spec.name, url, timeout=timeout)
    if found.size is not None and spec.max_bytes is not None and found.size > spec.max_bytes:
        raise spec.too_large(url, found.size)
    return found


def remote_size(parameter: str, url: str, *, timeout: float = 30.0) -> int | None:
    """The size in bytes an http(s) input reports, or None when it does not say (see :func:`remote_file`).

    :param parameter: the parameter's name, for the message.
    :param url: the input's URL.
    :param timeout: seconds allowed for the check.
    """
    return remote_file(parameter, url, timeout=timeout).size


def remote_file(parameter: str, url: str, *, timeout: float = 30.0) -> RemoteFile:
    """What an http(s) input reports of itself: its size and identity (one request, two where HEAD is refused).

    Asks with HEAD, and with a one-byte ranged GET where HEAD is refused (presigned URLs often
    sign GET only). Never sends the Segmind key: the URL is a third party's. Call it only after
    :func:`~airflow_provider_aleph.access.require_public_host`.

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
        raise InvalidParameter(
            parameter, f"could not reach {url}: {type(exc).__name__}: {exc}", retryable=True
        ) from None
    if response.is_redirect:
        raise InvalidParameter(
            parameter,
            f"{url} redirects to {response.headers.get('location')!r}; Segmind does not follow "
            "redirects: pass the final URL",
        )
    if not response.is_success:
        temporary = response.status_code == 429 or response.status_code >= 500
        raise InvalidParameter(
            parameter,
            f"{url} answered HTTP {response.status_code}; Segmind could not fetch it",
            retryable=temporary,
        )
    content_range = response.headers.get("content-range", "")
    total = content_range.rpartition("/")[2] if response.status_code == 206 else ""
    length = total if total.isdigit() else response.headers.get("content-length", "")
    size = int(length) if length.isdigit() else None
    tag = response.headers.get("etag", "").strip()
    modified = response.headers.get("last-modified", "").strip()
    if not tag and not modified:
        return RemoteFile(size, None)
    identity: dict[str, Any] = {"size": size} if size is not None else {}
    return RemoteFile(size, identity | ({"tag": tag.strip('"')} if tag else {"mtime": modified}))
