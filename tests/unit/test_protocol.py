"""Segmind wire protocol: URL building and response parsing, on hand-built httpx responses."""

from __future__ import annotations

import email.utils
from datetime import UTC, datetime

import httpx
import pytest

from airflow_provider_aleph.exceptions import (
    RETENTION_HINT,
    SegmindAuthError,
    SegmindBadRequest,
    SegmindModelRetired,
    SegmindNotAcceptable,
    SegmindNotFound,
    SegmindProtocolError,
    SegmindRateLimited,
    SegmindRequestExpired,
    SegmindServerError,
    SegmindUnreadableAnswer,
)
from airflow_provider_aleph.protocol import (
    Kind,
    RequestSpec,
    SegmindStatus,
    error_from_response,
    extract_output_url,
    normalize_base_url,
    parse_state,
    parse_submit,
    result_spec,
    retry_after_seconds,
    status_spec,
    submit_spec,
)
from airflow_provider_aleph.retry import RetryPolicy

BASE = "https://api.segmind.com"
RID = "3f2c9a7e-0b1d-4c5e-9f8a-1234567890ab"
SUBMIT = submit_spec(BASE, "runway-gen4-aleph", {"prompt": "make it winter"})
STATUS = status_spec(BASE, RID)
RESULT = result_spec(BASE, RID)
HTML_502 = "<html><head><title>502 Bad Gateway</title></head><body><h1>502 Bad Gateway</h1></body></html>"


def answer(spec: RequestSpec, code: int, *, json=None, text=None, headers=None) -> httpx.Response:
    request = httpx.Request(spec.method, spec.url)
    if json is not None:
        return httpx.Response(code, json=json, headers=headers, request=request)
    return httpx.Response(code, text=text or "", headers=headers, request=request)


# -- URL building ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("api.segmind.com", "https://api.segmind.com"),
        ("https://api.segmind.com/", "https://api.segmind.com"),
        ("https://api.segmind.com/v1", "https://api.segmind.com"),
        ("https://api.segmind.com/v1/", "https://api.segmind.com"),
        ("api.segmind.com/v2/", "https://api.segmind.com"),
        ("  https://api.segmind.com  ", "https://api.segmind.com"),
        ("http://127.0.0.1:8765", "http://127.0.0.1:8765"),
        ("http://127.0.0.1:8765/v1", "http://127.0.0.1:8765"),
        ("https://proxy.example.com/segmind", "https://proxy.example.com/segmind"),
    ],
)
def test_normalize_base_url_adds_https_and_strips_version_and_slash(given: str, expected: str) -> None:
    assert normalize_base_url(given) == expected


def test_submit_spec_posts_json_to_v2_model_path() -> None:
    spec = submit_spec(BASE, "/runway-gen4-aleph/", {"prompt": "p", "seed": 3})
    assert spec.kind is Kind.SUBMIT
    assert spec.method == "POST"
    assert spec.url == f"{BASE}/v2/runway-gen4-aleph"
    assert spec.json == {"prompt": "p", "seed": 3}
    assert spec.request_id is None


def test_read_specs_build_urls_from_a_bare_request_id() -> None:
    assert STATUS.kind is Kind.STATUS
    assert (STATUS.method, STATUS.url, STATUS.request_id) == ("GET", f"{BASE}/v2/requests/{RID}/status", RID)
    assert RESULT.kind is Kind.RESULT
    assert (RESULT.method, RESULT.url, RESULT.request_id) == ("GET", f"{BASE}/v2/requests/{RID}", RID)


def test_read_specs_quote_a_request_id_with_path_characters() -> None:
    assert status_spec(BASE, "a/b c").url == f"{BASE}/v2/requests/a%2Fb%20c/status"
    assert result_spec(BASE, "a/b").url == f"{BASE}/v2/requests/a%2Fb"


def test_read_specs_use_the_urls_the_submit_returned() -> None:
    assert status_spec(BASE, RID, "https://other.host/s/1").url == "https://other.host/s/1"
    assert result_spec(BASE, RID, "https://other.host/r/1").url == "https://other.host/r/1"


