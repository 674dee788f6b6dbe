"""Human review before publishing: edit a video with Runway Gen4 Aleph, show the result to a person in
Airflow's "Required Actions" view, and publish it only when they approve it.

Each round is: ``edit`` (RunwayAlephOperator with ``preview=True`` and an explicit seed; the edited
video, its poster frame and contact sheet land under ``work_prefix``) -> ``links`` (presigned http(s)
URLs of the poster, the contact sheet and the video, valid longer than the review may wait) ->
``review`` (Airflow's human-in-the-loop branch operator; its Markdown body shows the poster and links
to the rest) with three answers:

- **Approve**: ``publish`` copies the video and its previews to ``published_prefix``, writes a
  ``.review.json`` beside them (who approved, when, the seed and the Segmind request id) and records
  it as an event of the ``aleph_published_videos`` asset;
- **Reject**: nothing is published and the run ends;
- **Try another seed**: the next round edits the same video again with the next seed.

The rounds are unrolled (``MAX_ROUNDS`` task groups ``round_1``, ``round_2``...) rather than looped by
re-triggering the DAG: the limit on paid edits is then the DAG's own shape, which no run config can
raise (a re-triggered run would have to carry its round counter in ``conf``, which whoever triggers a
run may set); and one run's grid holds the whole story of a video: every candidate, every answer and
who gave it. The last round offers only Approve and Reject. An unanswered review ends as Reject when
``REVIEW_TIMEOUT`` passes.

The UI shows images in the body only from http(s) URLs. With buckets (``s3://``, ``gs://`` prefixes
and a ``storage_conn_id``) the previews are presigned for ``LINK_LIFETIME`` (longer than
``REVIEW_TIMEOUT``); a local ``work_prefix`` (the default, ``file:///tmp/aleph-review/``) has no
http(s) URL, so the body lists the files' paths on the worker instead of showing the poster.

The run's params are the video, the prompt and the first seed. Where candidates and published videos
go, and the storage connection, are the DAG author's: the Airflow Variable ``aleph_review`` (JSON, read
when a task runs), for example::

    {"work_prefix": "s3://my-bucket/review/candidates/", "published_prefix": "s3://my-bucket/published/",
     "storage_conn_id": "aws_default"}

Human-in-the-loop operators need Airflow 3.1+: on older Airflow this file defines no DAG and logs why.
"""

from __future__ import annotations

import json
import logging
import os
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from airflow.exceptions import AirflowException
from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import DAG, Asset, ObjectStoragePath, Param, TaskGroup, Variable, task

from airflow_provider_aleph.access import local_roots_param, require_under_roots
from airflow_provider_aleph.operators.aleph import RunwayAlephOperator

log = logging.getLogger(__name__)

try:
    from airflow.providers.standard.operators.hitl import HITLBranchOperator
except (ImportError, AirflowException) as exc:  # Airflow 3.0: the provider refuses, "needs Airflow 3.1+"
    HITLBranchOperator = None
    HITL_MISSING: str | None = f"{type(exc).__name__}: {exc}"
else:
    HITL_MISSING = None

DAG_ID = "example_aleph_review"
#: Paid edits per run at most: the first one and MAX_ROUNDS - 1 "try another seed" answers.
MAX_ROUNDS = 3
APPROVE, REJECT, RETRY = "Approve", "Reject", "Try another seed"
#: How long a review waits for an answer; then it ends as REJECT (nothing is published).
REVIEW_TIMEOUT = timedelta(days=2)
#: How long the presigned links stay valid: past the review's timeout, with a day to spare for a late
#: look at the published run's links. S3 and GCS allow at most 7 days.
LINK_LIFETIME = REVIEW_TIMEOUT + timedelta(days=1)
SAMPLE_DIR = Path(__file__).resolve().parent / "sample_videos"
DEFAULT_ROOT = "/tmp/aleph-review"
#: The Airflow Variable naming where candidates and published videos go (JSON), read when a task runs.
SETTINGS_VARIABLE = "aleph_review"
#: Local folders this DAG may read and write (DAG code, not run config; a deployment may add its own
#: in ALEPH_LOCAL_ROOTS, separated by os.pathsep).
LOCAL_ROOTS = [SAMPLE_DIR, DEFAULT_ROOT, *filter(None, os.environ.get("ALEPH_LOCAL_ROOTS", "").split(os.pathsep))]
PREFIX_PATTERN = r"^[A-Za-z][A-Za-z0-9+.-]*://\S+/$"
#: An event of this asset is recorded for each published video (its extra: the .review.json record), so
#: downstream DAGs (a CMS upload, a catalogue) can be scheduled on what people approved.
PUBLISHED_VIDEOS = Asset("aleph_published_videos")
#: The files of one edit that are copied when it is published, by result key and published suffix.
PUBLISHED_FILES = {"output_path": ".mp4", "preview_path": ".poster.jpg", "contact_sheet_path": ".sheet.jpg"}


