"""The record beside a copied output, ``<output>.segmind.json``: what made the file, so a later run can reuse it.

A new DAG run, a backfill or a cleared task would otherwise pay again for an output that is already
there. The record says which request made the file, from which model, and a fingerprint of the
parameters as the user gave them together with the identity (ETag, size or modification time) of each
input file. A later run that asks for the same thing, into the same path, finds the record, checks that
the file beside it is still the one the record describes, and returns the recorded result instead of
submitting (``if_output_exists="reuse"``).

The record holds no secret: no API key, no presigned URL's query, only a digest of the parameters.
Anything unreadable, foreign or mismatched counts as no record, which means "submit".
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from airflow_provider_aleph import __version__
from airflow_provider_aleph.exceptions import InvalidParameter
from airflow_provider_aleph.storage.inbound import identity_of
from airflow_provider_aleph.storage.outbound import as_output_path, is_folder_output, write_atomically
from airflow_provider_aleph.storage.paths import is_http_url

if TYPE_CHECKING:
    from collections.abc import Mapping

    from airflow.providers.common.compat.sdk import ObjectStoragePath

    from airflow_provider_aleph.types import SegmindResult, TaskLog

#: What the record's file name adds to the output's.
RECORD_SUFFIX = ".segmind.json"
#: The record's ``kind``: a JSON file beside an output that says anything else is not ours.
RECORD_KIND = "airflow-provider-aleph/output-record"
RECORD_VERSION = 1
#: A record is a few hundred bytes; anything much larger is not one (and is not read whole).
MAX_RECORD_BYTES = 64 * 1024
#: The values of ``if_output_exists``.
IF_OUTPUT_EXISTS = ("reuse", "overwrite", "fail")


def require_if_output_exists(value: Any) -> str:
    """An ``if_output_exists``: one of :data:`IF_OUTPUT_EXISTS` (checked at parse time and once rendered).

    :param value: the value given.
    """
    text = value.strip() if isinstance(value, str) else value
    if text not in IF_OUTPUT_EXISTS:
        raise InvalidParameter("if_output_exists", f"must be one of {', '.join(IF_OUTPUT_EXISTS)}; got {value!r}")
    return str(text)


def fingerprint_of(model: str, payload: Mapping[str, Any], inputs: Mapping[str, dict[str, Any] | None]) -> str | None:
    """A digest of what a job is made from: model, parameters as given (before presigning), and the
    identity of each input file; None when an input gives no identity, so its content cannot be told.

    :param model: the model slug.
    :param payload: the validated parameters, before inputs are presigned or uploaded.
    :param inputs: by file field, its identity (see :func:`~airflow_provider_aleph.storage.inbound.identity_of`).
    """
    if any(identity is None for identity in inputs.values()):
        return None
    text = json.dumps({"model": model, "payload": payload, "inputs": inputs}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class Provenance:
    """What made a job, known when it was submitted and handed on to whoever copies its output (the
    worker after a deferral receives it in the resume kwargs: the operator object is rebuilt there).

    :param model: the model slug, or None when unknown (the sensor).
    :param fingerprint: :func:`fingerprint_of` the job, or None when it cannot be told (never matches).
    :param submitted_at: ISO-8601 time of the submit, if known.
    """

    model: str | None = None
    fingerprint: str | None = None
    submitted_at: str | None = None

    def to_json(self) -> dict[str, Any]:
        """As plain JSON (trigger resume kwargs)."""
        return asdict(self)

    @classmethod
    def from_json(cls, value: Any) -> Provenance:
        """Read back; anything malformed becomes an empty provenance, whose record never matches."""
        if not isinstance(value, dict):
            return cls()
        return cls(*(_text(value.get(name)) for name in ("model", "fingerprint", "submitted_at")))


@dataclass(frozen=True)
class OutputRecord:
    """The contents of ``<output>.segmind.json``.

    :param request_id: the Segmind request that made the output.
    :param model: the model slug, or None when the copy did not know it (the sensor).
    :param fingerprint: see :func:`fingerprint_of`; None never matches.
    :param output: the identity of the output file as written (size and ETag or modification time).
    :param output_url: the output's URL, without any query string.
    :param metrics: the API's metrics.
    :param cost: the job's cost, if the API sent one.
    :param submitted_at: ISO-8601 time of the submit, if known.
    :param copied_at: ISO-8601 time the output was copied.
    :param result: the API's raw ``output`` value, when it is a URL (without its query) or plain text.
    """

    request_id: str
    model: str | None
    fingerprint: str | None
    output: dict[str, Any]
    output_url: str | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    cost: Any = None
    submitted_at: str | None = None
    copied_at: str | None = None
    result: Any = None

    def to_json(self) -> dict[str, Any]:
        """The record as written, with its kind, version and writer."""
        return {"kind": RECORD_KIND, "version": RECORD_VERSION, "written_by": __version__} | asdict(self)

    @classmethod
    def from_json(cls, value: Any) -> OutputRecord | None:
        """Read a record back; None for anything that is not one of ours."""
        if not isinstance(value, dict) or value.get("kind") != RECORD_KIND or value.get("version") != RECORD_VERSION:
            return None
        request_id, output = value.get("request_id"), value.get("output")
        if not isinstance(request_id, str) or not request_id or not isinstance(output, dict) or not output:
            return None
        metrics = value.get("metrics")
        return cls(
            request_id=request_id,
            model=_text(value.get("model")),
            fingerprint=_text(value.get("fingerprint")),
            output=output,
            output_url=_text(value.get("output_url")),
            metrics=metrics if isinstance(metrics, dict) else {},
            cost=value.get("cost"),
            submitted_at=_text(value.get("submitted_at")),
            copied_at=_text(value.get("copied_at")),
            result=value.get("result"),
        )

    def mismatch(self, *, fingerprint: str | None, present: dict[str, Any] | None) -> str | None:
        """Why this record cannot stand for the job asked for, or None when it can.

        :param fingerprint: :func:`fingerprint_of` the job asked for (None: it cannot be told).
        :param present: the identity of the output file now beside the record (None: missing or unknown).
        """
        if fingerprint is None:
            return "an input gives no identity (no ETag, modification time), so its content cannot be compared"
        if self.fingerprint is None:
            return "the record does not say what the output was made from"
        if self.fingerprint != fingerprint:
            return "it was made from another model, other parameters or other input content"
        if present is None or present != self.output:
            return "the file is not the one the record describes (replaced or changed since)"
        return None

    def result_dict(self, output_path: str) -> SegmindResult:
        """The task's return value, as recorded.

        :param output_path: the output's URI.
        """
        return {
            "request_id": self.request_id,
            "status": "COMPLETED",
            "output_url": self.output_url,
            "output_path": output_path,
            "metrics": self.metrics,
            "output": self.result,
            "cost": self.cost,
        }


def record_path(output: ObjectStoragePath) -> ObjectStoragePath:
    """Where the record of ``output`` lives: beside it, named ``<output name>.segmind.json``."""
    return output.parent / f"{output.name}{RECORD_SUFFIX}"


def file_identity(output: ObjectStoragePath) -> dict[str, Any] | None:
    """The identity of a stored file as its store reports it now; None when it is missing or unknown."""
    fs = output.fs
    try:
        fs.invalidate_cache(str(output.path))
        return identity_of(dict(fs.info(str(output.path))))
    except FileNotFoundError:
        return None


def read_record(output: ObjectStoragePath, *, log: TaskLog) -> OutputRecord | None:
    """The record beside ``output``, or None when there is none, or it is unreadable or foreign (logged).

    :param output: the output file (not its record).
    :param log: the task's logger.
    """
    where = record_path(output)
    try:
        with where.fs.open(str(where.path), "rb") as handle:
            raw = handle.read(MAX_RECORD_BYTES + 1)
    except FileNotFoundError:
        return None
    except Exception as exc:
        log.warning(
            "Could not read the output record %s (%s: %s); treating it as absent", where, type(exc).__name__, exc
        )
        return None
    record = None
    if len(raw) <= MAX_RECORD_BYTES:
        try:
            record = OutputRecord.from_json(json.loads(raw))
        except ValueError:
            record = None
    if record is None:
        log.warning("%s is not a readable output record of this provider; ignoring it", where)
    return record


def write_record(output: ObjectStoragePath, record: OutputRecord, *, log: TaskLog) -> None:
    """Write ``record`` beside ``output``, atomically; a failure is only a warning (the output is kept,
    and a later run that finds no record submits anew).

    :param output: the output file just written.
    :param record: what to write.
    :param log: the task's logger.
    """
    where = record_path(output)
    data = json.dumps(record.to_json(), indent=2, sort_keys=True, default=str).encode()
    try:
        write_atomically(where.fs, str(where.path), data)
    except Exception as exc:
        log.warning(
            "Could not write the output record %s (%s: %s): a later run will not reuse this output",
            where,
            type(exc).__name__,
            exc,
        )


def discard_record(output: ObjectStoragePath, *, log: TaskLog) -> None:
    """Remove the record beside ``output`` before the file is replaced, so a stale record never
    describes a new file (the file's identity is checked as well, should this fail).

    :param output: the output file about to be written.
    :param log: the task's logger.
    """
    where = record_path(output)
    try:
        if where.fs.exists(str(where.path)):
            where.fs.rm(str(where.path))
    except Exception as exc:
        log.warning("Could not remove the old output record %s (%s: %s)", where, type(exc).__name__, exc)


def record_for(result: SegmindResult, written: ObjectStoragePath, provenance: Provenance) -> OutputRecord | None:
    """The record of an output just copied to ``written``; None when the store reports no identity for it.

    :param result: the task's result.
    :param written: the file written.
    :param provenance: what made the job, as far as the copier knows.
    """
    try:
        present = file_identity(written)
    except Exception:
        present = None
    if present is None:
        return None
    return OutputRecord(
        request_id=result["request_id"],
        model=provenance.model,
        fingerprint=provenance.fingerprint,
        output=present,
        output_url=_without_query(result["output_url"]),
        metrics=dict(result["metrics"]),
        cost=result["cost"],
        submitted_at=provenance.submitted_at,
        copied_at=datetime.now(UTC).isoformat(),
        result=_plain(result["output"]),
    )


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _without_query(url: str | None) -> str | None:
    if not url:
        return None
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc.rpartition("@")[2], parts.path, "", ""))


def _plain(value: Any) -> Any:
    """The raw output when it is safe and small to keep: a URL loses its query; anything else is dropped."""
    if isinstance(value, str):
        return _without_query(value) if is_http_url(value) else (value if len(value) <= 2048 else None)
    if isinstance(value, list) and all(isinstance(item, str) for item in value) and len(value) <= 16:
        return [_plain(item) for item in value]
    return None


def existing_output(
    output_path: str | ObjectStoragePath | None, *, mode: str, fingerprint: str | None, log: TaskLog
) -> SegmindResult | None:
    """What ``if_output_exists`` makes of a file already at ``output_path``, before anything is spent:
    the recorded result to return instead of submitting (``reuse`` and a matching record), or None to
    submit (and replace it). ``fail`` raises when the file exists. A folder ``output_path`` cannot know
    its file name before the job, so it always submits. Call ``check_output_path`` first.

    :param output_path: the rendered ``output_path``; None or empty for no copy.
    :param mode: ``reuse``, ``overwrite`` or ``fail`` (already checked).
    :param fingerprint: :func:`fingerprint_of` the job asked for, or None when it cannot be told.
    :param log: the task's logger.
    """
    if output_path is None or (isinstance(output_path, str) and not output_path.strip()) or mode == "overwrite":
        return None
    if is_folder_output(output_path):
        log.info(
            "output_path %s is a folder: the file's name is known only after the job, so it is submitted", output_path
        )
        return None
    path = as_output_path(output_path)
    try:
        present = file_identity(path)
        exists = present is not None or path.exists()
    except Exception as exc:
        log.warning("Could not tell whether %s exists (%s: %s); submitting", output_path, type(exc).__name__, exc)
        return None
    if not exists:
        return None
    if mode == "fail":
        raise InvalidParameter(
            "output_path", f"{output_path!s} already exists and if_output_exists is 'fail'; nothing was submitted"
        )
    record = read_record(path, log=log)
    if record is None:
        log.info("%s exists without a record of what made it; submitting a new job to replace it", path)
        return None
    why = record.mismatch(fingerprint=fingerprint, present=present)
    if why is not None:
        log.info(
            "%s was made by Segmind request %s, but %s; submitting a new job to replace it",
            path,
            record.request_id,
            why,
        )
        return None
    log.info(
        "Reusing %s (record %s): Segmind request %s made it from the same model, parameters and input content; "
        "nothing was submitted",
        path,
        record_path(path),
        record.request_id,
    )
    return record.result_dict(str(path))
