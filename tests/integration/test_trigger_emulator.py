"""SegmindRequestTrigger.run() to completion over real loopback sockets against the Segmind emulator.

Restarts are in ``test_trigger_restart.py``; the shared budget under load in ``test_trigger_budget.py``.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import httpx

from airflow_provider_aleph.emulator import FAIL_MARKER, FAILURE_REASON
from airflow_provider_aleph.events import RequestEvent
from airflow_provider_aleph.hooks.segmind import SegmindHook
from airflow_provider_aleph.retry import RetryPolicy
from airflow_provider_aleph.triggers.segmind import SegmindRequestTrigger
from tests.fakes import open_shares

if TYPE_CHECKING:
    from airflow_provider_aleph.emulator import Emulator
    from airflow_provider_aleph.protocol import SubmitResponse

ALEPH = "runway-gen4-aleph"
# Reads give up once failures have lasted outage_tolerance; submits and uploads after max_attempts.
FAST = RetryPolicy(max_attempts=3, outage_tolerance=0.05, base_delay=0.001, max_delay=0.01)


def submit(emu: Emulator, prompt: str = "make it winter") -> SubmitResponse:
    hook = SegmindHook("segmind_default", retry_policy=FAST)
    try:
        return hook.submit(ALEPH, {"prompt": prompt, "video": emu.sample_url()})
    finally:
        hook.close()


def trigger_for(submitted: SubmitResponse, seconds: float = 20.0, poll: float = 0.05) -> SegmindRequestTrigger:
    now = datetime.now(UTC)
    return SegmindRequestTrigger(
        request_id=submitted.request_id,
        segmind_conn_id="segmind_default",
        deadline=now + timedelta(seconds=seconds),
        poll_interval=poll,
        status_url=submitted.status_url,
        response_url=submitted.response_url,
        submitted_at=now,
    )


async def only_event(trigger: SegmindRequestTrigger) -> RequestEvent:
    events = [event async for event in trigger.run()]
    assert len(events) == 1
    return RequestEvent.from_payload(events[0].payload)


async def test_trigger_yields_success_with_a_downloadable_output(segmind_conn: Emulator) -> None:
    submitted = submit(segmind_conn)

    event = await asyncio.wait_for(only_event(trigger_for(submitted)), timeout=30)

    assert event.status == "success"
    assert event.request_id == submitted.request_id
    assert event.output_url is not None
    assert event.output_url == event.output
    assert "inference_time" in event.metrics
    async with httpx.AsyncClient(timeout=10) as client:
        video = await client.get(event.output_url)
    assert video.status_code == 200
    assert len(video.content) > 0
    assert segmind_conn.submissions == 1


async def test_trigger_yields_failed_for_a_failing_prompt(segmind_conn: Emulator) -> None:
    submitted = submit(segmind_conn, f"make it winter {FAIL_MARKER}")

    event = await asyncio.wait_for(only_event(trigger_for(submitted)), timeout=30)

    assert event.status == "failed"
    assert event.request_id == submitted.request_id
    assert FAILURE_REASON in event.message
    # The id travels as the event's field; the task's failure names it once, with the connection.
    assert f"request_id={submitted.request_id}" in str(event.failure("segmind_default"))
    assert event.output_url is None
    assert segmind_conn.submissions == 1


async def test_trigger_yields_timeout_when_the_deadline_comes_first(segmind_conn: Emulator) -> None:
    segmind_conn.config.latency = 60.0
    submitted = submit(segmind_conn)
    trigger = trigger_for(submitted, seconds=0.6)

    event = await asyncio.wait_for(only_event(trigger), timeout=30)  # a hang guard

    assert event.status == "timeout"
    assert event.request_id == submitted.request_id
    assert "QUEUED" in event.message
    assert f"SegmindRequestSensor(request_id={submitted.request_id!r})" in event.message
    assert datetime.now(UTC) >= trigger.deadline, "the timeout event came before the deadline"
    assert segmind_conn.submissions == 1


async def test_trigger_yields_error_for_an_unknown_request(segmind_conn: Emulator) -> None:
    trigger = SegmindRequestTrigger(
        request_id="00000000-0000-4000-8000-000000000000",
        segmind_conn_id="segmind_default",
        deadline=datetime.now(UTC) + timedelta(seconds=20),
        poll_interval=0.05,
    )
    events = [event async for event in trigger.run()]
    assert len(events) == 1
    event = RequestEvent.from_payload(events[0].payload)
    assert event.status == "error"
    assert event.error_type == "SegmindRequestExpired"
    assert event.status_code == 404
    assert segmind_conn.submissions == 0


async def test_triggers_of_one_connection_share_one_client_and_let_it_go(segmind_conn: Emulator) -> None:
    jobs = [submit(segmind_conn, f"make it winter #{n}") for n in range(3)]
    runs = [asyncio.create_task(only_event(trigger_for(job))) for job in jobs]
    while "segmind_default" not in open_shares():
        await asyncio.sleep(0.005)
    share = open_shares()["segmind_default"]

    events = await asyncio.wait_for(asyncio.gather(*runs), timeout=30)  # a hang guard

    assert [event.status for event in events] == ["success"] * 3
    assert [event.request_id for event in events] == [job.request_id for job in jobs]
    assert share.users == 0
    assert share.channel is None
    assert "segmind_default" not in open_shares()
    assert segmind_conn.submissions == 3
