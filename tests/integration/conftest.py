"""Fixtures shared by the integration tests."""

from __future__ import annotations

import contextlib
import signal
from typing import TYPE_CHECKING

import pytest

from airflow_provider_aleph.emulator.spawn import spawn
from tests.fakes import FakeClock

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path


@pytest.fixture
def clock() -> FakeClock:
    """A clock for an emulator whose time the test moves by hand."""
    return FakeClock()


@contextlib.contextmanager
def emulator_process(flags: list[str], log_path: Path) -> Iterator[str]:
    """Run ``python -m airflow_provider_aleph.emulator`` with ``flags``; yield its base URL; then stop it with
    SIGTERM, as a service manager would, and check that it exited cleanly.

    :param flags: the command's flags.
    :param log_path: where its output goes.
    """
    process, base_url = spawn(flags, log_path=log_path)
    try:
        yield base_url
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=15)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, log_path.read_text(errors="replace")[-2000:]
