"""Running intervals of task instances, from Airflow's own records.

From the event log where Airflow writes each state change of a task instance there (3.3.2 does,
3.0.6 does not): a ``running`` row opens an interval and the next row of the same try that leaves
the running state (``deferred``, ``success``, ``failed``, ...) closes it. Otherwise from the log file
the worker wrote for the task try: each run of the task process is one interval.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping
    from pathlib import Path

#: Events that end a running interval of a task instance in the event log.
_LEAVES_RUNNING = frozenset(
    {"deferred", "success", "failed", "up_for_retry", "up_for_reschedule", "skipped", "removed", "upstream_failed"}
)


@dataclass(frozen=True)
class TaskKey:
    """One try of one task instance.

    :param task_id: the task id.
    :param map_index: the map index (-1 when not mapped).
    :param try_number: the try.
    """

    task_id: str
    map_index: int
    try_number: int


@dataclass(frozen=True)
class Interval:
    """A span of time a task instance spent running on a worker.

    :param start: when it started running.
    :param end: when it stopped (deferred, succeeded, failed, ...).
    :param ended_by: the state it went to.
    """

    start: datetime
    end: datetime
    ended_by: str

    @property
    def seconds(self) -> float:
        """The interval's length in seconds."""
        return (self.end - self.start).total_seconds()


def _parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def event_intervals(events: Iterable[Mapping[str, Any]]) -> dict[TaskKey, list[Interval]]:
    """Running intervals per task try, from event-log rows (``/api/v2/eventLogs`` items).

    :param events: rows with ``event``, ``when``, ``task_id``, ``map_index`` and ``try_number``.
    """
    by_key: dict[TaskKey, list[tuple[datetime, str]]] = {}
    for row in events:
        if not row.get("task_id") or row.get("try_number") is None:
            continue
        map_index = row.get("map_index")
        key = TaskKey(row["task_id"], -1 if map_index is None else map_index, row["try_number"])
        by_key.setdefault(key, []).append((_parse_time(row["when"]), row["event"]))
    intervals: dict[TaskKey, list[Interval]] = {}
    for key, rows in by_key.items():
        opened: datetime | None = None
        for when, event in sorted(rows, key=lambda item: item[0]):
            if event == "running":
                opened = when
            elif event in _LEAVES_RUNNING and opened is not None:
                intervals.setdefault(key, []).append(Interval(opened, when, event))
                opened = None
    return intervals


def json_lines(path: Path) -> list[dict[str, Any]]:
    """The JSON objects of a JSON-lines file; other lines are skipped.

    :param path: the file.
    """
    lines = []
    for text in path.read_text(errors="replace").splitlines():
        with contextlib.suppress(ValueError):
            line = json.loads(text)
            if isinstance(line, dict):
                lines.append(line)
    return lines


def log_intervals(lines: Iterable[Mapping[str, Any]]) -> list[Interval]:
    """Running intervals of one task try from the worker's log file (Airflow 3.0 has no event rows).

    Each run of the task process opens with its DAG bundle line; a run ends with its last line.
    This starts a little after Airflow's own ``running`` record (the process is forked and reports
    in before its first line), so it reads a little short. The lines are the JSON objects of the
    log file, each with ``timestamp`` and ``event``.

    :param lines: the log's JSON lines, in order.
    """
    runs: list[list[datetime]] = []
    for line in lines:
        stamp = line.get("timestamp")
        if not stamp:
            continue
        when = _parse_time(str(stamp))
        if str(line.get("event", "")).startswith("DAG bundles loaded") or not runs:
            runs.append([when])
        runs[-1].append(when)
    return [Interval(run[0], run[-1], "log") for run in runs if len(run) > 1]
