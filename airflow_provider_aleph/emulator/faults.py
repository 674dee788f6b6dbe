"""Fault injection: the transient errors a client of Segmind must survive, drawn from a seeded source.

With ``error_rate`` above 0, each API request (submit, status, result) fails with that probability,
the kind picked uniformly among :data:`FAULT_KINDS`:

- ``429_retry_after``: 429 with ``Retry-After: 1``;
- ``429_reset_at``: 429 with only ``x-rate-limit-reset-at-utc``, one second ahead;
- ``500``, ``502``, ``503``, ``504``: an HTML page, as a gateway in front of the API sends;
- ``drop``: the connection is closed without any answer.

A submit only gets the kinds in :data:`SUBMIT_FAULT_KINDS`, which all happen before anything is
stored: an injected fault never creates a job. Faults are decided before authentication, as a
gateway would. Lost submit answers (a job created, then its answer replaced by a 504 page or a
dropped connection) are a separate, counted setting, ``lose_submit_answers``.
"""

from __future__ import annotations

import random
import threading
from http import HTTPStatus

from starlette.responses import HTMLResponse, JSONResponse, Response

from airflow_provider_aleph.emulator.connection import DropConnection
from airflow_provider_aleph.emulator.ratelimit import rate_limit_headers

FAULT_KINDS = ("429_retry_after", "429_reset_at", "500", "502", "503", "504", "drop")
SUBMIT_FAULT_KINDS = ("429_retry_after", "429_reset_at", "drop")
RATE_LIMIT_DETAIL = "Too many requests: the account's rate limit was exceeded, retry later"


def gateway_page(code: int) -> HTMLResponse:
    """Return the HTML error page a gateway sends for ``code``.

    :param code: a 5xx status code.
    """
    title = f"{code} {HTTPStatus(code).phrase}"
    html = (
        f"<!DOCTYPE html>\n<html><head><title>{title}</title></head>"
        f"<body><h1>{title}</h1><p>The gateway could not complete this request.</p>"
        "<hr><address>segmind-emulator gateway</address></body></html>\n"
    )
    return HTMLResponse(html, status_code=code)


def fault_response(kind: str) -> Response:
    """Return the answer of an injected fault.

    :param kind: one of :data:`FAULT_KINDS`.
    """
    if kind == "drop":
        return DropConnection()
    if kind.startswith("429"):
        headers = rate_limit_headers(1.0)
        # Each kind carries one of the two hints, so clients are tested on both.
        del headers["retry-after" if kind == "429_reset_at" else "x-rate-limit-reset-at-utc"]
        return JSONResponse({"error": RATE_LIMIT_DETAIL}, status_code=429, headers=headers)
    if kind not in FAULT_KINDS:
        raise ValueError(f"unknown fault kind {kind!r}")
    return gateway_page(int(kind))


class FaultInjector:
    """Seeded draws of injected faults and of the way lost submit answers are lost.

    :param seed: seed of the random source; the same seed and request sequence give the same faults.
    """

    def __init__(self, seed: int = 0) -> None:
        self._seed = seed
        self._lock = threading.Lock()
        self._random = random.Random(seed)
        self._lost = 0

    def draw(self, error_rate: float, submit: bool) -> str | None:
        """Return the kind of fault to inject into this request, or None.

        :param error_rate: probability of a fault, from 0 to 1.
        :param submit: whether the request is a submit (only faults that create nothing).
        """
        if error_rate <= 0:
            return None
        with self._lock:
            if self._random.random() >= error_rate:
                return None
            return self._random.choice(SUBMIT_FAULT_KINDS if submit else FAULT_KINDS)

    def lost_answer(self, mode: str) -> tuple[str, Response]:
        """Return the kind (``504`` or ``drop``) and answer replacing a lost submit answer.

        :param mode: ``504``, ``drop``, or ``alternate`` (504 first, then drop, and so on).
        """
        with self._lock:
            index = self._lost
            self._lost += 1
        kind = mode if mode != "alternate" else ("504", "drop")[index % 2]
        return kind, (DropConnection() if kind == "drop" else gateway_page(504))

    def reset(self) -> None:
        """Restart the draws from the seed."""
        with self._lock:
            self._random = random.Random(self._seed)
            self._lost = 0
