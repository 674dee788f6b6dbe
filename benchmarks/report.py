"""The results tables of ``benchmarks/README.md``, rendered from one run's measurements.

Only the block between :data:`START` and :data:`END` is rewritten; the text around it stays.
Each target gets a verdict cell: ``met``, or ``missed`` with the measured value and the target.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pathlib import Path

START = "<!-- bench:results:start -->"
END = "<!-- bench:results:end -->"
MIB = 1024 * 1024
TIMES = "\N{MULTIPLICATION SIGN}"


def fmt(value: float | None, digits: int = 2) -> str:
    """A number for a table cell; ``n/a`` for None.

    :param value: the number.
    :param digits: decimals.
    """
    return "n/a" if value is None else f"{value:,.{digits}f}"


def verdict(ok: bool | None, shown: str) -> str:
    """``met`` or ``missed (<shown>)``; ``n/a`` when it could not be judged.

    :param ok: whether the target is met.
    :param shown: the measured value against the target, e.g. ``0.42 vs ≥ 0.90``.
    """
    if ok is None:
        return "n/a"
    return "met" if ok else f"**missed** ({shown})"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def _failed(section: Any) -> str | None:
    if isinstance(section, dict) and "error" in section:
        return f"Not measured in this run: `{section['error']}`"
    return None


def slot_section(slot: Any) -> list[str]:
    """Measurements 1 and 4: slot seconds and API calls per job.

    :param slot: what :func:`benchmarks.slot_time.run` returned, or ``{"error": ...}``.
    """
    lines = ["### 1. Worker-slot seconds per job", ""]
    if (failure := _failed(slot)) is not None:
        return [*lines, failure, "", "### 4. API calls per completed job", "", failure, ""]
    by_key = {(row["latency"], row["side"]): row for row in slot["rows"]}
    latencies = sorted({row["latency"] for row in slot["rows"]})
    floor = slot["floor"]
    rows = []
    calls = []
    for latency in latencies:
        ours, sdk = by_key[(latency, "ours")], by_key[(latency, "sdk")]
        ratio = sdk["slot_seconds_mean"] / ours["slot_seconds_mean"] if ours["slot_seconds_mean"] else None
        worst = ours["slot_seconds_max"]
        runs = " + ".join(fmt(seconds) for seconds in ours["run_seconds_mean"])
        rows.append(
            [
                f"{latency:g} s",
                f"{ours['jobs']} + {sdk['jobs']}",
                f"{fmt(ours['slot_seconds_mean'])} = {runs} (max {fmt(worst)})",
                f"{fmt(sdk['slot_seconds_mean'])} (max {fmt(sdk['slot_seconds_max'])})",
                f"{fmt(ratio, 0)}{TIMES}",
                verdict(None if worst is None else worst <= 1.0, f"{fmt(worst)} s vs ≤ 1 s"),
                f"{_states(ours)} / {_states(sdk)}",
            ]
        )
        ours_calls, sdk_calls = ours["api_calls_per_job"], sdk["api_calls_per_job"]
        calls.append(
            [
                f"{latency:g} s",
                fmt(ours_calls, 1),
                fmt(sdk_calls, 1),
                f"{fmt(sdk_calls / ours_calls if ours_calls and sdk_calls else None, 1)}{TIMES}",
            ]
        )
    header = [
        "emulator latency",
        "jobs (ours + SDK)",
        "ours: slot s/job = run on submit + run on resume",
        "SDK `submit_async().wait()`: slot s/job",
        "SDK ÷ ours",
        "target: ours ≤ 1 s/job",
        "task states",
    ]
    lines += _table(header, rows)
    lines += [
        "",
        "Airflow's own floor in the same run: a task that does nothing held a slot "
        f"{fmt(floor['slot_seconds_mean'])} s (max {fmt(floor['slot_seconds_max'])}, {floor['jobs']} tasks); "
        "ours runs twice per job.",
    ]
    lines += ["", "### 4. API calls per completed job (submit + status polls + result)", ""]
    header = ["emulator latency", "ours, defaults (10 s polls)", "SDK defaults (1 s polls)", "SDK ÷ ours"]
    lines += _table(header, calls)
    return [*lines, ""]


def _states(row: dict[str, Any]) -> str:
    return ", ".join(f"{count} {state}" for state, count in sorted(row["states"].items()))


def scale_section(scale: Any) -> list[str]:
    """Measurement 2: many triggers on one event loop, ours and the anchor.

    :param scale: what :func:`benchmarks.trigger_scale.run_all` returned, or ``{"error": ...}``.
    """
    lines = ["### 2. Triggerer scale (one event loop)", ""]
    if (failure := _failed(scale)) is not None:
        return [*lines, failure, ""]
    header = [
        "triggers",
        "poll / latency",
        "trigger",
        "fired",
        "polls per trigger",
        "CPU s per 1,000 polls",
        "RSS KiB per trigger",
        "lag p50 / p99 s",
        "emulator CPU (share of a core)",
    ]
    rows = []
    for row in scale["rows"]:
        name = "ours (`SegmindRequestTrigger`)" if row["kind"] == "ours" else "anchor (`HttpEventTrigger`)"
        rows.append(
            [
                f"{row['triggers']:,}",
                f"{row['poll']:g} s / {row['latency']:g} s",
                name,
                f"{row['succeeded']:,} of {row['triggers']:,}" + _other_statuses(row),
                fmt(row["polls_per_trigger"], 1),
                fmt(row["cpu_per_1000_polls"]),
                fmt(row["rss_per_trigger_kib"], 1),
                f"{fmt(row['lag_p50'], 3)} / {fmt(row['lag_p99'], 3)}",
                f"{fmt(row['emulator_cpu_seconds'], 1)} s ({fmt(_pct(row['emulator_core_share']), 0)} %)",
            ]
        )
    lines += _table(header, rows)
    lines += ["", "Targets, ours at each size:", ""]
    header = [
        "triggers",
        "CPU per poll ÷ anchor's (≤ 0.33)",
        "RSS per trigger (≤ 20 KiB)",
        "p99 lag ≤ poll + 0.05 s",
        "all fired",
    ]
    lines += _table(header, _scale_targets(scale["rows"]))
    if scale.get("anchor_missing"):
        lines += ["", f"No anchor in this run: {scale['anchor_missing']}."]
    floors = ", ".join(f"{fmt(floor['rss_per_task_kib'], 1)} KiB at {floor['triggers']:,}" for floor in scale["floors"])
    client = scale["client_floor"]
    lines += [
        "",
        f"Runner alone (tasks that only sleep, wrapped as the triggerer wraps them): RSS per task {floors}.",
        "Bare HTTP clients, CPU ms per status GET, 4 in flight: "
        f"httpx shared client {fmt(client['httpx_shared_client_ms'], 3)}, "
        f"aiohttp shared session {fmt(client['aiohttp_shared_session_ms'], 3)}, "
        f"aiohttp session per request (what the anchor does) {fmt(client['aiohttp_session_per_request_ms'], 3)}.",
        "",
    ]
    return lines


def _pct(share: float | None) -> float | None:
    return None if share is None else 100 * share


def _other_statuses(row: dict[str, Any]) -> str:
    others = {status: count for status, count in row["statuses"].items() if status != "success"}
    return "" if not others else " (" + ", ".join(f"{count} {status}" for status, count in sorted(others.items())) + ")"


def _scale_targets(rows: list[dict[str, Any]]) -> list[list[str]]:
    by_size: dict[int, dict[str, dict[str, Any]]] = {}
    for row in rows:
        by_size.setdefault(row["triggers"], {})[row["kind"]] = row
    table = []
    for size, kinds in sorted(by_size.items()):
        ours, anchor = kinds.get("ours"), kinds.get("anchor")
        if ours is None:
            continue
        ratio = None
        if anchor and ours["cpu_per_1000_polls"] and anchor["cpu_per_1000_polls"]:
            ratio = ours["cpu_per_1000_polls"] / anchor["cpu_per_1000_polls"]
        lag, limit = ours["lag_p99"], ours["poll"] + 0.05
        table.append(
            [
                f"{size:,}",
                verdict(None if ratio is None else ratio <= 1 / 3, f"{fmt(ratio)} vs ≤ 0.33"),
                verdict(ours["rss_per_trigger_kib"] <= 20, f"{fmt(ours['rss_per_trigger_kib'], 1)} KiB vs ≤ 20"),
                verdict(None if lag is None else lag <= limit, f"{fmt(lag, 3)} s vs ≤ {fmt(limit, 3)} s"),
                verdict(ours["succeeded"] == size, f"{ours['succeeded']:,} of {size:,}"),
            ]
        )
    return table


def copy_section(copy: Any) -> list[str]:
    """Measurement 3: output copy against ``curl -o``.

    :param copy: what :func:`benchmarks.output_copy.run_all` returned, or ``{"error": ...}``.
    """
    lines = ["### 3. Output copy to a `file://` path", ""]
    if (failure := _failed(copy)) is not None:
        return [*lines, failure, ""]
    header = [
        "output",
        "ours MiB/s",
        "`curl -o` MiB/s",
        "ours ÷ curl (≥ 0.90)",
        "ours peak RSS growth",
        "CPU s per GiB, ours / curl",
        "one-time set-up (not in MiB/s)",
    ]
    rows = []
    for row in copy:
        size = row["size"] / MIB
        growth = row["ours_peak_rss_growth_mib"]
        memory = f"{fmt(growth, 1)} MiB"
        if row["size"] >= 1024 * MIB:
            memory += " — " + verdict(growth <= 64, f"{fmt(growth, 1)} MiB vs ≤ 64")
        rows.append(
            [
                f"{size:,.0f} MiB",
                fmt(row["ours_mib_s"], 0),
                fmt(row["curl_mib_s"], 0),
                f"{fmt(row['ratio'])} — " + verdict(row["ratio"] >= 0.9, f"{fmt(row['ratio'])} vs ≥ 0.90"),
                memory,
                f"{fmt(row['ours_cpu_seconds_per_gib'])} / {fmt(row['curl_cpu_seconds_per_gib'])}",
                f"{fmt(row['ours_setup_seconds'])} s",
            ]
        )
    return [*lines, *_table(header, rows), ""]


def render(results: dict[str, Any]) -> str:
    """The whole generated block, markers included.

    :param results: ``meta``, ``slot``, ``scale`` and ``copy`` of one run.
    """
    meta = results["meta"]
    machine = meta["machine"]
    versions = ", ".join(f"{name} {version}" for name, version in meta["versions"].items())
    load = " / ".join(f"{value:.2f}" for value in meta["load_before"])
    lines = [
        START,
        f"_Written by `{meta['command']}` on {meta['date']} in {meta['wall_seconds'] / 60:.1f} min "
        f"({meta['mode']} run). Machine: {machine['cores']} cores ({machine['cpu']}), "
        f"{machine['memory_gib']} GiB memory, Linux {machine['kernel']}; load average before the run "
        f"{load} (1/5/15 min). Versions: {versions}._",
        "",
    ]
    if "slot" in results:
        lines += slot_section(results["slot"])
    if "scale" in results:
        lines += scale_section(results["scale"])
    if "copy" in results:
        lines += copy_section(results["copy"])
    lines.append(END)
    return "\n".join(lines)


def write_readme(path: Path, results: dict[str, Any]) -> None:
    """Replace the results block of ``path`` (or append one) with this run's tables.

    :param path: the README to rewrite.
    :param results: the run's measurements.
    """
    text = path.read_text() if path.exists() else ""
    block = render(results)
    if START in text and END in text:
        head, rest = text.split(START, 1)
        tail = rest.split(END, 1)[1]
        text = head + block + tail
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    path.write_text(text)
