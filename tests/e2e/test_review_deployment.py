"""The human review example in a real deployment: the poster in Airflow's approval view, answers through
the REST API and through the UI.

The example's candidates and published videos live in S3: moto's standalone server on loopback, whose
connection the test adds through the REST API. The review body's poster is then a presigned http URL,
which headless Chromium (Debian's, driven by Playwright; see ``test_ui_browser``) must load and render:
the test checks the ``<img>`` decoded (``naturalWidth > 0``) and saves a screenshot under
``test-artifacts/``. Jobs are shortened to two seconds, so the module runs in a few minutes.
"""

from __future__ import annotations

import contextlib
import json
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import httpx
import pytest

from tests.conftest import S3_ACCESS_KEY_ID, S3_REGION, S3_SECRET_ACCESS_KEY
from tests.e2e.conftest import JOB_LATENCY
from tests.e2e.test_ui_browser import browser, chromium, page, screenshot  # noqa: F401 (fixtures)
from tests.support.examples import load_example
from tests.support.videos import write_clip

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from playwright.sync_api import Page

    from tests.conftest import S3Server
    from tests.e2e.conftest import EmulatorProcess
    from tests.support.deployment import AirflowDeployment

REVIEW_DAG = "example_aleph_review"
S3_CONN = "aleph_review_s3"
#: Seconds an emulated job takes in these tests.
SHORT_JOB = 2
#: Generous bound for a run to reach its next review (scheduling, a job, previews, presigning).
STEP_TIMEOUT = 6 * JOB_LATENCY


def example() -> Any:
    """The example's module, for its own naming of a run's files."""
    return load_example(REVIEW_DAG)


@pytest.fixture(scope="module")
def review_bucket(deployment: AirflowDeployment, s3_server: S3Server) -> str:
    """A bucket on the moto server, and the deployment's connection ``aleph_review_s3`` to reach it."""
    connection = {
        "connection_id": S3_CONN,
        "conn_type": "aws",
        "login": S3_ACCESS_KEY_ID,
        "password": S3_SECRET_ACCESS_KEY,
        "extra": json.dumps({"endpoint_url": s3_server.endpoint_url, "region_name": S3_REGION}),
    }
    try:
        deployment.api("POST", "/connections", json=connection)
    except httpx.HTTPStatusError as err:
        if err.response.status_code != 409:  # already there: an earlier module of this session added it
            raise
    return s3_server.create_bucket()


@pytest.fixture
def short_jobs(e2e_emulator: EmulatorProcess) -> Iterator[EmulatorProcess]:
    """The emulator with no earlier jobs, each job taking ``SHORT_JOB`` seconds and visibly editing its
    video (a tint, the prompt as a caption) for this test."""
    e2e_emulator.reset()
    e2e_emulator.configure(latency=SHORT_JOB, edit_outputs=True)
    try:
        yield e2e_emulator
    finally:
        e2e_emulator.configure(latency=JOB_LATENCY, edit_outputs=False)


