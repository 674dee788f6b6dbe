"""One output copy in a fresh process, measured from inside: ``copy_output`` into a ``file://`` path.

``python -m benchmarks.copy_worker --url URL --dest file:///tmp/out.bin --out report.json``

The report holds the copy's wall seconds (the call alone), the bytes written, the process's RSS
just before the call and its peak RSS (``VmHWM``) by the end. Airflow's one-time discovery of the
object storage filesystems (it imports every installed provider's filesystem module, boto among
them) is done before, and reported apart as ``setup_seconds``: a task pays it once per process,
whatever it copies.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import sys
import time
from pathlib import Path

from benchmarks.procstat import cpu_seconds, peak_rss_bytes, reset_peak_rss, rss_bytes


def main(argv: list[str] | None = None) -> int:
    """Copy once and write the measurements as JSON."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.copy_worker")
    parser.add_argument("--url", required=True)
    parser.add_argument("--dest", required=True, help="a file:// URI")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)

    from airflow_provider_aleph.storage import copy_output, to_path

    log = logging.getLogger("benchmarks.copy")
    setup_started = time.perf_counter()
    to_path(args.dest).fs  # noqa: B018 - the property call is the set-up being timed
    setup_seconds = time.perf_counter() - setup_started
    gc.collect()
    baseline = rss_bytes()
    peak_reset = reset_peak_rss()
    cpu_before = cpu_seconds()
    started = time.perf_counter()
    written = copy_output(args.url, args.dest, log=log)
    seconds = time.perf_counter() - started
    cpu = cpu_seconds() - cpu_before
    peak = peak_rss_bytes()
    size = os.path.getsize(str(written.path))
    report = {
        "seconds": seconds,
        "setup_seconds": setup_seconds,
        "bytes": size,
        "cpu_seconds": cpu,
        "baseline_rss": baseline,
        "peak_rss": peak,
        "peak_reset": peak_reset,
    }
    args.out.write_text(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
