"""The triggerer's status line over real loopback sockets: a real trigger waits on the emulator, and every
``STATUS_LOG_PERIOD`` (made short here) its log says the request's state, the time since submit, when it
is polled next and why, including while an outage is ridden out. Scheduler reasons on virtual time are in
``tests/unit/test_polling.py``."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import pytest

from airflow_provider_aleph.emulator import Emulator
from airflow_provider_aleph.hooks.segmind import SegmindHook
from airflow_provider_aleph.triggers import segmind as trigger_module
from airflow_provider_aleph.triggers.segmind import SegmindRequestTrigger

if TYPE_CHECKING:
    from collections.abc import Iterator

KEY = "fake-status-line-emulator-0123456789abcdef"
ALEPH = "runway-gen4-aleph"
CONN_ID = "segmind_status_line"


@pytest.fixture
def emu(monkeypatch: pytest.MonkeyPatch) -> Iterator[Emulator]:
    # Jobs that never finish while the test watches: it stops the trigger once it has read what it needs.
    with Emulator(api_key=KEY, latency=3600.0, fetch_inputs=False) as emulator:
        conn = {
            "conn_type": "segmind",
            "password": KEY,
            "host": emulator.base_url,
            "extra": {"max_requests_per_minute": 6000, "timeout": 0.5, "outage_tolerance": 600},
        }
        monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", json.dumps(conn))
        monkeypatch.setattr(trigger_module, "STATUS_LOG_PERIOD", 0.2)
        yield emulator


def trigger_for(emu: Emulator, **kwargs: object) -> SegmindRequestTrigger:
    hook = SegmindHook(CONN_ID)
    try:
        job = hook.submit(ALEPH, {"prompt": "make it winter", "video": emu.sample_url()})
    finally:
        hook.close()
    now = datetime.now(UTC)
    return SegmindRequestTrigger(
        request_id=job.request_id,
        segmind_conn_id=CONN_ID,
        deadline=now + timedelta(minutes=10),
        poll_interval=0.05,
        submitted_at=now,
        model=ALEPH,
        **kwargs,  # type: ignore[arg-type]
    )


async def status_lines_until(
    trigger: SegmindRequestTrigger, capfd: pytest.CaptureFixture[str], phrase: str
) -> list[str]:
    """Run the trigger until a status line containing ``phrase`` is logged, then stop it; all its status lines.

    Read from the process's output: Airflow's structured logging prints the trigger's log there."""
    seen: list[str] = []

    def lines() -> list[str]:
        out, err = capfd.readouterr()
        seen.extend(line for line in (out + err).splitlines() if "since submit; next look" in line)
        return seen

    async def watch() -> None:
        while not any(phrase in line for line in lines()):
            await asyncio.sleep(0.05)

    run = asyncio.ensure_future(anext(trigger.run()))
    try:
        await asyncio.wait_for(watch(), timeout=60)
    finally:
        run.cancel()
        await asyncio.gather(run, return_exceptions=True)
    return seen


async def test_a_waiting_trigger_says_what_the_scheduler_does_for_its_request(
    emu: Emulator, capfd: pytest.CaptureFixture[str]
) -> None:
    trigger = trigger_for(emu, expected_duration=3600.0)
    lines = await status_lines_until(trigger, capfd, "is seen to finish")
    line = next(line for line in lines if "is seen to finish" in line)
    assert f"Segmind request {trigger.request_id} is QUEUED, " in line
    assert "since submit; next look in " in line
    # The scout looks early; the plan names the model and the operator's hint, in words (pendulum).
    assert f"until a job of {ALEPH} is seen to finish (the operator's expected_duration says 1 hour)" in line
    assert KEY not in "".join(lines)


async def test_an_outage_being_ridden_out_is_named(emu: Emulator, capfd: pytest.CaptureFixture[str]) -> None:
    trigger = trigger_for(emu)
    emu.config(outage_seconds=600)
    lines = await status_lines_until(trigger, capfd, "riding out an outage")
    line = next(line for line in lines if "riding out an outage" in line)
    assert "is not polled yet" in line
    assert "next look as soon as Segmind answers" in line
    assert "the connection's outage tolerance is 10 minutes" in line
    emu.config(outage_seconds=0)
