"""Assets and OpenLineage datasets derived from the operators' inputs and outputs."""

from __future__ import annotations

import pytest
from airflow.providers.common.compat.sdk import Asset, ObjectStoragePath

from airflow_provider_aleph.lineage import dataset_name, openlineage_facets, record_asset_events


@pytest.mark.parametrize(
    ("location", "expected"),
    [
        ("s3://bucket/raw/clip.mp4", ("s3://bucket", "raw/clip.mp4")),
        ("s3://aws_conn@bucket/raw/clip.mp4", ("s3://bucket", "raw/clip.mp4")),
        ("gs://bucket/a.mp4", ("gs://bucket", "a.mp4")),
        ("file:///data/in/clip.mp4", ("file", "/data/in/clip.mp4")),
        ("https://cdn.example.com/v/clip.mp4?X-Amz-Signature=secret", ("https://cdn.example.com", "/v/clip.mp4")),
        ("not a uri", None),
        (None, None),
    ],
)
def test_dataset_names_follow_openlineage_naming_and_drop_signatures(location, expected):
    assert dataset_name(location) == expected


def test_object_storage_path_is_named_like_its_uri():
    assert dataset_name(ObjectStoragePath("file:///data/out/a.mp4")) == ("file", "/data/out/a.mp4")


def test_facets_list_inputs_and_outputs():
    lineage = openlineage_facets(["s3://in/a.mp4", None, "https://x.example/b.png?sig=1"], ["file:///out/a.mp4"])
    assert [(d.namespace, d.name) for d in lineage.inputs] == [("s3://in", "a.mp4"), ("https://x.example", "/b.png")]
    assert [(d.namespace, d.name) for d in lineage.outputs] == [("file", "/out/a.mp4")]


class _Event:
    extra: dict | None = None


class _OutletEvents:
    """Airflow's outlet event accessors, keyed by asset (assets are not hashable on Airflow 3.0)."""

    def __init__(self) -> None:
        self.by_name: dict[str, _Event] = {}

    def __getitem__(self, asset: Asset) -> _Event:
        return self.by_name.setdefault(asset.name, _Event())


def test_asset_events_carry_where_the_output_landed():
    asset, other = Asset("edited_videos"), Asset("s3://bucket/edited/")
    events = _OutletEvents()
    result = {
        "request_id": "r1",
        "output_url": "https://o/r1.mp4",
        "output_path": "file:///out/r1.mp4",
        "cost": 0.75,
    }
    record_asset_events({"outlet_events": events}, [asset, other, "not an asset"], result)
    assert sorted(events.by_name) == sorted([asset.name, other.name])
    assert events[other].extra == events[asset].extra
    assert events[asset].extra == {
        "output_path": "file:///out/r1.mp4",
        "request_id": "r1",
        "output_url": "https://o/r1.mp4",
        "cost": 0.75,
    }


def test_no_asset_event_without_a_copy():
    asset = Asset("edited_videos")
    events = _OutletEvents()
    record_asset_events({"outlet_events": events}, [asset], {"request_id": "r1", "output_path": None})
    assert events.by_name == {}


def _extract_with_openlineage(task):
    """Ask the OpenLineage provider's own extractor manager for the task's lineage, as its listener does."""
    import inspect
    from types import SimpleNamespace

    from airflow.providers.openlineage.extractors.manager import ExtractorManager
    from airflow.utils.state import TaskInstanceState

    run = SimpleNamespace(run_id="run-1", dag_id="dag")
    ti = SimpleNamespace(task_id=task.task_id, dag_id="dag", run_id="run-1", try_number=1, map_index=-1)
    manager = ExtractorManager()
    if "task_instance_state" in inspect.signature(manager.extract_metadata).parameters:
        return manager.extract_metadata(
            dagrun=run, task=task, task_instance_state=TaskInstanceState.SUCCESS, task_instance=ti
        )
    return manager.extract_metadata(dagrun=run, task=task, complete=True, task_instance=ti)


def test_openlineage_provider_reports_the_input_video_and_the_copy():
    from airflow_provider_aleph.operators.aleph import RunwayAlephOperator

    task = RunwayAlephOperator(
        task_id="edit",
        prompt="make it winter",
        video="s3://raw-bucket/clips/a.mp4",
        reference_image="https://cdn.example.com/style.png?sig=secret",
        output_path="s3://edited-bucket/out/",
    )
    task.delivered_path = "s3://edited-bucket/out/a.mp4"

    lineage = _extract_with_openlineage(task)

    assert [(d.namespace, d.name) for d in lineage.inputs] == [
        ("s3://raw-bucket", "clips/a.mp4"),
        ("https://cdn.example.com", "/style.png"),
    ]
    assert [(d.namespace, d.name) for d in lineage.outputs] == [("s3://edited-bucket", "out/a.mp4")]


def test_generic_operator_lineage_lists_file_inputs_of_its_payload():
    from airflow_provider_aleph.operators.segmind import SegmindSubmitOperator

    task = SegmindSubmitOperator(
        task_id="gen", model="some-model", payload={"image": "gs://b/in.png", "prompt": "a cat", "steps": 4}
    )

    lineage = _extract_with_openlineage(task)

    assert [(d.namespace, d.name) for d in lineage.inputs] == [("gs://b", "in.png")]
    assert lineage.outputs == []
