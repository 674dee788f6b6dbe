"""Memory while fitting a large source, measured as a real process's peak RSS (VmHWM).

tracemalloc cannot see FFmpeg's allocations, so the fit runs in a child Python process, through the
same path a worker takes (the object storage check, then ``fit_input`` reading an ``ObjectStoragePath``
file object), and reports its resident set before fitting (after the imports) and its high-water mark
after.

The bound: the high-water mark may exceed the baseline by at most :data:`FIT_MEMORY_BOUND` (150 MiB).
Fitting holds a few decoded 640x360 frames and x264's working set with 4 threads (about 45 MB measured
here). Decoding the 30 s source whole before encoding would hold its 720 frames (about 250 MB as YUV,
500 MB as RGB) and break the bound, and a 2 GiB source read into memory would break it many times over;
150 MiB leaves room for another FFmpeg build's allocator without hiding either.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
MIB = 1024 * 1024
FIT_MEMORY_BOUND = 150 * MIB

_CHILD = """
import json, sys, tempfile, time
from airflow_provider_aleph.inputs import FitPlan
from airflow_provider_aleph.media.inputs import fit_input
from airflow_provider_aleph.storage.inbound import check_input
import av, PIL.Image  # what fitting imports, loaded before the baseline

def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024

class Log:
    def info(self, *args): pass
    warning = error = info

checked = check_input("video", sys.argv[1], max_bytes=None)
baseline = status("VmRSS")
started = time.perf_counter()
with tempfile.TemporaryDirectory() as folder:
    fitted = fit_input(checked, FitPlan(5.0, 16 * 1024 * 1024), folder, log=Log())
    size = fitted.size
print(json.dumps({"baseline": baseline, "peak": status("VmHWM"), "size": size,
                  "seconds": time.perf_counter() - started}))
"""


def test_fitting_a_40_mb_source_stays_within_the_memory_bound(big_video):
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, big_video.as_uri()],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    measured = json.loads(done.stdout.strip().splitlines()[-1])
    print(
        f"fit of a {big_video.stat().st_size / MIB:.1f} MiB source: {measured['seconds']:.1f} s, "
        f"RSS {measured['baseline'] / MIB:.0f} MiB before, peak {measured['peak'] / MIB:.0f} MiB, "
        f"fitted {measured['size'] / MIB:.1f} MiB"
    )
    assert measured["size"] < 15 * 1000 * 1000
    assert measured["peak"] - measured["baseline"] <= FIT_MEMORY_BOUND
