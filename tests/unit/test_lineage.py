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


def test_asset_events_carry_where_the_output_landed():
    asset, other = Asset("edited_videos"), Asset("s3://bucket/edited/")
    events = {asset: _Event(), other: _Event()}
    result = {"request_id": "r1", "output_url": "https://o/r1.mp4", "output_path": "file:///out/r1.mp4"}
    record_asset_events({"outlet_events": events}, [asset, other, "not an asset"], result)
    assert events[other].extra == events[asset].extra
    assert events[asset].extra == {
        "output_path": "file:///out/r1.mp4",
        "request_id": "r1",
        "output_url": "https://o/r1.mp4",
    }


def test_no_asset_event_without_a_copy():
    asset = Asset("edited_videos")
    events = {asset: _Event()}
    record_asset_events({"outlet_events": events}, [asset], {"request_id": "r1", "output_path": None})
    assert events[asset].extra is None
