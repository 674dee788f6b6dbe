"""The connection test against the emulator over loopback: a good key, a wrong key, and servers that look
at the request id before the key (``request_id_check``), where a 404 says nothing about the key."""

from __future__ import annotations

import json
import uuid
from typing import TYPE_CHECKING

import httpx
import pytest

from airflow_provider_aleph.emulator.__main__ import build_parser
from airflow_provider_aleph.exceptions import SegmindRequestExpired
from airflow_provider_aleph.hooks.segmind import SegmindHook
from tests.conftest import TEST_API_KEY

if TYPE_CHECKING:
    from airflow_provider_aleph.emulator import Emulator

WRONG_KEY = "fake-wrong-key-for-the-probe-test"


@pytest.fixture
def conn_with(segmind_conn: Emulator, monkeypatch: pytest.MonkeyPatch):
    """Make connection ``segmind_probe`` with the given key and host (the emulator's by default)."""

    def make(key: str, host: str | None = None) -> SegmindHook:
        conn = {"conn_type": "segmind", "password": key, "host": host or segmind_conn.base_url}
        monkeypatch.setenv("AIRFLOW_CONN_SEGMIND_PROBE", json.dumps(conn))
        return SegmindHook("segmind_probe")

    return make


@pytest.mark.parametrize("check", ["after_key", "form_first"])
def test_a_good_key_works_where_the_server_checks_keys(check: str, segmind_conn: Emulator, conn_with) -> None:
    segmind_conn.config(request_id_check=check)
    ok, message = conn_with(TEST_API_KEY).test_connection()
    assert ok is True, message
    assert message.startswith("Connection works")
    assert segmind_conn.base_url in message
    assert segmind_conn.submissions == 0


@pytest.mark.parametrize("check", ["after_key", "form_first"])
def test_a_wrong_key_fails_where_the_server_checks_keys(check: str, segmind_conn: Emulator, conn_with) -> None:
    segmind_conn.config(request_id_check=check)
    ok, message = conn_with(WRONG_KEY).test_connection()
    assert ok is False
    assert "rejected the API key (HTTP 401)" in message
    assert WRONG_KEY not in message


@pytest.mark.parametrize("key", [TEST_API_KEY, WRONG_KEY])
def test_no_key_is_said_to_work_where_an_unknown_id_answers_404_to_any_key(
    key: str, segmind_conn: Emulator, conn_with
) -> None:
    segmind_conn.config(request_id_check="lookup_first")
    ok, message = conn_with(key).test_connection()
    assert ok is False
    assert "could not be verified" in message
    assert "works" not in message


def test_a_probe_id_that_is_not_a_uuid_would_hide_a_wrong_key(segmind_conn: Emulator, conn_with) -> None:
    # Why the probe's id is a UUID: a server checking the id's form first answers 404 to any key.
    segmind_conn.config(request_id_check="form_first")
    hook = conn_with(WRONG_KEY)
    try:
        with pytest.raises(SegmindRequestExpired):
            hook.get_status("airflow-connection-test-not-a-uuid")
    finally:
        hook.close()


def test_a_host_without_segmind_routes_is_named(segmind_conn: Emulator, conn_with) -> None:
    ok, message = conn_with(TEST_API_KEY, host=f"{segmind_conn.base_url}/elsewhere").test_connection()
    assert ok is False
    assert "has no Segmind status route" in message
    assert "check the connection's host" in message


def test_the_emulator_tells_a_missing_route_from_an_unknown_request_by_the_body(segmind_conn: Emulator) -> None:
    headers = {"x-api-key": TEST_API_KEY}
    unknown = httpx.get(f"{segmind_conn.base_url}/v2/requests/{uuid.uuid4()}/status", headers=headers)
    no_route = httpx.get(f"{segmind_conn.base_url}/v9/requests/{uuid.uuid4()}/status", headers=headers)
    assert unknown.status_code == no_route.status_code == 404
    assert "request" in unknown.json()["error"].lower()
    assert "request" not in no_route.json()["error"].lower()


def test_the_request_id_check_is_a_command_line_flag_and_a_checked_setting(segmind_conn: Emulator) -> None:
    assert build_parser().parse_args(["--request-id-check", "form_first"]).request_id_check == "form_first"
    assert build_parser().parse_args([]).request_id_check == "after_key"
    with pytest.raises(ValueError, match="request_id_check must be one of"):
        segmind_conn.config(request_id_check="sometimes")
