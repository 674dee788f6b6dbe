"""What a new try decides about the request an earlier try stored, asked of the emulator over loopback."""

from __future__ import annotations

import logging
import time
from typing import Any

import pytest

from airflow_provider_aleph.hooks.segmind import SegmindHook
from airflow_provider_aleph.reattach import (
    STATE_KEY,
    Resume,
    StoredRequest,
    fingerprint,
    recover,
    remember,
    state_store,
)

MODEL = "runway-gen4-aleph"
log = logging.getLogger(__name__)


class DictStore:
    """The calls of Airflow's task_state_store the provider uses, kept in a dict."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}

    def get(self, key: str, default: Any = None) -> Any:
        return self.values.get(key, default)

    def set(self, key: str, value: Any) -> None:
        self.values[key] = value

    def delete(self, key: str) -> None:
        self.values.pop(key, None)


@pytest.fixture
def hook(segmind_conn) -> SegmindHook:
    hook = SegmindHook()
    yield hook
    hook.close()


def _payload(emulator, prompt: str = "make it winter") -> dict[str, Any]:
    return {"prompt": prompt, "video": emulator.sample_url()}


def _submit_and_store(hook: SegmindHook, payload: dict[str, Any]) -> tuple[DictStore, str, str]:
    submitted = hook.submit(MODEL, payload)
    store = DictStore()
    digest = fingerprint(MODEL, payload)
    remember(store, StoredRequest.from_submit(submitted, digest, "2026-01-01T00:00:00+00:00"))
    return store, digest, submitted.request_id


def _wait_until_done(emulator) -> None:
    time.sleep(emulator.config.latency + 0.2)


def test_nothing_stored_means_a_fresh_submit(hook):
    assert recover(DictStore(), hook, "digest", log) is None


def test_a_running_request_is_waited_on_again(hook, segmind_conn):
    segmind_conn.config.latency = 5.0
    store, digest, request_id = _submit_and_store(hook, _payload(segmind_conn))

    recovery = recover(store, hook, digest, log)

    assert recovery is not None
    assert recovery.action is Resume.WAIT
    assert recovery.stored.request_id == request_id
    assert segmind_conn.submissions == 1


def test_a_completed_request_is_reused_with_its_output(hook, segmind_conn):
    store, digest, request_id = _submit_and_store(hook, _payload(segmind_conn))
    _wait_until_done(segmind_conn)

    recovery = recover(store, hook, digest, log)

    assert recovery is not None
    assert recovery.action is Resume.DONE
    assert recovery.state is not None
    assert recovery.state.output_url == f"{segmind_conn.base_url}/outputs/{request_id}.mp4"
    assert segmind_conn.submissions == 1


def test_a_failed_request_is_submitted_anew(hook, segmind_conn):
    store, digest, _ = _submit_and_store(hook, _payload(segmind_conn, "[emulator:fail] winter"))
    _wait_until_done(segmind_conn)

    recovery = recover(store, hook, digest, log)

    assert recovery is not None
    assert recovery.action is Resume.RESUBMIT


def test_an_expired_request_is_submitted_anew(hook, segmind_conn):
    segmind_conn.config.retention = 0.0
    store, digest, _ = _submit_and_store(hook, _payload(segmind_conn))
    _wait_until_done(segmind_conn)

    recovery = recover(store, hook, digest, log)

    assert recovery is not None
    assert recovery.action is Resume.RESUBMIT


def test_a_request_for_other_parameters_is_not_reused(hook, segmind_conn):
    store, _, _ = _submit_and_store(hook, _payload(segmind_conn))

    assert recover(store, hook, fingerprint(MODEL, _payload(segmind_conn, "make it summer")), log) is None


def test_an_unreadable_record_counts_as_none(hook):
    store = DictStore()
    store.set(STATE_KEY, {"request_id": 42})
    assert recover(store, hook, "digest", log) is None


def test_missing_store_is_logged_once(caplog):
    import airflow_provider_aleph.reattach as reattach

    reattach._unavailable_logged = False
    with caplog.at_level(logging.WARNING):
        assert state_store({}, log) is None
        assert state_store({}, log) is None
    assert sum("Reattach on retry is unavailable" in r.message for r in caplog.records) == 1
