"""Helpers shared by the object storage tests: a completed emulator job's output, emulator settings."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import httpx

if TYPE_CHECKING:
    from airflow_provider_aleph.emulator import Emulator
    from airflow_provider_aleph.hooks.segmind import SegmindHook

ALEPH = "runway-gen4-aleph"
WAIT = 30.0


def completed_output(hook: SegmindHook, payload: dict[str, Any], model: str = ALEPH) -> str:
    """Submit a job through ``hook``, wait for it to complete, and return its output URL."""
    submitted = hook.submit(model, payload)
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        state = hook.get_status(submitted.request_id, submitted.status_url)
        if state.status.is_terminal:
            result = hook.get_result(submitted.request_id, submitted.response_url)
            assert result.output_url, f"job {submitted.request_id} ended {result.status}: {result.error}"
            return result.output_url
        time.sleep(0.05)
    raise AssertionError(f"job {submitted.request_id} did not finish within {WAIT}s")


def configure(emulator: Emulator, **changes: Any) -> dict[str, Any]:
    """Change the running emulator's settings through its admin route; returns the new settings."""
    response = httpx.post(f"{emulator.base_url}/_emulator/config", json=changes)
    response.raise_for_status()
    settings: dict[str, Any] = response.json()
    return settings


def uploads(emulator: Emulator) -> int:
    """How many files the emulator's files API has stored."""
    return int(emulator.stats()["uploads"]["count"])
