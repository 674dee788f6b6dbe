"""``make bench``: run every measurement side by side and rewrite the table in ``benchmarks/README.md``.

``python -m benchmarks.run`` runs the full sizes (about 14 minutes on 2 cores); ``--smoke`` runs the
same code at tiny sizes (what ``tests/bench/test_bench_smoke.py`` does); ``--only slot,scale,copy,polling``
picks measurements. Raw numbers go to ``--json`` beside the README, and the polling measurement's
figures (PNG) into the README's folder. A measurement that fails is reported in the table as not
measured, and the command exits non-zero.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from benchmarks import output_copy, polling, slot_time, trigger_scale
from benchmarks.procstat import load_average, machine
from benchmarks.report import write_readme

if TYPE_CHECKING:
    from collections.abc import Callable

HERE = Path(__file__).resolve().parent
MEASUREMENTS = ("slot", "scale", "copy", "polling")
_PACKAGES = (
    "apache-airflow",
    "airflow-provider-aleph",
    "apache-airflow-providers-http",
    "segmind",
    "httpx",
    "httpcore",
    "aiohttp",
)


def versions() -> dict[str, str]:
    """Versions of Python, the packages compared, and curl."""
    found = {"Python": sys.version.split()[0]}
    for name in _PACKAGES:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = "not installed"
    curl = shutil.which("curl")
    if curl:
        first = subprocess.run([curl, "--version"], capture_output=True, text=True, check=False).stdout.split()
        found["curl"] = first[1] if len(first) > 1 else "unknown"
    return found


def _guarded(name: str, measure: Callable[[], Any], log: Callable[[str], None]) -> tuple[Any, bool]:
    started = time.monotonic()
    log(f"{name}: starting")
    try:
        result = measure()
    except Exception as exc:
        log(f"{name}: FAILED after {time.monotonic() - started:.0f}s\n{traceback.format_exc()}")
        return {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"}, False
    log(f"{name}: done in {time.monotonic() - started:.0f}s")
    return result, True


def main(argv: list[str] | None = None) -> int:
    """Run the measurements, write the JSON and the README table; 0 when all of them ran."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: checks the scripts, not the numbers")
    parser.add_argument("--only", default=",".join(MEASUREMENTS), help="comma-separated: " + ", ".join(MEASUREMENTS))
    parser.add_argument("--readme", type=Path, default=HERE / "README.md", help="the README whose table is rewritten")
    parser.add_argument("--json", type=Path, default=HERE / "results.json", help="where the raw numbers go")
    parser.add_argument("--workdir", type=Path, help="where runs keep their files (default: a temporary folder)")
    parser.add_argument("--keep", action="store_true", help="keep the working folder even when all went well")
    args = parser.parse_args(argv)
    chosen = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = set(chosen) - set(MEASUREMENTS)
    if unknown:
        parser.error(f"--only takes {', '.join(MEASUREMENTS)}; got {', '.join(sorted(unknown))}")
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="aleph-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)

    def log(message: str) -> None:
        print(f"[{datetime.now(UTC):%H:%M:%S}] {message}", flush=True)

    started = time.monotonic()
    results: dict[str, Any] = {}
    meta: dict[str, Any] = {
        "command": "make bench" if not args.smoke else "python -m benchmarks.run --smoke",
        "mode": "smoke" if args.smoke else "full",
        "date": f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        "machine": machine(),
        "versions": versions(),
        "load_before": load_average(),
    }
    log(f"benchmarks ({meta['mode']}) in {workdir}; load average {meta['load_before']}")
    all_ran = True
    if "slot" in chosen:
        case = slot_time.SMOKE_CASE if args.smoke else slot_time.FULL_CASE
        results["slot"], ok = _guarded("slot", lambda: slot_time.run(case, workdir / "slot", log=log), log)
        all_ran &= ok
    if "scale" in chosen:
        cases = trigger_scale.SMOKE_CASES if args.smoke else trigger_scale.FULL_CASES
        scale_dir = workdir / "scale"
        scale_dir.mkdir(exist_ok=True)
        results["scale"], ok = _guarded("scale", lambda: trigger_scale.run_all(cases, scale_dir, log=log), log)
        all_ran &= ok
    if "copy" in chosen:
        sizes = output_copy.SMOKE_CASES if args.smoke else output_copy.FULL_CASES
        copy_dir = workdir / "copy"
        copy_dir.mkdir(exist_ok=True)
        results["copy"], ok = _guarded("copy", lambda: output_copy.run_all(sizes, copy_dir, log=log), log)
        all_ran &= ok
    if "polling" in chosen:
        poll_case = polling.SMOKE_CASE if args.smoke else polling.FULL_CASE
        poll_dir = workdir / "polling"
        poll_dir.mkdir(exist_ok=True)
        plots = args.readme.resolve().parent
        results["polling"], ok = _guarded("polling", lambda: polling.run_all(poll_case, poll_dir, plots, log=log), log)
        all_ran &= ok
    meta["wall_seconds"] = time.monotonic() - started
    meta["load_after"] = load_average()
    results = {"meta": meta, **results}
    args.json.write_text(json.dumps(results, indent=1, default=str) + "\n")
    write_readme(args.readme, results)
    log(f"wrote {args.readme} and {args.json} in {meta['wall_seconds'] / 60:.1f} min")
    if all_ran and not args.keep and args.workdir is None:
        shutil.rmtree(workdir, ignore_errors=True)
    elif not all_ran:
        log(f"files of the failed run kept in {workdir}")
    return 0 if all_ran else 1


if __name__ == "__main__":
    sys.exit(main())