def test_describe_drops_the_query_string() -> None:
    spec = RequestSpec(Kind.STATUS, "GET", f"{BASE}/v2/requests/{RID}/status?token=s3cr3t")
    assert spec.describe() == f"GET {BASE}/v2/requests/{RID}/status"


# -- parse_submit -----------------------------------------------------------------------------

SUBMIT_BODY = {
    "request_id": RID,
    "status": "QUEUED",
    "status_url": f"{BASE}/v2/requests/{RID}/status",
    "response_url": f"{BASE}/v2/requests/{RID}",
    "poll_url": f"{BASE}/v2/requests/{RID}/status",
}


def test_parse_submit_reads_request_id_and_urls() -> None:
    submitted = parse_submit(answer(SUBMIT, 200, json=SUBMIT_BODY), SUBMIT)
    assert submitted.request_id == RID
    assert submitted.status_url == SUBMIT_BODY["status_url"]
    assert submitted.response_url == SUBMIT_BODY["response_url"]
    assert submitted.raw["poll_url"] == SUBMIT_BODY["poll_url"]


@pytest.mark.parametrize("missing", ["request_id", "status_url", "response_url"])
@pytest.mark.parametrize("how", ["absent", "empty"])
def test_parse_submit_refuses_an_answer_missing_a_key(missing: str, how: str) -> None:
    body = {k: v for k, v in SUBMIT_BODY.items() if k != missing}
    if how == "empty":
        body[missing] = ""
    with pytest.raises(SegmindProtocolError) as caught:
        parse_submit(answer(SUBMIT, 200, json=body), SUBMIT)
    assert caught.value.status_code == 200
    assert "dashboard" in str(caught.value)


def test_parse_submit_keeps_the_request_id_of_an_incomplete_answer() -> None:
    body = {"request_id": RID, "status": "QUEUED"}
    with pytest.raises(SegmindProtocolError) as caught:
        parse_submit(answer(SUBMIT, 200, json=body), SUBMIT)
    assert caught.value.request_id == RID


@pytest.mark.parametrize(
    "response_kwargs",
    [{"text": "OK"}, {"text": "<html>queued</html>"}, {"json": [SUBMIT_BODY]}, {"json": "queued"}],
    ids=["plain-text", "html", "json-list", "json-string"],
)
def test_parse_submit_refuses_a_body_that_is_not_a_json_object(response_kwargs: dict) -> None:
    with pytest.raises(SegmindProtocolError) as caught:
        parse_submit(answer(SUBMIT, 200, **response_kwargs), SUBMIT)
    assert "not a JSON object" in str(caught.value)


def test_parse_submit_raises_the_typed_error_of_a_refused_submit() -> None:
    response = answer(SUBMIT, 400, json={"error": "Invalid parameter 'video'"})
    with pytest.raises(SegmindBadRequest) as caught:
        parse_submit(response, SUBMIT)
    assert caught.value.detail == "Invalid parameter 'video'"


# -- error_from_response ------------------------------------------------------------------------


def test_400_is_a_bad_request_showing_the_api_detail() -> None:
    err = error_from_response(answer(SUBMIT, 400, json={"error": "seed must be an integer"}), SUBMIT)
    assert type(err) is SegmindBadRequest
    assert err.status_code == 400
    assert err.detail == "seed must be an integer"
    assert "seed must be an integer" in str(err)
    assert err.retryable is False


@pytest.mark.parametrize("key", ["error", "detail", "message"])
def test_detail_is_read_from_error_detail_or_message(key: str) -> None:
    err = error_from_response(answer(SUBMIT, 400, json={key: "bad prompt"}), SUBMIT)
    assert err.detail == "bad prompt"


@pytest.mark.parametrize(("code", "word"), [(401, "API key"), (403, "permission")])
def test_401_and_403_are_auth_errors(code: int, word: str) -> None:
    err = error_from_response(answer(STATUS, code, json={"error": "Unauthorized"}), STATUS)
    assert type(err) is SegmindAuthError
    assert err.status_code == code
    assert word in str(err)
    assert err.retryable is False