def run_folder(run_id: str) -> str:
    """A run id as a file name: ``manual__2026-12-03T10:00:00+00:00`` -> ``manual__2026-12-03T100000-0000``.

    :param run_id: the DAG run's id.
    """
    return re.sub(r"[^A-Za-z0-9_.-]+", "", run_id.replace("+", "-"))


def storage(uri: str, conn_id: str | None) -> ObjectStoragePath:
    """An object storage path through ``conn_id`` (none: the one named in the URI, or the default credentials)."""
    # Without a conn_id keyword, a connection named in the URI (s3://my_aws@bucket/key) is used.
    return ObjectStoragePath(uri, conn_id=conn_id) if conn_id else ObjectStoragePath(uri)


def round_seed(params: Any, round_no: int) -> int:
    """The seed of a round: the run's ``seed`` param, plus one for each earlier round.

    :param params: the run's params.
    :param round_no: 1 for the first edit.
    """
    return int(params["seed"]) + round_no - 1


def review_settings() -> dict[str, str]:
    """Where candidates and published videos go, and through which connection: the Airflow Variable
    ``aleph_review`` (JSON, read when a task runs), else local folders under ``/tmp/aleph-review``.

    These are the DAG author's choice, never a run's config: whoever may trigger a run must not choose
    which buckets and connections the worker writes with.
    """
    found = Variable.get(SETTINGS_VARIABLE, default=None, deserialize_json=True) or {}
    if not isinstance(found, dict):
        raise ValueError(f"Variable {SETTINGS_VARIABLE} must be a JSON object, got {type(found).__name__}")
    settings = {
        "work_prefix": found.get("work_prefix", f"file://{DEFAULT_ROOT}/candidates/"),
        "published_prefix": found.get("published_prefix", f"file://{DEFAULT_ROOT}/published/"),
        "storage_conn_id": found.get("storage_conn_id", ""),
    }
    for key in ("work_prefix", "published_prefix"):
        if not isinstance(settings[key], str) or not re.fullmatch(PREFIX_PATTERN, settings[key]):
            raise ValueError(f"Variable {SETTINGS_VARIABLE}: {key} must be a URI ending in /; got {settings[key]!r}")
    if not isinstance(settings["storage_conn_id"], str):
        raise ValueError(f"Variable {SETTINGS_VARIABLE}: storage_conn_id must be a connection id (a string)")
    return settings


def candidate_path(run_id: str, round_no: int) -> str:
    """Where a round's edit lands: ``<work_prefix><run folder>/round-<n>.mp4``.

    :param run_id: the DAG run's id.
    :param round_no: 1 for the first edit.
    """
    settings = review_settings()
    folder = storage(settings["work_prefix"], settings["storage_conn_id"]) / run_folder(run_id)
    return str(folder / f"round-{round_no}.mp4")


def presigned_url(uri: str | None, conn_id: str | None, lifetime: timedelta) -> str | None:
    """An http(s) URL anyone holding it may GET until ``lifetime`` passes; None where the storage cannot sign.

    :param uri: an object storage URI, or None.
    :param conn_id: the storage connection.
    :param lifetime: how long the URL stays valid.
    """
    if not uri:
        return None
    path = storage(uri, conn_id)
    try:
        url = path.fs.sign(path.path, expiration=int(lifetime.total_seconds()))
    except NotImplementedError:  # the local disk, and other filesystems without signed URLs
        return None
    return url if isinstance(url, str) and url.startswith(("http://", "https://")) else None


def markdown_text(value: object) -> str:
    """``value`` as plain text in Markdown: a prompt or a path from the run's params cannot add an image
    (which the reviewer's browser would fetch), a link or formatting to the review."""
    text = " ".join(str(value).split())
    # Every Markdown punctuation mark, and ':' so that a bare URL is not made a link either.
    return re.sub(r"([\\`*_{}\[\]()<>#+!|~:-])", r"\\\1", text)


