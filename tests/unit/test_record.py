"""The output record and if_output_exists with real local files: what a record holds, when it matches,
what counts as no record, and the writability probe. Whole runs are in tests/dags/test_reuse_dags.py."""

from __future__ import annotations

import json
import logging
import os
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pytest
from airflow.providers.common.compat.sdk import ObjectStoragePath

from airflow_provider_aleph.exceptions import InvalidParameter
from airflow_provider_aleph.operators.aleph import RunwayAlephOperator
from airflow_provider_aleph.operators.segmind import SegmindSubmitOperator
from airflow_provider_aleph.storage.inbound import identity_of
from airflow_provider_aleph.storage.outbound import probe_output_path
from airflow_provider_aleph.storage.record import (
    MAX_RECORD_BYTES,
    RECORD_KIND,
    OutputRecord,
    Provenance,
    existing_output,
    file_identity,
    fingerprint_of,
    read_record,
    record_for,
    record_path,
    require_if_output_exists,
    write_record,
)

if TYPE_CHECKING:
    from pathlib import Path

    from airflow_provider_aleph.types import SegmindResult

LOG = logging.getLogger("test_record")
INPUTS = {"video": {"size": 10, "tag": "abc"}}


def result(
    request_id: str = "req-1", url: str = "https://cdn.example.com/out/a.mp4?X-Amz-Signature=s3cr3t"
) -> SegmindResult:
    return {
        "request_id": request_id,
        "status": "COMPLETED",
        "output_url": url,
        "output_path": None,
        "metrics": {"cost": 0.5, "inference_time": 12},
        "output": url,
        "cost": 0.5,
    }


def written(tmp_path: Path, data: bytes = b"edited video", digest: str | None = "f" * 64) -> ObjectStoragePath:
    """An output file and its record, as a finished copy leaves them."""
    target = tmp_path / "edited.mp4"
    target.write_bytes(data)
    path = ObjectStoragePath(target.as_uri())
    record = record_for(result(), path, Provenance("runway-gen4-aleph", digest, "2026-01-01T00:00:00+00:00"))
    assert record is not None
    write_record(path, record, log=LOG)
    return path


# -- if_output_exists --------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["reuse", "overwrite", "fail", " fail "])
def test_if_output_exists_accepts_the_three_modes(value: str) -> None:
    assert require_if_output_exists(value) == value.strip()


@pytest.mark.parametrize("value", ["skip", "", None, "REUSE", 1])
def test_if_output_exists_refuses_anything_else_naming_it(value: Any) -> None:
    with pytest.raises(InvalidParameter) as caught:
        require_if_output_exists(value)
    assert caught.value.parameter == "if_output_exists"
    assert "must be one of reuse, overwrite, fail" in str(caught.value)


@pytest.mark.parametrize("operator", [RunwayAlephOperator, SegmindSubmitOperator])
def test_a_literal_is_checked_at_parse_time_and_a_template_once_rendered(operator: type) -> None:
    kwargs: dict[str, Any] = {"prompt": "p", "video": "https://a.example/v.mp4"}
    if operator is SegmindSubmitOperator:
        kwargs = {"model": "flux"}
    with pytest.raises(InvalidParameter, match="if_output_exists"):
        operator(task_id="t", if_output_exists="skip", **kwargs)
    assert operator(task_id="t", if_output_exists="{{ params.mode }}", **kwargs).if_output_exists == "{{ params.mode }}"
    assert operator(task_id="t", **kwargs).if_output_exists == "reuse"


# -- identities and fingerprints ---------------------------------------------------------------------


def test_identity_prefers_a_content_tag_and_falls_back_to_the_modification_time() -> None:
    stamp = datetime(2026, 1, 1, tzinfo=UTC)
    assert identity_of({"size": 5, "ETag": '"abc"', "LastModified": stamp}) == {"size": 5, "tag": "abc"}
    assert identity_of({"size": 5, "LastModified": stamp}) == {"size": 5, "mtime": stamp.isoformat()}
    assert identity_of({"size": 5, "mtime": 1.5}) == {"size": 5, "mtime": "1.5"}
    assert identity_of({"size": 5}) is None, "a size alone cannot tell a same-sized rewrite"


