"""Small stand-ins shared by the tests."""

from __future__ import annotations


class FakeClock:
    """A monotonic clock that moves only when a test moves it.

    :param now: the starting time, in seconds.
    """

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        """Move the clock forward."""
        self.now += seconds