def test_404_on_submit_is_an_unknown_model_not_an_expired_request() -> None:
    err = error_from_response(answer(SUBMIT, 404, json={"error": "Model not found"}), SUBMIT)
    assert type(err) is SegmindNotFound
    assert "model" in str(err)
    assert RETENTION_HINT not in str(err)


@pytest.mark.parametrize("spec", [STATUS, RESULT], ids=["status", "result"])
def test_404_on_a_read_is_an_expired_request_with_the_retention_hint(spec: RequestSpec) -> None:
    err = error_from_response(answer(spec, 404, json={"error": "Request not found"}), spec)
    assert isinstance(err, SegmindRequestExpired)
    assert err.request_id == RID
    assert RID in str(err)
    assert "1 hour" in str(err)


def test_406_naming_credits_is_insufficient_credits() -> None:
    err = error_from_response(answer(SUBMIT, 406, json={"error": "Insufficient credits to run model"}), SUBMIT)
    assert type(err) is SegmindNotAcceptable
    assert err.insufficient_credits is True
    assert "not enough credits" in str(err)


def test_406_about_content_type_is_not_a_credit_problem() -> None:
    err = error_from_response(answer(SUBMIT, 406, json={"error": "Content-Type must be application/json"}), SUBMIT)
    assert type(err) is SegmindNotAcceptable
    assert err.insufficient_credits is False
    assert "content type" in str(err)
    assert "credits" not in str(err)


def test_410_is_a_retired_model() -> None:
    err = error_from_response(answer(SUBMIT, 410, json={"error": "Model retired"}), SUBMIT)
    assert type(err) is SegmindModelRetired
    assert err.retryable is False


def test_429_is_rate_limited_with_retry_after_seconds() -> None:
    err = error_from_response(answer(STATUS, 429, json={"error": "slow down"}, headers={"Retry-After": "7"}), STATUS)
    assert type(err) is SegmindRateLimited
    assert err.retryable is True
    assert err.retry_after == 7.0


def test_429_without_hint_has_no_retry_after() -> None:
    err = error_from_response(answer(STATUS, 429, json={"error": "slow down"}), STATUS)
    assert isinstance(err, SegmindRateLimited)
    assert err.retry_after is None


NOW = 1_700_000_000.0


@pytest.mark.parametrize(("offset", "expected"), [(42, 42.0), (-100, 0.0)], ids=["future", "past-is-zero"])
def test_retry_after_as_http_date(offset: float, expected: float) -> None:
    when = email.utils.formatdate(NOW + offset, usegmt=True)
    assert retry_after_seconds(answer(STATUS, 429, headers={"Retry-After": when}), now=NOW) == pytest.approx(expected)


def test_rate_limit_reset_as_epoch_seconds() -> None:
    response = answer(STATUS, 429, headers={"x-rate-limit-reset-at-utc": str(int(NOW) + 30)})
    assert retry_after_seconds(response, now=NOW) == pytest.approx(30)


@pytest.mark.parametrize("suffix", ["Z", "+00:00", ""], ids=["zulu", "offset", "naive-is-utc"])
def test_rate_limit_reset_as_iso_datetime(suffix: str) -> None:
    reset = datetime.fromtimestamp(NOW + 90, UTC).replace(tzinfo=None).isoformat() + suffix
    response = answer(STATUS, 429, headers={"x-rate-limit-reset-at-utc": reset})
    assert retry_after_seconds(response, now=NOW) == pytest.approx(90)


def test_retry_after_wins_over_rate_limit_reset() -> None:
    headers = {"Retry-After": "5", "x-rate-limit-reset-at-utc": str(int(NOW) + 300)}
    assert retry_after_seconds(answer(STATUS, 429, headers=headers), now=NOW) == 5.0


def test_unreadable_rate_limit_reset_gives_no_hint() -> None:
    response = answer(STATUS, 429, headers={"x-rate-limit-reset-at-utc": "tomorrow-ish"})
    assert retry_after_seconds(response, now=NOW) is None


