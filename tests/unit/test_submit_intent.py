"""Which failed submits surely created nothing (their intent is removed), and how an intent is stored."""

from __future__ import annotations

import pytest

from airflow_provider_aleph.exceptions import (
    SegmindAuthError,
    SegmindBadRequest,
    SegmindConfigError,
    SegmindError,
    SegmindModelRetired,
    SegmindNotAcceptable,
    SegmindProtocolError,
    SegmindRateLimited,
    SegmindServerError,
    SegmindSubmitOutcomeUnknown,
    SegmindTransportError,
    nothing_created,
)
from airflow_provider_aleph.reattach import StoredRequest, SubmitIntent

REFUSED = [
    SegmindBadRequest("bad", status_code=400),
    SegmindAuthError("key", status_code=401),
    SegmindNotAcceptable("credits", insufficient_credits=True, status_code=406),
    SegmindModelRetired("gone", status_code=410),
    SegmindRateLimited("slow down", status_code=429),
    SegmindTransportError("refused", sent=False),
    SegmindConfigError("no API key"),
]
MAYBE_CREATED = [
    SegmindSubmitOutcomeUnknown.after("POST /v2/m", "HTTP 504", "segmind_default"),
    SegmindTransportError("reset", sent=True),
    SegmindProtocolError("accepted, no request id", status_code=200),
    SegmindServerError("gateway", status_code=502),
    SegmindError("no status"),
    RuntimeError("not a Segmind error"),
]


@pytest.mark.parametrize("err", REFUSED, ids=lambda e: type(e).__name__)
def test_a_refused_submit_created_nothing(err: Exception) -> None:
    assert nothing_created(err)


@pytest.mark.parametrize("err", MAYBE_CREATED, ids=lambda e: f"{type(e).__name__}-{getattr(e, 'status_code', '')}")
def test_a_submit_that_may_have_made_a_job_keeps_its_intent(err: Exception) -> None:
    assert not nothing_created(err)


def test_an_intent_round_trips_and_is_never_read_as_a_request() -> None:
    intent = SubmitIntent("digest", "2026-01-01T00:00:00+00:00", reported_at_max_tries=2)
    stored = intent.to_json()
    assert SubmitIntent.from_json(stored) == intent
    assert StoredRequest.from_json(stored) is None
    assert SubmitIntent.from_json(StoredRequest("rid", "digest").to_json()) is None
    assert SubmitIntent.from_json({"kind": "intent", "fingerprint": "digest"}) is None


def test_the_interrupted_message_names_the_time_and_the_way_out() -> None:
    text = str(SegmindSubmitOutcomeUnknown.interrupted("2026-01-01T00:00:00+00:00", "conn", other_parameters=False))
    assert "began at 2026-01-01T00:00:00+00:00" in text
    assert SegmindSubmitOutcomeUnknown.GUIDANCE in text
    assert "conn_id=conn" in text
    assert not SegmindSubmitOutcomeUnknown.retryable
