"""Triggerer restarts over real sockets: a trigger cancelled mid-poll and rebuilt from ``serialize()``
resumes the same request with the same absolute deadline; cleanup() and on_kill() never call Segmind."""

from __future__ import annotations

import asyncio
import importlib
import json
import logging
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pytest

from airflow_provider_aleph.events import RequestEvent
from airflow_provider_aleph.hooks.segmind import SegmindHook
from airflow_provider_aleph.protocol import SegmindStatus
from airflow_provider_aleph.triggers.segmind import SegmindRequestTrigger
from tests.fakes import open_shares

if TYPE_CHECKING:
    from airflow_provider_aleph.emulator import Emulator
    from airflow_provider_aleph.protocol import SubmitResponse

CONN_ID = "segmind_restart"


@pytest.fixture
def emu(emulator: Emulator, monkeypatch: pytest.MonkeyPatch) -> Emulator:
    """The emulator behind a connection whose budget (6000 calls a minute) never slows these tests."""
    conn = {
        "conn_type": "segmind",
        "password": emulator.api_key,
        "host": emulator.base_url,
        "extra": {"max_requests_per_minute": 6000},
    }
    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", json.dumps(conn))
    return emulator


def submit(emu: Emulator) -> SubmitResponse:
    hook = SegmindHook(CONN_ID)
    try:
        return hook.submit("runway-gen4-aleph", {"prompt": "make it winter", "video": emu.sample_url()})
    finally:
        hook.close()


def first_trigger(submitted: SubmitResponse, seconds: float) -> SegmindRequestTrigger:
    now = datetime.now(UTC)
    return SegmindRequestTrigger(
        request_id=submitted.request_id,
        segmind_conn_id=CONN_ID,
        deadline=now + timedelta(seconds=seconds),
        poll_interval=0.05,
        status_url=submitted.status_url,
        response_url=submitted.response_url,
        submitted_at=now,
    )


def rebuild(trigger: SegmindRequestTrigger) -> SegmindRequestTrigger:
    """What a triggerer does after a restart: import the class path, pass the stored JSON kwargs."""
    classpath, kwargs = trigger.serialize()
    module, _, name = classpath.rpartition(".")
    cls = getattr(importlib.import_module(module), name)
    again = cls(**json.loads(json.dumps(kwargs)))
    assert isinstance(again, SegmindRequestTrigger)
    return again


async def only_event(trigger: SegmindRequestTrigger) -> RequestEvent:
    events = [event async for event in trigger.run()]
    assert len(events) == 1
    return RequestEvent.from_payload(events[0].payload)


async def wait_for_status(request_id: str, wanted: SegmindStatus) -> None:
    """Ask the emulator ourselves (own client, outside the triggers' budget) until the job is ``wanted``."""
    probe = SegmindHook(CONN_ID)
    try:
        while (await probe.aget_status(request_id)).status is not wanted:
            await asyncio.sleep(0.05)
    finally:
        await probe.aclose()


async def cancel_mid_poll(emu: Emulator, trigger: SegmindRequestTrigger, request_id: str) -> None:
    """Start the trigger, let it poll while the job is PROCESSING, then cancel it as a restart would."""
    running = asyncio.create_task(only_event(trigger))
    await asyncio.wait_for(wait_for_status(request_id, SegmindStatus.PROCESSING), timeout=30)
    while CONN_ID not in open_shares():  # it holds the connection's share: it is polling
        await asyncio.sleep(0.01)
    assert not running.done()
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    assert CONN_ID not in open_shares(), "the cancelled trigger kept its share of the connection"
    await requests_settled(emu)


async def requests_settled(emu: Emulator) -> None:
    """Wait until a poll the cancelled trigger had already sent has reached the emulator.

    Cancelling stops the client, not a request already on the wire: on a loaded machine the
    emulator may count it a moment later, which a test must not read as a later call.
    """
    last = emu.stats()
    while True:
        await asyncio.sleep(0.3)
        now = emu.stats()
        if now == last:
            return
        last = now


def status_polls(emu: Emulator) -> int:
    return int(emu.stats()["requests"].get("status", 0))


async def test_a_trigger_cancelled_mid_poll_and_rebuilt_completes_the_same_request(emu: Emulator) -> None:
    emu.config(latency=2.0)
    submitted = submit(emu)
    first = first_trigger(submitted, seconds=60)

    await cancel_mid_poll(emu, first, submitted.request_id)
    polls_before = status_polls(emu)
    again = rebuild(first)

    assert again.request_id == submitted.request_id
    assert again.deadline == first.deadline
    assert (again.status_url, again.response_url) == (submitted.status_url, submitted.response_url)
    event = await asyncio.wait_for(only_event(again), timeout=60)  # a hang guard

    assert event.status == "success"
    assert event.request_id == submitted.request_id
    assert event.output_url is not None
    assert submitted.request_id in event.output_url
    assert status_polls(emu) > polls_before, "the rebuilt trigger polled the request again"
    assert emu.submissions == 1
    assert emu.stats()["requests"].get("submit") == 1
    assert list(emu.jobs) == [submitted.request_id]


async def test_a_rebuilt_trigger_keeps_the_absolute_deadline_and_times_out_at_it(emu: Emulator) -> None:
    emu.config(latency=6.0)  # QUEUED for 1.5 s, then PROCESSING past the deadline
    submitted = submit(emu)
    first = first_trigger(submitted, seconds=4)

    await cancel_mid_poll(emu, first, submitted.request_id)
    again = rebuild(first)
    event = await asyncio.wait_for(only_event(again), timeout=60)  # a hang guard

    assert event.status == "timeout"
    assert event.request_id == submitted.request_id
    assert submitted.request_id in event.message
    assert f"SegmindRequestSensor(request_id={submitted.request_id!r})" in event.message
    assert first.deadline.isoformat() in event.message, "the deadline moved with the restart"
    assert datetime.now(UTC) >= first.deadline
    assert "PROCESSING" in event.message
    assert emu.submissions == 1


def logged_lines(caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str], needle: str) -> list[str]:
    """Log lines with ``needle``, whether Airflow sends trigger logs to stdlib logging or to stdout."""
    printed = capsys.readouterr().out
    # Airflow 3.0 routes trigger logs through stdlib logging (and may echo them); 3.3 prints them to stdout.
    found = [line for line in caplog.text.splitlines() if needle in line]
    return found or [line for line in printed.splitlines() if needle in line]


async def test_cleanup_and_on_kill_only_log_and_leave_the_remote_job_alone(
    emu: Emulator, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    emu.config(latency=2.0)
    submitted = submit(emu)
    first = first_trigger(submitted, seconds=60)
    await cancel_mid_poll(emu, first, submitted.request_id)
    capsys.readouterr()
    before: dict[str, Any] = emu.stats()

    with caplog.at_level(logging.INFO):
        await first.cleanup()
        await first.on_kill()
        await rebuild(first).cleanup()

    assert emu.stats() == before, "cleanup() or on_kill() sent a request to Segmind"
    lines = logged_lines(caplog, capsys, "keeps running")
    assert len(lines) == 3
    for line in lines:
        assert f"SegmindRequestSensor(request_id={submitted.request_id!r})" in line
        assert emu.api_key not in line
    # The job was left alone: it still completes, and nothing was submitted again.
    await asyncio.wait_for(wait_for_status(submitted.request_id, SegmindStatus.COMPLETED), timeout=30)
    assert emu.submissions == 1
