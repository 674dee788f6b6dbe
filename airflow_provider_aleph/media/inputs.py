"""``fit_input=True`` in the worker: video inputs fitted to their field before anything is spent.

An object storage input is read through its own filesystem (the path already passed ``local_roots``
and the store's metadata check; nothing else is opened); an http(s) input, whose host already passed
the public-host check, is downloaded by chunks into a private temporary folder (no redirect is
followed). Each is probed, and when it is longer than the seconds kept or larger than the field's
limit, cut and re-encoded into that folder. Every input is fitted (or found fitting) before any is
presigned or uploaded, so a source that cannot be decoded fails the task with nothing sent. A fitted
file is derived, so it is uploaded to Segmind's files API (it has no URL to presign); an input that
already fits is sent unchanged: presigned or uploaded as ``input_mode`` says, or as its own URL. The
temporary folder is removed once the uploads are done, whatever happened."""

from __future__ import annotations

import tempfile
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from airflow_provider_aleph.exceptions import InvalidParameter
from airflow_provider_aleph.storage.inbound import DEFAULT_PRESIGN_SECONDS, Inspected, deliver
from airflow_provider_aleph.storage.paths import to_path

if TYPE_CHECKING:
    from airflow_provider_aleph.hooks.segmind import SegmindHook
    from airflow_provider_aleph.inputs import FitPlan, InspectedFiles
    from airflow_provider_aleph.types import TaskLog

#: Read-ahead of an object store's file while decoding: bounds what the reader holds at once.
READ_BLOCK_BYTES = 4 * 1024 * 1024
#: The largest http(s) input downloaded to be fitted (it is spooled to the worker's temporary disk).
MAX_DOWNLOAD_BYTES = 4 * 1024 * 1024 * 1024


def deliver_fitted(
    inspected: InspectedFiles,
    *,
    mode: str,
    hook: SegmindHook,
    log: TaskLog,
    expiration: int = DEFAULT_PRESIGN_SECONDS,
) -> dict[str, Any]:
    """The payload with its inputs fitted where needed, then presigned or uploaded (fitted ones uploaded).

    :param inspected: the checked inputs, with the fit plan of each input to fit.
    :param mode: ``auto``, ``presign`` or ``upload`` (already checked), for inputs sent unchanged.
    :param hook: the Segmind hook that uploads.
    :param log: the task's logger.
    :param expiration: seconds a presigned URL stays valid.
    """
    resolved = dict(inspected.payload)
    with tempfile.TemporaryDirectory(prefix="segmind-fit-") as folder:
        sent: dict[str, tuple[Inspected, str]] = {}
        for name, checked in inspected.storage.items():
            plan = inspected.fit.get(name)
            fitted = fit_input(checked, plan, folder, log=log) if plan is not None else None
            sent[name] = (fitted, "upload") if fitted is not None else (checked, mode)
        for name, plan in inspected.fit.items():
            if name not in inspected.storage:
                # An http(s) input: fitted from a download, or sent as its URL when it already fits.
                fitted = fit_input(download(name, inspected.payload[name], folder), plan, folder, log=log)
                if fitted is not None:
                    sent[name] = (fitted, "upload")
        for name, (checked, how) in sent.items():
            resolved[name] = deliver(checked, mode=how, hook=hook, log=log, expiration=expiration)
    return resolved