def test_a_local_file_rewritten_gets_another_identity(tmp_path: Path) -> None:
    target = tmp_path / "a.mp4"
    target.write_bytes(b"one")
    before = file_identity(ObjectStoragePath(target.as_uri()))
    target.write_bytes(b"two")
    os.utime(target, (1_000_000_000, 1_000_000_000))
    assert before is not None
    assert file_identity(ObjectStoragePath(target.as_uri())) not in (None, before)
    assert file_identity(ObjectStoragePath((tmp_path / "missing").as_uri())) is None


def test_fingerprint_changes_with_model_parameters_and_input_content() -> None:
    base = fingerprint_of("runway-gen4-aleph", {"prompt": "winter", "video": "s3://b/k"}, INPUTS)
    assert base == fingerprint_of("runway-gen4-aleph", {"video": "s3://b/k", "prompt": "winter"}, dict(INPUTS))
    assert base != fingerprint_of("other-model", {"prompt": "winter", "video": "s3://b/k"}, INPUTS)
    assert base != fingerprint_of("runway-gen4-aleph", {"prompt": "summer", "video": "s3://b/k"}, INPUTS)
    assert base != fingerprint_of(
        "runway-gen4-aleph", {"prompt": "winter", "video": "s3://b/k"}, {"video": {"size": 10, "tag": "abd"}}
    )


def test_an_input_without_identity_makes_no_fingerprint_and_no_file_input_does() -> None:
    assert fingerprint_of("m", {"video": "https://a.example/v"}, {"video": None}) is None
    assert fingerprint_of("flux", {"prompt": "snow"}, {}) is not None


# -- the record ----------------------------------------------------------------------------------------


def test_a_record_holds_what_made_the_output_and_no_signature(tmp_path: Path) -> None:
    path = written(tmp_path)
    text = (tmp_path / "edited.mp4.segmind.json").read_text()
    data = json.loads(text)
    assert data["kind"] == RECORD_KIND
    assert data["request_id"] == "req-1"
    assert data["model"] == "runway-gen4-aleph"
    assert data["fingerprint"] == "f" * 64
    assert data["cost"] == 0.5
    assert data["output"] == file_identity(path)
    assert data["output_url"] == "https://cdn.example.com/out/a.mp4"
    assert "s3cr3t" not in text
    assert "Signature" not in text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["edited.mp4", "edited.mp4.segmind.json"], "no temp file"


def test_a_record_reads_back_and_matches_only_the_same_job_and_file(tmp_path: Path) -> None:
    path = written(tmp_path)
    record = read_record(path, log=LOG)
    assert record is not None
    present = file_identity(path)
    assert record.mismatch(fingerprint="f" * 64, present=present) is None
    assert "other parameters" in (record.mismatch(fingerprint="e" * 64, present=present) or "")
    assert "no identity" in (record.mismatch(fingerprint=None, present=present) or "")
    assert "replaced or changed" in (record.mismatch(fingerprint="f" * 64, present=None) or "")
    assert "replaced or changed" in (record.mismatch(fingerprint="f" * 64, present={"size": 1, "mtime": "1"}) or "")


def test_a_record_without_fingerprint_never_matches(tmp_path: Path) -> None:
    record = read_record(written(tmp_path, digest=None), log=LOG)
    assert record is not None
    assert record.model == "runway-gen4-aleph"
    assert "does not say" in (record.mismatch(fingerprint="f" * 64, present=record.output) or "")


@pytest.mark.parametrize(
    "content",
    [
        b"{not json",
        b"[]",
        json.dumps({"kind": "someone-else", "version": 1, "request_id": "r", "output": {"size": 1}}).encode(),
        json.dumps({"kind": RECORD_KIND, "version": 99, "request_id": "r", "output": {"size": 1}}).encode(),
        json.dumps({"kind": RECORD_KIND, "version": 1, "output": {"size": 1}}).encode(),
        b" " * (MAX_RECORD_BYTES + 1),
    ],
    ids=["corrupt", "not-a-dict", "foreign", "future-version", "no-request-id", "oversized"],
)
def test_a_corrupt_or_foreign_record_counts_as_none(content: bytes, tmp_path: Path) -> None:
    path = written(tmp_path)
    (tmp_path / "edited.mp4.segmind.json").write_bytes(content)
    assert read_record(path, log=LOG) is None
    assert existing_output(path.as_uri(), mode="reuse", fingerprint="f" * 64, log=LOG) is None


def test_record_path_is_beside_the_output() -> None:
    path = ObjectStoragePath("file:///data/out/edited.mp4")
    assert str(record_path(path)) == "file:///data/out/edited.mp4.segmind.json"


