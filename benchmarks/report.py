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
        "p99 lag ≤ anchor's",
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
    lines += _profile_lines(scale.get("profile"))
    return lines


def _profile_lines(profile: dict[str, Any] | None) -> list[str]:
    """Where a poll's CPU time goes, from the profiled run of ours (see ``trigger_scale.profile_polls``)."""
    if not profile:
        return []
    lines = [
        f"Where a poll's CPU time goes: ours at {profile['triggers']:,} triggers, a run of its own under cProfile "
        f"({fmt(profile['profiled_ms_per_poll'], 2)} ms per status or result call there, profiling included); "
        "share of the process's CPU time (cProfile's tottime on `time.process_time`) by where the code lives:",
        "",
    ]
    lines += _table(
        ["where", "share"], [[area, f"{fmt(100 * share, 1)} %"] for area, share in profile["areas"].items()]
    )
    lines += ["", "The functions that take most of it:", ""]
    lines += _table(
        ["function", "share"],
        [[f"`{entry['function']}`", f"{fmt(100 * entry['share'], 1)} %"] for entry in profile["top"]],
    )
    return [*lines, ""]


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
        anchor_lag = anchor["lag_p99"] if anchor else None
        table.append(
            [
                f"{size:,}",
                verdict(None if ratio is None else ratio <= 1 / 3, f"{fmt(ratio)} vs ≤ 0.33"),
                verdict(ours["rss_per_trigger_kib"] <= 20, f"{fmt(ours['rss_per_trigger_kib'], 1)} KiB vs ≤ 20"),
                verdict(None if lag is None else lag <= limit, f"{fmt(lag, 3)} s vs ≤ {fmt(limit, 3)} s"),
                verdict(
                    None if lag is None or anchor_lag is None else lag <= anchor_lag,
                    f"{fmt(lag, 3)} s vs ≤ {fmt(anchor_lag, 3)} s",
                ),
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


POLL_SIDES = {
    "adaptive": "ours `adaptive` (new)",
    "fixed": "ours `fixed` (today)",
    "sdk": "SDK `submit_async().wait()`",
}
NONE = "\N{EM DASH}"


def _lag_cell(row: dict[str, Any], prefix: str = "lag") -> str:
    if row[f"{prefix}_p50"] is None:
        return f"{NONE} (no job completed)"
    cell = f"{fmt(row[f'{prefix}_p50'], 1)} / {fmt(row[f'{prefix}_p99'], 1)}"
    if row.get(f"{prefix}_missing"):
        cell += f" ({row[f'{prefix}_missing']} without an event by the end)"
    return cell


def _calls_cell(row: dict[str, Any]) -> str:
    if row["calls_per_job"] is None:
        return f"{NONE} (no job completed; {row['calls']:,} calls)"
    return fmt(row["calls_per_job"], 1)


def _failed_cell(row: dict[str, Any]) -> str:
    """Tasks that failed because of a 429, out of all tasks; other failures named."""
    cell = f"{row['failed_by_429']:,} of {row['tasks']:,}"
    others = row["failed"] - row["failed_by_429"]
    if others:
        cell += f" (+{others:,} other failures)"
    return cell


def polling_section(polling: Any) -> list[str]:
    """Measurement 5: waiting for many jobs under the account's budget, three sides.

    :param polling: what :func:`benchmarks.polling.run_all` returned, or ``{"error": ...}``.
    """
    title = "### 5. Polling under the account's budget"
    if (failure := _failed(polling)) is not None:
        return [title, "", failure, ""]
    case = polling["case"]
    scale = case["scale"]
    lines = [
        f"{title} (run {scale:g}{TIMES} faster than real time; every time in real seconds)",
        "",
        f"Emulator: job durations lognormal, median {case['median']:g} s, \N{GREEK SMALL LETTER SIGMA} "
        f"{case['sigma']:g}; account limit {case['account_rpm']} API calls a minute, every call counted. "
        f"Ours: `poll_interval` {case['poll_interval']:g} s, `expected_duration` {case['median']:g} s, "
        f"`max_poll_interval` {case['max_poll_interval']:g} s. SDK: `wait()` at its default "
        f"{case['sdk_interval']:g} s interval.",
        "",
    ]
    if not polling["policy_available"]:
        lines += [
            "**`airflow_provider_aleph.polling` was not in this checkout: both of our sides ran the code "
            "without poll policies (no `poll_policy`, `model`, `expected_duration`, `max_poll_interval`).**",
            "",
        ]
    steady = polling["steady"]
    lines += [
        f"**Steady pool**: {case['steady_in_flight']} jobs in flight, each finished job replaced at once; "
        f"ours at a budget of {case['account_rpm']}/min. Window: {case['steady_warmup']:g} s to "
        f"{case['steady_warmup'] + case['steady_measure']:g} s after the start; failures and 429s over the "
        "whole run.",
        "",
    ]
    header = [
        "side",
        "completed jobs per minute",
        "API calls per completed job",
        "tasks failed by a 429",
        "429 answers (of all calls)",
        "lag p50 / p99 s",
    ]
    rows = []
    for row in steady:
        low, high = row["window_seconds"]
        rows.append(
            [
                POLL_SIDES[row["side"]],
                f"{fmt(row['jobs_per_minute'], 1)} ({row['completed']:,} in {fmt(high - low, 0)} s)",
                _calls_cell(row),
                _failed_cell(row),
                f"{row['answers_429']:,} (of {row['calls_total']:,})",
                _lag_cell(row),
            ]
        )
    lines += _table(header, rows)
    by_side = {row["side"]: row for row in steady}
    fixed_p99 = by_side.get("fixed", {}).get("lag_p99")
    header = ["side", "≥ 12 jobs/min", "≤ 4.0 calls/job", "no 429 reaches a task", "p99 lag ≤ ⅓ of ours-fixed's"]
    rows = []
    for row in steady:
        calls = row["calls_per_job"]
        ratio_cell = NONE
        if row["side"] == "adaptive":
            limit = None if fixed_p99 is None else fixed_p99 / 3
            ok = None if limit is None or row["lag_p99"] is None else row["lag_p99"] <= limit
            ratio_cell = verdict(ok, f"{fmt(row['lag_p99'], 1)} s vs ≤ {fmt(limit, 1)} s")
        rows.append(
            [
                POLL_SIDES[row["side"]],
                verdict(row["jobs_per_minute"] >= 12, f"{fmt(row['jobs_per_minute'], 1)} vs ≥ 12"),
                verdict(calls is not None and calls <= 4.0, f"{_calls_cell(row)} vs ≤ 4.0"),
                verdict(row["failed_by_429"] == 0, f"{row['failed_by_429']:,} tasks"),
                ratio_cell,
            ]
        )
    lines += ["", "Targets:", "", *_table(header, rows), ""]

    batches = polling["batch"]
    lines += [
        f"**Batches**: the jobs are submitted at once before the waits start (the limit switched on "
        f"after, its window empty), then waited for all at once; ours at the default budget, "
        f"{fmt(case['default_budget'], 0)}/min. *Floor*: an oracle that reads each job once (a status "
        "and a result call) the moment it completes, its calls served one at a time at the budget's rate.",
        "",
    ]
    header = [
        "jobs",
        "side",
        "completed",
        "API calls per job (submit included)",
        "429 answers",
        "tasks failed by a 429",
        "lag p50 / p99 s",
        "floor p50 / p99 s",
    ]
    rows = []
    for row in batches:
        rows.append(
            [
                f"{row['jobs']:,}",
                POLL_SIDES[row["side"]],
                f"{row['completed']:,} of {row['jobs']:,}",
                fmt(row["calls_per_job"], 1),
                f"{row['answers_429']:,}",
                _failed_cell(row),
                _lag_cell(row),
                _lag_cell(row, "floor"),
            ]
        )
    lines += _table(header, rows)
    header = ["jobs", "ours-adaptive: ≤ 4 calls/job", "p99 lag ≤ ours-fixed's", f"p99 lag ≤ 1.5 {TIMES} floor p99"]
    rows = []
    for size in sorted({row["jobs"] for row in batches}):
        sides = {row["side"]: row for row in batches if row["jobs"] == size}
        ours, fixed = sides.get("adaptive"), sides.get("fixed")
        if ours is None:
            continue
        p99, fixed_p99 = ours["lag_p99"], (fixed or {}).get("lag_p99")
        floor = 1.5 * ours["floor_p99"] if ours["floor_p99"] is not None else None
        rows.append(
            [
                f"{size:,}",
                verdict(ours["calls_per_job"] <= 4, f"{fmt(ours['calls_per_job'], 1)} vs ≤ 4"),
                verdict(
                    None if p99 is None or fixed_p99 is None else p99 <= fixed_p99,
                    f"{fmt(p99, 1)} s vs ≤ {fmt(fixed_p99, 1)} s",
                ),
                verdict(
                    None if p99 is None or floor is None else p99 <= floor, f"{fmt(p99, 1)} s vs ≤ {fmt(floor, 1)} s"
                ),
            ]
        )
    lines += ["", "Targets:", "", *_table(header, rows), ""]

    two = polling["two"]
    single = by_side.get("adaptive", {}).get("lag_p99")
    limit = None if single is None else 2 * single
    share = two["share_429_after_skip"]
    lines += [
        f"**Two triggerer processes, one account**: ours (`adaptive`) in two processes, "
        f"{two['in_flight_each']} jobs in flight each, each with its own budget of {two['budget_each']}/min, "
        f"against one account limited to {case['account_rpm']}/min; {fmt(two['run_seconds'], 0)} s of submits.",
        "",
    ]
    header = [
        "completed",
        "429 answers after the first minute: share of the calls (≤ 5 %)",
        "tasks failed (0)",
        f"max lag ≤ 2 {TIMES} steady p99 of ours-adaptive",
    ]
    shown = f"{fmt(_pct(share), 1)} %" if share is not None else "n/a"
    rows = [
        [
            f"{two['completed']:,}",
            f"{two['answers_429_after_skip']:,} of {two['calls_after_skip']:,} = {shown} — "
            + verdict(None if share is None else share <= 0.05, f"{shown} vs ≤ 5 %"),
            f"{two['failed']:,} ({two['failed_by_429']:,} by a 429) — "
            + verdict(two["failed"] == 0, f"{two['failed']:,} vs 0"),
            f"{fmt(two['lag_max'], 1)} s vs ≤ {fmt(limit, 1)} s — "
            + verdict(
                None if two["lag_max"] is None or limit is None else two["lag_max"] <= limit,
                f"{fmt(two['lag_max'], 1)} s vs ≤ {fmt(limit, 1)} s",
            ),
        ]
    ]
    lines += _table(header, rows)
    plots = polling.get("plots", {})
    lines.append("")
    for key, caption in (
        ("lag", "Completion-to-event lag, steady pool and batches"),
        ("steady", "Steady pool: API calls per minute"),
        ("two", "Two processes, one account: API calls per minute"),
    ):
        if key in plots:
            lines += [f"![{caption}]({plots[key]})", ""]
    return lines


def render(results: dict[str, Any]) -> str:
    """The whole generated block, markers included.

    :param results: ``meta``, ``slot``, ``scale``, ``copy`` and ``polling`` of one run.
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
    if "polling" in results:
        lines += polling_section(results["polling"])
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
