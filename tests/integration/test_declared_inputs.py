"""A new model's operator is a declaration: two file fields in one class get uploads, size refusal and
lineage with no other code (real HTTP against the emulator, real files through ObjectStoragePath)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
from airflow.providers.common.compat.sdk import AirflowFailException

from airflow_provider_aleph.inputs import FileInput
from airflow_provider_aleph.operators.segmind import SegmindSubmitOperator

if TYPE_CHECKING:
    from pathlib import Path

    from airflow_provider_aleph.emulator import Emulator


class TwoClipOperator(SegmindSubmitOperator):
    """A made-up model that blends two clips: this declaration is all of its code."""

    file_inputs = (
        FileInput("first_clip", max_bytes=4096, seconds_used=3, required=True),
        FileInput("second_clip", max_bytes=4096),
    )


class RecordingTI:
    def __init__(self) -> None:
        self.xcom: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.xcom[key] = value


def _operator(tmp_path: Path, **payload: Any) -> TwoClipOperator:
    return TwoClipOperator(
        task_id="blend",
        model="two-clip-blend",
        payload={"prompt": "blend them", **payload},
        deferrable=False,
        poll_interval=0.05,
        local_roots=[tmp_path],
    )


def _clip(tmp_path: Path, name: str, size: int) -> Path:
    path = tmp_path / name
    path.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(size - 12))
    return path


def test_both_declared_files_are_uploaded_and_reported_as_lineage(segmind_conn: Emulator, tmp_path: Path) -> None:
    first, second = _clip(tmp_path, "a.mp4", 1000), _clip(tmp_path, "b.mp4", 2000)
    operator = _operator(tmp_path, first_clip=first.as_uri(), second_clip=second.as_uri())
    ti = RecordingTI()

    result = operator.execute({"ti": ti})  # type: ignore[arg-type]

    assert result["status"] == "COMPLETED"
    assert segmind_conn.submissions == 1
    uploads = segmind_conn.stats()["uploads"]
    assert uploads["count"] == 2
    (job,) = segmind_conn.jobs.values()
    assert {job.payload["first_clip"], job.payload["second_clip"]} == set(uploads["urls"])
    assert ti.xcom["request_id"] == result["request_id"]
    lineage = operator.get_openlineage_facets_on_complete(None)
    assert sorted(dataset.name for dataset in lineage.inputs) == [str(first), str(second)]


@pytest.mark.parametrize("field", ["first_clip", "second_clip"])
def test_a_declared_file_over_its_limit_is_refused_naming_it(
    segmind_conn: Emulator, tmp_path: Path, field: str
) -> None:
    small, big = _clip(tmp_path, "small.mp4", 1000), _clip(tmp_path, "big.mp4", 5000)
    files = {"first_clip": small.as_uri(), "second_clip": small.as_uri()} | {field: big.as_uri()}

    with pytest.raises(AirflowFailException) as refused:
        _operator(tmp_path, **files).execute({"ti": RecordingTI()})  # type: ignore[arg-type]

    assert f"Invalid parameter '{field}'" in str(refused.value)
    assert "at most 0 MiB" not in str(refused.value)
    assert "5000 bytes" in str(refused.value)
    assert segmind_conn.submissions == 0
    assert segmind_conn.stats()["uploads"]["count"] == 0, "refused from the metadata, before any upload"


def test_a_declared_url_over_its_limit_is_refused_from_its_headers(segmind_conn: Emulator, tmp_path: Path) -> None:
    with pytest.raises(AirflowFailException) as refused:
        _operator(tmp_path, first_clip=segmind_conn.sample_url("oversized.mp4")).execute(
            {"ti": RecordingTI()}  # type: ignore[arg-type]
        )
    assert "Invalid parameter 'first_clip'" in str(refused.value)
    assert "about the first 3 s" in str(refused.value), "the declaration's seconds shape the advice"
    assert segmind_conn.submissions == 0


def test_a_required_declared_file_must_be_given(segmind_conn: Emulator, tmp_path: Path) -> None:
    with pytest.raises(AirflowFailException, match="Invalid parameter 'first_clip'"):
        _operator(tmp_path).execute({"ti": RecordingTI()})  # type: ignore[arg-type]
    assert segmind_conn.submissions == 0