def review_body(links: dict[str, Any], round_no: int, max_rounds: int) -> str:
    """The Markdown a reviewer sees: the poster (when it has an http(s) URL) and links to the rest.

    :param links: what :func:`with_links` returns.
    :param round_no: this review's round.
    :param max_rounds: the last round.
    """
    prompt = markdown_text(links["prompt"])
    lines = [f"**Prompt:** {prompt}  ", f"**Seed:** {links['seed']} (round {round_no} of {max_rounds})", ""]
    if links["poster_url"]:
        lines += [f"![poster]({links['poster_url']})", ""]
        shown = [("Edited video", "video_url"), ("Contact sheet", "sheet_url"), ("Poster", "poster_url")]
        lines += [f"- [{label}]({links[key]})" for label, key in shown if links[key]]
        lines += ["", f"Links valid until {links['links_expire']} (UTC)."]
    else:
        lines += [
            "_No http(s) link: the edit is in local storage on the worker, which the browser cannot load._",
            "",
            *(f"- {label}: {markdown_text(links[key])}" for label, key in _FILES if links[key]),
        ]
    if round_no < max_rounds:
        lines += ["", f'"{RETRY}" edits the same video again with seed {int(links["seed"]) + 1}.']
    return "\n".join(lines)


_FILES = [("Edited video", "output_path"), ("Poster", "preview_path"), ("Contact sheet", "contact_sheet_path")]


@task(multiple_outputs=True)
def describe_candidate(result: dict[str, Any], round_no: int, params: Any = None) -> dict[str, Any]:
    """What the review and the publish task need of a round's edit: its files, seed, prompt and request.

    No presigned URL is made here: a task's return value is kept in XCom, and a link that opens the
    files is made by the review itself, straight into the body the reviewer sees.

    :param result: the edit task's result dict (``output_path``, ``preview_path``, ``contact_sheet_path``).
    :param round_no: this round.
    """
    return {
        "round": round_no,
        "seed": round_seed(params, round_no),
        "prompt": params["prompt"],
        "request_id": result["request_id"],
        **{key: result.get(key) for _, key in _FILES},
    }


def with_links(candidate: dict[str, Any]) -> dict[str, Any]:
    """``candidate`` with presigned http(s) URLs of its video, poster and contact sheet (None where the
    storage cannot sign, as on the local disk), valid for :data:`LINK_LIFETIME`.

    :param candidate: what :func:`describe_candidate` returned.
    """
    conn_id = review_settings()["storage_conn_id"] or None
    expires = datetime.now(UTC).replace(microsecond=0, tzinfo=None) + LINK_LIFETIME
    links = {
        **candidate,
        "video_url": presigned_url(candidate.get("output_path"), conn_id, LINK_LIFETIME),
        "poster_url": presigned_url(candidate.get("preview_path"), conn_id, LINK_LIFETIME),
        "sheet_url": presigned_url(candidate.get("contact_sheet_path"), conn_id, LINK_LIFETIME),
        "links_expire": expires.isoformat(sep=" "),
    }
    if links["poster_url"] is None:
        log.info("No http(s) URL for %s: the review shows its path instead of the image", candidate.get("preview_path"))
    return links


@task(outlets=[PUBLISHED_VIDEOS])
def publish_edit(candidate: dict[str, Any], round_no: int, **context: Any) -> dict[str, Any]:
    """Copy the approved edit and its previews to ``published_prefix`` and write who approved it.

    :param candidate: what :func:`describe_candidate` returned for the approved round.
    :param round_no: the approved round.
    """
    settings = review_settings()
    conn_id = settings["storage_conn_id"] or None
    target = storage(settings["published_prefix"], conn_id)
    # A local folder only under the DAG's roots, even when the Variable names another.
    require_under_roots("published_prefix", target, local_roots_param(LOCAL_ROOTS))
    name = run_folder(context["run_id"])
    target.mkdir(parents=True, exist_ok=True)
    published: dict[str, Any] = {}
    for key, suffix in PUBLISHED_FILES.items():
        if not candidate.get(key):
            continue
        destination = target / f"{name}{suffix}"
        storage(candidate[key], conn_id).copy(destination)
        published[key] = str(destination)
    decision = context["ti"].xcom_pull(task_ids=f"round_{round_no}.review", key="decision") or {}
    record = {
        "request_id": candidate["request_id"],
        "seed": candidate["seed"],
        "prompt": candidate["prompt"],
        "round": round_no,
        "candidate": candidate["output_path"],
        "approved_by": decision.get("by"),
        "approved_at": decision.get("at"),
        "published": published,
    }
    (target / f"{name}.review.json").write_text(json.dumps(record, indent=2, sort_keys=True))
    context["outlet_events"][PUBLISHED_VIDEOS].extra = record
    log.info(
        "Published round %d (seed %s, request %s) to %s", round_no, candidate["seed"], candidate["request_id"], target
    )
    return record


