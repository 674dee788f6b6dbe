"""The operators' own parameters: checked when a DAG is parsed (literals) or once rendered (templates).

Every check here raises before anything is spent, naming the parameter and what it accepts.
"""

from __future__ import annotations

import contextlib
import json
import math
import re
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow_provider_aleph.exceptions import InvalidParameter
from airflow_provider_aleph.storage.inbound import MAX_PRESIGN_SECONDS

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from airflow_provider_aleph.inputs import FileInput
    from airflow_provider_aleph.types import SegmindResult

MODEL_SLUG = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def check_literal(value: Any, check: Callable[[Any], Any]) -> None:
    """Run ``check`` on a parameter now, when the DAG is parsed, unless it is a template (checked once rendered)."""
    if "{{" not in str(value):
        check(value)


def require_model(model: Any) -> str:
    """``model``, checked: a Segmind model slug."""
    if not isinstance(model, str) or not MODEL_SLUG.match(model):
        raise InvalidParameter("model", f"must be a Segmind model slug such as 'runway-gen4-aleph'; got {model!r}")
    return model


def payload_dict(payload: Any) -> dict[str, Any]:
    """``payload``, checked: a dict of the model's parameters, or a rendered JSON string of one."""
    if isinstance(payload, str):
        with contextlib.suppress(ValueError):
            payload = json.loads(payload)
    if not isinstance(payload, dict):
        raise InvalidParameter("payload", f"must be a dict of the model's parameters; got {type(payload).__name__}")
    return payload


def is_empty(value: Any) -> bool:
    """Whether an ``output_path`` (or any optional text parameter) was left out: None or blank."""
    return value is None or (isinstance(value, str) and not value.strip())


def output_path_needs_waiting() -> InvalidParameter:
    """The error for ``output_path`` given with ``wait_for_completion=False``."""
    return InvalidParameter(
        "output_path",
        "cannot be combined with wait_for_completion=False: the task returns before the job has an output. "
        "Give output_path to the SegmindRequestSensor that waits for the request instead",
    )


def require_preview(preview: Any, output_path: Any) -> bool:
    """``preview``, checked: a bool, and True only with an ``output_path`` (the previews go beside the copy)."""
    if not isinstance(preview, bool):
        raise InvalidParameter("preview", f"must be True or False; got {preview!r}")
    if preview and is_empty(output_path):
        raise InvalidParameter(
            "preview",
            "needs output_path: the poster and contact sheet are written beside the copied output. "
            "Give output_path, or leave preview False",
        )
    return preview


#: The range of ``fit_seconds``: at least a few frames, at most a minute (models use seconds, not minutes).
FIT_SECONDS_RANGE = (0.5, 60.0)


def require_fit(fit_input: Any, fit_seconds: Any, declared: Iterable[FileInput]) -> tuple[bool, float | None]:
    """``fit_input`` and ``fit_seconds``, checked: a bool, and seconds within :data:`FIT_SECONDS_RANGE`
    (None: the seconds each video field declares), only with ``fit_input`` and a field to fit.

    :param fit_input: the value given.
    :param fit_seconds: the value given.
    :param declared: the operator's file fields; one must declare the seconds its model uses.
    """
    if not isinstance(fit_input, bool):
        raise InvalidParameter("fit_input", f"must be True or False; got {fit_input!r}")
    videos = [spec.name for spec in declared if spec.seconds_used]
    if fit_input and not videos:
        raise InvalidParameter(
            "fit_input",
            "this operator declares no video input with the seconds its model uses; use an operator that "
            "does (RunwayAlephOperator's video)",
        )
    if fit_seconds is None:
        return fit_input, None
    low, high = FIT_SECONDS_RANGE
    number = isinstance(fit_seconds, int | float) and not isinstance(fit_seconds, bool)
    if not number or not low <= fit_seconds <= high:
        raise InvalidParameter(
            "fit_seconds", f"must be a number of seconds from {low:g} to {high:g}; got {fit_seconds!r}"
        )
    if not fit_input:
        raise InvalidParameter("fit_seconds", "has no effect without fit_input=True; set both, or neither")
    return fit_input, float(fit_seconds)


def require_media_options(preview: bool, fit_input: bool) -> None:
    """Refuse ``preview`` or ``fit_input`` before anything is spent when the media extra is not installed."""
    from airflow_provider_aleph.media import require_media

    for name, wanted in (("fit_input", fit_input), ("preview", preview)):
        if wanted:
            require_media(name)


def accepted(request_id: str, status: str) -> SegmindResult:
    """The result of a task that did not wait (``wait_for_completion=False``): the job is still running."""
    return {
        "request_id": request_id,
        "status": status,
        "output_url": None,
        "output_path": None,
        "metrics": {},
        "output": None,
        "cost": None,
    }


def waiting_params(
    poll_interval: float,
    max_poll_interval: float | None,
    expected_duration: float | None,
    timeout: float | timedelta,
) -> tuple[float, float | None, float | None, timedelta]:
    """How a task waits, checked: ``poll_interval``, ``max_poll_interval``, ``expected_duration``, ``timeout``."""
    interval = float(poll_interval)
    if interval <= 0:
        raise ValueError(f"poll_interval must be a positive number of seconds, got {poll_interval!r}")
    longest = None if max_poll_interval is None else float(max_poll_interval)
    if longest is not None and not longest >= interval:
        raise ValueError(
            f"max_poll_interval must be a number of seconds no shorter than poll_interval "
            f"({interval:g}), or None; got {max_poll_interval!r}"
        )
    expected = None if expected_duration is None else float(expected_duration)
    if expected is not None and not 0 < expected < math.inf:
        raise ValueError(f"expected_duration must be a positive number of seconds, or None; got {expected_duration!r}")
    deadline = timeout if isinstance(timeout, timedelta) else timedelta(seconds=float(timeout))
    if deadline.total_seconds() <= 0:
        raise ValueError(f"timeout must be positive, got {timeout!r}")
    return interval, longest, expected, deadline


def presign_seconds(value: float | timedelta) -> int:
    """``presign_expiration`` in whole seconds, checked: positive and at most 7 days (S3's and GCS's limit)."""
    seconds = value.total_seconds() if isinstance(value, timedelta) else value
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not 1 <= seconds <= MAX_PRESIGN_SECONDS:
        raise InvalidParameter(
            "presign_expiration",
            f"must be a number of seconds or a timedelta from 1 second to 7 days ({MAX_PRESIGN_SECONDS} s); "
            f"got {value!r}",
        )
    return int(seconds)
