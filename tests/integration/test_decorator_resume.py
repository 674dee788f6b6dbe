"""``@task.runway_aleph`` across a deferral, as a worker sees it: one operator object runs the function,
submits and defers; the trigger runs against the emulator; a second object, built from the same DAG
code and never running the function, resumes and still knows what the function returned."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
from airflow.providers.common.compat.sdk import TaskDeferred

from airflow_provider_aleph.decorators.aleph import INPUTS_XCOM_KEY, RunwayAlephDecoratedOperator
from airflow_provider_aleph.events import wait_in_worker
from tests.fakes import RecordingTI

if TYPE_CHECKING:
    from pathlib import Path

    from airflow_provider_aleph.emulator import Emulator


def _operator(calls: list[str], video: str, output_path: str, tmp_path: Path) -> RunwayAlephDecoratedOperator:
    def edit() -> dict[str, Any]:
        calls.append("ran")
        return {"prompt": "make it winter", "video": f"{video}?X-Amz-Signature=secret"}

    return RunwayAlephDecoratedOperator(
        task_id="edit",
        python_callable=edit,
        output_path=output_path,
        local_roots=[tmp_path],
        poll_interval=0.05,
    )


def test_the_resumed_operator_copies_the_output_and_names_the_returned_video(
    segmind_conn: Emulator, tmp_path: Path
) -> None:
    calls: list[str] = []
    video = segmind_conn.sample_url()
    output = (tmp_path / "out.mp4").as_uri()
    ti = RecordingTI()
    context: dict[str, Any] = {"ti": ti}

    with pytest.raises(TaskDeferred) as deferred:
        _operator(calls, video, output, tmp_path).execute(context)  # type: ignore[arg-type]
    assert segmind_conn.submissions == 1
    (job,) = segmind_conn.jobs.values()
    assert job.payload["video"] == f"{video}?X-Amz-Signature=secret"
    # Kept for the resume, without the query string: a presigned URL's signature is a credential.
    assert ti.xcom[INPUTS_XCOM_KEY] == {"video": video, "reference_image": None}

    event = wait_in_worker(deferred.value.trigger)  # type: ignore[arg-type]
    resumed = _operator(calls, "https://not-what-ran.invalid/clip.mp4", output, tmp_path)
    result = resumed.execute_complete(context, event)  # type: ignore[arg-type]

    assert calls == ["ran"], "the function runs once, before the submit"
    assert result["request_id"] == job.request_id
    assert result["output_path"] == output
    assert (tmp_path / "out.mp4").stat().st_size > 0
    lineage = resumed.get_openlineage_facets_on_complete(None)
    assert [(d.namespace, d.name) for d in lineage.inputs] == [(segmind_conn.base_url, "/samples/sample.mp4")]
    assert [d.name for d in lineage.outputs] == [str(tmp_path / "out.mp4")]
