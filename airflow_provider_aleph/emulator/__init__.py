"""Offline emulator of Segmind's v2 async API, for tests, demos and DAG authors' CI.

``with Emulator() as emu:`` serves the API on a free loopback port at ``emu.base_url``; point
the provider's connection (or ``segmind.SegmindClient(base_url=f"{emu.base_url}/v1")``) at it.
A prompt containing ``[emulator:fail]`` always ends FAILED; see ``jobs`` for the job timeline.
Run it standalone with ``python -m airflow_provider_aleph.emulator --port 8765``.
"""

from __future__ import annotations

from airflow_provider_aleph.emulator.jobs import FAIL_MARKER, FAILURE_REASON, EmulatorConfig, Job
from airflow_provider_aleph.emulator.server import Emulator

__all__ = ["FAILURE_REASON", "FAIL_MARKER", "Emulator", "EmulatorConfig", "Job"]