def test_unparseable_retry_after_falls_back_instead_of_crashing() -> None:
    response = answer(STATUS, 429, headers={"Retry-After": "soon", "x-rate-limit-reset-at-utc": str(int(NOW) + 12)})
    assert retry_after_seconds(response, now=NOW) == pytest.approx(12)
    assert isinstance(error_from_response(response, STATUS), SegmindRateLimited)


@pytest.mark.parametrize("code", [500, 502, 503, 504])
@pytest.mark.parametrize("spec", [STATUS, SUBMIT], ids=["read", "submit"])
def test_5xx_with_html_body_is_a_server_error_without_the_html(code: int, spec: RequestSpec) -> None:
    err = error_from_response(answer(spec, code, text=HTML_502, headers={"content-type": "text/html"}), spec)
    assert type(err) is SegmindServerError
    assert err.status_code == code
    assert err.retryable is True
    assert err.detail is None
    assert "<" not in str(err)
    assert "Bad Gateway" not in str(err)
    assert f"HTTP {code}" in str(err)


def test_5xx_with_plain_text_keeps_it_as_detail() -> None:
    err = error_from_response(answer(STATUS, 503, text="upstream overloaded"), STATUS)
    assert err.detail == "upstream overloaded"


def test_unexpected_status_code_is_a_protocol_error() -> None:
    err = error_from_response(answer(STATUS, 418, json={"error": "teapot"}), STATUS)
    assert type(err) is SegmindProtocolError
    assert "418" in str(err)


# -- parse_state ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "metrics"),
    [("QUEUED", {}), ("PROCESSING", {"queue_time": 1.5})],
)
def test_parse_state_reads_a_pending_status(status: str, metrics: dict) -> None:
    body = {"request_id": RID, "status": status, "metrics": metrics}
    state = parse_state(answer(STATUS, 200, json=body), STATUS)
    assert state.status is SegmindStatus(status)
    assert state.request_id == RID
    assert state.metrics == metrics
    assert state.error is None
    assert state.output_url is None


def test_parse_state_reads_a_completed_result_with_output_and_metrics() -> None:
    body = {
        "request_id": RID,
        "status": "COMPLETED",
        "output": "https://cdn.segmind.com/out/abc.mp4",
        "metrics": {"inference_time": 169.2, "cost": 0.45},
    }
    state = parse_state(answer(RESULT, 200, json=body), RESULT)
    assert state.status is SegmindStatus.COMPLETED
    assert state.output_url == "https://cdn.segmind.com/out/abc.mp4"
    assert state.output == "https://cdn.segmind.com/out/abc.mp4"
    assert state.metrics == {"inference_time": 169.2, "cost": 0.45}


def test_parse_state_failed_under_422_is_a_state_with_its_error() -> None:
    body = {"request_id": RID, "status": "FAILED", "error": "Content blocked by safety filter", "metrics": {}}
    state = parse_state(answer(STATUS, 422, json=body), STATUS)
    assert state.status is SegmindStatus.FAILED
    assert state.error == "Content blocked by safety filter"
    assert state.output_url is None


def test_parse_state_takes_the_request_id_from_the_spec_when_the_body_has_none() -> None:
    state = parse_state(answer(STATUS, 200, json={"status": "QUEUED", "metrics": None}), STATUS)
    assert state.request_id == RID
    assert state.metrics == {}


@pytest.mark.parametrize(
    "body",
    [{"error": "Unprocessable Entity"}, {"status": "PROCESSING"}, {"status": "COMPLETED", "output": "https://x/y"}],
    ids=["no-status", "processing", "completed"],
)
def test_parse_state_422_without_a_failed_body_is_an_error(body: dict) -> None:
    with pytest.raises(SegmindProtocolError) as caught:
        parse_state(answer(STATUS, 422, json=body), STATUS)
    assert caught.value.status_code == 422


@pytest.mark.parametrize("reported", ["STARTING", "CANCELLED", "unknown", "UNKNOWN"])
def test_parse_state_an_undocumented_status_on_200_is_still_running(reported: str) -> None:
    # Changed on purpose (issue 11): the job exists and is billed, so an undocumented interim state is
    # waited on, never a failure and never success. It used to raise SegmindProtocolError.
    state = parse_state(answer(STATUS, 200, json={"request_id": RID, "status": reported}), STATUS)
    assert state.status is SegmindStatus.UNKNOWN
    assert state.reported == reported
    assert not state.status.is_terminal
    assert state.output_url is None


