"""Pytest fixture serving the Segmind emulator.

Enable it with ``pytest_plugins = ["airflow_provider_aleph.emulator.pytest_plugin"]`` in a root
``conftest.py``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from airflow_provider_aleph.emulator.server import Emulator

if TYPE_CHECKING:
    from collections.abc import Iterator


@pytest.fixture
def segmind_emulator() -> Iterator[Emulator]:
    """Yield a running emulator (latency 0.2 s, retention 1 h), stopped after the test."""
    with Emulator(latency=0.2, retention=3600.0) as emulator:
        yield emulator
