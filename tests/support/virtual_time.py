"""An asyncio event loop whose clock is virtual: when nothing is ready, time jumps to the next timer.

Tests of timing decisions (the poll scheduler, the request budget) run minutes of schedule in
milliseconds and see exact times, with the real asyncio machinery (futures, tasks, ``call_later``,
``asyncio.timeout``) underneath. Only the wait is skipped: the loop still polls its real selector for
ready file descriptors (its own wake-up pipe) without blocking.
"""

from __future__ import annotations

import asyncio
import selectors
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from collections.abc import Coroutine

T = TypeVar("T")
#: The wall-clock reading that virtual time 0 stands for.
EPOCH = datetime(2026, 1, 1, tzinfo=UTC)


class _VirtualSelector(selectors.DefaultSelector):
    def __init__(self) -> None:
        super().__init__()
        self.now = 0.0

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        ready = super().select(0)
        if not ready and timeout is not None and timeout > 0:
            self.now += timeout  # nothing to do until the next timer: go there at once
        elif not ready and timeout is None:
            raise RuntimeError("the virtual-time loop has nothing scheduled and nothing ready: a deadlock")
        return ready


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """A selector event loop on virtual time; :meth:`time` starts at 0."""

    def __init__(self) -> None:
        self._virtual = _VirtualSelector()
        super().__init__(self._virtual)

    def time(self) -> float:
        return self._virtual.now

    def wall(self) -> datetime:
        """The wall clock matching the virtual one (``EPOCH`` plus virtual seconds)."""
        return EPOCH + timedelta(seconds=self.time())


def run_virtual(main: Coroutine[Any, Any, T], loop: VirtualTimeLoop | None = None) -> T:
    """Run ``main`` to completion on a (new) virtual-time loop and close the loop."""
    loop = loop or VirtualTimeLoop()
    try:
        return loop.run_until_complete(main)
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