def download(name: str, url: str, folder: str, *, timeout: float = 60.0) -> Inspected:
    """Stream an http(s) input into ``folder`` by chunks (its host was checked already; no redirect is
    followed, no Segmind key is sent), at most :data:`MAX_DOWNLOAD_BYTES`; the local copy, to be fitted.

    :param name: the parameter's name.
    :param url: the input's URL.
    :param folder: the private temporary folder.
    :param timeout: seconds allowed per network operation.
    """
    import httpx

    from airflow_provider_aleph import __version__
    from airflow_provider_aleph.protocol import USER_AGENT
    from airflow_provider_aleph.storage.paths import display_url

    shown = display_url(url)
    dest = f"{folder}/{name}.source"
    written = 0
    try:
        with (
            httpx.Client(timeout=timeout, headers={"User-Agent": f"{USER_AGENT}/{__version__}"}) as client,
            client.stream("GET", url) as response,
        ):
            if response.status_code != 200:
                raise InvalidParameter(
                    name,
                    f"{shown} answered HTTP {response.status_code} when downloaded to fit it",
                    retryable=response.status_code == 429 or response.status_code >= 500,
                )
            with open(dest, "wb") as out:
                for chunk in response.iter_bytes():
                    written += len(chunk)
                    if written > MAX_DOWNLOAD_BYTES:
                        raise InvalidParameter(
                            name, f"{shown} is over {MAX_DOWNLOAD_BYTES} bytes, the most fit_input downloads"
                        )
                    out.write(chunk)
    except httpx.HTTPError as exc:
        raise InvalidParameter(
            name, f"{shown} could not be downloaded to fit it: {type(exc).__name__}: {exc}", retryable=True
        ) from None
    path = to_path(f"file://{dest}")
    return Inspected(name, path, path.fs, shown, {"size": written, "type": "file"}, written)


def fit_input(checked: Inspected, plan: FitPlan, folder: str, *, log: TaskLog) -> Inspected | None:
    """Fit one object storage video into ``folder``; None when it already fits (it is then sent unchanged).

    :param checked: the input, checked from its metadata.
    :param plan: how many seconds to keep and the field's size limit.
    :param folder: a private temporary folder for the fitted file.
    :param log: the task's logger.
    :raises InvalidParameter: naming the field, when the source is not a decodable video or cannot be read.
    """
    from airflow_provider_aleph.media.fit import TARGET_BYTES, NotAVideo, fit_video, fits, probe

    name, shown = checked.name, checked.shown
    target = TARGET_BYTES if plan.max_bytes is None else min(TARGET_BYTES, int(plan.max_bytes * 0.9))
    dest = f"{folder}/{name}.mp4"
    try:
        with checked.fs.open(str(checked.path.path), "rb", block_size=READ_BLOCK_BYTES) as handle:
            found = probe(handle)
            if fits(found, checked.size, seconds=plan.seconds, max_bytes=plan.max_bytes):
                log.info(
                    "Input %s: %s already fits (%s s, %s bytes): sent unchanged",
                    name,
                    shown,
                    _shown_seconds(found.seconds),
                    checked.size,
                )
                return None
            handle.seek(0)
            fitted = fit_video(handle, dest, seconds=plan.seconds, target_bytes=target)
    except NotAVideo as exc:
        raise InvalidParameter(
            name, f"{shown} is not a video that can be decoded ({exc}); fit_input=True cuts and re-encodes videos only"
        ) from None
    except (FileNotFoundError, PermissionError) as exc:
        raise InvalidParameter(name, f"{shown} could not be read to fit it: {type(exc).__name__}: {exc}") from None
    except OSError as exc:
        raise InvalidParameter(
            name, f"{shown} could not be read to fit it: {type(exc).__name__}: {exc}", retryable=True
        ) from None
    log.info(
        "Input %s: fitted %s (%s s, %s bytes, %dx%d %s) to its first %g s: %d frames, %dx%d H.264, %d bytes",
        name,
        shown,
        _shown_seconds(found.seconds),
        checked.size,
        found.width,
        found.height,
        found.codec,
        plan.seconds,
        fitted.frames,
        fitted.width,
        fitted.height,
        fitted.size,
    )
    path = to_path(f"file://{fitted.path}")
    info = {"size": fitted.size, "type": "file", "ContentType": "video/mp4"}
    return replace(
        checked, path=path, fs=path.fs, shown=f"{shown} (fitted to {plan.seconds:g} s)", info=info, size=fitted.size
    )


def _shown_seconds(seconds: float | None) -> str:
    return "unknown" if seconds is None else f"{seconds:.2f}"
