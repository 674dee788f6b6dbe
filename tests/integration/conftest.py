"""Fixtures shared by the integration tests."""

from __future__ import annotations

import pytest

from tests.fakes import FakeClock


@pytest.fixture
def clock() -> FakeClock:
    """A clock for an emulator whose time the test moves by hand."""
    return FakeClock()
