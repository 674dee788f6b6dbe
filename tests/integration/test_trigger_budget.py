"""200 triggers of one connection on one event loop against a rate-limited emulator, over real sockets.

The emulator's limit is scaled down in time (50 calls per 1 s window, 3000 a minute) so a test
takes seconds; the connection's budget is scaled the same way. Under the limit, the shared
budget keeps every poll clear of a 429; over it, 429s happen, pause every trigger together, and
every job still ends in success.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import pytest

from airflow_provider_aleph.emulator import Emulator
from airflow_provider_aleph.events import RequestEvent
from airflow_provider_aleph.hooks.segmind import SegmindHook
from airflow_provider_aleph.triggers.segmind import SegmindRequestTrigger
from tests.fakes import open_shares

if TYPE_CHECKING:
    from collections.abc import Iterator

    from airflow_provider_aleph.protocol import SubmitResponse

CONN_ID = "segmind_budget"
KEY = "fake-budget-emulator-0123456789abcdef"
JOBS = 200
EMULATOR_LIMIT = 50  # calls per window and API key
WINDOW = 1.0  # seconds: the emulator allows the equivalent of 3000 calls a minute
UNDER = 2000  # the connection's budget, two thirds of the limit (as ~33 a minute against Segmind's 50)
OVER = 6000  # twice the limit: 429s must happen and be absorbed


@pytest.fixture
def emu() -> Iterator[Emulator]:
    with Emulator(api_key=KEY, latency=2.0, fetch_inputs=False) as emulator:
        yield emulator


def use_budget(emu: Emulator, monkeypatch: pytest.MonkeyPatch, per_minute: int) -> None:
    conn = {
        "conn_type": "segmind",
        "password": KEY,
        "host": emu.base_url,
        "extra": {"max_requests_per_minute": per_minute},
    }
    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", json.dumps(conn))


def submit_all(emu: Emulator) -> list[SubmitResponse]:
    """Submit the jobs from a worker-side hook before the rate limit is switched on."""
    hook = SegmindHook(CONN_ID)
    try:
        return [
            hook.submit("runway-gen4-aleph", {"prompt": f"make it winter #{n}", "video": emu.sample_url()})
            for n in range(JOBS)
        ]
    finally:
        hook.close()


async def wait_for_all(submitted: list[SubmitResponse]) -> list[RequestEvent]:
    deadline = datetime.now(UTC) + timedelta(minutes=5)

    async def one(job: SubmitResponse) -> RequestEvent:
        trigger = SegmindRequestTrigger(
            request_id=job.request_id,
            segmind_conn_id=CONN_ID,
            deadline=deadline,
            poll_interval=0.5,
            status_url=job.status_url,
            response_url=job.response_url,
        )
        events = [event async for event in trigger.run()]
        assert len(events) == 1
        return RequestEvent.from_payload(events[0].payload)

    # A hang guard only: the deadline above is what the triggers themselves honour.
    return await asyncio.wait_for(asyncio.gather(*(one(job) for job in submitted)), timeout=240)


def check_every_job_succeeded(emu: Emulator, submitted: list[SubmitResponse], events: list[RequestEvent]) -> None:
    assert [event.status for event in events].count("success") == JOBS, {event.status for event in events}
    assert not [event for event in events if event.status == "error"]
    assert [event.request_id for event in events] == [job.request_id for job in submitted]
    assert all(event.output_url and event.request_id in event.output_url for event in events)
    assert emu.submissions == JOBS
    assert emu.stats()["requests"].get("submit") == JOBS, "no trigger ever submitted"
    assert dict(open_shares()) == {}, "the last trigger closed the shared client"


async def test_a_budget_under_the_account_limit_draws_no_429(emu: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    use_budget(emu, monkeypatch, UNDER)
    submitted = submit_all(emu)
    emu.config(rpm_limit=EMULATOR_LIMIT, rate_window=WINDOW)

    events = await wait_for_all(submitted)

    check_every_job_succeeded(emu, submitted, events)
    stats = emu.stats()
    assert stats["rate_limited"] == 0
    # Every job needed one status poll that saw COMPLETED and one result read, at least.
    assert stats["requests"].get("status", 0) >= JOBS
    assert stats["requests"].get("result", 0) >= JOBS


async def test_a_budget_over_the_account_limit_is_held_back_by_429s(
    emu: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_budget(emu, monkeypatch, OVER)
    submitted = submit_all(emu)
    emu.config(rpm_limit=EMULATOR_LIMIT, rate_window=WINDOW)

    events = await wait_for_all(submitted)

    check_every_job_succeeded(emu, submitted, events)
    assert emu.stats()["rate_limited"] > 0, "the budget above the limit should have drawn 429s"