if HITLBranchOperator is not None:

    class ReviewOperator(HITLBranchOperator):
        """A review of one round's candidate. Its body, with presigned links to the candidate's files, is
        written when the review starts, so the links are only in the review (the approval view), never in
        XCom or the rendered templates. The answer (option, who, when) is also kept in XCom ``decision``
        for the publish task.

        :param candidate: what :func:`describe_candidate` returned (an XComArg).
        :param round_no: this round.
        """

        template_fields = (*HITLBranchOperator.template_fields, "candidate")

        def __init__(self, *, candidate: Any, round_no: int, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.candidate = candidate
            self.round_no = round_no

        def execute(self, context: Any) -> Any:
            """Presign the candidate's files, write the body, then ask as the base operator does."""
            self.body = review_body(with_links(self.candidate), self.round_no, MAX_ROUNDS)
            return super().execute(context)

        def execute_complete(self, context: Any, event: dict[str, Any]) -> Any:
            """Record the answer, then branch on it as the base operator does."""
            by = event.get("responded_by_user") or {}
            at = event.get("responded_at")
            context["ti"].xcom_push(
                key="decision",
                value={
                    "choice": (event.get("chosen_options") or [None])[0],
                    "by": by.get("name") if isinstance(by, dict) else str(by),
                    "at": at.isoformat() if isinstance(at, datetime) else at,
                },
            )
            # Branching skips the other paths by raising (Airflow 3's task SDK): nothing runs after it.
            return super().execute_complete(context=context, event=event)

    with DAG(
        dag_id=DAG_ID,
        schedule=None,
        start_date=datetime(2026, 1, 1),
        catchup=False,
        tags=["segmind", "aleph", "example", "human-in-the-loop"],
        user_defined_macros={"round_seed": round_seed, "candidate_path": candidate_path},
        params={
            "video": Param(
                (SAMPLE_DIR / "harbour.mp4").as_uri(),
                type="string",
                pattern=r"^[A-Za-z][A-Za-z0-9+.-]*://\S+$",
                description="http(s) URL or object storage URI of the video to edit",
            ),
            "prompt": Param("make it winter", type="string", minLength=1),
            "seed": Param(42, type="integer", description="the first round's seed; each retry adds one"),
        },
        doc_md=__doc__,
    ) as dag:
        previous_review = None
        for round_no in range(1, MAX_ROUNDS + 1):
            with TaskGroup(group_id=f"round_{round_no}") as group:
                edit = RunwayAlephOperator(
                    task_id="edit",
                    prompt="{{ params.prompt }}",
                    video="{{ params.video }}",
                    seed=f"{{{{ round_seed(params, {round_no}) }}}}",
                    output_path=f"{{{{ candidate_path(run_id, {round_no}) }}}}",
                    preview=True,
                    local_roots=LOCAL_ROOTS,
                )
                candidate = describe_candidate.override(task_id="candidate")(edit.output, round_no)
                last = round_no == MAX_ROUNDS
                mapping = {APPROVE: f"round_{round_no}.publish", REJECT: f"round_{round_no}.not_published"}
                if not last:
                    mapping[RETRY] = f"round_{round_no + 1}.edit"
                review = ReviewOperator(
                    task_id="review",
                    subject=f"Publish this Aleph edit? (round {round_no} of {MAX_ROUNDS})",
                    candidate=candidate,
                    round_no=round_no,
                    options=list(mapping),
                    options_mapping=mapping,
                    defaults=[REJECT],
                    response_timeout=REVIEW_TIMEOUT,
                )
                review >> publish_edit.override(task_id="publish")(candidate, round_no)
                review >> EmptyOperator(task_id="not_published")
            if previous_review is not None:
                previous_review >> group
            previous_review = review
else:
    log.warning("%s is not defined: its human review needs Airflow 3.1+ (%s)", DAG_ID, HITL_MISSING)
