"""Run-time settings of the Segmind emulator, validated as a whole before any of them changes.

Every field can be given to ``Emulator(...)``, changed in process with ``emulator.config(name=value)``
(or by plain attribute assignment), and changed over HTTP with ``POST /_emulator/config``.
Settings copied into a job at submit (latency and its spread, fail rate, retention, output size)
affect new jobs only; the others apply to the next request. ``outage_seconds`` acts when it is set:
it starts an outage that lasts that long from that moment (see :meth:`EmulatorConfig.watch`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, replace
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

LOSE_SUBMIT_MODES = ("504", "drop", "alternate")
#: When a status or result call's request id is looked at, relative to its key: see ``request_id_check``.
REQUEST_ID_CHECKS = ("after_key", "form_first", "lookup_first")
UPLOAD_ANSWER_KEYS = ("file_urls", "urls")
#: Settings that start something each time they are set, even to the value they had: see ``watch``.
WATCHED_SETTINGS = ("outage_seconds",)
#: Largest ``latency_sigma``: beyond it a drawn duration could overflow a float.
MAX_LATENCY_SIGMA = 5.0
#: Default price of a job, in credits. Segmind's Aleph page gives no price; this is of the order of
#: Runway's own per-second price for the 5 seconds of video Aleph edits.
DEFAULT_COST_PER_JOB = 0.75
#: Default account balance: enough for over a million default-priced jobs, so that no test,
#: benchmark or demo runs out unless it sets a smaller one.
DEFAULT_CREDITS = 1_000_000.0


def _check_number(name: str, value: object, upper: float | None = None, positive: bool = False) -> None:
    """Raise ValueError unless ``value`` is a finite number at least 0 (above 0 when ``positive``), up to ``upper``."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    too_low = value <= 0 if positive else value < 0
    if too_low or (upper is not None and value > upper):
        bound = "above 0" if positive else "at least 0"
        bound = f"between 0 and {upper}" if upper is not None else bound
        raise ValueError(f"{name} must be {bound}, got {value!r}")


def _check_count(name: str, value: object, optional: bool = False, positive: bool = False) -> None:
    """Raise ValueError unless ``value`` is an int at least 0 (above 0 when ``positive``), or None if ``optional``."""
    if optional and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < (1 if positive else 0):
        allowed = "a positive integer" if positive else "an integer at least 0"
        raise ValueError(f"{name} must be {allowed}{' or null' if optional else ''}, got {value!r}")


