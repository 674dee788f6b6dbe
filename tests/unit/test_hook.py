"""SegmindHook with a faked transport (respx): connection reading, headers, retries, secrecy."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import httpx
import pytest
import respx

from airflow_provider_aleph.exceptions import (
    SegmindAuthError,
    SegmindBadRequest,
    SegmindConfigError,
    SegmindError,
    SegmindRequestExpired,
    SegmindServerError,
    SegmindSubmitOutcomeUnknown,
    SegmindTransportError,
    SegmindUnavailable,
)
from airflow_provider_aleph.hooks.segmind import SegmindHook
from airflow_provider_aleph.protocol import SegmindStatus
from airflow_provider_aleph.retry import RetryPolicy

CONN_ID = "segmind_unit"
KEY = "fake-UNIT-not-a-real-key-do-not-leak"
BASE = "https://api.segmind.test"
RID = "req-0001"
MODEL = "runway-gen4-aleph"
PAYLOAD = {"prompt": "make it winter", "video": "https://cdn.example.com/in.mp4", "seed": 7}
# Reads give up once failures have lasted outage_tolerance; submits and uploads after max_attempts.
FAST = RetryPolicy(max_attempts=3, outage_tolerance=0.05, base_delay=0.001, max_delay=0.01)
SUBMIT_URL = f"{BASE}/v2/{MODEL}"
STATUS_URL = f"{BASE}/v2/requests/{RID}/status"
RESULT_URL = f"{BASE}/v2/requests/{RID}"
SUBMIT_BODY = {"request_id": RID, "status": "QUEUED", "status_url": STATUS_URL, "response_url": RESULT_URL}
QUEUED = {"request_id": RID, "status": "QUEUED", "metrics": {}}


def set_conn(monkeypatch: pytest.MonkeyPatch, conn_id: str = CONN_ID, **fields: Any) -> None:
    conn = {"conn_type": "segmind", "password": KEY, "host": BASE, **fields}
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(conn))


@pytest.fixture(autouse=True)
def _conn(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SEGMIND_API_KEY", raising=False)
    set_conn(monkeypatch)


@pytest.fixture(params=["sync", "async"])
def mode(request: pytest.FixtureRequest) -> str:
    return request.param


def call(mode: str, name: str, *args: Any, conn_id: str = CONN_ID) -> Any:
    """Call ``name`` (sync) or ``a{name}`` (async) on a fresh hook, closing its client afterwards."""
    hook = SegmindHook(conn_id, retry_policy=FAST)
    if mode == "sync":
        try:
            return getattr(hook, name)(*args)
        finally:
            hook.close()

    async def go() -> Any:
        try:
            return await getattr(hook, f"a{name}")(*args)
        finally:
            await hook.aclose()

    return asyncio.run(go())


# -- headers and connection -----------------------------------------------------------------


@respx.mock
def test_submit_sends_the_api_key_header_and_the_json_body(mode: str) -> None:
    route = respx.post(SUBMIT_URL).mock(return_value=httpx.Response(200, json=SUBMIT_BODY))
    submitted = call(mode, "submit", MODEL, PAYLOAD)
    assert submitted.request_id == RID
    sent = route.calls.last.request
    assert sent.headers["x-api-key"] == KEY
    assert sent.headers["content-type"] == "application/json"
    assert json.loads(sent.content) == PAYLOAD
    assert KEY not in str(sent.url)


@pytest.mark.parametrize(("name", "url"), [("get_status", STATUS_URL), ("get_result", RESULT_URL)])
@respx.mock
def test_reads_send_the_api_key_to_urls_built_from_the_id(mode: str, name: str, url: str) -> None:
    route = respx.get(url).mock(return_value=httpx.Response(200, json=QUEUED))
    state = call(mode, name, RID)
    assert state.status is SegmindStatus.QUEUED
    assert route.calls.last.request.headers["x-api-key"] == KEY
    assert route.calls.last.request.content == b""


@respx.mock
def test_requests_carry_the_provider_user_agent(mode: str) -> None:
    route = respx.get(STATUS_URL).mock(return_value=httpx.Response(200, json=QUEUED))
    call(mode, "get_status", RID)
    headers = route.calls.last.request.headers
    assert headers.get("user-agent", "").startswith("airflow-provider-aleph/")
    assert headers.get("accept") == "application/json"


@respx.mock
def test_api_key_comes_from_env_when_the_password_is_empty(mode: str, monkeypatch: pytest.MonkeyPatch) -> None:
    set_conn(monkeypatch, password="")
    monkeypatch.setenv("SEGMIND_API_KEY", "fake-key-from-environment")
    route = respx.get(STATUS_URL).mock(return_value=httpx.Response(200, json=QUEUED))
    call(mode, "get_status", RID)
    assert route.calls.last.request.headers["x-api-key"] == "fake-key-from-environment"


@respx.mock
def test_password_wins_over_the_env_key(mode: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEGMIND_API_KEY", "fake-key-from-environment")
    route = respx.get(STATUS_URL).mock(return_value=httpx.Response(200, json=QUEUED))
    call(mode, "get_status", RID)
    assert route.calls.last.request.headers["x-api-key"] == KEY


@respx.mock
def test_no_api_key_anywhere_is_a_config_error_naming_the_conn_id(mode: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AIRFLOW_CONN_SEGMIND_UNIT")
    set_conn(monkeypatch, "segmind_keyless", password="")
    with pytest.raises(SegmindConfigError) as caught:
        call(mode, "submit", MODEL, PAYLOAD, conn_id="segmind_keyless")
    assert "'segmind_keyless'" in str(caught.value)
    assert "SEGMIND_API_KEY" in str(caught.value)
    assert caught.value.conn_id == "segmind_keyless"
    assert len(respx.calls) == 0


@pytest.mark.parametrize(
    ("fields", "url"),
    [
        ({"host": "api.segmind.test"}, STATUS_URL),
        ({"host": "api.segmind.test", "port": 8443}, f"https://api.segmind.test:8443/v2/requests/{RID}/status"),
        ({"host": f"{BASE}/v1/"}, STATUS_URL),
    ],
    ids=["bare-host", "bare-host-and-port", "v1-suffix"],
)
@respx.mock
def test_host_is_normalized_to_an_https_base(
    mode: str, monkeypatch: pytest.MonkeyPatch, fields: dict, url: str
) -> None:
    set_conn(monkeypatch, **fields)
    route = respx.get(url).mock(return_value=httpx.Response(200, json=QUEUED))
    call(mode, "get_status", RID)
    assert route.call_count == 1


@pytest.mark.parametrize(
    ("extra", "read", "connect"),
    [({"timeout": 7.5}, 7.5, 7.5), ({"timeout": "45"}, 45.0, 10.0), ({}, 30.0, 10.0)],
    ids=["float", "string", "default"],
)
@respx.mock
def test_extra_timeout_is_applied_to_every_call(
    mode: str, monkeypatch: pytest.MonkeyPatch, extra: dict, read: float, connect: float
) -> None:
    set_conn(monkeypatch, extra=extra)
    route = respx.get(STATUS_URL).mock(return_value=httpx.Response(200, json=QUEUED))
    call(mode, "get_status", RID)
    timeout = route.calls.last.request.extensions["timeout"]
    assert timeout["read"] == read
    assert timeout["connect"] == connect


@pytest.mark.parametrize("bad", ["soon", [30], {"s": 1}])
@respx.mock
def test_non_numeric_timeout_is_a_config_error(mode: str, monkeypatch: pytest.MonkeyPatch, bad: Any) -> None:
    set_conn(monkeypatch, extra={"timeout": bad})
    with pytest.raises(SegmindConfigError) as caught:
        call(mode, "get_status", RID)
    assert "timeout" in str(caught.value)
    assert CONN_ID in str(caught.value)
    assert len(respx.calls) == 0


def test_negative_timeout_is_a_config_error(mode: str, monkeypatch: pytest.MonkeyPatch) -> None:
    set_conn(monkeypatch, extra={"timeout": -5})
    with respx.mock(assert_all_called=False) as router:
        router.get(STATUS_URL).mock(return_value=httpx.Response(200, json=QUEUED))
        with pytest.raises(SegmindConfigError):
            call(mode, "get_status", RID)


# -- retries --------------------------------------------------------------------------------

TRANSIENT = {
    "503": httpx.Response(503, text="<html>busy</html>"),
    "429": httpx.Response(429, json={"error": "rate limited"}, headers={"Retry-After": "0"}),
    "ReadTimeout": httpx.ReadTimeout("read timed out"),
    "ConnectError": httpx.ConnectError("connection refused"),
}


@pytest.mark.parametrize("name", ["get_status", "get_result"])
@pytest.mark.parametrize("failure", list(TRANSIENT))
@respx.mock
def test_get_is_retried_on_transient_failures_then_succeeds(mode: str, name: str, failure: str) -> None:
    url = STATUS_URL if name == "get_status" else RESULT_URL
    route = respx.get(url).mock(side_effect=[TRANSIENT[failure], TRANSIENT[failure], httpx.Response(200, json=QUEUED)])
    state = call(mode, name, RID)
    assert state.status is SegmindStatus.QUEUED
    assert route.call_count == 3


@pytest.mark.parametrize(
    ("last", "cause", "answer"),
    [
        (lambda: httpx.Response(504, text="gateway timeout"), SegmindServerError, "HTTP 504"),
        (lambda: httpx.ReadTimeout("read timed out"), SegmindTransportError, "no answer"),
    ],
    ids=["504", "ReadTimeout"],
)
@respx.mock
def test_a_read_gives_up_once_failures_outlast_the_tolerance_naming_the_last_answer(
    mode: str, last: Any, cause: type[SegmindError], answer: str
) -> None:
    # Changed on purpose (issue 12): reads give up on time failing, not after max_attempts.
    first = iter([httpx.Response(503), httpx.ConnectError("refused")])

    def respond(request: httpx.Request) -> httpx.Response:
        outcome = next(first, None) or last()
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    route = respx.get(STATUS_URL).mock(side_effect=respond)
    with pytest.raises(SegmindUnavailable) as caught:
        call(mode, "get_status", RID)
    assert route.call_count > FAST.max_attempts, "a read is not bounded by the submit's attempts"
    assert isinstance(caught.value.__cause__, cause)
    assert caught.value.conn_id == CONN_ID
    assert caught.value.request_id == RID
    assert caught.value.retryable
    assert f"last answer: {answer}" in str(caught.value)
    assert "failing for" in str(caught.value)


@pytest.mark.parametrize("code", [400, 401, 404])
@respx.mock
def test_get_is_not_retried_on_a_final_answer(mode: str, code: int) -> None:
    route = respx.get(STATUS_URL).mock(return_value=httpx.Response(code, json={"error": "no"}))
    with pytest.raises(SegmindError) as caught:
        call(mode, "get_status", RID)
    assert caught.value.status_code == code
    assert route.call_count == 1


@pytest.mark.parametrize(
    "first",
    [httpx.Response(429, json={"error": "slow"}, headers={"Retry-After": "0"}), httpx.ConnectError("refused")],
    ids=["429", "ConnectError"],
)
@respx.mock
def test_post_is_retried_when_nothing_was_created(mode: str, first: Any) -> None:
    route = respx.post(SUBMIT_URL).mock(side_effect=[first, httpx.Response(200, json=SUBMIT_BODY)])
    submitted = call(mode, "submit", MODEL, PAYLOAD)
    assert submitted.request_id == RID
    assert route.call_count == 2


@pytest.mark.parametrize(
    "failure",
    [
        httpx.Response(502, text="<html>bad gateway</html>"),
        httpx.Response(500, json={"error": "internal"}),
        httpx.Response(504, text=""),
        httpx.ReadTimeout("read timed out"),
        httpx.RemoteProtocolError("server disconnected"),
    ],
    ids=["502", "500", "504", "ReadTimeout", "RemoteProtocolError"],
)
@respx.mock
def test_post_whose_answer_was_lost_is_never_retried(mode: str, failure: Any) -> None:
    route = respx.post(SUBMIT_URL).mock(side_effect=[failure, httpx.Response(200, json=SUBMIT_BODY)])
    with pytest.raises(SegmindSubmitOutcomeUnknown) as caught:
        call(mode, "submit", MODEL, PAYLOAD)
    assert route.call_count == 1
    assert caught.value.retryable is False
    assert caught.value.conn_id == CONN_ID
    assert "not resubmitted" in str(caught.value)


@pytest.mark.parametrize(("code", "expected"), [(400, SegmindBadRequest), (401, SegmindAuthError)])
@respx.mock
def test_post_refused_is_raised_at_once_with_detail_and_conn_id(
    mode: str, code: int, expected: type[SegmindError]
) -> None:
    route = respx.post(SUBMIT_URL).mock(return_value=httpx.Response(code, json={"error": "refused because X"}))
    with pytest.raises(expected) as caught:
        call(mode, "submit", MODEL, PAYLOAD)
    assert route.call_count == 1
    assert caught.value.conn_id == CONN_ID
    assert f"conn_id={CONN_ID}" in str(caught.value)
    assert "refused because X" in str(caught.value)


@respx.mock
def test_read_errors_carry_conn_id_and_request_id(mode: str) -> None:
    respx.get(STATUS_URL).mock(return_value=httpx.Response(404, json={"error": "Request not found"}))
    with pytest.raises(SegmindRequestExpired) as caught:
        call(mode, "get_status", RID)
    assert caught.value.conn_id == CONN_ID
    assert f"conn_id={CONN_ID}" in str(caught.value)
    assert f"request_id={RID}" in str(caught.value)


# -- test_connection ---------------------------------------------------------------------------


PROBE = rf"^{BASE}/v2/requests/[0-9a-f]{{8}}-[0-9a-f]{{4}}-4[0-9a-f]{{3}}-[0-9a-f]{{4}}-[0-9a-f]{{12}}/status$"


def _by_key(own: httpx.Response, other: httpx.Response):
    return lambda request: own if request.headers["x-api-key"] == KEY else other


@respx.mock
def test_test_connection_works_when_our_key_reaches_an_unknown_id_and_a_wrong_one_is_refused() -> None:
    # Changed (issue 14): a 404 alone no longer proves the key; a wrong key must be seen refused.
    route = respx.get(url__regex=PROBE).mock(
        side_effect=_by_key(httpx.Response(404, json={"error": "Request not found"}), httpx.Response(401))
    )
    ok, message = SegmindHook(CONN_ID, retry_policy=FAST).test_connection()
    assert ok is True
    assert BASE in message
    assert route.call_count == 2
    assert {call.request.method for call in route.calls} == {"GET"}


@respx.mock
def test_test_connection_cannot_verify_a_key_when_any_key_gets_the_same_404() -> None:
    respx.get(url__regex=PROBE).mock(return_value=httpx.Response(404, json={"error": "Request not found"}))
    ok, message = SegmindHook(CONN_ID, retry_policy=FAST).test_connection()
    assert ok is False
    assert "could not be verified" in message


@pytest.mark.parametrize(
    "answer",
    [httpx.Response(404, json={"error": "Not Found"}), httpx.Response(404, html="<h1>404</h1>")],
    ids=["json", "html"],
)
@respx.mock
def test_test_connection_names_a_404_without_a_request_as_a_missing_route(answer: httpx.Response) -> None:
    route = respx.get(url__regex=PROBE).mock(return_value=answer)
    ok, message = SegmindHook(CONN_ID, retry_policy=FAST).test_connection()
    assert ok is False
    assert "no Segmind status route" in message
    assert route.call_count == 1


@pytest.mark.parametrize("code", [401, 403])
@respx.mock
def test_test_connection_is_false_when_the_key_is_refused(code: int) -> None:
    respx.get(url__regex=PROBE).mock(return_value=httpx.Response(code, json={"error": "Unauthorized"}))
    ok, message = SegmindHook(CONN_ID, retry_policy=FAST).test_connection()
    assert ok is False
    assert str(code) in message


@respx.mock
def test_test_connection_is_false_when_a_random_id_has_a_status() -> None:
    respx.get(url__regex=PROBE).mock(return_value=httpx.Response(200, json=QUEUED))
    ok, _ = SegmindHook(CONN_ID, retry_policy=FAST).test_connection()
    assert ok is False


# -- secrecy -------------------------------------------------------------------------------------


@respx.mock
def test_api_key_never_appears_in_repr_errors_or_logs(mode: str, caplog: pytest.LogCaptureFixture) -> None:
    statuses = iter([httpx.ConnectError("refused")])

    def respond(request: httpx.Request) -> httpx.Response:
        outcome = next(statuses, None)
        if outcome is not None:
            raise outcome
        return httpx.Response(503)

    respx.get(STATUS_URL).mock(side_effect=respond)
    respx.get(RESULT_URL).mock(return_value=httpx.Response(401, json={"error": "Unauthorized: invalid x-api-key"}))
    respx.post(SUBMIT_URL).mock(side_effect=[httpx.ReadTimeout("read timed out")])
    raised: list[BaseException] = []
    with caplog.at_level(logging.DEBUG):
        for args in (("get_status", RID), ("get_result", RID), ("submit", MODEL, PAYLOAD)):
            with pytest.raises(SegmindError) as caught:
                call(mode, *args)
            raised.append(caught.value)
    assert [type(e) for e in raised] == [SegmindUnavailable, SegmindAuthError, SegmindSubmitOutcomeUnknown]
    errors = raised + [e.__cause__ or e.__context__ for e in raised if e.__cause__ or e.__context__]
    hook = SegmindHook(CONN_ID, retry_policy=FAST)
    params = hook.get_conn_params()
    assert params.api_key == KEY  # the hook did read the key...
    assert KEY not in repr(hook)  # ...and shows it nowhere
    assert KEY not in repr(params)
    for err in errors:
        assert KEY not in str(err)
        assert KEY not in repr(err)
    messages = [record.getMessage() for record in caplog.records]
    assert any("retrying" in m for m in messages), messages  # the retries were logged
    assert all(KEY not in m for m in messages)
    assert KEY not in caplog.text