@pytest.mark.parametrize(("reported", "expected"), [(s.lower(), s) for s in ("QUEUED", "PROCESSING", "COMPLETED")])
def test_parse_state_matches_known_states_without_regard_to_case(reported: str, expected: SegmindStatus) -> None:
    state = parse_state(answer(STATUS, 200, json={"request_id": RID, "status": reported}), STATUS)
    assert state.status is SegmindStatus(expected)
    assert state.reported == reported


def test_parse_state_a_lowercase_failed_on_422_is_a_failed_result() -> None:
    state = parse_state(answer(STATUS, 422, json={"status": "failed", "error": "blocked"}), STATUS)
    assert state.status is SegmindStatus.FAILED
    assert state.error == "blocked"


@pytest.mark.parametrize(
    "response_kwargs",
    [{"json": {"request_id": RID}}, {"text": "ok"}, {"json": ["COMPLETED"]}, {"json": {"status": ""}}],
    ids=["missing", "not-json", "not-an-object", "empty"],
)
def test_parse_state_a_2xx_without_a_status_is_a_transient_error(response_kwargs: dict) -> None:
    # Changed on purpose (issue 11): retried like a 5xx instead of failing the task.
    with pytest.raises(SegmindUnreadableAnswer) as caught:
        parse_state(answer(STATUS, 200, **response_kwargs), STATUS)
    assert caught.value.request_id == RID
    assert caught.value.retryable
    assert RetryPolicy().may_retry(STATUS, caught.value)


@pytest.mark.parametrize(
    ("code", "response_kwargs", "expected"),
    [
        (404, {"json": {"error": "Request not found or expired"}}, SegmindRequestExpired),
        (503, {"text": HTML_502}, SegmindServerError),
        (401, {"json": {"error": "Unauthorized"}}, SegmindAuthError),
    ],
)
def test_parse_state_raises_the_typed_error_of_a_non_2xx_answer(code: int, response_kwargs: dict, expected) -> None:
    with pytest.raises(expected) as caught:
        parse_state(answer(RESULT, code, **response_kwargs), RESULT)
    assert caught.value.status_code == code


# -- extract_output_url -----------------------------------------------------------------------------

URL = "https://cdn.segmind.com/out/abc.mp4"


@pytest.mark.parametrize(
    "body",
    [
        {"output": URL},
        {"output": [URL, "https://cdn.segmind.com/out/other.mp4"]},
        {"output": ["", None, URL]},
        {"output": {"url": URL, "duration": 5}},
        {"output": None, "video": {"url": URL, "duration": 5}},
        {"output": "", "video": {"url": URL}},
    ],
    ids=["string", "list", "list-skips-blanks", "object", "sibling-video", "empty-output-sibling-video"],
)
def test_extract_output_url_finds_the_url(body: dict) -> None:
    assert extract_output_url(body) == URL


def test_extract_output_url_prefers_output_over_video() -> None:
    assert extract_output_url({"output": URL, "video": {"url": "https://cdn/other.mp4"}}) == URL


@pytest.mark.parametrize(
    "body",
    [{}, {"output": None}, {"output": "not a url"}, {"output": "s3://bucket/key.mp4"}, {"output": [1, {}]}],
    ids=["empty", "none", "text", "s3", "junk-list"],
)
def test_extract_output_url_returns_none_when_there_is_no_url(body: dict) -> None:
    assert extract_output_url(body) is None


@pytest.mark.parametrize(
    ("status", "terminal"),
    [
        (SegmindStatus.QUEUED, False),
        (SegmindStatus.PROCESSING, False),
        (SegmindStatus.COMPLETED, True),
        (SegmindStatus.FAILED, True),
        (SegmindStatus.UNKNOWN, False),
    ],
)
def test_status_is_terminal(status: SegmindStatus, terminal: bool) -> None:
    assert status.is_terminal is terminal