def harbour_clip(path: Path, seconds: int = 3, size: tuple[int, int] = (640, 360), fps: int = 12) -> Path:
    """A small drawn scene (sky, sun, sea, a sailing boat) as an H.264 MP4, so the poster looks like a picture.

    :param path: where to write it.
    :param seconds: its length.
    :param size: width and height.
    :param fps: frames per second.
    """
    from PIL import Image, ImageDraw

    width, height = size
    horizon = height * 3 // 5

    def frames() -> Iterator[Any]:
        for index in range(seconds * fps):
            image = Image.new("RGB", size)
            draw = ImageDraw.Draw(image)
            for y in range(horizon):  # sky: deep blue at the top to pale at the horizon
                shade = y * 120 // horizon
                draw.line([(0, y), (width, y)], fill=(90 + shade, 150 + shade // 2, 230))
            draw.ellipse([width - 170, 40, width - 90, 120], fill=(255, 214, 90))
            draw.rectangle([0, horizon, width, height], fill=(30, 90, 140))
            draw.polygon([(0, horizon), (180, horizon - 70), (360, horizon)], fill=(70, 110, 80))
            x = 120 + index * 6
            draw.polygon(
                [(x, horizon + 40), (x + 120, horizon + 40), (x + 100, horizon + 62), (x + 20, horizon + 62)],
                fill=(120, 60, 40),
            )
            draw.polygon(
                [(x + 60, horizon + 36), (x + 60, horizon - 60), (x + 110, horizon + 36)], fill=(245, 245, 240)
            )
            yield image

    return write_clip(path, frames(), size=size, fps=fps)


def start_review(deployment: AirflowDeployment, bucket: str, seed: int, video: str | None = None) -> str:
    """Trigger the example with its candidates and published videos in ``bucket``; return the run id.

    :param video: the source video's URI (default: the example's own sample clip).
    """
    deployment.wait_for_dag(REVIEW_DAG)
    # Where the example writes is its DAG author's Variable, not the run's config.
    settings = {
        "work_prefix": f"s3://{bucket}/candidates/",
        "published_prefix": f"s3://{bucket}/published/",
        "storage_conn_id": S3_CONN,
    }
    with contextlib.suppress(httpx.HTTPStatusError):
        deployment.api("DELETE", "/variables/aleph_review")
    deployment.api("POST", "/variables", json={"key": "aleph_review", "value": json.dumps(settings)})
    return deployment.trigger(REVIEW_DAG, {**({"video": video} if video else {}), "seed": seed})


def hitl_path(run_id: str, task_id: str) -> str:
    """The REST API's path of one review's human-in-the-loop detail."""
    return f"/dags/{REVIEW_DAG}/dagRuns/{quote(run_id)}/taskInstances/{task_id}/-1/hitlDetails"


def wait_for_review(deployment: AirflowDeployment, run_id: str, task_id: str) -> dict[str, Any]:
    """Wait until ``task_id`` waits for an answer; return its detail (subject, body, options)."""
    deadline = time.monotonic() + STEP_TIMEOUT
    while time.monotonic() < deadline:
        ti = deployment.api("GET", f"/dags/{REVIEW_DAG}/dagRuns/{quote(run_id)}/taskInstances/{task_id}")
        if ti["state"] in ("failed", "upstream_failed", "skipped"):
            raise AssertionError(f"{task_id} ended {ti['state']} before its review{deployment.tails()}")
        if ti["state"] in ("awaiting_input", "deferred"):
            detail: dict[str, Any] = deployment.api("GET", hitl_path(run_id, task_id))
            return detail
        time.sleep(1)
    raise AssertionError(
        f"{task_id} of {run_id} did not wait for a review within {STEP_TIMEOUT:.0f}s{deployment.tails()}"
    )


def wait_until_parked(deployment: AirflowDeployment, run_id: str, task_id: str) -> None:
    """Wait until the scheduler has seen the review's worker exit after parking it in ``awaiting_input``.

    Airflow 3.3.2 fails a review answered before that (the answer queues the task again, and the late
    "success" of the parked worker then reads as a state changed from outside). A person never answers
    that fast; a test does, so it waits for the scheduler's own log line of that event.
    """
    wanted = f"task_id='{task_id}', run_id='{run_id}'"
    log = deployment.logs / "scheduler.log"
    deadline = time.monotonic() + STEP_TIMEOUT
    while time.monotonic() < deadline:
        for line in log.read_text(errors="replace").splitlines():
            if "Received executor event with state success" in line and wanted in line:
                return
        time.sleep(0.5)
    raise AssertionError(f"the scheduler did not see {task_id}'s worker exit{deployment.tails()}")


def answer(deployment: AirflowDeployment, run_id: str, task_id: str, option: str) -> None:
    """Answer a review through the REST API, as the ``admin`` user."""
    wait_until_parked(deployment, run_id, task_id)
    deployment.api("PATCH", hitl_path(run_id, task_id), json={"chosen_options": [option], "params_input": {}})


def open_review(view: Page, deployment: AirflowDeployment, run_id: str, task_id: str) -> None:
    """Open a review's "Required Actions" view and wait until its poster image is decoded."""
    view.goto(f"{deployment.base_url}/dags/{REVIEW_DAG}/runs/{quote(run_id)}/tasks/{task_id}/required_actions")
    poster = view.get_by_role("img", name="poster")
    poster.wait_for()
    poster.scroll_into_view_if_needed()
    # Rendered means fetched over http(s) and decoded: a broken image has naturalWidth 0.
    view.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=poster.element_handle())
    assert poster.evaluate("img => img.naturalWidth") > 0


def published_record(s3_server: S3Server, bucket: str, run_id: str, round_no: int) -> dict[str, Any]:
    """Check the approved round's video landed under ``published/``; return its review record."""
    folder = example().run_folder(run_id)
    candidate = s3_server.get(bucket, f"candidates/{folder}/round-{round_no}.mp4")
    published = s3_server.get(bucket, f"published/{folder}.mp4")
    assert published == candidate
    assert published[4:8] == b"ftyp"
    assert s3_server.get(bucket, f"published/{folder}.poster.jpg")[:3] == b"\xff\xd8\xff"
    record: dict[str, Any] = json.loads(s3_server.get(bucket, f"published/{folder}.review.json"))
    return record


def test_review_shows_the_poster_and_another_seed_then_approval_publishes(
    page: Page,  # noqa: F811 (the fixture)
    deployment: AirflowDeployment,
    short_jobs: EmulatorProcess,
    s3_server: S3Server,
    review_bucket: str,
    tmp_path: Path,
) -> None:
    """Round 1 in the approval view (poster rendered), "Try another seed" and "Approve" through the REST API."""
    source = harbour_clip(tmp_path / "harbour.mp4")
    s3_server.put(review_bucket, "sources/harbour.mp4", source.read_bytes(), content_type="video/mp4")
    video = f"s3://{S3_CONN}@{review_bucket}/sources/harbour.mp4"
    run_id = start_review(deployment, review_bucket, seed=42, video=video)

    first = wait_for_review(deployment, run_id, "round_1.review")
    assert first["options"] == ["Approve", "Reject", "Try another seed"]
    assert "![poster](http://127.0.0.1:" in first["body"]
    open_review(page, deployment, run_id, "round_1.review")
    screenshot(page, "review-approval-view")

    answer(deployment, run_id, "round_1.review", "Try another seed")
    second = wait_for_review(deployment, run_id, "round_2.review")
    jobs = short_jobs.jobs()
    assert [job["payload"]["seed"] for job in jobs] == [42, 43]
    assert "Seed:** 43" in second["body"]

    answer(deployment, run_id, "round_2.review", "Approve")
    assert deployment.wait_for_run(REVIEW_DAG, run_id, timeout=STEP_TIMEOUT) == "success", deployment.tails()
    record = published_record(s3_server, review_bucket, run_id, round_no=2)
    assert (record["seed"], record["round"], record["approved_by"]) == (43, 2, "admin")
    assert record["request_id"] == jobs[1]["request_id"]
    assert short_jobs.stats()["submissions"] == 2


def test_approving_in_the_ui_publishes(
    page: Page,  # noqa: F811 (the fixture)
    deployment: AirflowDeployment,
    short_jobs: EmulatorProcess,
    s3_server: S3Server,
    review_bucket: str,
) -> None:
    """A person clicks "Approve" in the approval view; the edit is published."""
    run_id = start_review(deployment, review_bucket, seed=7)
    wait_for_review(deployment, run_id, "round_1.review")
    wait_until_parked(deployment, run_id, "round_1.review")
    open_review(page, deployment, run_id, "round_1.review")

    page.get_by_role("button", name="Approve").click()
    assert deployment.wait_for_run(REVIEW_DAG, run_id, timeout=STEP_TIMEOUT) == "success", deployment.tails()
    screenshot(page, "review-approved-in-ui")
    record = published_record(s3_server, review_bucket, run_id, round_no=1)
    assert (record["seed"], record["approved_by"]) == (7, "admin")
    assert [job["payload"]["seed"] for job in short_jobs.jobs()] == [7]
