"""The human review example (``example_aleph_review``) run with ``dag.test()``, a thread answering its reviews.

On Airflow 3.3 ``dag.test()`` parks a review in ``awaiting_input`` until a response arrives from
outside; :class:`tests.dags.reviewer.Reviewer` gives it through the REST API's own handler. Bucket
runs use moto's S3 server on loopback, so the presigned links in the review body are real http URLs.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest

from tests.dags.helpers import state, task_instances, xcom
from tests.dags.reviewer import Reviewer
from tests.support.examples import load_example

if TYPE_CHECKING:
    from airflow_provider_aleph.emulator import Emulator
    from tests.conftest import S3Server

pytestmark = pytest.mark.dag


review = load_example("example_aleph_review")
needs_hitl = pytest.mark.skipif(review.HITL_MISSING is not None, reason="human-in-the-loop needs Airflow 3.1+")


def conf(**more: Any) -> dict[str, Any]:
    """A complete run conf (dag.test() merges it into the module-level DAG's params)."""
    return {"prompt": "make it winter", "seed": 42, "video": review.dag.params["video"]} | more


def store_in(monkeypatch: pytest.MonkeyPatch, work: str, published: str, conn_id: str = "") -> None:
    """Point the example's ``aleph_review`` Variable at these prefixes (as its DAG author would)."""
    settings = {"work_prefix": work, "published_prefix": published, "storage_conn_id": conn_id}
    monkeypatch.setenv("AIRFLOW_VAR_ALEPH_REVIEW", json.dumps(settings))


def seeds(emulator: Emulator) -> list[int]:
    """The seeds of the emulator's submissions, in submission order."""
    return [job.payload["seed"] for job in emulator.jobs.values()]


def published_events(dag_run: Any) -> list[dict[str, Any]]:
    """The extras of the run's events of ``aleph_published_videos``."""
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        rows = session.scalars(
            select(AssetEvent)
            .join(AssetModel, AssetModel.id == AssetEvent.asset_id)
            .where(AssetModel.name == "aleph_published_videos", AssetEvent.source_run_id == dag_run.run_id)
        ).all()
        return [dict(row.extra) for row in rows]


def stored_text(dag_run: Any) -> str:
    """Every XCom value and rendered template field of the run, as text."""
    from airflow.models.renderedtifields import RenderedTaskInstanceFields
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        xcoms = session.scalars(select(XComModel.value).where(XComModel.run_id == dag_run.run_id)).all()
        rendered = session.scalars(
            select(RenderedTaskInstanceFields.rendered_fields).where(
                RenderedTaskInstanceFields.run_id == dag_run.run_id
            )
        ).all()
        return json.dumps([str(value) for value in [*xcoms, *rendered]])


def lifetime(url: str) -> float:
    """Seconds a presigned S3 URL stays valid from now: SigV4's ``X-Amz-Expires`` or SigV2's ``Expires`` epoch."""
    query = dict(parse_qsl(urlsplit(url).query))
    if "X-Amz-Expires" in query:
        return float(query["X-Amz-Expires"])
    return float(query["Expires"]) - time.time()


def test_on_airflow_without_hitl_the_example_defines_no_dag_and_says_why(caplog: pytest.LogCaptureFixture) -> None:
    if review.HITL_MISSING is None:
        assert review.dag.dag_id == "example_aleph_review"
        assert len([task for task in review.dag.tasks if task.task_id.endswith(".edit")]) == review.MAX_ROUNDS
        return
    with caplog.at_level("WARNING"):
        module = load_example("example_aleph_review")
    assert not hasattr(module, "dag")
    assert "needs Airflow 3.1+" in caplog.text


@needs_hitl
def test_an_approved_edit_is_published_from_s3_with_a_presigned_poster_in_the_review(
    segmind_conn: Emulator, s3_server: S3Server, s3_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    segmind_conn.config.latency = 0.0  # done by the first poll
    store_in(monkeypatch, f"s3://{s3_bucket}/candidates/", f"s3://{s3_bucket}/published/", s3_server.conn_id)
    run = conf()

    with Reviewer(review.DAG_ID, [review.APPROVE]) as reviewer:
        dag_run = review.dag.test(run_conf=run)

    assert state(dag_run) == "success"
    assert seeds(segmind_conn) == [42]
    (seen,) = reviewer.reviews
    assert seen.task_id == "round_1.review"
    assert seen.options == [review.APPROVE, review.REJECT, review.RETRY]
    assert seen.defaults == [review.REJECT]  # an unanswered review publishes nothing
    poster = re.search(r"!\[poster\]\((http://[^)]+)\)", seen.body)
    assert poster, seen.body
    # The link in the body is a working presigned URL of the JPEG poster, and it never expires before the review.
    image = httpx.get(poster.group(1))
    assert image.status_code == 200
    assert image.content[:3] == b"\xff\xd8\xff"
    assert lifetime(poster.group(1)) > review.REVIEW_TIMEOUT.total_seconds()
    # The links are in the review only: no XCom and no rendered template holds one.
    signed = re.search(r"Signature=([^&]+)", poster.group(1))
    assert signed, poster.group(1)
    secret = signed.group(1)  # as it stands in the URL (percent-encoded, where SigV2 needs it)
    stored = stored_text(dag_run)
    assert "round-1.poster.jpg" in stored  # the paths are there, so this looks where the links would be
    assert secret not in stored

    folder = review.run_folder(dag_run.run_id)
    published = {key for key in s3_server.keys(s3_bucket) if key.startswith("published/")}
    suffixes = (".mp4", ".poster.jpg", ".sheet.jpg", ".review.json")
    assert published == {f"published/{folder}{suffix}" for suffix in suffixes}
    candidate = s3_server.get(s3_bucket, f"candidates/{folder}/round-1.mp4")
    assert s3_server.get(s3_bucket, f"published/{folder}.mp4") == candidate
    record = json.loads(s3_server.get(s3_bucket, f"published/{folder}.review.json"))
    (job,) = segmind_conn.jobs.values()
    assert record["request_id"] == job.request_id
    assert (record["seed"], record["round"], record["approved_by"]) == (42, 1, "reviewer")
    # Downstream DAGs learn of it: one event of the published asset, whose extra is the record.
    (event,) = published_events(dag_run)
    assert event == record
    assert [ti.state for ti in task_instances(dag_run, "round_2.edit")] == ["skipped"]
    assert [ti.state for ti in task_instances(dag_run, "round_1.not_published")] == ["skipped"]


@needs_hitl
def test_try_another_seed_edits_again_with_the_next_seed_and_rounds_are_bounded(
    segmind_conn: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    segmind_conn.config.latency = 0.0
    store_in(monkeypatch, f"{tmp_path.as_uri()}/work/", f"{tmp_path.as_uri()}/published/")
    # A run's config names other places: they are not params, so nothing goes there.
    run = conf(seed=7, work_prefix=f"{tmp_path.as_uri()}/elsewhere/", storage_conn_id="someone_elses")

    with Reviewer(review.DAG_ID, [review.RETRY, review.RETRY, review.REJECT]) as reviewer:
        dag_run = review.dag.test(run_conf=run)

    assert state(dag_run) == "success"
    assert seeds(segmind_conn) == [7, 8, 9]
    assert [seen.task_id for seen in reviewer.reviews] == [f"round_{n}.review" for n in (1, 2, 3)]
    # The last round offers no further seed.
    assert reviewer.reviews[-1].options == [review.APPROVE, review.REJECT]
    # A local work folder has no http(s) URL: the body lists the files instead of showing an image.
    first = reviewer.reviews[0].body
    assert "![poster]" not in first
    folder = tmp_path / "work" / review.run_folder(dag_run.run_id)
    assert review.markdown_text(f"{folder.as_uri()}/round-1.poster.jpg") in first
    assert "seed 8" in first
    # Rejected: nothing published, each round's edit and previews kept for a later look.
    assert not (tmp_path / "published").exists()
    assert not (tmp_path / "elsewhere").exists()
    for n in (1, 2, 3):
        assert (folder / f"round-{n}.mp4").stat().st_size > 0
        assert (folder / f"round-{n}.poster.jpg").read_bytes()[:3] == b"\xff\xd8\xff"
    assert [ti.state for ti in task_instances(dag_run, "round_3.not_published")] == ["success"]
    assert [ti.state for ti in task_instances(dag_run, "round_3.publish")] == ["skipped"]
    assert xcom(dag_run, "decision", task_id="round_3.review")["choice"] == review.REJECT
    assert published_events(dag_run) == []


@needs_hitl
def test_a_published_prefix_outside_the_local_roots_is_refused(
    segmind_conn: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    segmind_conn.config.latency = 0.0
    store_in(monkeypatch, f"{tmp_path.as_uri()}/work/", "file:///etc/aleph/")
    run = conf()

    with Reviewer(review.DAG_ID, [review.APPROVE]):
        dag_run = review.dag.test(run_conf=run)

    assert state(dag_run) == "failed"
    (publish,) = task_instances(dag_run, "round_1.publish")
    assert publish.state == "failed"
    assert not Path("/etc/aleph").exists()


def test_run_folder_makes_a_run_id_a_file_name() -> None:
    assert review.run_folder("manual__2026-12-03T10:00:00.123+00:00") == "manual__2026-12-03T100000.123-0000"
    assert review.run_folder("../../etc") == "....etc"


def test_a_prompt_cannot_add_an_image_or_a_link_to_the_review() -> None:
    links = {
        "prompt": "make it winter ![pixel](https://tracker.example/p.gif) [click](https://phish.example)\n# big",
        "seed": 1,
        "poster_url": "https://bucket.example/p.jpg?X-Amz-Signature=abc",
        "video_url": "https://bucket.example/v.mp4?X-Amz-Signature=abc",
        "sheet_url": None,
        "links_expire": "2026-12-06 10:00:00",
    }
    body = review.review_body(links, round_no=1, max_rounds=3)
    assert body.count("![") == 1  # the poster's, and only it
    assert "![poster](https://bucket.example/p.jpg?X-Amz-Signature=abc)" in body
    assert "](https://tracker" not in body
    assert "](https://phish" not in body
    assert "https://tracker" not in body  # not even a bare URL, which Markdown would make a link
    assert "\n#" not in body
    assert "[Edited video](https://bucket.example/v.mp4" in body
    assert "Contact sheet" not in body  # no URL: no link
