"""Command line: serve the Segmind emulator until SIGINT or SIGTERM.

``python -m airflow_provider_aleph.emulator --port 8765 --ready-file /tmp/emulator.url``

``--help`` lists every flag; each one but ``--host``, ``--port``, ``--api-key``, ``--ready-file``,
``--log-level`` and ``--seed`` is also a run-time setting of ``POST /_emulator/config`` (dashes
become underscores, e.g. ``{"error_rate": 0.1}``).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from airflow_provider_aleph.emulator.config import (
    DEFAULT_COST_PER_JOB,
    DEFAULT_CREDITS,
    LOSE_SUBMIT_MODES,
    REQUEST_ID_CHECKS,
    UPLOAD_ANSWER_KEYS,
)
from airflow_provider_aleph.emulator.server import DEFAULT_API_KEY, Emulator

if TYPE_CHECKING:
    from collections.abc import Sequence
    from types import FrameType

API_KEY_ENV = "SEGMIND_EMULATOR_API_KEY"


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of the emulator command."""
    parser = argparse.ArgumentParser(
        prog="python -m airflow_provider_aleph.emulator",
        description="Offline emulator of Segmind's v2 async API.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8765, help="port to listen on; 0 picks a free one")
    parser.add_argument(
        "--api-key",
        default=os.environ.get(API_KEY_ENV, DEFAULT_API_KEY),
        help=f"the accepted x-api-key (default ${API_KEY_ENV}, else {DEFAULT_API_KEY!r}); the run-time "
        "setting api_keys replaces it, to emulate a key rotation",
    )
    parser.add_argument("--latency", type=float, default=5.0, help="seconds from submit to done")
    parser.add_argument(
        "--latency-sigma",
        type=float,
        default=0.0,
        metavar="SIGMA",
        help="standard deviation of the log of job durations: above 0, each job's duration is drawn "
        "from a lognormal whose median is --latency (seeded by --seed); 0 (default) for exactly --latency",
    )
    parser.add_argument("--fail-rate", type=float, default=0.0, help="share of jobs that fail, 0 to 1")
    parser.add_argument("--retention", type=float, default=3600.0, help="seconds a finished request is kept")
    parser.add_argument("--seed", type=int, default=0, help="seed of the job failure, duration and fault draws")
    parser.add_argument(
        "--retired-model",
        action="append",
        default=[],
        metavar="SLUG",
        help="answer 410 Gone for this model (repeatable)",
    )
    _add_realism_arguments(parser)
    parser.add_argument("--ready-file", type=Path, help="write the base URL here once serving")
    parser.add_argument("--log-level", default="warning", help="uvicorn log level (default warning)")
    return parser


def _add_realism_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the flags of input fetching, files, outputs, faults, rate limit and credits."""
    inputs = parser.add_argument_group("inputs and files")
    inputs.add_argument(
        "--no-fetch-inputs",
        dest="fetch_inputs",
        action="store_false",
        help="do not fetch the video / reference_image URLs of jobs (by default they are fetched, "
        "a failed fetch or a video over 16 MiB fails the job, and the fetched video is its output)",
    )
    inputs.add_argument("--fetch-timeout", type=float, default=10.0, help="seconds allowed per input fetch")
    inputs.add_argument(
        "--upload-answer-key",
        choices=UPLOAD_ANSWER_KEYS,
        default="file_urls",
        help="key of the URL list answered by POST /upload-asset (default file_urls)",
    )
    outputs = parser.add_argument_group("outputs")
    outputs.add_argument(
        "--output-size",
        type=int,
        metavar="BYTES",
        help="serve every job's output as a generated stream of this many bytes (seeded by the request id)",
    )
    outputs.add_argument(
        "--edit-outputs",
        action="store_true",
        help="make a fetched video's output visibly edited: tinted by the prompt (cold for winter words, warm "
        "otherwise) and captioned with it; needs airflow-provider-aleph[media] (without it, the input as it is)",
    )
    outputs.add_argument("--cut-outputs", type=int, default=0, metavar="N", help="cut the next N output downloads")
    outputs.add_argument(
        "--cut-after-bytes", type=int, default=0, metavar="BYTES", help="body bytes sent before a cut download closes"
    )
    faults = parser.add_argument_group("faults and limits")
    faults.add_argument(
        "--error-rate",
        type=float,
        default=0.0,
        help="share of API requests, 0 to 1, answered with an injected fault: 429, 5xx page or dropped connection",
    )
    faults.add_argument("--rpm-limit", type=int, metavar="N", help="API calls allowed per key per rate window")
    faults.add_argument("--rate-window", type=float, default=60.0, help="seconds of the rate-limit window (60)")
    faults.add_argument(
        "--insufficient-credits-key",
        dest="insufficient_credits_keys",
        action="append",
        default=[],
        metavar="KEY",
        help="a valid key whose submits answer 406 Insufficient credits (repeatable)",
    )
    faults.add_argument(
        "--cost-per-job",
        type=float,
        default=DEFAULT_COST_PER_JOB,
        metavar="CREDITS",
        help=f"credits each accepted submit costs, reported as a COMPLETED job's cost "
        f"(default {DEFAULT_COST_PER_JOB:g})",
    )
    faults.add_argument(
        "--credits",
        type=float,
        default=DEFAULT_CREDITS,
        metavar="CREDITS",
        help="the account balance each accepted submit debits; once it cannot cover a job, submits answer 406 "
        f"(default {DEFAULT_CREDITS:.0f})",
    )
    faults.add_argument(
        "--lose-submit-answers",
        type=int,
        default=0,
        metavar="N",
        help="the next N accepted submits create their job, then lose the answer",
    )
    faults.add_argument(
        "--lose-submit-mode",
        choices=LOSE_SUBMIT_MODES,
        default="alternate",
        help="how a submit answer is lost: a 504 page, a dropped connection, or alternately (default)",
    )
    faults.add_argument(
        "--outage-seconds",
        type=float,
        default=0.0,
        metavar="S",
        help="an outage from start-up for S seconds: every API call (submit, status, result, upload) answers "
        "a 503 gateway page; setting outage_seconds at run time starts a new one (0 ends it)",
    )
    answers = parser.add_argument_group("undocumented answers")
    answers.add_argument(
        "--interim-status",
        metavar="STATUS",
        help="answer each job's first --interim-polls status polls with HTTP 200 and this status "
        "(one the API does not document, e.g. STARTING), whatever the job's real state",
    )
    answers.add_argument(
        "--interim-polls", type=int, default=3, metavar="N", help="status polls of each job that answer it (3)"
    )
    answers.add_argument(
        "--garbled-answers",
        type=int,
        default=0,
        metavar="N",
        help="answer the next N status or result calls with HTTP 200 and an HTML page or JSON without "
        "status, alternately",
    )
    answers.add_argument(
        "--request-id-check",
        choices=REQUEST_ID_CHECKS,
        default="after_key",
        help="when a status or result call's request id is looked at: after the key (Segmind, the default), "
        "its form first (a non-UUID answers 404 to any key) or its lookup first (an unknown id answers 404 "
        "to any key)",
    )


def _write_atomically(path: Path, text: str) -> None:
    """Write ``text`` so a reader polling ``path`` never sees a partial file."""
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(text, encoding="utf-8")
    os.replace(partial, path)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the emulator until SIGINT or SIGTERM; return the exit status.

    :param argv: arguments without the program name; defaults to ``sys.argv[1:]``.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    stop = threading.Event()

    def _request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    # Our own handlers: uvicorn's would re-raise the signal on exit and turn a clean stop into a kill.
    signal.signal(signal.SIGINT, _request_stop)
    signal.signal(signal.SIGTERM, _request_stop)
    try:
        emulator = Emulator(
            api_key=args.api_key,
            latency=args.latency,
            latency_sigma=args.latency_sigma,
            fail_rate=args.fail_rate,
            retention=args.retention,
            host=args.host,
            port=args.port,
            seed=args.seed,
            retired_models=args.retired_model,
            log_level=args.log_level,
            fetch_inputs=args.fetch_inputs,
            fetch_timeout=args.fetch_timeout,
            upload_answer_key=args.upload_answer_key,
            output_size=args.output_size,
            edit_outputs=args.edit_outputs,
            cut_outputs=args.cut_outputs,
            cut_after_bytes=args.cut_after_bytes,
            error_rate=args.error_rate,
            rpm_limit=args.rpm_limit,
            rate_window=args.rate_window,
            insufficient_credits_keys=args.insufficient_credits_keys,
            cost_per_job=args.cost_per_job,
            credits=args.credits,
            lose_submit_answers=args.lose_submit_answers,
            lose_submit_mode=args.lose_submit_mode,
            outage_seconds=args.outage_seconds,
        )
        emulator.config(
            interim_status=args.interim_status,
            interim_polls=args.interim_polls,
            garbled_answers=args.garbled_answers,
            request_id_check=args.request_id_check,
        )
    except ValueError as exc:
        parser.error(str(exc))
    with emulator:
        print(f"Segmind emulator listening on {emulator.base_url}", flush=True)
        if args.ready_file is not None:
            _write_atomically(args.ready_file, emulator.base_url + "\n")
        # A timed wait keeps the main thread responsive to signals on every platform.
        while not stop.wait(0.5):
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
