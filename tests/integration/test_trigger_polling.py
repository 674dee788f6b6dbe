"""The poll scheduler behind real triggers, over real loopback sockets against the emulator.

Decisions on virtual time are in ``tests/unit/test_polling.py``; here the same triggers a triggerer runs
wait for jobs whose durations vary (lognormal, as Segmind's do), and the emulator counts what they cost.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pytest

from airflow_provider_aleph.emulator import Emulator
from airflow_provider_aleph.events import RequestEvent
from airflow_provider_aleph.hooks.segmind import SegmindHook
from airflow_provider_aleph.shared import acquire_shared
from airflow_provider_aleph.triggers.segmind import SegmindRequestTrigger
from tests.fakes import open_shares

if TYPE_CHECKING:
    from collections.abc import Iterator

    from airflow_provider_aleph.protocol import SubmitResponse

KEY = "fake-polling-emulator-0123456789abcdef"
ALEPH = "runway-gen4-aleph"
JOBS = 20
MEDIAN = 1.5  # seconds: Aleph's 169 s scaled down


@pytest.fixture
def emu() -> Iterator[Emulator]:
    with Emulator(api_key=KEY, latency=MEDIAN, latency_sigma=0.3, seed=13, fetch_inputs=False) as emulator:
        yield emulator


def use_conn(emu: Emulator, monkeypatch: pytest.MonkeyPatch, conn_id: str, **extra: Any) -> None:
    conn = {"conn_type": "segmind", "password": KEY, "host": emu.base_url, "extra": extra}
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(conn))


def submit(emu: Emulator, conn_id: str, count: int) -> list[SubmitResponse]:
    hook = SegmindHook(conn_id)
    try:
        return [hook.submit(ALEPH, {"prompt": f"make it winter #{n}", "video": emu.sample_url()}) for n in range(count)]
    finally:
        hook.close()


async def wait_all(triggers: list[SegmindRequestTrigger]) -> list[RequestEvent]:
    async def one(trigger: SegmindRequestTrigger) -> RequestEvent:
        events = [event async for event in trigger.run()]
        assert len(events) == 1
        return RequestEvent.from_payload(events[0].payload)

    return await asyncio.wait_for(asyncio.gather(*(one(t) for t in triggers)), timeout=60)


def triggers_for(
    jobs: list[SubmitResponse], conn_id: str, submitted_at: datetime, poll: float = 0.02, **kwargs: Any
) -> list[SegmindRequestTrigger]:
    return [
        SegmindRequestTrigger(
            request_id=job.request_id,
            segmind_conn_id=conn_id,
            deadline=submitted_at + timedelta(seconds=60),
            poll_interval=poll,
            status_url=job.status_url,
            response_url=job.response_url,
            submitted_at=submitted_at,
            model=ALEPH,
            **kwargs,
        )
        for job in jobs
    ]


def status_calls(emu: Emulator) -> int:
    return int(emu.stats()["requests"].get("status", 0))


async def test_adaptive_polls_spend_a_few_calls_per_job_where_fixed_ones_spend_dozens(
    emu: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_conn(emu, monkeypatch, "segmind_adaptive", max_requests_per_minute=60000)
    use_conn(emu, monkeypatch, "segmind_fixed", max_requests_per_minute=60000, poll_policy="fixed")

    now = datetime.now(UTC)
    jobs = submit(emu, "segmind_adaptive", JOBS)
    events = await wait_all(
        triggers_for(jobs, "segmind_adaptive", now, poll=0.1, expected_duration=MEDIAN, max_poll_interval=0.5)
    )
    assert [event.status for event in events] == ["success"] * JOBS
    assert {event.request_id for event in events} == {job.request_id for job in jobs}
    adaptive = status_calls(emu)
    assert dict(open_shares()) == {}

    before = status_calls(emu)
    now = datetime.now(UTC)
    jobs = submit(emu, "segmind_fixed", JOBS)
    events = await wait_all(triggers_for(jobs, "segmind_fixed", now, poll=0.1, expected_duration=MEDIAN))
    assert [event.status for event in events] == ["success"] * JOBS
    fixed = status_calls(emu) - before

    # Adaptive: until a job is seen done, four scouts look early (the first at growing gaps, all of them
    # every 100 ms from the first-look point, staggered; a dozen polls together); the rest are first polled
    # once a quarter of such jobs are done, then on the chance of being done (2 to 3 polls a job).
    # Fixed: every 100 ms for a job of about 1.5 s, some 15 polls a job.
    assert adaptive <= 20 + 4 * JOBS, f"{adaptive} status polls for {JOBS} jobs"
    assert fixed >= 3 * adaptive, (fixed, adaptive)
    assert emu.stats()["requests"]["result"] == 2 * JOBS, "one result call per job, on either policy"


async def test_what_one_wave_of_jobs_teaches_is_used_by_the_next(
    emu: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without a hint (the generic operator), the first wave is polled every poll_interval; the second is
    polled from what the first one's durations were, on the same connection and event loop."""
    conn_id = "segmind_learning"
    use_conn(emu, monkeypatch, conn_id, max_requests_per_minute=60000)

    async def both_waves() -> tuple[int, int]:
        # Holding the connection's share for the whole test keeps what it learned, as a busy triggerer does.
        share = await acquire_shared(conn_id)
        try:
            counts = []
            for wave in range(2):
                before = status_calls(emu)
                now = datetime.now(UTC)
                jobs = await asyncio.to_thread(submit, emu, conn_id, JOBS)
                events = await wait_all(triggers_for(jobs, conn_id, now, max_poll_interval=0.5))
                assert [event.status for event in events] == ["success"] * JOBS, f"wave {wave}"
                counts.append(status_calls(emu) - before)
            return counts[0], counts[1]
        finally:
            await share.release()

    first, second = await both_waves()
    assert second * 2 <= first, f"the second wave took {second} status polls, the first {first}"