def _check_choice(name: str, value: object, choices: tuple[str, ...]) -> None:
    """Raise ValueError unless ``value`` is one of ``choices``."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}, got {value!r}")


def _check_interim_status(value: object) -> None:
    """Raise ValueError unless ``value`` is None or a non-empty status that is not a terminal one."""
    # Imported here: jobs imports this module.
    from airflow_provider_aleph.emulator.jobs import COMPLETED, FAILED

    if value is None:
        return
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"interim_status must be a non-empty string or null, got {value!r}")
    if value in (COMPLETED, FAILED):
        raise ValueError(f"interim_status must not be a terminal status, got {value!r}")


def _string_tuple(name: str, value: object, what: str) -> tuple[str, ...]:
    """Return ``value`` as a tuple of strings; raise ValueError for a bare string or other items."""
    if isinstance(value, str) or not isinstance(value, list | tuple | set | frozenset):
        raise ValueError(f"{name} must be a list of {what}, got {type(value).__name__}")
    if not all(isinstance(item, str) and item for item in value):
        raise ValueError(f"{name} must contain only non-empty strings")
    return tuple(value)


@dataclass
class EmulatorConfig:
    """Settings of an emulator; see the package docstring for what each one emulates.

    :param latency: seconds from submit to the terminal state, or their median when ``latency_sigma``
        is above 0; the first quarter of each job's duration is QUEUED.
    :param latency_sigma: standard deviation of the log of each job's duration, from 0 to
        :data:`MAX_LATENCY_SIGMA`; above 0, durations are drawn from a lognormal whose median is
        ``latency``; 0 for exactly ``latency``.
    :param fail_rate: probability, from 0 to 1, that a job ends FAILED.
    :param retention: seconds a terminal request record is kept before it answers 404.
    :param retired_models: model slugs whose submissions answer 410 Gone.
    :param fetch_inputs: fetch ``video`` / ``reference_image`` URLs of each job, as Segmind does.
    :param fetch_timeout: seconds allowed for each input fetch.
    :param upload_answer_key: key of the URL list in the files API answer, ``file_urls`` or ``urls``.
    :param output_size: when set, every new job's output is a generated stream of this many bytes.
    :param edit_outputs: make a fetched video's output visibly edited (tinted by the prompt, captioned with
        it; needs the ``[media]`` extra, see :mod:`~airflow_provider_aleph.emulator.edit`); False (the
        default) serves the input unchanged, so a test can compare the copy with what it sent.
    :param cut_outputs: the next N output downloads (GET) are cut short.
    :param cut_after_bytes: bytes sent before a cut download is closed (at most the size minus one).
    :param error_rate: probability, from 0 to 1, that an API request gets an injected fault.
    :param rpm_limit: API calls allowed per key within ``rate_window`` seconds; None for no limit.
    :param rate_window: length in seconds of the sliding rate-limit window.
    :param insufficient_credits_keys: valid keys whose submits answer 406 (not enough credits).
    :param lose_submit_answers: the next N accepted submits create their job, then lose the answer.
    :param lose_submit_mode: how an answer is lost: ``504``, ``drop`` or ``alternate``.
    :param interim_status: when set, each job's first ``interim_polls`` status polls answer HTTP 200
        with this status (not one the API documents), whatever the job's real state.
    :param interim_polls: how many status polls of each job answer ``interim_status``.
    :param garbled_answers: the next N status or result answers are HTTP 200 with a body the API
        never sends: an HTML page or JSON without ``status``, alternately.
    :param outage_seconds: setting it to S starts an outage now that lasts S seconds, during which
        every API call answers a 503 gateway page; 0 ends it. Read back, the length last set.
    :param request_id_check: when a status or result call's request id is looked at: ``after_key`` (the
        key first, as Segmind does: a wrong key answers 401 whatever the id), ``form_first`` (an id that
        is not a UUID answers 404 before the key is checked, as some gateways do) or ``lookup_first``
        (an unknown id answers 404 before the key is checked: no answer about an unknown id tells a
        good key from a bad one).
    :param api_keys: when not empty, the keys the API routes accept instead of the emulator's own
        key (rotate with ``[old, new]``, then ``[new]``); empty means the emulator's own key.
    :param cost_per_job: credits each accepted submit costs, copied into the job at submit; a
        COMPLETED result reports it as ``metrics["cost"]``.
    :param credits: the account balance. Each accepted submit debits ``cost_per_job`` from it (a job
        that later fails included); a submit it does not cover, or any submit once it is 0, answers
        406. Read back, the balance left; set it to refill the account.
    """

    latency: float = 1.0
    latency_sigma: float = 0.0
    fail_rate: float = 0.0
    retention: float = 3600.0
    retired_models: tuple[str, ...] = ()
    fetch_inputs: bool = True
    fetch_timeout: float = 10.0
    upload_answer_key: str = "file_urls"
    output_size: int | None = None
    edit_outputs: bool = False
    cut_outputs: int = 0
    cut_after_bytes: int = 0
    error_rate: float = 0.0
    rpm_limit: int | None = None
    rate_window: float = 60.0
    # Keys are secrets: kept out of repr() and counted only in as_dict().
    insufficient_credits_keys: tuple[str, ...] = field(default=(), repr=False)
    lose_submit_answers: int = 0
    lose_submit_mode: str = "alternate"
    interim_status: str | None = None
    interim_polls: int = 3
    garbled_answers: int = 0
    outage_seconds: float = 0.0
    api_keys: tuple[str, ...] = field(default=(), repr=False)
    cost_per_job: float = DEFAULT_COST_PER_JOB
    credits: float = DEFAULT_CREDITS
    request_id_check: str = "after_key"

    def __post_init__(self) -> None:
        """Validate every field and normalise the list fields to tuples."""
        _check_number("latency", self.latency)
        _check_number("latency_sigma", self.latency_sigma, upper=MAX_LATENCY_SIGMA)
        _check_number("fail_rate", self.fail_rate, upper=1.0)
        _check_number("retention", self.retention)
        self.retired_models = _string_tuple("retired_models", self.retired_models, "model slugs")
        if not isinstance(self.fetch_inputs, bool):
            raise ValueError(f"fetch_inputs must be true or false, got {self.fetch_inputs!r}")
        _check_number("fetch_timeout", self.fetch_timeout, positive=True)
        _check_choice("upload_answer_key", self.upload_answer_key, UPLOAD_ANSWER_KEYS)
        _check_count("output_size", self.output_size, optional=True)
        if not isinstance(self.edit_outputs, bool):
            raise ValueError(f"edit_outputs must be true or false, got {self.edit_outputs!r}")
        _check_count("cut_outputs", self.cut_outputs)
        _check_count("cut_after_bytes", self.cut_after_bytes)
        _check_number("error_rate", self.error_rate, upper=1.0)
        _check_count("rpm_limit", self.rpm_limit, optional=True, positive=True)
        _check_number("rate_window", self.rate_window, positive=True)
        self.insufficient_credits_keys = _string_tuple(
            "insufficient_credits_keys", self.insufficient_credits_keys, "API keys"
        )
        _check_count("lose_submit_answers", self.lose_submit_answers)
        _check_choice("lose_submit_mode", self.lose_submit_mode, LOSE_SUBMIT_MODES)
        _check_interim_status(self.interim_status)
        _check_count("interim_polls", self.interim_polls, positive=True)
        _check_count("garbled_answers", self.garbled_answers)
        _check_number("outage_seconds", self.outage_seconds)
        self.api_keys = _string_tuple("api_keys", self.api_keys, "API keys")
        _check_number("cost_per_job", self.cost_per_job)
        _check_number("credits", self.credits)
        _check_choice("request_id_check", self.request_id_check, REQUEST_ID_CHECKS)

    def watch(self, listener: Callable[[str, Any], None]) -> None:
        """Call ``listener(name, value)`` each time a setting of :data:`WATCHED_SETTINGS` is set.

        It hears :meth:`update`, ``config(...)`` and plain attribute assignment, but not the
        constructor's values; one listener per settings object (the emulator's state).

        :param listener: called after the new value is stored.
        """
        # Not a field: replace() and as_dict() leave it out.
        object.__setattr__(self, "_listener", listener)

    # Hidden from type checkers, which would otherwise accept assignments to misspelt settings.
    if not TYPE_CHECKING:

        def __setattr__(self, name: str, value: Any) -> None:
            """Store a setting, then tell the listener if it is a watched one.

            :param name: the setting's name.
            :param value: its new value.
            """
            super().__setattr__(name, value)
            listener = self.__dict__.get("_listener")
            if listener is not None and name in WATCHED_SETTINGS:
                listener(name, value)

    def update(self, changes: Mapping[str, Any]) -> None:
        """Apply ``changes`` all at once after validating them; raise ValueError if any is bad.

        :param changes: new values keyed by field name.
        """
        unknown = sorted(set(changes) - {item.name for item in fields(self)})
        if unknown:
            raise ValueError(f"unknown setting(s): {', '.join(unknown)}")
        # replace() re-runs __post_init__, so nothing changes unless every value is valid.
        candidate = replace(self, **changes)
        # Only the named settings: setting a watched one again acts again (a new outage).
        for name in changes:
            setattr(self, name, getattr(candidate, name))

    def __call__(self, **changes: Any) -> EmulatorConfig:
        """Apply ``changes`` like :meth:`update` and return the settings: ``emulator.config(error_rate=0.2)``.

        :param changes: new values keyed by field name.
        """
        self.update(changes)
        return self

    def as_dict(self) -> dict[str, Any]:
        """Return the settings as a JSON-ready dict; keys (accepted or credit-less) are reported by count only."""
        settings = {item.name: getattr(self, item.name) for item in fields(self)}
        settings["retired_models"] = list(self.retired_models)
        settings["insufficient_credits_keys"] = len(self.insufficient_credits_keys)
        settings["api_keys"] = len(self.api_keys)
        return settings