def test_provenance_survives_the_trip_through_resume_kwargs() -> None:
    provenance = Provenance("m", "f" * 64, "2026-01-01T00:00:00+00:00")
    assert Provenance.from_json(json.loads(json.dumps(provenance.to_json()))) == provenance
    assert Provenance.from_json(None) == Provenance()
    assert Provenance.from_json({"fingerprint": 5}) == Provenance()


def test_output_record_round_trips() -> None:
    record = OutputRecord("r", "m", "f", {"size": 3, "tag": "t"}, "https://x.example/o.mp4", {"cost": 1}, 1)
    assert OutputRecord.from_json(json.loads(json.dumps(record.to_json()))) == record


# -- if_output_exists on an existing file ---------------------------------------------------------------


def test_reuse_returns_the_recorded_result_for_the_same_job(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = written(tmp_path)
    with caplog.at_level(logging.INFO, logger="test_record"):
        reused = existing_output(path.as_uri(), mode="reuse", fingerprint="f" * 64, log=LOG)
    assert reused is not None
    assert reused["request_id"] == "req-1"
    assert reused["output_path"] == path.as_uri()
    assert reused["cost"] == 0.5
    assert reused["output"] == "https://cdn.example.com/out/a.mp4"
    (line,) = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Reusing")]
    assert "edited.mp4.segmind.json" in line
    assert "req-1" in line
    assert "nothing was submitted" in line


def test_reuse_submits_for_another_job_a_missing_file_or_a_file_without_record(tmp_path: Path) -> None:
    path = written(tmp_path)
    assert existing_output(path.as_uri(), mode="reuse", fingerprint="e" * 64, log=LOG) is None
    assert existing_output((tmp_path / "other.mp4").as_uri(), mode="reuse", fingerprint="f" * 64, log=LOG) is None
    (tmp_path / "edited.mp4.segmind.json").unlink()
    assert existing_output(path.as_uri(), mode="reuse", fingerprint="f" * 64, log=LOG) is None


def test_overwrite_always_submits_and_fail_refuses_an_existing_file(tmp_path: Path) -> None:
    path = written(tmp_path)
    assert existing_output(path.as_uri(), mode="overwrite", fingerprint="f" * 64, log=LOG) is None
    with pytest.raises(InvalidParameter) as caught:
        existing_output(path.as_uri(), mode="fail", fingerprint="f" * 64, log=LOG)
    assert caught.value.parameter == "output_path"
    assert f"{path.as_uri()} already exists" in str(caught.value)
    assert existing_output((tmp_path / "new.mp4").as_uri(), mode="fail", fingerprint=None, log=LOG) is None


def test_a_folder_output_path_always_submits(tmp_path: Path) -> None:
    written(tmp_path)
    assert existing_output(tmp_path.as_uri() + "/", mode="reuse", fingerprint="f" * 64, log=LOG) is None
    assert existing_output(tmp_path.as_uri(), mode="fail", fingerprint="f" * 64, log=LOG) is None


# -- the writability probe -------------------------------------------------------------------------------


def test_the_probe_creates_a_missing_local_folder_and_leaves_nothing_behind(tmp_path: Path) -> None:
    probe_output_path((tmp_path / "a" / "b" / "edited.mp4").as_uri(), log=LOG)
    assert (tmp_path / "a" / "b").is_dir()
    assert list((tmp_path / "a" / "b").iterdir()) == []
    probe_output_path(str(tmp_path / "folder") + "/", log=LOG)
    assert list((tmp_path / "folder").iterdir()) == []


@pytest.mark.parametrize("target", ["file:///proc/aleph-probe/edited.mp4", "file:///proc/edited.mp4"])
def test_the_probe_refuses_a_place_nothing_can_be_written(target: str) -> None:
    with pytest.raises(InvalidParameter) as caught:
        probe_output_path(target, log=LOG)
    assert caught.value.parameter == "output_path"
    assert f"{target} cannot be written" in str(caught.value)
    assert not caught.value.retryable


def test_the_probe_refuses_a_file_where_a_folder_is_needed(tmp_path: Path) -> None:
    (tmp_path / "taken").write_text("x")
    with pytest.raises(InvalidParameter, match="cannot be written"):
        probe_output_path((tmp_path / "taken" / "edited.mp4").as_uri(), log=LOG)


def test_the_probe_accepts_no_output_path() -> None:
    probe_output_path(None, log=LOG)
    probe_output_path("  ", log=LOG)
