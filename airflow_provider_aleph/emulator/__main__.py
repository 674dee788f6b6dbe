"""Command line: serve the Segmind emulator until SIGINT or SIGTERM.

``python -m airflow_provider_aleph.emulator --port 8765 --ready-file /tmp/emulator.url``
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING

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
        help=f"the accepted x-api-key (default ${API_KEY_ENV}, else {DEFAULT_API_KEY!r})",
    )
    parser.add_argument("--latency", type=float, default=5.0, help="seconds from submit to done")
    parser.add_argument("--fail-rate", type=float, default=0.0, help="share of jobs that fail, 0 to 1")
    parser.add_argument("--retention", type=float, default=3600.0, help="seconds a finished request is kept")
    parser.add_argument("--seed", type=int, default=0, help="seed of the failure draws")
    parser.add_argument(
        "--retired-model",
        action="append",
        default=[],
        metavar="SLUG",
        help="answer 410 Gone for this model (repeatable)",
    )
    parser.add_argument("--ready-file", type=Path, help="write the base URL here once serving")
    parser.add_argument("--log-level", default="warning", help="uvicorn log level (default warning)")
    return parser


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
            fail_rate=args.fail_rate,
            retention=args.retention,
            host=args.host,
            port=args.port,
            seed=args.seed,
            retired_models=args.retired_model,
            log_level=args.log_level,
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
